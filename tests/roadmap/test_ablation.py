"""Ablations on top of a step (``repvit roadmap --ablate``): rows, figures against the Python switches, errors."""

from __future__ import annotations

import json

import pytest

import repvit
from repvit.bench.complexity import count_macs, count_params
from repvit.bench.latency import thread_count
from repvit.cli.main import main
from repvit.models.fuse import fuse_model
from repvit.roadmap import (
    STEPS,
    Ablation,
    RoadmapNet,
    RoadmapVariant,
    parse_ablations,
    register_variant,
    with_expansion,
    with_kernel,
    with_se,
    with_token_mixer,
)
from repvit.roadmap.runner import RoadmapSettings, run_roadmap

IMG = 64


def _run_json(capsys, *argv: str) -> dict:
    assert main(["roadmap", "--json", "--img-size", str(IMG), *argv]) == 0
    return json.loads(capsys.readouterr().out)


def _figures(cfg) -> dict[str, int]:
    with thread_count(1):  # as the runner counts (its --threads default): fast on a shared 2-core machine too
        model = RoadmapNet(cfg)
        fused = fuse_model(model)
        return {"params": count_params(model), "fused_params": count_params(fused),
                "fused_macs": count_macs(fused, IMG)}


# argv, base step, {label: config built with the Python switches}
CASES = {
    "se_reparam_on_m1_0": (
        ["--steps", "8", "--ablate", "se=all,cross,none", "--ablate", "reparam=on,off"],
        STEPS[8],
        {"se=all": lambda c: with_se(c, "all"), "se=cross": lambda c: with_se(c, "cross"),
         "se=none": lambda c: with_se(c, "none"), "reparam=on": lambda c: with_token_mixer(c, True),
         "reparam=off": lambda c: with_token_mixer(c, False)},
    ),
    "expansion_kernel_on_step7": (
        ["--steps", "7", "--ablate-base", "kernel3", "--ablate", "expansion=2,4.0", "kernel=5"],
        STEPS[7],
        {"expansion=2": lambda c: with_expansion(c, 2), "expansion=4": lambda c: with_expansion(c, 4),
         "kernel=5": lambda c: with_kernel(c, 5)},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_ablation_rows_match_the_python_switches(case, capsys):
    argv, base, switches = CASES[case]
    res = _run_json(capsys, *argv)
    assert res["settings"]["ablations"] == [a for a in argv if "=" in a]
    assert res["settings"]["ablation_base"] == (None if base is STEPS[8] else "kernel3")
    rows = res["steps"]
    assert [r["label"] for r in rows] == [base.name] + [f"roadmap_{base.index} + {k}" for k in switches]
    base_row, ablated = rows[0], {r["ablation"]: r for r in rows[1:]}
    assert "ablation" not in base_row and base_row["name"] == base.name
    for label, switch in switches.items():
        row, cfg = ablated[label], switch(base.config)
        assert {k: row[k] for k in ("params", "fused_params", "fused_macs")} == _figures(cfg), label
        assert row["index"] == base.index and row["base"] == base.name
        assert row["same_as_base"] == (cfg == base.config)
        entry = repvit.get_model_entry(row["name"])  # registered, so the trainer and create_model build it by name
        assert entry.config == cfg and "ablation" in entry.tags
        assert "latency" not in row and "top1" not in row
    if base is STEPS[8]:
        # SE costs params and (tiny, 1x1) MACs; cross-block SE and RepVGGDW are RepViT-M1.0 itself
        assert ablated["se=none"]["params"] < ablated["se=cross"]["params"] < ablated["se=all"]["params"]
        assert ablated["se=none"]["fused_macs"] < ablated["se=all"]["fused_macs"]
        for same in ("se=cross", "reparam=on"):
            assert ablated[same]["same_as_base"]
            assert all(ablated[same][k] == base_row[k] for k in ("params", "fused_params", "fused_macs"))
        # a plain DW conv + BN and RepVGGDW fuse to the same kxk depthwise conv: fewer training params only
        off, on = ablated["reparam=off"], ablated["reparam=on"]
        assert off["params"] < on["params"]
        assert off["fused_params"] == on["fused_params"] and off["fused_macs"] == on["fused_macs"]
    else:
        assert ablated["expansion=2"]["same_as_base"]  # every FFN already expands by 2 from step 2 on
        assert ablated["expansion=4"]["fused_macs"] > base_row["fused_macs"]
        assert ablated["kernel=5"]["fused_macs"] > base_row["fused_macs"]


def test_ablations_are_timed_with_the_steps_and_tabled_and_plotted(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs the [plot] extra")
    png = tmp_path / "ablation.png"
    assert main(["roadmap", "--img-size", "32", "--steps", "8", "--ablate", "se=none", "--backends", "eager",
                 "--rounds", "1", "--iters", "1", "--warmup", "0", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "| roadmap_8 + se=none " in out and "eager (x step 8)" in out
    assert "ablations: roadmap_8_cross_block_se with one switch changed" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_ablation_trains_with_the_steps_recipe(tmp_path):
    s = RoadmapSettings(img_size=32, train="digits", epochs=1, batch_size=32, steps=("1",), ablations=("se=none",),
                        ablation_base="1", output_dir=str(tmp_path),
                        train_overrides={"train_subset": 32, "val_subset": 64})
    rows = run_roadmap(s)["steps"]
    assert [r["label"] for r in rows] == [STEPS[1].name, "roadmap_1 + se=none"]
    assert all(0.0 <= r["top1"] <= 100.0 for r in rows)
    assert (tmp_path / rows[1]["name"]).is_dir()  # the trainer's run folder for the variant


def test_parse_makes_values_canonical_and_names_registry_safe():
    assert parse_ablations(["expansion=4.0,4,2.5", "SE=None", "reparam= off "]) == [
        Ablation("expansion", "4"), Ablation("expansion", "2.5"), Ablation("se", "none"), Ablation("reparam", "off")]
    v = RoadmapVariant(STEPS[8], Ablation("expansion", "2.5"))
    assert v.name == "roadmap_8_cross_block_se__expansion_2_5" and v.label == "roadmap_8 + expansion=2.5"
    entry = register_variant(v)
    assert register_variant(v) is entry  # registering again is a no-op
    assert repvit.get_model_entry(v.name).config == with_expansion(STEPS[8].config, 2.5)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--ablate", "foo=1"], "unknown ablation 'foo' in 'foo=1'; choose from: se (one of all, cross, none)"),
        (["--ablate", "se"], "an ablation is KEY=VALUE[,VALUE...], got 'se'"),
        (["--ablate", "se=sometimes"], "bad value 'sometimes' for ablation se: give one of all, cross, none."),
        (["--ablate", "reparam=yes"], "bad value 'yes' for ablation reparam: give on or off."),
        (["--ablate", "kernel=4"], "bad value '4' for ablation kernel: give an odd integer >= 3"),
        (["--ablate", "expansion=0"], "bad value '0' for ablation expansion: give a number > 0"),
        (["--ablate", "expansion=0.001"], "expansion=0.001 leaves no hidden channel"),
        (["--ablate", "kernel="], "ablation 'kernel=' has no value"),
        (["--ablate", "se=none", "--ablate-base", "42"], "ablation base: unknown roadmap step '42'; give a number 0-8"),
        (["--ablate-base", "8"], "an ablation base step needs ablations"),
    ],
)
def test_bad_ablations_are_one_line_errors(argv, message, capsys):
    assert main(["roadmap", "--img-size", "32", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("repvit roadmap: error: ") and message in err and err.count("\n") == 1
