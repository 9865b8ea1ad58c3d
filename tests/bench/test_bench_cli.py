"""``repvit bench`` on a tiny configuration: every output is written and records the setup; helpers are right."""

from __future__ import annotations

import csv
import json
import random

import pytest

from repvit.cli.main import main


def test_bench_smoke_run(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'repvit-pytorch[onnx]'")
    pytest.importorskip("matplotlib", reason="the Pareto plot needs matplotlib: pip install 'repvit-pytorch[plot]'")
    rc = main(["bench", "--models", "repvit_m0_6,repvit_m0_6:unfused", "--backends",
               "eager,onnxruntime", "--img-size", "64", "--rounds", "2", "--iters", "2", "--warmup", "1",
               "--throughput-batch", "4", "--throughput-rounds", "1", "--threads", "1", "--out-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| model | backend |" in out
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["settings"]["threads"] == 1 and data["settings"]["img_size"] == 64
    assert data["environment"]["torch"] and data["environment"]["onnxruntime"]
    assert data["sgemm"]["gflops"] > 0
    rows = {(r["model"], r["backend"]): r for r in data["rows"]}
    assert len(rows) == 4
    fused, unfused = rows[("repvit_m0_6", "eager")], rows[("repvit_m0_6 (unfused)", "eager")]
    assert fused["top1"] == 74.1  # RepViT paper, Table (M0.6)
    assert fused["params_m"] < unfused["params_m"]  # fusing removes BN parameters
    for r in data["rows"]:
        assert r["p90_ms"] >= r["latency_ms"] > 0 and r["throughput_img_s"] > 0
        # efficiency against the compute bound measured in the same run
        assert r["bound_ms"] == pytest.approx(2 * r["macs_g"] * 1e9 / (data["sgemm"]["gflops"] * 1e9) * 1e3)
        assert r["x_bound"] == pytest.approx(r["latency_ms"] / r["bound_ms"])
        assert r["x_bound_best"] == pytest.approx(r["min_ms"] / (2 * r["macs_g"] / data["sgemm"]["best_gflops"] * 1e3))
    lines = (tmp_path / "bench.csv").read_text().splitlines()
    assert lines[0].startswith("# environment:") and lines[1].startswith("# settings:")
    assert len(list(csv.DictReader(line for line in lines if not line.startswith("#")))) == 4
    md = (tmp_path / "bench.md").read_text()
    assert "Compute bound" in md and "threads" in md and "CPU flags: " in md
    env = data["environment"]
    assert f"family {env.get('cpu_family', '?')}, model {env.get('cpu_model_number', '?')}" in md
    # the fastest FP32 backend of each model, with its distance from the bound
    fastest = min((r for r in data["rows"] if r["model"] == "repvit_m0_6"), key=lambda r: r["latency_ms"])
    assert f"| repvit_m0_6 | {fastest['backend']} | {fastest['latency_ms']:.2f} |" in md
    png = (tmp_path / "bench_pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_backend_and_model_are_clear(capsys, tmp_path):
    assert main(["bench", "--backends", "tensorrt", "--out-dir", str(tmp_path)]) == 1
    assert "supported" in capsys.readouterr().err
    assert main(["bench", "--models", "not_a_model_xyz", "--out-dir", str(tmp_path)]) == 1
    assert "not_a_model_xyz" in capsys.readouterr().err


def test_openvino_is_selectable_but_not_default(capsys, tmp_path):
    from repvit.bench.runner import DEFAULT_BACKENDS, BenchSettings

    assert BenchSettings(backends=("eager", "openvino")).backends == ("eager", "openvino")
    assert "openvino" not in DEFAULT_BACKENDS
    assert main(["bench", "--backends", "tensorrt", "--out-dir", str(tmp_path)]) == 1
    assert "openvino" in capsys.readouterr().err  # listed among the supported backends


def test_pareto_front_matches_brute_force():
    from repvit.bench.plot import pareto_front

    rng = random.Random(0)
    for _ in range(20):
        pts = [(rng.uniform(1, 10), rng.uniform(70, 80)) for _ in range(12)]
        brute = {i for i, (lat, acc) in enumerate(pts)
                 if not any((l2 <= lat and a2 >= acc) and (l2, a2) != (lat, acc) for l2, a2 in pts)}
        assert set(pareto_front(pts)) == brute


def test_baseline_specs_carry_published_top1():
    from repvit.bench.baselines import resolve_model

    assert resolve_model("mobilenetv3_large_100").top1 == 75.8  # timm model card
    assert resolve_model("fastvit_t8").top1_res == 256
    timm_repvit = resolve_model("timm:repvit_m0_9")
    assert timm_repvit.source == "timm" and timm_repvit.top1 == 78.7
    with pytest.raises(ValueError, match="suffix"):
        resolve_model("repvit_m0_9:int8")
