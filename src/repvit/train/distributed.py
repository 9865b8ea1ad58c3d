"""Compatibility path: the DDP helpers live in :mod:`repvit.engine.distributed`."""

from repvit.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    cleanup_distributed,
    init_distributed,
)

__all__ = ["DistInfo", "init_distributed", "cleanup_distributed", "all_reduce_sum", "all_gather_object", "barrier"]
