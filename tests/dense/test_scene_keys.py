"""One vocabulary for the digit scenes: segmentation's config uses detection's ``scene_*`` names; the old keys
(``digit_scale_min``, ``digit_scale_max``, ``max_digits``) still load from recipes, ``--set`` and checkpoints, with a
deprecation warning."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from repvit.dense.detection.config import DetectConfig
from repvit.dense.segmentation.config import SegmentConfig
from repvit.dense.segmentation.data import build_segment_datasets
from repvit.dense.segmentation.model import load_segmenter
from repvit.engine.config import load_config, parse_overrides

SCENE_KEYS = {"scene_min_digits", "scene_max_digits", "scene_scale_min", "scene_scale_max"}
OLD = {"digit_scale_min": "scene_scale_min", "digit_scale_max": "scene_scale_max", "max_digits": "scene_max_digits"}


def test_both_tasks_name_the_scenes_alike():
    seg = {f.name for f in dataclasses.fields(SegmentConfig)}
    det = {f.name for f in dataclasses.fields(DetectConfig)}
    assert SCENE_KEYS <= seg and SCENE_KEYS <= det
    assert not set(OLD) & seg and not set(OLD) & det
    assert load_config("segment_digits", cls=SegmentConfig).scene_scale_min == 0.5  # the recipe uses the new names


def test_old_yaml_and_set_keys_load_with_a_warning(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text("base: segment_digits\ndigit_scale_min: 0.3\ndigit_scale_max: 0.7\nmax_digits: 2\n")
    with pytest.warns(FutureWarning, match="'digit_scale_min' is deprecated; it is now called 'scene_scale_min'"):
        cfg = load_config(recipe, cls=SegmentConfig)
    assert (cfg.scene_scale_min, cfg.scene_scale_max, cfg.scene_max_digits) == (0.3, 0.7, 2)
    assert (cfg.digit_scale_min, cfg.digit_scale_max, cfg.max_digits) == (0.3, 0.7, 2)  # old attribute names read
    with pytest.warns(FutureWarning, match="'max_digits' is deprecated"):
        cfg = load_config("segment_digits", parse_overrides(["max_digits=1"]), cls=SegmentConfig)
    assert cfg.scene_max_digits == 1  # --set beats the recipe, whichever name either uses
    _, val, _ = build_segment_datasets(cfg.replace(val_scenes=200), train=False)
    scenes = val.dataset  # the DigitScenes under the evaluation transform
    assert scenes.max_digits == 1 and scenes.scale == (0.5, 0.8) and scenes.min_digits == 1


def test_a_checkpoint_with_the_old_keys_loads(tmp_path):
    cfg = SegmentConfig(model="repvit_m0_6", img_size=64, fpn_channels=16, head_channels=16, scene_scale_min=0.4,
                        scene_max_digits=3)
    old_config = {OLD_NAME: cfg.to_dict()[NEW] for OLD_NAME, NEW in OLD.items()}
    old_config |= {k: v for k, v in cfg.to_dict().items() if k not in SCENE_KEYS}  # as the previous code wrote it
    from repvit.dense.segmentation.model import _model_from_cfg

    model = _model_from_cfg(cfg, 11, None)
    torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": 0, "config": old_config, "task": "segment",
                "meta": {"num_classes": 11}}, tmp_path / "old.pt")
    with pytest.warns(FutureWarning, match="deprecated"):
        loaded, lcfg, _ = load_segmenter(tmp_path / "old.pt")
    assert (lcfg.scene_scale_min, lcfg.scene_max_digits, lcfg.scene_min_digits) == (0.4, 3, 1)
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
