"""Every script in ``benchmarks/`` runs end to end at its smallest settings and writes its JSON, so a change in the
library cannot silently break one (``train_throughput.py`` once ended in a TypeError after an engine change).

The scripts run as a user runs them (``python benchmarks/NAME.py ...``) in a subprocess, results written under the
test's temporary folder. They take tens of seconds each on 2 cores, so they are slow tests (``make test-all``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"

# script -> its smallest settings (--out is added by the test)
SMALL: dict[str, list[str]] = {
    "backends_vs_timm.py": ["--backends", "eager", "--img-size", "64", "--threads", "1", "--rounds", "1", "--iters",
                            "1", "--warmup", "1"],
    "ddp_stress.py": ["--runs", "1", "--epochs", "1", "--train-subset", "64", "--workers", "1", "--timeout", "600"],
    "dense_latency.py": ["--model", "repvit_m0_9", "--img-size", "64", "--threads", "1", "--rounds", "1", "--iters",
                         "1", "--num-classes", "4"],
    "detect_latency.py": ["--model", "repvit_m0_9", "--img-size", "128", "--detections", "5", "--threads", "1",
                          "--rounds", "1", "--iters", "1"],
    "detect_ort_profile.py": ["--model", "repvit_m0_9", "--img-size", "128", "--detections", "5", "--threads", "1",
                              "--runs", "1"],
    "edgetam_fps.py": ["--frames", "3", "--rounds", "1", "--threads", "1", "--encoder-iters", "1", "--no-sam21"],
    "int8_profile.py": ["--quick", "--threads", "1"],
    "sam_click.py": ["--quick", "--threads", "1"],
    "int8_plans.py": ["--quick", "--threads", "1", "--batch", "2"],
    "int8_sam.py": ["--img-size", "256", "--threads", "1", "--rounds", "1"],
    "sam_latency.py": ["--quick", "--threads", "1", "--no-install"],
    "sam_ort_profile.py": ["--quick", "--threads", "1"],
    "sam_prompt_distill.py": ["--smoke", "--threads", "1"],
    "int8_digits.py": ["--epochs", "1", "--calib-images", "16", "--threads", "1", "--rounds", "1", "--iters", "1"],
    "latency_fused.py": ["--img-size", "64", "--threads", "1", "--rounds", "1", "--iters", "1"],
    "onnx_vs_bound.py": ["--img-size", "64", "--threads", "1", "--rounds", "1", "--iters", "1", "--warmup", "1",
                         "--sgemm-n", "64"],
    "train_throughput.py": ["--batch-size", "8", "--rounds", "2", "--steps", "1", "--warmup", "1"],
    "time_to_target.py": ["--tasks", "classify", "--seeds", "0", "--sides", "ours", "--cores", "0", "--set",
                          "epochs=1", "--set", "train_subset=64", "--set", "val_subset=64"],
}
# needs a CUDA GPU (only --help and its CPU refusal are tested here)
NOT_RUN = {"gpu_check.py"}
NEEDS = {"int8_profile.py": ["onnxruntime"], "int8_plans.py": ["onnxruntime", "openvino", "nncf"],
         "int8_sam.py": ["onnxruntime", "segment_anything"], "edgetam_fps.py": ["skimage", "onnxruntime"],
         "sam_latency.py": ["segment_anything"], "sam_ort_profile.py": ["segment_anything", "onnxruntime"],
         "sam_click.py": ["segment_anything", "onnxruntime"],
         "sam_prompt_distill.py": ["segment_anything", "skimage"],
         "backends_vs_timm.py": ["onnx"], "int8_digits.py": ["onnxruntime", "sklearn"], "ddp_stress.py": ["sklearn"],
         "onnx_vs_bound.py": ["onnxruntime"], "train_throughput.py": ["sklearn"], "detect_latency.py": ["torchvision"],
         "detect_ort_profile.py": ["onnxruntime"],
         "time_to_target.py": ["sklearn"]}


def _run(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
                        "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_every_script_is_covered():
    scripts = {p.name for p in BENCH.glob("*.py")}
    assert scripts == set(SMALL) | (NOT_RUN & scripts), "add a new benchmark script to SMALL with its smallest settings"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(SMALL))
def test_script_runs_at_its_smallest_settings(script, tmp_path):
    for mod in NEEDS.get(script, []):
        pytest.importorskip(mod)
    out = tmp_path / "result.json"
    p = _run([str(BENCH / script), *SMALL[script], "--out", str(out)])
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-4000:])
    res = json.loads(out.read_text())
    assert isinstance(res, dict) and res
    if script == "train_throughput.py":  # it measures both sides again, and their ratio
        ips = res["images_per_s"]
        assert ips["ours"]["overall"] > 0 and ips["plain_timm"]["overall"] > 0
        assert res["ratio_ours_over_plain"]["overall"] > 0


def test_gpu_check_help_and_clear_refusal_without_cuda(tmp_path):
    p = _run([str(BENCH / "gpu_check.py"), "--help"], timeout=120)
    assert p.returncode == 0 and "--out-dir" in p.stdout
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; gpu_check.py would run for real")
    p = _run([str(BENCH / "gpu_check.py"), "--out-dir", str(tmp_path / "g")], timeout=120)
    assert p.returncode != 0 and "needs a CUDA GPU" in p.stderr and "Traceback" not in p.stderr
