"""SAM distillation phase 2 (EdgeSAM's prompt-in-the-loop): refinement points, prompts from the teacher's masks, the
BCE + Dice loss against independent formulas, training on the shared engine (phase 1 -> phase 2, loading the
result), SIGKILL + resume, and 2-process DDP (slow)."""

import json
import sys
from pathlib import Path

import pytest
import torch

from repvit.sam_distill import SamDistillConfig, train
from repvit.sam_distill.loss import mask_distill_loss
from repvit.sam_distill.prompt_sampling import low_res_valid, sample_prompts, sample_refine_points
from repvit.sam_distill.task import SamPromptDistillTask
from tests.helpers import kill_in_second_epoch_then_resume, run_torchrun

from ._distill_data import make_images, tiny_teacher_sam

_RUN_CHECKOUT = "import runpy, sys; sys.path.insert(0, 'src'); runpy.run_module('repvit', run_name='__main__')"


def _to_pixel(coords: torch.Tensor, side: int, img_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input-frame (x, y) -> (row, col) of a side x side low-res mask (independent of the sampler's code path)."""
    scale = img_size / side
    return (coords[..., 1] / scale).floor().long(), (coords[..., 0] / scale).floor().long()


def test_refinement_points_fall_in_the_error_regions_with_the_right_labels():
    side, img = 16, 64
    teacher = torch.zeros(3, side, side, dtype=torch.bool)
    student = torch.zeros(3, side, side, dtype=torch.bool)
    teacher[0, 2:8, 2:8] = True  # mask 0: the student misses rows 2-3 (FN) and adds rows 8-9 (FP)
    student[0, 4:10, 2:8] = True
    teacher[1, 5:9, 5:9] = True  # mask 1: only a false negative
    student[2, 0:3, 0:3] = True  # mask 2: only a false positive
    fn, fp = teacher & ~student, student & ~teacher
    g = torch.Generator().manual_seed(0)
    seen = {0: set(), 1: set(), 2: set()}
    for _ in range(200):
        coords, labels = sample_refine_points(student, teacher, None, img, generator=g)
        assert coords.shape == (3, 1, 2) and labels.shape == (3, 1) and labels.dtype == torch.int64
        r, c = _to_pixel(coords[:, 0], side, img)
        for i in range(3):
            lab = int(labels[i, 0])
            assert lab in (0, 1)
            assert bool((fn if lab == 1 else fp)[i, r[i], c[i]]), (i, lab, int(r[i]), int(c[i]))
            seen[i].add(lab)
    assert seen == {0: {0, 1}, 1: {1}, 2: {0}}  # both kinds drawn where both exist
    # the draw is uniform over the error region: mask 0 has 12 FN and 12 FP pixels
    counts = torch.zeros(2)
    for _ in range(400):
        _, labels = sample_refine_points(student[:1], teacher[:1], None, img, generator=g)
        counts[int(labels[0, 0])] += 1
    assert 0.4 < counts[1] / counts.sum() < 0.6
    # agreeing masks give SAM's "not a point" (-1); pixels outside `valid` are never picked
    coords, labels = sample_refine_points(teacher, teacher, None, img, generator=g)
    assert labels.eq(-1).all() and coords.eq(0).all()
    valid = torch.zeros(side, side, dtype=torch.bool)
    valid[:, :4] = True  # mask 2's false positive (cols 0-2) is inside, mask 0's and 1's errors partly/wholly not
    for _ in range(50):
        coords, labels = sample_refine_points(student, teacher, valid, img, generator=g)
        r, c = _to_pixel(coords[:, 0], side, img)
        assert labels[1, 0] == -1 and labels[2, 0] == 0 and int(c[2]) < 4 and int(c[0]) < 4


def test_low_res_valid_leaves_out_the_padding():
    v = low_res_valid(torch.tensor([[64, 40], [30, 64]]), 16, 64)
    assert v.shape == (2, 16, 16)
    assert v[0].sum() == 16 * 10 and v[0, :, :10].all() and not v[0, :, 10:].any()
    assert v[1, :8].all() and not v[1, 8:].any()  # ceil(30 / 4) = 8 rows


def test_mask_loss_against_independent_formulas():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(3, 4, 8, 8, generator=g) * 3, torch.randn(3, 4, 8, 8, generator=g)
    valid = torch.zeros(8, 8, dtype=torch.bool)
    valid[:6, :5] = True
    loss, bce, dice = mask_distill_loss(s, t, valid, 5.0, 5.0)
    tb = (t > 0).float()
    p = torch.sigmoid(s)
    w = valid.float()
    ref_bce = (-(tb * torch.log(p) + (1 - tb) * torch.log(1 - p)) * w).sum() / (w.sum() * 12)
    num = 2 * (p * tb * w).sum((-1, -2)) + 1
    den = (p * w).sum((-1, -2)) + (tb * w).sum((-1, -2)) + 1
    ref_dice = (1 - num / den).mean()
    assert torch.allclose(bce, ref_bce, atol=1e-5) and torch.allclose(dice, ref_dice, atol=1e-6)
    assert torch.allclose(loss, 5 * ref_bce + 5 * ref_dice, atol=1e-5)
    # matching the teacher's masks confidently drives the loss towards 0
    assert mask_distill_loss((tb * 2 - 1) * 50, t, valid)[0] < 1e-3


def test_prompts_come_from_the_teachers_masks():
    """Box = bounding box of the teacher's best multimask output for a seed point, point = a pixel inside it; the
    teacher mask is recomputed here through segment_anything's MaskDecoder.forward (multimask_output=True)."""
    teacher = tiny_teacher_sam(64)
    with torch.no_grad():
        emb = teacher.image_encoder(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
    hw = torch.tensor([64, 48])
    valid = low_res_valid(hw[None], 16, 64)[0]
    kinds = {}
    for kind in ("box", "point"):
        g = torch.Generator().manual_seed(5)
        kinds[kind] = sample_prompts(teacher, emb, valid, hw, 6, kind, 64, g)
        seeds = torch.rand((6, 2), generator=torch.Generator().manual_seed(5)) * torch.tensor([48.0, 64.0])
        with torch.no_grad():
            sp, de = teacher.prompt_encoder(points=(seeds[:, None], torch.ones(6, 1)), boxes=None, masks=None)
            m, iou = teacher.mask_decoder(emb, teacher.prompt_encoder.get_dense_pe(), sp, de, multimask_output=True)
        obj = (m[torch.arange(6), iou.argmax(1)] > 0) & valid
        assert obj.flatten(1).any(1).all(), "the random teacher should give non-empty masks here"
        points, boxes = kinds[kind]
        if kind == "box":
            assert points is None and boxes.shape == (6, 4)
            for i in range(6):
                ys, xs = obj[i].nonzero(as_tuple=True)
                ref = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float() * 4
                assert torch.equal(boxes[i], ref)
        else:
            assert boxes is None and points[0].shape == (6, 1, 2) and points[1].eq(1).all()
            r, c = _to_pixel(points[0][:, 0], 16, 64)
            assert all(bool(obj[i, r[i], c[i]]) for i in range(6))


def _cfg(tmp_path, images, **kw):
    base = dict(model="repvit_m0_9", data=str(images), output_dir=str(tmp_path / "run"), img_size=64, epochs=1,
                batch_size=2, cache_dir=str(tmp_path / "cache"), cache_dtype="float32", shard_size=4,
                val_fraction=0.25, warmup_epochs=0, tensorboard=False, plot=False, progress=False, workers=0,
                max_prompts=3, eval_prompts=2, refine_iters=2)
    return SamDistillConfig(**{**base, **kw})


@pytest.mark.slow  # two engine runs and several checkpoint loads: ~10 s on a quiet machine, 35 s on this one
def test_phase_two_after_phase_one_trains_the_students_sam(tmp_path):
    from repvit.engine.checkpoint import load_train_checkpoint
    from repvit.sam import build_repvit_sam

    images = make_images(tmp_path / "images", 6, size=(40, 90))
    teacher = tiny_teacher_sam(64)
    res = train(_cfg(tmp_path, images, phase="both", iters=2, val_fraction=0.2), teacher)
    p1 = res["phases"]["encoder"]
    assert p1["phase"] == "encoder" and p1["steps"] == 2 and p1["teacher_shards_computed"] == 2
    assert res["phase"] == "prompt" and res["steps"] == 2 and res["teacher_shards_computed"] == 0  # cache shared
    assert res["output_dir"] == str(tmp_path / "run" / "prompt")
    ev = res["eval"]
    assert ev["images"] == 1 and 0 < ev["mask_loss"] < 20 and 0 <= ev["miou"] <= 1 and ev["neg_mask_loss"] == -ev[
        "mask_loss"]
    ck = load_train_checkpoint(res["last_checkpoint"])
    assert ck["task"] == "sam-prompt-distill" and ck["config"]["init"] == p1["best_checkpoint"]
    sd = ck["model"]
    # EdgeSAM: prompt encoder = the teacher's and frozen; mask decoder from the teacher and trained (not its IoU head)
    tsd = teacher.state_dict()
    pe = [k for k in sd if k.startswith("prompt_encoder.")]
    assert pe and all(torch.equal(sd[k], tsd[k]) for k in pe)
    iou = [k for k in sd if k.startswith("mask_decoder.iou_prediction_head.")]
    assert iou and all(torch.equal(sd[k], tsd[k]) for k in iou)
    dec = [k for k in sd if k.startswith("mask_decoder.") and k not in iou]
    assert any(not torch.equal(sd[k], tsd[k]) for k in dec)
    # phase 2 started from phase 1's encoder: a fresh task's student equals it before training
    cfg2 = _cfg(tmp_path, images, phase="prompt", init=p1["best_checkpoint"])
    task = SamPromptDistillTask(teacher)
    model = task.build_model(cfg2, None)
    p1_enc = load_train_checkpoint(p1["best_checkpoint"])["model"]
    assert all(torch.equal(v, p1_enc[k]) for k, v in model.image_encoder.state_dict().items())
    # the result loads as a whole RepViT-SAM, without a decoder checkpoint (1 epoch: best.pt is last.pt)
    sam = build_repvit_sam(res["last_checkpoint"])
    assert all(torch.equal(v, sd[k]) for k, v in sam.state_dict().items())
    assert build_repvit_sam(res["sam_checkpoint"]).state_dict().keys() == sam.state_dict().keys()
    # train_decoder=False: the mask decoder is frozen too (the engine's optimiser leaves frozen parameters out)
    frozen = SamPromptDistillTask(teacher).build_model(cfg2.replace(train_decoder=False), None)
    assert not any(p.requires_grad for p in frozen.mask_decoder.parameters())
    assert all(p.requires_grad for p in frozen.image_encoder.parameters())


def test_phase_two_needs_a_whole_teacher_and_valid_settings(tmp_path):
    images = make_images(tmp_path / "images", 4, size=(40, 60))
    with pytest.raises(TypeError, match="whole teacher SAM"):
        train(_cfg(tmp_path, images, phase="prompt"), tiny_teacher_sam(64).image_encoder)
    with pytest.raises(ValueError, match="prompt_types"):
        _cfg(tmp_path, images, prompt_types="box,mask")
    with pytest.raises(ValueError, match="--phase"):
        _cfg(tmp_path, images, phase="decoder")
    with pytest.raises(ValueError, match="resume auto"):
        train(_cfg(tmp_path, images, phase="both", resume="x.pt"), tiny_teacher_sam(64))


def test_phase_both_configs(tmp_path):
    from repvit.sam_distill import phase_configs

    cfg = _cfg(tmp_path, tmp_path, phase="both", epochs=3, lr=1e-3, init="cls.pth", prompt_epochs=5, prompt_lr=3.2e-3)
    first, second = phase_configs(cfg)
    assert (first.phase, first.output_dir, first.epochs, first.lr, first.init) == (
        "encoder", str(tmp_path / "run" / "encoder"), 3, 1e-3, "cls.pth")
    assert (second.phase, second.output_dir, second.epochs, second.lr, second.init) == (
        "prompt", str(tmp_path / "run" / "prompt"), 5, 3.2e-3, str(tmp_path / "run" / "encoder" / "best.pt"))
    assert phase_configs(cfg.replace(prompt_epochs=None, prompt_iters=7))[1].iters == 7


def _teacher_file(root: Path) -> Path:
    """A RepViT-SAM teacher checkpoint (random M0.9 at 64 px) for the CLI's --teacher repvit_sam."""
    from repvit.sam import build_repvit_sam, save_repvit_sam

    path = root / "teacher.safetensors"
    if not path.exists():
        torch.manual_seed(7)
        save_repvit_sam(build_repvit_sam(variant="m0_9", img_size=64), path)
    return path


def _cli_args(images: Path, teacher: Path, cache: Path) -> list[str]:
    return ["--images", str(images), "--teacher", "repvit_sam", "--teacher-checkpoint", str(teacher), "--model",
            "repvit_m0_9", "--img-size", "64", "--batch-size", "2", "--workers", "0", "--threads", "1", "--seed", "0",
            "--no-progress", "--cache-dir", str(cache), "--max-prompts", "3", "--set", "cache_dtype=float32",
            "--set", "shard_size=4", "--set", "val_fraction=0.2", "--set", "eval_prompts=2", "--set", "plot=false",
            "--set", "tensorboard=false", "--set", "warmup_epochs=0"]


def test_cli_phase_prompt_with_a_repvit_sam_teacher(tmp_path, capsys):
    from repvit.cli.main import main

    images = make_images(tmp_path / "images", 5, size=(40, 60))
    teacher = _teacher_file(tmp_path)
    rc = main(["sam", "distill", *_cli_args(images, teacher, tmp_path / "cache"), "--phase", "prompt", "--iters", "1",
               "--output-dir", str(tmp_path / "run"), "--refine-iters", "1", "--amp", "--json"])  # bf16 on the CPU
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["phase"] == "prompt" and out["steps"] == 1 and out["teacher_shards_computed"] == 2
    assert Path(out["sam_checkpoint"]).is_file() and "mask_loss" in out["eval"]


@pytest.mark.slow
def test_sigkill_in_second_epoch_then_resume_matches_uninterrupted(tmp_path):
    """CLI runs of phase 2 (2 epochs of 4 steps): one is SIGKILLed in its second epoch and resumed with --resume
    auto; its final weights, optimiser state and RNG-driven prompts give the uninterrupted run's result exactly."""
    from tests.helpers import max_abs_diff

    images = make_images(tmp_path / "images", 10, size=(40, 60))
    teacher = _teacher_file(tmp_path)

    def cmd(out, *extra):  # (the checkout's src/ first: the harness sets PYTHONPATH to the repository root)
        return [sys.executable, "-c", _RUN_CHECKOUT, "sam", "distill", *_cli_args(images, teacher, out / "cache"),
                "--phase", "prompt", "--epochs", "2", "--output-dir", str(out), *extra]

    a, b = kill_in_second_epoch_then_resume(cmd, tmp_path, sleep_s=1.0, timeout_s=600)
    assert a["task"] == b["task"] == "sam-prompt-distill"
    assert a["epoch"] == b["epoch"] == 1 and a["step"] == b["step"] == 8
    assert max_abs_diff(a["model"], b["model"]) == 0.0
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and max(max_abs_diff(sa[k], sb[k]) for k in sa) == 0.0
    assert a["best"] == b["best"]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_process_phase_two(tmp_path):
    """torchrun, 2 CPU processes (gloo), --phase both: the ranks split the cache shards in phase 1, train phase 2
    in step (same weights) and report the same all-reduced held-out mask loss; only rank 0 writes checkpoints."""
    images = make_images(tmp_path / "images", 12, size=(40, 90))
    proc = run_torchrun(Path(__file__).parent / "_ddp_prompt_worker.py", str(tmp_path), str(images), timeout_s=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["phase"] == "prompt"
    assert r0["shards"] == r1["shards"] == 3  # phase 1 filled the cache: 6 shards of 2, 3 per rank
    assert r0["weights"] == r1["weights"] and r0["mask_loss"] == r1["mask_loss"] and r0["val_images"] == 3
    assert r0["steps"] == r1["steps"] == 4  # 9 training images, 2 per rank per step, 2 epochs
    ck = torch.load(tmp_path / "run" / "prompt" / "last.pt", weights_only=True)
    assert ck["task"] == "sam-prompt-distill" and ck["epoch"] == 1


def test_loss_gradient_reaches_the_encoder_only_through_the_masks():
    """One loop pass: the encoder and the mask decoder (not its IoU head, not the prompt encoder) get gradients."""
    from repvit.sam_distill.config import LoopSettings

    teacher = tiny_teacher_sam(64)
    cfg = SamDistillConfig(model="repvit_m0_9", data="x", img_size=64)
    task = SamPromptDistillTask(teacher)
    model = task.build_model(cfg, None)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        temb = teacher.image_encoder(x)
    torch.manual_seed(0)
    loss, miou = model(x, temb, torch.tensor([[64, 64], [48, 64]]), task.head, LoopSettings(max_prompts=3), "point")
    loss.backward()
    assert loss.item() > 0 and 0 <= float(miou) <= 1
    assert all(p.grad is not None for p in model.image_encoder.parameters())
    assert all(p.grad is None for p in model.prompt_encoder.parameters())
    assert all(p.grad is None for p in model.mask_decoder.iou_prediction_head.parameters())
    assert model.mask_decoder.output_upscaling[0].weight.grad is not None
