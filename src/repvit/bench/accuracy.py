"""Accuracy checks for benchmark backends on the built-in digits set: top-1 and agreement with FP32 PyTorch.

A checkpoint trained on the digits set (``repvit train --data digits``, or ``make demo``) is fused and run on the
450 held-out images by each backend, built with the same code as the timed candidates
(:func:`repvit.bench.backends.prepare_backend`) at the held-out batch and the checkpoint's resolution. The INT8
backends are calibrated on training images only. Each backend's top-1 is compared with the fused FP32 PyTorch
model's, and its predictions with FP32's image by image. A low-precision backend passes when its top-1 is within
``max_drop`` points of FP32 and it agrees with FP32 on at least ``min_agreement`` of the images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["digits_accuracy", "lowp_warning", "MAX_DROP_POINTS", "MIN_AGREEMENT"]

_LOG = logging.getLogger(__name__)

MAX_DROP_POINTS = 0.5
MIN_AGREEMENT = 0.99


def digits_accuracy(
    checkpoint: str,
    backends: Sequence[str],
    threads: int = 2,
    img_size: int | None = None,
    calib_images: int = 256,
    say: Callable[[str], None] | None = None,
    int8_mode: Any = None,
) -> dict[str, Any]:
    """Top-1 of every backend on the digits held-out split, against fused FP32 PyTorch eager.

    Args:
        checkpoint: a checkpoint trained on the digits set (any format ``repvit`` reads).
        backends: backends to check (CUDA ones are skipped without a GPU); the FP32 reference is always eager.
        threads: threads for the runtimes.
        img_size: resolution (default: the checkpoint's training ``img_size``, else 32).
        calib_images: training images used to calibrate the INT8 backends.
        say: progress callback.
        int8_mode: ``auto``, ``safe`` or ``full`` for the ONNX Runtime and OpenVINO INT8 backends
            (:mod:`repvit.deploy.int8_mode`).

    Returns:
        ``{"checkpoint", "img_size", "images", "fp32_top1", "criteria", "rows": [{"backend", "precision", "top1",
        "delta_points", "agreement", "passed", "warning"}], "int8", "errors"}``; ``warning`` (None when passed) says
        how far a low-precision backend fell and its likely cause.
    """
    from repvit.data import load_digits_split
    from repvit.deploy.int8_mode import resolve_int8_mode

    from .backends import CUDA_BACKENDS

    say = say or (lambda s: _LOG.info(s))
    int8 = resolve_int8_mode(int8_mode)
    ckpt, cfg, size, model = _digits_model(checkpoint, img_size)
    x, y = load_digits_split("val", img_size=size)
    calib = _calibration(size, calib_images)
    with torch.inference_mode():
        ref = model(x).argmax(1)
    fp32_top1 = 100.0 * (ref == y).float().mean().item()
    rows, errors = [], []
    for backend in backends:
        if backend in CUDA_BACKENDS and not torch.cuda.is_available():
            continue
        say(f"accuracy: {backend} on {len(y)} held-out digits at {size}x{size}")
        try:
            pred = _predict(model, backend, x, threads, calib, int8)
        except Exception as e:  # noqa: BLE001 - a backend that cannot run is recorded, like in the benchmark
            errors.append({"backend": backend, "error": f"{type(e).__name__}: {e}"})
            _LOG.warning("accuracy check of %s failed: %s", backend, e)
            continue
        rows.append(_accuracy_row(backend, pred, y, ref, fp32_top1))
    return {"checkpoint": str(checkpoint), "model": ckpt.meta.get("model_name") or cfg.get("model"),
            "img_size": size, "images": int(len(y)), "fp32_top1": fp32_top1, "calib_images": calib_images,
            "criteria": {"max_drop_points": MAX_DROP_POINTS, "min_agreement": MIN_AGREEMENT}, "rows": rows,
            "int8": int8.to_dict(), "errors": errors}


def _digits_model(checkpoint: str, img_size: int | None):
    """The checkpoint as read, its training config, the resolution to check at and the fused model (eval mode).

    Raises:
        ValueError: the checkpoint was trained on other data than the digits set.
    """
    from repvit.data import is_digits
    from repvit.models import create_model, fuse_model, read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    cfg = ckpt.meta.get("train_config") or {}
    if cfg.get("data") is not None and not is_digits(cfg["data"]):
        raise ValueError(f"accuracy checks need a checkpoint trained on the digits set; {checkpoint} was trained on "
                         f"{cfg.get('data')!r}.")
    size = int(img_size or cfg.get("img_size") or 32)
    return ckpt, cfg, size, fuse_model(create_model(checkpoint=checkpoint)).eval()


def _calibration(size: int, count: int) -> list[torch.Tensor]:
    """``count`` training images (a fixed random draw) in batches of 32, for the INT8 backends."""
    from repvit.data import load_digits_split

    x_train, _ = load_digits_split("train", img_size=size)
    g = torch.Generator().manual_seed(0)
    return list(x_train[torch.randperm(len(x_train), generator=g)[:count]].split(32))


def _predict(model: torch.nn.Module, backend: str, x: torch.Tensor, threads: int, calib, int8) -> torch.Tensor:
    """The classes ``backend`` predicts for ``x`` (built like the timed candidates, then closed)."""
    from .backends import prepare_backend
    from .lowp_backends import first_output

    fn = prepare_backend(model, backend, x, threads=threads, calib=calib, int8_mode=int8)
    with torch.inference_mode():
        pred = first_output(fn()).argmax(1)
    if hasattr(fn, "close"):
        fn.close()
    return pred


def _accuracy_row(backend: str, pred: torch.Tensor, y: torch.Tensor, ref: torch.Tensor,
                  fp32_top1: float) -> dict[str, Any]:
    """A backend's top-1, its agreement with FP32 and whether both are within the criteria."""
    from .backends import precision_of

    top1 = 100.0 * (pred == y).float().mean().item()
    agreement = (pred == ref).float().mean().item()
    passed = abs(top1 - fp32_top1) <= MAX_DROP_POINTS and agreement >= MIN_AGREEMENT
    return {"backend": backend, "precision": precision_of(backend), "top1": top1,
            "delta_points": top1 - fp32_top1, "agreement": agreement, "passed": passed,
            "warning": None if passed else lowp_warning(backend, precision_of(backend), top1 - fp32_top1, agreement)}


def lowp_warning(backend: str, precision: str, delta_points: float, agreement: float | None = None) -> str | None:
    """A one-line warning for a result more than :data:`MAX_DROP_POINTS` below FP32 (or agreeing with it on fewer
    than :data:`MIN_AGREEMENT` of the images), with its likely cause; None when it is within both."""
    from repvit.deploy.int8_mode import LOWP_DROP_HINT

    low_agree = agreement is not None and agreement < MIN_AGREEMENT
    if delta_points >= -MAX_DROP_POINTS and not low_agree:
        return None
    what = f"{delta_points:+.2f} points vs FP32"
    if agreement is not None:
        what += f", {100 * agreement:.2f}% agreement"
    if precision == "int8":
        cause = LOWP_DROP_HINT
    elif precision in ("bf16", "fp16"):
        cause = "likely cause: a layer whose range or precision bf16/fp16 cannot hold; keep it in FP32"
    else:
        cause = "an FP32 backend should match PyTorch: report it as a bug"
    return f"WARNING {backend} ({precision}): {what}; {cause}"
