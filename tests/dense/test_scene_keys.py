"""One vocabulary for the digit scenes: both tasks' configs name them ``scene_*``, and the recipe, ``--set`` and
the data builder read them under those names."""

from __future__ import annotations

import dataclasses

from repvit.dense.detection.config import DetectConfig
from repvit.dense.segmentation.config import SegmentConfig
from repvit.dense.segmentation.data import build_segment_datasets
from repvit.engine.config import load_config, parse_overrides

SCENE_KEYS = {"scene_min_digits", "scene_max_digits", "scene_scale_min", "scene_scale_max"}


def test_both_tasks_name_the_scenes_alike():
    seg = {f.name for f in dataclasses.fields(SegmentConfig)}
    det = {f.name for f in dataclasses.fields(DetectConfig)}
    assert SCENE_KEYS <= seg and SCENE_KEYS <= det
    assert load_config("segment_digits", cls=SegmentConfig).scene_scale_min == 0.5


def test_set_scene_keys_reach_the_scenes():
    cfg = load_config("segment_digits", parse_overrides(["scene_max_digits=1"]), cls=SegmentConfig)
    assert cfg.scene_max_digits == 1  # --set beats the recipe
    _, val, _ = build_segment_datasets(cfg.replace(val_scenes=200), train=False)
    scenes = val.dataset  # the DigitScenes under the evaluation transform
    assert scenes.max_digits == 1 and scenes.scale == (0.5, 0.8) and scenes.min_digits == 1
