"""``repvit.train`` is the compatibility path: every name it exported before the engine and classification were
split apart still imports, and is the object from the new home."""

import importlib

import repvit.classification as cls
import repvit.engine as engine


def test_the_package_names_are_the_new_homes_objects():
    import repvit.train as t

    assert t.train is cls.train and t.TrainConfig is cls.TrainConfig and t.run_task is engine.run_task
    assert t.EngineConfig is engine.EngineConfig and t.evaluate_checkpoint is cls.evaluate_checkpoint
    assert t.build_model is cls.build_model and t.DistillationLoss is cls.DistillationLoss
    assert t.Task is engine.Task and t.NonFiniteLossError is engine.NonFiniteLossError
    assert t.load_config().__class__ is cls.TrainConfig  # the old default class


def test_every_old_submodule_name_imports():
    old = {
        "config": ["EngineConfig", "TrainConfig", "load_config", "parse_overrides", "find_recipe", "recipe_dir"],
        "checkpoint": ["get_rng_state", "set_rng_state", "save_train_checkpoint", "load_train_checkpoint",
                       "find_resume"],
        "distributed": ["DistInfo", "init_distributed", "cleanup_distributed", "all_reduce_sum", "all_gather_object",
                        "barrier"],
        "engine": ["NonFiniteLossError", "StepOptions", "EpochStats", "train_one_epoch", "evaluate",
                   "autocast_context"],
        "run": ["train", "run_task", "build_model", "build_optimizer", "build_scheduler", "warmup_steps"],
        "task": ["TaskData", "Task"],
        "classify": ["ClassifyTask", "build_model", "build_criterion", "_finetune_file"],
        "evaluate": ["evaluate_checkpoint", "checkpoint_img_size"],
        "predict": ["list_images", "predict_images", "class_names_for"],
        "distill": ["DistillationLoss", "load_teacher"],
        "records": ["MetricsLog", "read_metrics", "plot_curves"],
    }
    for mod, names in old.items():
        m = importlib.import_module(f"repvit.train.{mod}")
        assert all(hasattr(m, n) for n in names), mod


def test_evaluate_is_callable_whichever_was_imported_first():
    import repvit.train as t
    import repvit.train.evaluate  # noqa: F401 - rebinds the package attribute to the submodule

    assert callable(t.evaluate) and t.evaluate.evaluate_checkpoint is cls.evaluate_checkpoint
