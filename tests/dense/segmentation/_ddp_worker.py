"""Run by test_ddp under torch.distributed.run: a tiny segmentation training; each rank writes a hash of
its final weights and its evaluation."""

import json
import os
import sys
from pathlib import Path

from repvit.dense.segmentation.config import SegmentConfig
from repvit.dense.segmentation.task import train
from tests.helpers import state_hash

out = Path(sys.argv[1])
cfg = SegmentConfig(data="digits", img_size=32, output_dir=str(out / "run"), epochs=2, batch_size=4, lr=1e-3,
                    lr_base_batch=8, train_scenes=32, val_scenes=200, fpn_channels=16, head_channels=16,
                    frozen_bn=False, warmup_steps=0, workers=0, threads=1, progress=False, plot=False,
                    tensorboard=False, model_ema=True, eval_batch_size=50, seed=0)
res = train(cfg)
rank = int(os.environ["RANK"])
(out / f"rank{rank}.json").write_text(json.dumps({
    "params": state_hash(dict(res["model"].named_parameters())),
    "world": int(os.environ["WORLD_SIZE"]), "eval": {k: res["eval"][k] for k in ("miou", "pixel_acc", "images")},
}))
