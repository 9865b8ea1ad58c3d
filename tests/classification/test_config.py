"""Training configuration: recipes for every variant, typed overrides, the paper's lr scaling, the CLI flags."""

import pytest

import repvit
from repvit.classification.config import TrainConfig, load_config
from repvit.cli.main import build_parser
from repvit.cli.train_cmd import resolve_config
from repvit.engine.config import find_recipe, parse_overrides, recipe_dir

VARIANTS = ["m0_6", "m0_9", "m1_0", "m1_1", "m1_5", "m2_3", "m1", "m2", "m3"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("epochs", [300, 450])
def test_paper_recipe_for_every_variant(variant, epochs):
    cfg = load_config(f"repvit_{variant}_{epochs}e")
    assert cfg.model == f"repvit_{variant}" and cfg.epochs == epochs
    repvit.get_model_entry(cfg.model)  # a registered model
    # the paper's recipe: 8 x 256 = 2048 images per step -> 4e-3
    assert cfg.scaled_lr(world_size=8) == pytest.approx(4e-3)
    assert (cfg.opt, cfg.opt_eps, cfg.weight_decay, cfg.sched) == ("adamw", 1e-8, 0.025, "cosine")
    assert (cfg.warmup_epochs, cfg.warmup_steps, cfg.warmup_lr, cfg.min_lr) == (5, None, 1e-6, 1e-5)
    assert cfg.bn_momentum is None  # torch's 0.1, not the digits recipe's
    assert (cfg.clip_grad, cfg.clip_mode, cfg.model_ema_decay) == (0.02, "agc", 0.99996)
    assert (cfg.aa, cfg.color_jitter, cfg.reprob, cfg.remode, cfg.recount) == ("rand-m9-mstd0.5-inc1", 0.4, 0.25,
                                                                               "pixel", 1)
    assert (cfg.mixup, cfg.cutmix, cfg.mixup_switch_prob, cfg.smoothing) == (0.8, 1.0, 0.5, 0.1)
    assert cfg.repeated_aug and cfg.amp and cfg.interpolation == "bicubic" and cfg.crop_pct == 0.875
    assert (cfg.distillation, cfg.teacher, cfg.distillation_alpha) == ("hard", "regnety_160", 0.5)


def test_finetune_and_digits_recipes():
    assert load_config("finetune").distillation == "none"
    d = load_config("digits")
    assert d == TrainConfig(**{**TrainConfig().to_dict(), "workers": d.workers})  # the recipe is the defaults
    assert len(list(recipe_dir().glob("*.yaml"))) >= 2 * len(VARIANTS) + 2


def test_overrides_are_typed_and_validated():
    ov = parse_overrides(["epochs=3", "lr=2e-3", "amp=true", "aa=none", "teacher=null", "clip_grad=None"])
    cfg = load_config(None, ov)
    assert (cfg.epochs, cfg.lr, cfg.amp, cfg.aa, cfg.clip_grad) == (3, 2e-3, True, None, None)
    assert load_config("digits").clip_grad is not None
    assert load_config("digits", parse_overrides(["clip_grad=null"])).clip_grad is None  # turns the recipe's off
    with pytest.raises(ValueError, match="unknown config key.*'epoch'"):
        load_config(None, {"epoch": 3})
    with pytest.raises(ValueError, match="expects int"):
        load_config(None, {"epochs": "three"})
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(ValueError, match="needs a teacher"):
        load_config(None, {"distillation": "hard"})
    with pytest.raises(FileNotFoundError, match="not found"):
        find_recipe("no_such_recipe")


def test_lr_scales_with_total_batch():
    cfg = TrainConfig(lr=1e-3, batch_size=128)
    assert cfg.scaled_lr(1) == pytest.approx(2.5e-4) and cfg.scaled_lr(16) == pytest.approx(4e-3)


def test_cli_precedence_defaults_recipe_set_flags():
    p = build_parser()
    args = p.parse_args(["train", "--config", "repvit_m0_9_300e", "--set", "epochs=7", "--set", "lr=5e-4",
                         "--epochs", "9", "--data", "digits", "--output-dir", "X", "--resume", "auto", "--amp",
                         "--channels-last", "--compile", "--workers", "0", "--distillation", "soft", "--teacher",
                         "T.pt", "--teacher-checkpoint", "w.pth", "--batch-size", "8", "--seed", "3"])
    cfg = resolve_config(args)
    assert (cfg.model, cfg.epochs, cfg.lr, cfg.data, cfg.output_dir, cfg.resume) == (
        "repvit_m0_9", 9, 5e-4, "digits", "X", "auto")
    assert (cfg.amp, cfg.channels_last, cfg.compile, cfg.workers, cfg.batch_size, cfg.seed) == (
        True, True, True, 0, 8, 3)
    assert (cfg.distillation, cfg.teacher, cfg.teacher_checkpoint) == ("soft", "T.pt", "w.pth")
    plain = resolve_config(p.parse_args(["train", "--data", "digits", "--output-dir", "D"]))
    assert plain.model == "repvit_m0_6" and plain.data == "digits" and plain.img_size >= 32


def test_recipes_are_found_where_a_wheel_installs_them(tmp_path, monkeypatch):
    """Outside a source checkout, recipes come from <prefix>/share/repvit/configs (pyproject's data-files)."""
    import sys

    import repvit.engine.config as config  # recipe_dir() looks for configs/ from its own file

    shared = tmp_path / "prefix" / "share" / "repvit" / "configs"
    shared.mkdir(parents=True)
    (shared / "segment_digits.yaml").write_text("epochs: 3\n")
    site = tmp_path / "prefix" / "lib" / "site-packages" / "repvit" / "train"
    monkeypatch.delenv("REPVIT_CONFIG_DIR", raising=False)
    monkeypatch.setattr(config, "__file__", str(site / "config.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    assert recipe_dir() == shared
    assert find_recipe("segment_digits") == shared / "segment_digits.yaml"
    # and pyproject ships every recipe there
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    assert data == {"share/repvit/configs": ["configs/*.yaml"]}
