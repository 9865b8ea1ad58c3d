"""Run by test_ddp under torch.distributed.run: a tiny Mask R-CNN training; each rank writes a hash of its
final weights and its evaluation."""

import json
import os
import sys
from pathlib import Path

from repvit.dense.detection.config import DetectConfig
from repvit.dense.detection.task import DetectTask
from repvit.engine.run import run_task
from tests.helpers import state_hash

out = Path(sys.argv[1])
cfg = DetectConfig(data="digits", img_size=32, scene_size=32, output_dir=str(out / "run"), epochs=2, batch_size=2,
                   train_scenes=16, val_scenes=200, val_subset=20, fpn_channels=16, box_head_dim=32,
                   mask_head_channels=8, mask_head_convs=1, warmup_steps=1, workers=0, threads=1, progress=False,
                   plot=False, tensorboard=False, seed=0)
res = run_task(DetectTask(), cfg)
rank = int(os.environ["RANK"])
(out / f"rank{rank}.json").write_text(json.dumps({
    "params": state_hash(dict(res["model"].named_parameters())), "world": int(os.environ["WORLD_SIZE"]),
    "eval": res["eval"],
}))
