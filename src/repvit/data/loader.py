"""Data loaders whose order and augmentation are reproducible from ``(seed, epoch, rank)`` alone.

A new training loader is built every epoch. Its index order comes from a generator seeded from ``(seed, epoch,
rank)``, and every batch carries its own augmentation seed, derived from ``(seed, epoch, rank, batch index)``: the
process that loads the batch (the trainer itself, or whichever worker gets it) seeds python, numpy and torch's CPU
RNGs from it before running the transforms. So a batch's images and augmentations depend only on its position in the
epoch, not on the number of workers, on which worker loaded it, or on how many batches that worker loaded before.
Resuming inside an epoch (after Ctrl-C) starts the batch sampler at the saved position: the skipped batches are never
loaded, and the next ones are exactly those of an uninterrupted run. :func:`seed_epoch` seeds the trainer's own
global RNGs (timm's Mixup, dropout, drop-path), which the per-batch seeding leaves untouched.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
import signal
from collections.abc import Iterator, Sized
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, Subset

from .folder import skip_bad_collate

__all__ = ["epoch_seed", "seed_epoch", "SeededBatch", "SeededBatchSampler", "SeededBatchDataset", "train_loader",
           "eval_loader"]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed unique to ``(seed, epoch, rank)``."""
    return (int(seed) * 1_000_003 + int(epoch) * 10_007 + int(rank) * 101 + 12345) % (2**63 - 1)


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed python, numpy and torch's global RNGs for this epoch and rank."""
    s = epoch_seed(seed, epoch, rank)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


class SeededBatch(NamedTuple):
    """One batch as the sampler hands it to a loader process: the dataset indices and their augmentation seed."""

    seed: int
    indices: list[int]


@contextlib.contextmanager
def _seeded_cpu_rngs(seed: int):
    """Seed python, numpy and torch's CPU RNGs from ``seed`` inside the block; restore their states after it.

    CUDA generators are not touched (``torch.manual_seed`` would reseed them and disturb the trainer's dropout).
    """
    saved = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
    random.seed(seed)
    np.random.seed([seed & 0xFFFFFFFF, seed >> 32])
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.default_generator.set_state(saved[2])


class SeededBatchSampler(Sampler[SeededBatch]):
    """Batches of ``sampler``'s order, from batch ``start`` on, each with a seed from ``(base_seed, batch index)``.

    Args:
        sampler: the epoch's index order (already seeded; iterated once per pass).
        batch_size: images per batch.
        base_seed: the epoch's seed (see :func:`epoch_seed`); batch ``i`` gets a seed mixed from it and ``i``.
        drop_last: drop a last, incomplete batch.
        start: the first batch to yield (resuming inside an epoch); earlier indices are skipped, never loaded.
    """

    def __init__(self, sampler: Sampler[int] | Sized, batch_size: int, *, base_seed: int, drop_last: bool = True,
                 start: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if start < 0:
            raise ValueError(f"start must be a batch index >= 0, got {start}.")
        self.sampler, self.batch_size, self.base_seed = sampler, batch_size, int(base_seed)
        self.drop_last, self.start = drop_last, start

    def total_batches(self) -> int:
        """Batches in the whole epoch, including the skipped ones."""
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def batch_seed(self, index: int) -> int:
        """The 63-bit augmentation seed of batch ``index`` of the epoch."""
        words = np.random.SeedSequence([self.base_seed, index]).generate_state(2, dtype=np.uint32)
        return (int(words[0]) | int(words[1]) << 32) & (2**63 - 1)

    def __len__(self) -> int:
        return max(self.total_batches() - self.start, 0)

    def __iter__(self) -> Iterator[SeededBatch]:
        it = iter(self.sampler)
        for _ in itertools.islice(it, self.start * self.batch_size):  # indices only: nothing is loaded
            pass
        for b in range(self.start, self.total_batches()):
            idx = [int(i) for i in itertools.islice(it, self.batch_size)]
            if not idx:
                return
            yield SeededBatch(self.batch_seed(b), idx)


class SeededBatchDataset(Dataset):
    """``dataset`` read a :class:`SeededBatch` at a time, its transforms run under the batch's seed.

    Works the same in the trainer process and in loader workers; the caller's RNG states are restored afterwards.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]

    def __getitems__(self, batch: SeededBatch) -> list:
        with _seeded_cpu_rngs(batch.seed):
            return [self.dataset[i] for i in batch.indices]


def _worker_init(worker_id: int) -> None:
    # Ctrl-C goes to the whole process group: workers ignore it so the trainer can finish its step and save
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_context():
    """Start loader workers from a forkserver, not by forking the trainer.

    The trainer has threads that Python does not see (gloo's, under DDP) and that briefly take CPython's
    thread-state lock when they touch a Python object. A fork at that moment gives a worker that holds the lock
    for ever: CPython up to 3.11.9 takes it again in its after-fork clean-up (gh-112275) and the worker hangs, and
    with it the trainer. The forkserver is a single-threaded process started once (with torch imported), so a
    worker forked from it inherits no lock held by another thread.
    """
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return None  # not POSIX: workers are spawned anyway
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "repvit.data.loader"])
    return ctx


def train_loader(ds: Dataset, batch_size: int, *, seed: int, epoch: int, workers: int = 0, rank: int = 0,
                 world_size: int = 1, repeated_aug: bool = False, drop_last: bool = True,
                 pin_memory: bool = False, skip_batches: int = 0, collate_fn=None) -> DataLoader:
    """The training loader for one epoch (shuffled from ``(seed, epoch)``; sharded per rank when distributed).

    ``repeated_aug`` uses timm's ``RepeatAugSampler`` (3 augmented copies of each image spread over the ranks).
    ``skip_batches`` starts the epoch at that batch (resuming inside an epoch); the batches after it, and their
    augmentations, are the same as in an uninterrupted epoch, whatever the number of workers. ``collate_fn``: the
    batch collate (default: stack images and labels, dropping unreadable images).
    """
    s = epoch_seed(seed, epoch, rank)
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
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(s))
    bs = max(min(batch_size, len(sampler)) if drop_last else batch_size, 1)
    batches = SeededBatchSampler(sampler, bs, base_seed=s, drop_last=drop_last, start=skip_batches)
    # the generator only feeds the workers' base seed, drawn when an iterator starts: without it that draw would
    # come from the trainer's global torch RNG, which a resumed epoch restores at another point of its stream
    return DataLoader(SeededBatchDataset(ds), batch_sampler=batches, num_workers=workers,
                      collate_fn=collate_fn or skip_bad_collate, generator=torch.Generator().manual_seed(s + 1),
                      pin_memory=pin_memory, worker_init_fn=_worker_init if workers > 0 else None,
                      multiprocessing_context=_worker_context() if workers > 0 else None)


def eval_loader(ds: Dataset, batch_size: int, *, workers: int = 0, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False, collate_fn=None) -> DataLoader:
    """Sequential loader over this rank's shard (every ``world_size``-th image), so all images count once."""
    if world_size > 1:
        ds = Subset(ds, list(range(rank, len(ds), world_size)))
    # a fixed generator: starting an iterator then draws nothing from the trainer's global torch RNG
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate_fn or skip_bad_collate,
                      generator=torch.Generator().manual_seed(0), pin_memory=pin_memory,
                      worker_init_fn=_worker_init if workers > 0 else None,
                      multiprocessing_context=_worker_context() if workers > 0 else None)
