"""A tiny, fast training config shared by the training tests (digits subset, 32 px, 1 thread)."""

from __future__ import annotations

TINY = dict(
    model="repvit_m0_6", data="digits", img_size=32, epochs=2, batch_size=32, lr=1.6e-2, warmup_epochs=0,
    warmup_steps=None, bn_momentum=None,
    train_subset=128, val_subset=96, workers=0, threads=1, progress=False, plot=False, tensorboard=False,
    model_ema=True, seed=0,
)


def tiny(output_dir, **kw) -> dict:
    return {**TINY, "output_dir": str(output_dir), **kw}
