"""SAM distillation: the teacher-embedding cache (sharded, resumable after a kill, keyed, reused) and training on
the shared engine, down to at most 20% of the starting held-out embedding MSE (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repvit.sam.preprocess import load_rgb, preprocess_image
from repvit.sam_distill import SamDistillConfig, SamDistillTask, train
from repvit.sam_distill.embed_cache import EmbeddingCache, module_sha256, training_images
from tests.helpers import rel_err

from ._distill_data import make_images, tiny_teacher

ROOT = Path(__file__).resolve().parents[2]


def _cache(images, root, teacher, img_size=64, **kw):
    return EmbeddingCache(root, images, training_images(images), f"module:{module_sha256(teacher)}", img_size,
                          dtype="float32", **{"shard_size": 3, **kw})


def test_cache_resumes_after_a_kill(tmp_path):
    images = make_images(tmp_path / "images", 10, size=(40, 90))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, str(Path(__file__).parent / "_kill_cache_worker.py"), str(images),
                        str(tmp_path / "cache"), "64"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == -9, p.stderr[-2000:]  # SIGKILL
    teacher = tiny_teacher(64)
    cache = _cache(images, tmp_path / "cache", teacher)
    assert cache.num_shards == 4 and cache.missing_shards() == [1, 2, 3]  # the shard being computed is not there
    # a partial write of shard 1 (what a kill inside the write leaves) is never taken for the shard
    (cache.dir / ".shard_00001.safetensors.abc.tmp").write_bytes(b"\x00" * 100)
    assert cache.missing_shards() == [1, 2, 3]
    done = []
    assert cache.fill(teacher, batch_size=2, on_shard=done.append) == 3 and done == [1, 2, 3]
    assert cache.complete()
    with torch.no_grad():  # every cached embedding is the teacher's, also those from before the kill
        ref = teacher(torch.stack([preprocess_image(load_rgb(images / f), 64) for f in cache.files]))
    got = torch.stack([cache[i] for i in range(len(cache))])
    assert got.shape == (10, 256, 4, 4) and rel_err(got, ref) < 1e-5  # (batched differently: float rounding)


def test_cache_key_and_reuse(tmp_path):
    images = make_images(tmp_path / "images", 4, size=(40, 60))
    teacher = tiny_teacher(64)
    a = _cache(images, tmp_path / "c", teacher)
    assert a.fill(teacher) == 2
    b = _cache(images, tmp_path / "c", teacher)
    assert b.dir == a.dir and b.complete() and b.fill(teacher) == 0  # reused, nothing recomputed
    assert _cache(images, tmp_path / "c", tiny_teacher(64, seed=5)).dir != a.dir  # other teacher weights
    assert _cache(images, tmp_path / "c", teacher, img_size=128).dir != a.dir  # other preprocessing
    os.utime(images / "im000.png", ns=(1, 1))
    assert _cache(images, tmp_path / "c", teacher).dir != a.dir  # an image changed
    spec = json.loads((a.dir / "spec.json").read_text())
    assert spec["teacher"].startswith("module:") and spec["img_size"] == 64


def _cfg(tmp_path, images, **kw):
    base = dict(model="repvit_m0_9", data=str(images), output_dir=str(tmp_path / "run"), img_size=64, epochs=1,
                batch_size=4, cache_dir=str(tmp_path / "cache"), cache_dtype="float32", shard_size=4,
                val_fraction=0.25, warmup_epochs=0, tensorboard=False, plot=False, progress=False)
    return SamDistillConfig(**{**base, **kw})


def test_distill_on_the_engine_resume_and_load(tmp_path):
    import repvit
    from repvit.engine.checkpoint import load_train_checkpoint
    from repvit.models import save_checkpoint
    from repvit.sam import build_repvit_sam, save_repvit_sam

    images = make_images(tmp_path / "images", 12, size=(40, 90))
    teacher = tiny_teacher(64)
    init = save_checkpoint(repvit.create_model("repvit_m0_9", num_classes=10), tmp_path / "cls.safetensors")
    res = train(_cfg(tmp_path, images, init=str(init)), teacher)
    assert res["teacher_shards_computed"] == 3 and res["epochs"] == 1 and res["steps"] == 2  # 9 train / 3 val
    ck = load_train_checkpoint(res["last_checkpoint"])
    assert ck["task"] == "sam-distill" and ck["meta"]["num_val"] == 3
    assert ck["meta"]["sam_config"]["variant"] == "repvit_m0_9" and ck["meta"]["sam_config"]["img_size"] == 64
    # resume for a second epoch: the cache is reused, training continues from the checkpoint
    shard_mtimes = {p.name: p.stat().st_mtime_ns for p in Path(res["cache_dir"]).glob("shard_*")}
    res2 = train(_cfg(tmp_path, images, epochs=2, resume="auto"), teacher)
    assert res2["teacher_shards_computed"] == 0 and res2["cache_dir"] == res["cache_dir"]
    assert {p.name: p.stat().st_mtime_ns for p in Path(res["cache_dir"]).glob("shard_*")} == shard_mtimes
    assert res2["epochs"] == 2 and res2["steps"] == 4
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1] and "val_mse" in json.loads(lines[-1])
    # the student loads as a RepViT-SAM with a SAM checkpoint's prompt encoder and mask decoder
    decoder = save_repvit_sam(build_repvit_sam(variant="m0_9", img_size=64), tmp_path / "decoder.safetensors")
    sam = build_repvit_sam(res2["best_checkpoint"], decoder_checkpoint=decoder)
    best = load_train_checkpoint(res2["best_checkpoint"])["model"]
    assert all(torch.equal(v, best[k]) for k, v in sam.image_encoder.state_dict().items())


def test_distill_amp_and_curves(tmp_path):
    """bf16 autocast on the CPU (the GPU recipe uses AMP) and the engine's curves PNG."""
    pytest.importorskip("matplotlib", reason="curves need matplotlib: pip install 'repvit-pytorch[plot]'")
    images = make_images(tmp_path / "images", 8, size=(40, 90))
    res = train(_cfg(tmp_path, images, amp=True, plot=True), tiny_teacher(64))
    assert res["curves_png"] and Path(res["curves_png"]).is_file()
    assert 0 < res["eval"]["mse"] < 10 and res["eval"]["neg_mse"] == -res["eval"]["mse"]


