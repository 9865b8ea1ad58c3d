"""Fill a teacher-embedding cache and SIGKILL this process while the second shard is being computed."""

import os
import signal
import sys
from pathlib import Path

import torch

_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(_ROOT / "src"), str(_ROOT)]  # this checkout's repvit (and tests) before an installed one

from repvit.sam_distill.embed_cache import EmbeddingCache, module_sha256, training_images  # noqa: E402
from tests.sam_distill._distill_data import tiny_teacher  # noqa: E402

torch.set_num_threads(1)
images, cache_root, img_size = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
teacher = tiny_teacher(img_size)
cache = EmbeddingCache(cache_root, images, training_images(images), f"module:{module_sha256(teacher)}", img_size,
                       dtype="float32", shard_size=3)
calls = 0


def embed(x):
    global calls
    calls += 1
    if calls == 2:  # shard 0 is on disk; die inside shard 1
        os.kill(os.getpid(), signal.SIGKILL)
    return teacher(x)


cache.fill(embed, batch_size=3)
