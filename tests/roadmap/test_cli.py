"""``repvit roadmap``: JSON listing, latency through the shared backends, training through the trainer, plot."""

from __future__ import annotations

import json

import pytest

from repvit.cli.info_cmd import model_info
from repvit.cli.main import main
from repvit.roadmap import STEPS
from repvit.roadmap.runner import RoadmapSettings, format_table, run_roadmap


def _run_json(capsys, *argv: str) -> dict:
    assert main(["roadmap", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_step_with_params_and_macs(capsys):
    res = _run_json(capsys, "--img-size", "64")
    rows = res["steps"]
    assert [r["name"] for r in rows] == [s.name for s in STEPS]
    assert all("latency" not in r and "top1" not in r for r in rows)
    # the last step's figures agree with `repvit info repvit_m1_0` (another code path, same network)
    info = model_info("repvit_m1_0", (64,))
    assert rows[-1]["fused_params"] == info["fused_params"]
    assert rows[-1]["fused_macs"] == info["fused_macs"]
    assert all(r["params"] > r["fused_params"] > 0 and r["fused_macs"] > 0 for r in rows)


def test_json_with_latency(capsys):
    res = _run_json(capsys, "--img-size", "64", "--steps", "0", "8", "--backends", "eager",
                    "--rounds", "1", "--iters", "2", "--warmup", "1")
    rows = res["steps"]
    assert [r["index"] for r in rows] == [0, 8]
    for r in rows:
        lat = r["latency"]["eager"]
        assert lat["median_ms"] > 0 and lat["n"] == 2
    assert rows[0]["latency_vs_first"]["eager"] == 1.0


def test_plot_and_table(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra")
    png = tmp_path / "roadmap.png"
    assert main(["roadmap", "--img-size", "32", "--steps", "0", "1", "--backends", "eager", "--rounds", "1",
                 "--iters", "1", "--warmup", "0", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "roadmap_1_separate_mixers" in out and "eager (ms)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv,message",
    [(["--backends", "no_such_backend"], "unknown backend"), (["--plot", "x.png"], "needs something to draw"),
     (["--steps", "42"], "unknown roadmap step")],
)
def test_errors_are_one_line(argv, message, capsys):
    assert main(["roadmap", "--img-size", "32", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_training_uses_the_trainer_with_one_recipe(tmp_path):
    s = RoadmapSettings(img_size=32, train="digits", epochs=1, batch_size=32, steps=("0",),
                        output_dir=str(tmp_path), train_overrides={"train_subset": 64})
    res = run_roadmap(s)
    row = res["steps"][0]
    assert 0.0 <= row["top1"] <= 100.0 and row["train_time_s"] > 0
    assert (tmp_path / row["name"]).is_dir()  # the trainer's run folder, one per step
    assert "top-1 (%)" in format_table(res)
