"""Run by test_ddp under torch.distributed.run: a tiny training; each rank writes a hash of its final weights."""

import json
import os
import sys
from pathlib import Path

from repvit.classification import train
from tests.classification._tiny import tiny
from tests.helpers import state_hash

out = Path(sys.argv[1])
res = train(tiny(out / "run", epochs=2, batch_size=16, train_subset=128, val_subset=64))
rank = int(os.environ["RANK"])
params = {k: v for k, v in res["model"].named_parameters()}
(out / f"rank{rank}.json").write_text(json.dumps({
    "params": state_hash(params), "world": int(os.environ["WORLD_SIZE"]), "top1": res["top1"],
    "images": res["top1"] is not None,
}))
