"""Data loaders whose order and augmentation are reproducible from ``(seed, epoch, rank)`` alone.

A new loader is built every epoch with a generator seeded from ``(seed, epoch, rank)``; together with
:func:`seed_epoch` (python/numpy/torch global RNGs, used by augmentation in the main process and by timm's Mixup)
this makes a run resumed at an epoch boundary see exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from .folder import skip_bad_collate

__all__ = ["epoch_seed", "seed_epoch", "train_loader", "eval_loader"]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed unique to ``(seed, epoch, rank)``."""
    return (int(seed) * 1_000_003 + int(epoch) * 10_007 + int(rank) * 101 + 12345) % (2**63 - 1)


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed python, numpy and torch's global RNGs for this epoch and rank."""
    s = epoch_seed(seed, epoch, rank)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def _worker_init(worker_id: int) -> None:
    # Ctrl-C goes to the whole process group: workers ignore it so the trainer can finish its step and save
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_loader(ds: Dataset, batch_size: int, *, seed: int, epoch: int, workers: int = 0, rank: int = 0,
                 world_size: int = 1, repeated_aug: bool = False, drop_last: bool = True,
                 pin_memory: bool = False, skip_batches: int = 0) -> DataLoader:
    """The training loader for one epoch (shuffled from ``(seed, epoch)``; sharded per rank when distributed).

    ``repeated_aug`` uses timm's ``RepeatAugSampler`` (3 augmented copies of each image spread over the ranks).
    ``skip_batches`` drops the first batches of the epoch's order (resuming inside an epoch).
    """
    s = epoch_seed(seed, epoch, rank)
    g = torch.Generator().manual_seed(s)  # sampler order
    g_workers = torch.Generator().manual_seed(s + 1)  # worker seeds (separate, so skipping does not shift them)
    if repeated_aug:
        from timm.data.distributed_sampler import RepeatAugSampler

        sampler = RepeatAugSampler(ds, num_replicas=world_size, rank=rank, shuffle=True)
        # RepeatAugSampler seeds its permutation from the epoch only; fold the run seed into it
        sampler.set_epoch(epoch_seed(seed, epoch) % 2**31)
    elif world_size > 1:
        sampler = DistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                     drop_last=drop_last)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(ds, generator=g)
    bs = max(min(batch_size, len(sampler)) if drop_last else batch_size, 1)
    if skip_batches:
        sampler = list(sampler)[skip_batches * bs:]
    return DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      collate_fn=skip_bad_collate, generator=g_workers, pin_memory=pin_memory,
                      worker_init_fn=_worker_init if workers > 0 else None)


def eval_loader(ds: Dataset, batch_size: int, *, workers: int = 0, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False) -> DataLoader:
    """Sequential loader over this rank's shard (every ``world_size``-th image), so all images count once."""
    if world_size > 1:
        ds = Subset(ds, list(range(rank, len(ds), world_size)))
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=skip_bad_collate,
                      pin_memory=pin_memory, worker_init_fn=_worker_init if workers > 0 else None)
