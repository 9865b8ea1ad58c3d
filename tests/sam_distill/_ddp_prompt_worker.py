"""Run by test_prompt_distill under torch.distributed.run: ``phase="both"`` on 2 CPU processes; each rank reports
the cache shards it computed in phase 1, a hash of its final phase-2 weights and the all-reduced held-out mask loss."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(_ROOT / "src"), str(_ROOT)]  # this checkout's repvit (and tests) before an installed one

from repvit.sam_distill import SamDistillConfig, train  # noqa: E402
from tests.sam_distill._distill_data import tiny_teacher_sam  # noqa: E402

out, images = Path(sys.argv[1]), sys.argv[2]
cfg = SamDistillConfig(model="repvit_m0_9", data=images, output_dir=str(out / "run"), img_size=64, epochs=1,
                       batch_size=2, cache_dir=str(out / "cache"), cache_dtype="float32", shard_size=2,
                       val_fraction=0.25, warmup_epochs=0, tensorboard=False, plot=False, progress=False, workers=0,
                       phase="both", prompt_epochs=2, max_prompts=3, eval_prompts=2, refine_iters=1)
res = train(cfg, tiny_teacher_sam(64))
h = hashlib.sha256()
for k, v in sorted(res["model"].named_parameters()):  # (BN running stats are per rank)
    h.update(k.encode() + v.detach().float().contiguous().numpy().tobytes())
rank = int(os.environ["RANK"])
(out / f"rank{rank}.json").write_text(json.dumps({
    "world": int(os.environ["WORLD_SIZE"]), "shards": res["phases"]["encoder"]["teacher_shards_computed"],
    "weights": h.hexdigest(), "mask_loss": res["eval"]["mask_loss"], "val_images": res["eval"]["images"],
    "steps": res["steps"], "phase": res["phase"],
}))
torch.distributed.destroy_process_group() if torch.distributed.is_initialized() else None
