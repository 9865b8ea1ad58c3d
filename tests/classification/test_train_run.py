"""In-process training runs on a digits subset: checkpoints, eval, fine-tuning and every bad-input outcome."""

import errno
import json
import os
import signal

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

import repvit  # noqa: E402
from repvit.classification import TrainConfig, build_model, train  # noqa: E402
from repvit.classification import task as clsmod  # noqa: E402 - patched where the task looks its helpers up
from repvit.cli.main import main as cli  # noqa: E402
from repvit.engine import NonFiniteLossError  # noqa: E402
from repvit.engine import checkpoint as ckmod  # noqa: E402
from tests.classification._tiny import tiny  # noqa: E402
from tests.helpers import max_abs_diff  # noqa: E402

CKPT_KEYS = {"model", "ema", "optimizer", "scheduler", "scaler", "epoch", "step", "rng", "config", "class_names",
             "num_classes"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = train(tiny(out, plot=True))
    return out, res


def test_checkpoint_contents_and_rebuild(trained, capsys):
    out, res = trained
    assert res["epochs"] == 2 and (out / "last.pt").is_file() and (out / "best.pt").is_file()
    ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert CKPT_KEYS <= set(ck)
    assert ck["epoch"] == 1 and ck["step"] == 2 * (128 // 32)
    assert ck["config"]["model"] == "repvit_m0_6" and ck["num_classes"] == 10
    # channels_last None (the digits default) resolves to NHWC for a CPU run, recorded as such
    assert ck["config"]["channels_last"] is True
    first_conv = next(m for m in res["model"].modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert ck["class_names"] == [str(i) for i in range(10)]
    assert {"python", "numpy", "torch", "cuda"} <= set(ck["rng"])
    # the model is rebuilt from the checkpoint alone, without being told its name
    model = repvit.create_model(checkpoint=out / "last.pt").eval()
    assert model.build_info["model_name"] == "repvit_m0_6" and model.num_classes == 10
    assert max_abs_diff(model.state_dict(), ck["model"]) == 0
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [0, 1] and all("val_top1" in m and "train_loss" in m for m in metrics)
    # `repvit eval --json` on the full held-out split agrees with a direct evaluation of the rebuilt model
    assert cli(["eval", "--checkpoint", str(out / "best.pt"), "--data", "digits", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["images"] == 450 and {"top1", "top5", "loss"} <= set(rep)
    from repvit.data import load_digits_split

    x, y = load_digits_split("val", 32)
    best = repvit.create_model(checkpoint=out / "best.pt").eval()
    with torch.no_grad():
        logits = best(x)
    assert rep["top1"] == pytest.approx(100 * (logits.argmax(1) == y).double().mean().item(), abs=1e-9)
    assert rep["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-4)
    # fused evaluation gives the same accuracy (re-parameterization is exact up to float error)
    assert cli(["eval", "--checkpoint", str(out / "best.pt"), "--fused", "--json"]) == 0
    fused = json.loads(capsys.readouterr().out)
    assert fused["fused"] and abs(fused["top1"] - rep["top1"]) <= 100 / 450 + 1e-9
    if res["curves_png"]:
        assert (out / "curves.png").stat().st_size > 0


def test_predict_prints_checkpoint_class_names(trained, tmp_path, capsys):
    from PIL import Image

    out, _ = trained
    Image.new("L", (16, 16), 255).save(tmp_path / "blank.png")
    assert cli(["predict", str(tmp_path / "blank.png"), "--checkpoint", str(out / "best.pt"), "--topk", "3",
                "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["topk"]) == 3 and all(t["name"] == str(t["index"]) for t in r["topk"])
    assert sum(t["prob"] for t in r["topk"]) <= 1.0 + 1e-6


def test_predict_uses_bundled_imagenet_names(tmp_path, capsys):
    from PIL import Image

    m = repvit.create_model("repvit_m0_6")
    repvit.save_checkpoint(m, tmp_path / "m.safetensors")
    Image.new("RGB", (64, 64), (120, 30, 200)).save(tmp_path / "x.png")
    assert cli(["predict", str(tmp_path), "--checkpoint", str(tmp_path / "m.safetensors"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    from repvit.data import imagenet_class_names

    assert [t["name"] for t in r["topk"]] == [imagenet_class_names()[t["index"]] for t in r["topk"]]
    assert imagenet_class_names()[0] == "tench" and len(imagenet_class_names()) == 1000


def test_wrong_number_of_classes_for_checkpoint(tmp_path, trained, capsys):
    m = repvit.create_model("repvit_m0_6", num_classes=1000)
    repvit.save_checkpoint(m, tmp_path / "in1k.safetensors")
    assert cli(["eval", "--checkpoint", str(tmp_path / "in1k.safetensors"), "--data", "digits"]) == 1
    err = capsys.readouterr().err
    assert "wrong number of classes" in err and "1000" in err and "10" in err
    # resuming a 10-class run on data with another class count is refused
    from tests.data.test_folder import make_tree

    make_tree(tmp_path / "three", classes=("a", "b", "c"), n=2)
    out, _ = trained
    with pytest.raises(ValueError, match="cannot resume .*10 classes.*3"):
        train(tiny(tmp_path / "r", data=str(tmp_path / "three"), resume=str(out / "last.pt"), train_subset=None,
                   val_subset=None))


@pytest.mark.parametrize("fmt", ["repvit", "timm"])
def test_finetune_from_another_class_count(tmp_path, fmt):
    if fmt == "timm":  # a state dict written by timm itself, with timm's distillation head
        timm = pytest.importorskip("timm")
        src = timm.create_model("repvit_m0_9", num_classes=1000, pretrained=False)
        torch.save(src.state_dict(), tmp_path / "w.pth")
        path, name = tmp_path / "w.pth", "repvit_m0_9"
    else:
        src = repvit.create_model("repvit_m0_6", num_classes=1000)
        path, name = tmp_path / "in1k.safetensors", "repvit_m0_6"
        repvit.save_checkpoint(src, path)
    cfg = TrainConfig.from_dict(tiny(tmp_path, model=name, finetune=str(path)))
    model = build_model(cfg, 10)
    assert model.num_classes == 10
    ref = src.state_dict()
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert max_abs_diff(body, {k: ref[k] for k in body}) == 0
    with pytest.raises(ValueError, match="does not match the model|does not fit"):
        build_model(cfg.replace(model="repvit_m1_1"), 10)


def test_corrupt_images_counted_or_strict(tmp_path):
    from tests.data.test_folder import make_tree

    make_tree(tmp_path / "d", n=4, corrupt=1)
    res = train(tiny(tmp_path / "o", data=str(tmp_path / "d"), epochs=1, batch_size=4, train_subset=None,
                     val_subset=None, aa=None, model_ema=False))
    assert res["bad_images"] == 4  # one per class folder in train/ and in val/, each counted once
    with pytest.raises(RuntimeError, match="cannot read image .*bad0.jpg"):
        train(tiny(tmp_path / "o2", data=str(tmp_path / "d"), epochs=1, batch_size=4, train_subset=None,
                   val_subset=None, aa=None, model_ema=False, strict_data=True))


def _nan_after(monkeypatch, bad_step):
    calls = {"n": 0}
    real = clsmod.build_criterion

    def patched(cfg, n, teacher):
        crit, mix = real(cfg, n, teacher)

        def crit_nan(x, out, y):
            calls["n"] += 1
            loss = crit(x, out, y)
            return loss * float("nan") if calls["n"] == bad_step else loss

        return crit_nan, mix

    monkeypatch.setattr(clsmod, "build_criterion", patched)


def test_nan_loss_stops_names_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    _nan_after(monkeypatch, bad_step=6)  # 4 steps per epoch: step 6 is in the second epoch
    with pytest.raises(NonFiniteLossError, match="at step 6 .*epoch 1") as ei:
        train(tiny(tmp_path))
    assert ei.value.step == 6
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_disk_full_keeps_previous_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def full_disk(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 3:  # epoch 0 writes last.pt and best.pt; the next write finds the disk full
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(ckmod.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left on device.*previous last.pt is intact"):
        train(tiny(tmp_path))
    monkeypatch.setattr(ckmod.torch, "save", real_save)
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def _sigint_at(monkeypatch, at_call):
    """Send a real SIGINT to this process during the ``at_call``-th loss computation."""
    calls = {"n": 0}
    real = clsmod.build_criterion

    def patched(cfg, n, teacher):
        crit, mix = real(cfg, n, teacher)

        def crit_sigint(x, out, y):
            calls["n"] += 1
            if calls["n"] == at_call:
                os.kill(os.getpid(), signal.SIGINT)
            return crit(x, out, y)

        return crit_sigint, mix

    monkeypatch.setattr(clsmod, "build_criterion", patched)


def test_ctrl_c_saves_resumable_checkpoint_and_resume_is_exact(tmp_path, monkeypatch):
    ref = train(tiny(tmp_path / "ref"))
    ref_ck = torch.load(ref["last_checkpoint"], weights_only=True)

    _sigint_at(monkeypatch, 6)  # in the middle of the second epoch
    res = train(tiny(tmp_path / "int"))
    assert res["interrupted"]
    ck = torch.load(tmp_path / "int" / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and ck["resume_batch"] == 2 and ck["step"] == 6
    monkeypatch.undo()
    res2 = train(tiny(tmp_path / "int", resume="auto"))
    assert res2["epochs"] == 2 and not res2["interrupted"]
    got = torch.load(tmp_path / "int" / "last.pt", weights_only=True)
    assert max_abs_diff(got["model"], ref_ck["model"]) <= 1e-6
    assert max_abs_diff(got["ema"], ref_ck["ema"]) <= 1e-6


def test_ctrl_c_mid_epoch_with_worker_processes_resumes_exactly(tmp_path, monkeypatch):
    """With 2 loader workers, Mixup/CutMix, random erasing and drop-path, a run interrupted at an odd batch (so the
    resumed epoch hands its batches to other workers than the uninterrupted one did) ends with the same weights."""
    kw = dict(workers=2, mixup=0.8, cutmix=1.0, smoothing=0.1, reprob=0.25, drop_path=0.05)
    ref = train(tiny(tmp_path / "ref", **kw))
    ref_ck = torch.load(ref["last_checkpoint"], weights_only=True)

    _sigint_at(monkeypatch, 7)  # batch 3 of 4 in the second epoch
    assert train(tiny(tmp_path / "int", **kw))["interrupted"]
    ck = torch.load(tmp_path / "int" / "last.pt", weights_only=True)
    assert ck["epoch"] == 0 and ck["resume_batch"] == 3 and ck["step"] == 7 and len(ck["rng_ranks"]) == 1
    monkeypatch.undo()
    res = train(tiny(tmp_path / "int", resume="auto", **kw))
    assert res["epochs"] == 2 and not res["interrupted"]
    got = torch.load(tmp_path / "int" / "last.pt", weights_only=True)
    assert got["step"] == ref_ck["step"] == 8
    assert max_abs_diff(got["model"], ref_ck["model"]) <= 1e-6
    assert max_abs_diff(got["ema"], ref_ck["ema"]) <= 1e-6
    sa, sb = ref_ck["optimizer"]["state"], got["optimizer"]["state"]
    assert max(max_abs_diff(sa[k], sb[k]) for k in sa) <= 1e-6
    # the batches, hence the weights, do not depend on the number of workers either
    same = train(tiny(tmp_path / "w0", **{**kw, "workers": 0}))
    assert max_abs_diff(same["model"].state_dict(), ref_ck["model"]) <= 1e-6


def test_cli_bad_data_is_one_line_error(tmp_path, capsys):
    assert cli(["train", "--data", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("repvit train: error:") and "does not exist" in err and len(err.splitlines()) == 1
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    (tmp_path / "d" / "val").mkdir(parents=True)
    assert cli(["train", "--data", str(tmp_path / "d"), "--output-dir", str(tmp_path / "o")]) == 1
    assert "is empty" in capsys.readouterr().err
