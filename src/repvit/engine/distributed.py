"""Distributed helpers: ``torchrun`` environment, process group (NCCL on GPU, gloo on CPU), rank-0 checks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from repvit.runtime import resolve_device

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "all_reduce_sum", "all_gather_object", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | torch.device = "auto") -> DistInfo:
    """Read the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and join the process group.

    Without those variables this is a single process. The backend is NCCL on CUDA, gloo on CPU. ``device`` is read
    by :func:`repvit.runtime.resolve_device`; under torchrun a CUDA process uses ``cuda:LOCAL_RANK``.
    """
    try:
        use_cuda = resolve_device(device).type == "cuda"
    except ValueError as e:
        raise RuntimeError(str(e)) from None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all processes, in place (no-op when not distributed).

    NCCL reduces CUDA tensors only, so under NCCL a CPU tensor goes through the process's GPU and back; callers may
    keep their small metric sums on the CPU whatever the backend.
    """
    if dist.is_available() and dist.is_initialized():
        if t.device.type == "cpu" and dist.get_backend() == "nccl":
            dev = torch.device("cuda", torch.cuda.current_device())
            on_gpu = t.to(dev)
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            t.copy_(on_gpu.cpu())
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj: object) -> list:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        out: list = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
