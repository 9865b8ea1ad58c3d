"""ExecuTorch export: a ``.pte`` from a checkpoint with randomized BN statistics, run by ExecuTorch's own runtime
(``executorch.runtime``, independent of our code), matches the fused PyTorch model; the whole graph is one XNNPACK
delegate call; INT8 (PT2E, XNNPACKQuantizer) stays within 0.5 points of FP32 on the digits set after training."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import repvit
from repvit.cli.main import main
from repvit.models import VARIANTS, RepViT, RepViTConfig
from tests.helpers import randomize_bn, rel_err

pytest.importorskip("executorch", reason="ExecuTorch export needs executorch: pip install 'repvit-pytorch[executorch]'")

IMG = 64
# RepViT-M0.6's widths and every kind of block (SE and plain, the downsamples, the distillation head) with fewer
# blocks in stage 3: lowering to ExecuTorch costs time per graph node (about 15 s here against 35 s for M0.6)
SMALL = RepViTConfig(**{**VARIANTS["repvit_m0_6"].to_dict(), "depths": (1, 1, 2, 1)})


def _method(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.runtime import Runtime

    return Runtime.get().load_program(str(path)).load_method("forward")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pte")
    model = randomize_bn(RepViT(SMALL, num_classes=10, distillation=True), seed=3)
    ckpt = repvit.save_checkpoint(model, tmp / "m.safetensors", class_names=[f"c{i}" for i in range(10)])
    out = tmp / "m.pte"
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(out), "--img-size", str(IMG)]) == 0
    return out, repvit.fuse_model(repvit.create_model(checkpoint=ckpt))


def test_pte_matches_fused_pytorch(exported):
    path, fused = exported
    x = torch.randn(1, 3, IMG, IMG)
    (got,) = _method(path).execute([x])
    with torch.no_grad():
        ref = fused(x)
    assert got.shape == (1, 10)
    assert rel_err(got, ref) < 1e-4
    # and it is not trivially equal to an unfused/unrandomized model's output
    with torch.no_grad():
        other = repvit.fuse_model(RepViT(SMALL, num_classes=10, distillation=True))(x)
    assert rel_err(got, other) > 1e-2


def test_whole_graph_is_one_xnnpack_call_and_metadata_sidecar(exported):
    path, _ = exported
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta["delegate_calls"] == 1, meta["portable_ops"]
    assert meta["portable_ops"] == []
    assert meta["batch"] == 1 and meta["input_size"] == [3, IMG, IMG]
    assert meta["class_names"] == [f"c{i}" for i in range(10)]
    # the runtime sees the XNNPACK backend registered
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.runtime import Runtime
    assert Runtime.get().backend_registry.is_available("XnnpackBackend")


def test_method_loaded_from_bytes_outlives_the_bytes(exported):
    import gc

    from repvit.deploy.executorch_export import load_method, run_method

    path, fused = exported
    data = path.read_bytes()
    method = load_method(data)
    del data
    gc.collect()
    junk = [bytes(1 << 20) for _ in range(64)]  # reuse the freed memory, if it was freed
    x = torch.randn(1, 3, IMG, IMG)
    (got,) = run_method(method, x)
    del junk
    with torch.no_grad():
        assert rel_err(got, fused(x)) < 1e-4


def test_int8_needs_calibration_and_other_formats_refuse_it(tmp_path):
    from repvit.deploy.export import export_model

    model = repvit.create_model("repvit_m0_6", num_classes=10)
    with pytest.raises(ValueError, match="calib"):
        export_model(model, tmp_path / "q.pte", "executorch", img_size=IMG, int8=True)
    with pytest.raises(ValueError, match="onnx and executorch"):
        export_model(model, tmp_path / "q.pt", "torchscript", img_size=IMG, int8=True, calib=[torch.zeros(1)])


@pytest.mark.slow
def test_executorch_int8_within_half_a_point_of_fp32_on_digits(tmp_path):
    pytest.importorskip("sklearn", reason="the digits set needs scikit-learn: pip install 'repvit-pytorch[digits]'")
    from repvit.classification import train
    from repvit.data import load_digits_split
    from repvit.deploy.calib import load_calibration
    from repvit.deploy.export import export_model

    summary = train({"model": "repvit_m0_6", "data": "digits", "epochs": 6, "img_size": 32,
                     "output_dir": str(tmp_path / "run"), "progress": False})
    model = repvit.create_model(checkpoint=summary["best_checkpoint"])
    calib = load_calibration("digits", (32, 32), None, None, limit=256)
    fp32 = export_model(model, tmp_path / "fp32.pte", "executorch", img_size=32)
    int8 = export_model(model, tmp_path / "int8.pte", "executorch", img_size=32, int8=True, calib=calib)
    assert int8.metadata["delegate_calls"] == 1
    x, y = load_digits_split("val", img_size=32)

    def predictions(path) -> torch.Tensor:
        method = _method(path)
        return torch.cat([method.execute([x[i:i + 1]])[0].argmax(1) for i in range(len(x))])

    a, b = predictions(fp32.path), predictions(int8.path)
    top1_a, top1_b = 100.0 * (a == y).float().mean().item(), 100.0 * (b == y).float().mean().item()
    assert top1_a > 90.0, f"training did not converge (FP32 top-1 {top1_a:.2f}%)"
    assert abs(top1_a - top1_b) <= 0.5, f"ExecuTorch INT8 top-1 {top1_b:.2f}% vs FP32 {top1_a:.2f}%"
    assert (a == b).float().mean().item() >= 0.99