def test_init_from_a_classifier_checkpoint(tmp_path):
    import repvit
    from repvit.models import save_checkpoint

    cls = repvit.create_model("repvit_m0_9", num_classes=10)
    path = save_checkpoint(cls, tmp_path / "cls.safetensors")
    cfg = _cfg(tmp_path, tmp_path, init=str(path))
    model = SamDistillTask().build_model(cfg, None)
    ref = cls.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.trunk.state_dict().items())
    wrong = save_checkpoint(repvit.create_model("repvit_m1_1"), tmp_path / "m11.safetensors")
    with pytest.raises(ValueError, match="does not match"):
        SamDistillTask().build_model(_cfg(tmp_path, tmp_path, init=str(wrong)), None)


def test_cli_config_and_teacher_errors(tmp_path, capsys):
    from repvit.cli.main import main

    assert main(["sam", "distill", "--images", str(tmp_path), "--teacher", "vit_b", "--teacher-checkpoint", "x.pth",
                 "--epochs", "3", "--set", "shard_size=8", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["teacher"], cfg["data"], cfg["epochs"], cfg["shard_size"], cfg["img_size"]) == (
        "vit_b", str(tmp_path), 3, 8, 1024)
    make_images(tmp_path / "im", 3, size=(40, 60))
    rc = main(["sam", "distill", "--images", str(tmp_path / "im"), "--teacher-checkpoint", str(tmp_path / "no.pth"),
               "--output-dir", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c")])
    assert rc == 1 and "no.pth" in capsys.readouterr().err  # nothing downloaded: a missing file is an error


@pytest.mark.slow
def test_distillation_reaches_a_fifth_of_the_starting_mse(tmp_path):
    """48 images (38 train, 10 held out) at 128 px, a RepViT-M0.9 student, 16 epochs (about 3 minutes on one
    core): the held-out embedding MSE falls to at most 20% of the untrained student's."""
    from repvit.data.loader import eval_loader
    from repvit.engine.distributed import DistInfo

    images = make_images(tmp_path / "images", 48)
    teacher = tiny_teacher(128)
    cfg = _cfg(tmp_path, images, img_size=128, epochs=16, batch_size=8, lr=3e-3, shard_size=16, val_fraction=0.2)
    task = SamDistillTask(teacher)
    data = task.build_data(cfg, DistInfo())
    task.cfg = cfg
    torch.manual_seed(cfg.seed)  # the engine seeds the same way before building the student
    start = task.evaluate(task.build_model(cfg, data), eval_loader(data.val, 4, collate_fn=data.collate),
                          torch.device("cpu"))["mse"]
    res = train(cfg, teacher)
    end = res["eval"]["mse"]
    print(f"held-out embedding MSE: start {start:.4f}, end {end:.4f} ({end / start:.1%}), {res['wall_time_s']:.0f} s")
    assert res["teacher_shards_computed"] == 0  # the cache filled above is the one training reads
    assert res["eval"]["images"] == 10 and end <= 0.2 * start


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_distillation(tmp_path):
    """torchrun, 2 CPU processes (gloo): the ranks split the teacher-cache shards, train in step and report the same
    all-reduced held-out MSE; only rank 0 writes checkpoints."""
    import signal

    images = make_images(tmp_path / "images", 12, size=(40, 90))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).parent / "_ddp_distill_worker.py"), str(tmp_path), str(images)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"torchrun distillation hung and was killed; stderr:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["shards"] + r1["shards"] == 6 and r0["shards"] == r1["shards"] == 3  # 12 images, 2 per shard
    assert r0["weights"] == r1["weights"] and r0["mse"] == r1["mse"] and r0["val_images"] == 3
    assert r0["steps"] == r1["steps"] == 4  # 9 training images, 2 per rank per step, 2 epochs
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["task"] == "sam-distill" and ck["epoch"] == 1
