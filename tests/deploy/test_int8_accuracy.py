"""Must-show: after training on the built-in digits set, INT8 (ONNX Runtime, static QDQ) stays within 0.5 points of
FP32 top-1 on the held-out split. Trains for a few minutes, so it is marked slow (``make test-all``)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime", reason="INT8 needs onnxruntime: pip install 'repvit-pytorch[onnx]'")
pytest.importorskip("sklearn", reason="the digits set needs scikit-learn: pip install 'repvit-pytorch[digits]'")


@pytest.mark.slow
def test_int8_within_half_a_point_of_fp32_after_training(tmp_path):
    import repvit
    from repvit.classification import train
    from repvit.data import load_digits_split
    from repvit.deploy.calib import load_calibration
    from repvit.deploy.export import export_model
    from repvit.deploy.onnx_export import make_session

    summary = train({"model": "repvit_m0_6", "data": "digits", "epochs": 6, "img_size": 32,
                     "output_dir": str(tmp_path / "run"), "progress": False})
    model = repvit.create_model(checkpoint=summary["best_checkpoint"])
    calib = load_calibration("digits", (32, 32), None, None, limit=256)
    fp32 = export_model(model, tmp_path / "fp32.onnx", "onnx", img_size=32)
    int8 = export_model(model, tmp_path / "int8.onnx", "onnx", img_size=32, int8=True, calib=calib)
    x, y = load_digits_split("val", img_size=32)

    def top1(path) -> float:
        sess = make_session(path, threads=2)
        logits = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
        return 100.0 * (logits.argmax(1) == y).float().mean().item()

    a, b = top1(fp32.path), top1(int8.path)
    assert a > 90.0, f"training did not converge (FP32 top-1 {a:.2f}%)"
    assert abs(a - b) <= 0.5, f"INT8 top-1 {b:.2f}% vs FP32 {a:.2f}%"


@pytest.mark.slow
def test_every_int8_backend_within_half_a_point_on_this_cpu(tmp_path):
    """The bench's accuracy check (``repvit bench --accuracy-checkpoint``) on a digits checkpoint: every INT8
    backend available here within 0.5 points of FP32 and >= 99% agreement, with this CPU's ``auto`` INT8 mode."""
    from repvit.bench.accuracy import digits_accuracy
    from repvit.bench.backends import available_backends
    from repvit.classification import train

    summary = train({"model": "repvit_m0_6", "data": "digits", "epochs": 6, "img_size": 32,
                     "output_dir": str(tmp_path / "run"), "progress": False})
    backends = [b for b in ("onnxruntime-int8", "openvino-int8", "executorch-int8") if b in available_backends()]
    assert "onnxruntime-int8" in backends
    acc = digits_accuracy(summary["best_checkpoint"], backends, threads=2)
    assert acc["fp32_top1"] > 90.0
    assert not acc["errors"], acc["errors"]
    for r in acc["rows"]:
        assert r["passed"], r
        assert r["warning"] is None
