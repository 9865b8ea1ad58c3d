"""The paper's recipe machinery end to end on a tiny ImageFolder: timm augmentation, Mixup/CutMix, repeated
augmentation, AGC, EMA, bf16 autocast and channels-last all run together and train."""

import json

import torch

from repvit.classification import train
from tests.classification._tiny import tiny
from tests.data.test_folder import make_tree


def test_paper_recipe_paths_on_imagefolder(tmp_path):
    make_tree(tmp_path / "d", classes=("a", "b", "c", "d"), n=4, size=40)
    res = train(tiny(tmp_path / "o", data=str(tmp_path / "d"), train_subset=None, val_subset=None, epochs=2,
                     batch_size=8, img_size=32, aa="rand-m9-mstd0.5-inc1", reprob=0.25, mixup=0.8, cutmix=1.0,
                     smoothing=0.1, repeated_aug=True, amp=True, amp_dtype="bfloat16", channels_last=True,
                     clip_grad=0.02, clip_mode="agc", model_ema=True, warmup_epochs=1))
    assert res["epochs"] == 2 and res["class_names"] == ["a", "b", "c", "d"]
    rows = [json.loads(x) for x in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    assert rows[0]["val_images"] == 16
    ck = torch.load(res["last_checkpoint"], weights_only=True)
    # RepeatAugSampler keeps an epoch at len(dataset) samples (3 copies of a third of the images): 2 steps of 8
    assert ck["step"] == 4
    assert ck["ema"] is not None and any(not torch.equal(ck["ema"][k], ck["model"][k]) for k in ck["model"])
