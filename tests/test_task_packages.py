"""The task packages mirror each other (the same file for the same role, no file for an empty role), and the module
paths names lived at before each role got its own file still give the same objects."""

import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "repvit"

ROLES = {"__init__", "config", "model", "data", "metrics", "evaluate", "predict", "task"}
PACKAGES = {
    # package: (its files beyond the shared roles, the shared roles it has no file for)
    "classification": ({"distill"}, {"metrics"}),
    "dense/segmentation": ({"export", "authors", "inference"}, set()),
    "dense/detection": ({"export", "authors", "coco"}, set()),
    "sam": ({"_deps", "app", "session", "build", "checkpoint", "distill", "prompt_distill", "prompt_sampling",
             "embed_cache", "encoder", "export", "mask_annotations", "preprocess"}, {"metrics"}),
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_task_packages_have_the_same_files_for_the_same_roles(package):
    extra, empty = PACKAGES[package]
    files = {f.stem for f in (SRC / package).glob("*.py")}
    assert files == (ROLES - empty) | extra


MOVED = [
    ("repvit.dense.segmentation.task", "SegmentConfig", "repvit.dense.segmentation.config"),
    ("repvit.dense.segmentation.task", "build_segment_datasets", "repvit.dense.segmentation.data"),
    ("repvit.dense.segmentation.task", "load_segmentation_weights", "repvit.dense.segmentation.model"),
    ("repvit.dense.segmentation.task", "load_segmenter", "repvit.dense.segmentation.model"),
    ("repvit.dense.segmentation.task", "evaluate_segmenter", "repvit.dense.segmentation.evaluate"),
    ("repvit.dense.segmentation.inference", "evaluate_checkpoint", "repvit.dense.segmentation.evaluate"),
    ("repvit.dense.segmentation.inference", "predict_images", "repvit.dense.segmentation.predict"),
    ("repvit.dense.segmentation.inference", "palette", "repvit.dense.segmentation.predict"),
    ("repvit.dense.detection.task", "DetectConfig", "repvit.dense.detection.config"),
    ("repvit.dense.detection.task", "detector_spec", "repvit.dense.detection.model"),
    ("repvit.dense.detection.task", "init_detector", "repvit.dense.detection.model"),
    ("repvit.dense.detection.task", "load_detector_checkpoint", "repvit.dense.detection.model"),
    ("repvit.dense.detection.task", "evaluate_detector", "repvit.dense.detection.evaluate"),
    ("repvit.dense.detection.task", "evaluate_checkpoint", "repvit.dense.detection.evaluate"),
    ("repvit.dense.detection.evaluate", "coco_evaluate", "repvit.dense.detection.metrics"),
    ("repvit.dense.detection.evaluate", "detections_to_coco", "repvit.dense.detection.metrics"),
    ("repvit.classification.task", "build_model", "repvit.classification.model"),
    ("repvit.classification.task", "_finetune_file", "repvit.classification.model"),
    ("repvit.classification.task", "build_criterion", "repvit.classification.distill"),
    *[("repvit.sam.app", n, "repvit.sam.session") for n in (
        "SamSession", "ImageEmbedding", "SegmentResult", "PromptError", "image_key", "check_prompts",
        "parse_points_json", "parse_box_json", "time_click")],
    *[("repvit.sam.distill", n, "repvit.sam.config") for n in ("SamDistillConfig", "TEACHERS", "PHASES")],
    *[("repvit.sam.distill", n, "repvit.sam.data") for n in ("EmbeddingPairs", "split_indices")],
    *[("repvit.sam.distill", n, "repvit.sam.model") for n in ("load_teacher_sam", "load_teacher_encoder")],
    *[("repvit.sam.distill", n, "repvit.sam.task") for n in ("SamDistillTask", "train", "distill", "phase_configs")],
    *[("repvit.sam.build", n, "repvit.sam.model") for n in (
        "build_repvit_sam", "build_sam_from_encoder", "encoder_config", "is_fused_sam", "SAM_WEIGHT_NAMES")],
    ("repvit.sam.prompt_distill", "PromptPairs", "repvit.sam.data"),
    ("repvit.sam.prompt_distill", "evaluate_prompt_distill", "repvit.sam.evaluate"),
    ("repvit.sam", "train", "repvit.sam.task"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED, ids=lambda v: v if "." not in v else v.split(".", 1)[1])
def test_old_module_paths_give_the_new_homes_objects(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_unknown_names_still_raise_attribute_error():
    for mod in ("repvit.dense.segmentation.task", "repvit.dense.detection.task", "repvit.classification.task",
                "repvit.sam.prompt_distill"):
        with pytest.raises(AttributeError):
            _ = importlib.import_module(mod).no_such_name
