"""Write the EdgeTAM parity reference: an authors'-layout ``edgetam.pt`` and the authors' predictors' outputs.

Runs in the reference environment only (``make edgetam-ref``), as a subprocess of the tests:

    PYTHONPATH=.venv-edgetam-ref python tests/sam/sam2/_reference/make_reference.py OUT_DIR \
        [--image] [--sessions one obj1 ...] [--sensitivity]

OUT_DIR receives, each part only when asked for and not there yet:
- always: ``coffee.png`` and ``frames/00000.jpg`` ... (the inputs, cases.py); ``edgetam.pt``: ``{'model':
  state_dict}`` of the authors' EdgeTAM built from their config with perturbed random weights (authors.randomize), as
  their training code saves it (the predictors below load it back with the authors' strict loader); ``reference.json``:
  versions, seed, what was patched;
- ``image.npz`` (``--image``): SAM2ImagePredictor on the photo, per case ``case/masks`` (logits at the image's size),
  ``case/iou``, ``case/low_res``, ``case/mask_input``, plus the preprocessed input and the image features under
  ``features/``;
- ``video_NAME.npz`` (``--sessions``): SAM2VideoPredictor (``fill_hole_area=0``, memories rounded to bfloat16 and
  used in float32: authors.bfloat16_rounded_memory) on session NAME of cases.VIDEO_SESSIONS, per step
  ``NAME/step/frames``, ``NAME/step/obj_ids``, ``NAME/step/logits`` (mask logits at the video's size, frames x
  objects x 1 x H x W);
- ``sensitivity.json`` (``--sensitivity``): how much session "one"'s logits change when RoPE is left out, the
  fuser's layer scale is put back to 1e-6 or the memories' temporal encodings are zeroed (a wrong part of a
  re-implementation must show far above the parity tolerance).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import authors  # noqa: E402
import cases  # noqa: E402


def write_checkpoint(out: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = authors.randomize(authors.build(), seed).eval()
    frame, (step, *_) = cases.load_frame(out, 0), cases.VIDEO_SESSIONS["one"]
    authors.center_mask_logits(model, frame, step["points"][0])
    path = out / "edgetam.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"model": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def image_reference(out: Path, checkpoint: Path) -> dict[str, np.ndarray]:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(authors.build(checkpoint=str(checkpoint)))
    image = cases.load_image(out)
    predictor.set_image(image)
    result = {
        "features/input": predictor._transforms(image)[None].numpy(),
        "features/image_embed": predictor._features["image_embed"].numpy(),
        **{f"features/high_res_{i}": f.numpy() for i, f in enumerate(predictor._features["high_res_feats"])},
    }
    for name, case in cases.IMAGE_CASES.items():
        for key, value in cases.run_image_case(predictor, case, result).items():
            result[f"{name}/{key}"] = value
        best = int(np.argmax(result[f"{name}/iou"]))
        result[f"{name}/mask_input"] = result[f"{name}/low_res"][best:best + 1]
    return result


def video_reference(out: Path, checkpoint: Path, name: str) -> dict[str, np.ndarray]:
    predictor = authors.build(checkpoint=str(checkpoint), video=True, fill_hole_area=0)
    results = cases.run_session(predictor, out / cases.FRAMES_DIR, cases.VIDEO_SESSIONS[name])
    return cases.flatten_session(name, results)


@contextlib.contextmanager
def _without_rope():
    import sam2.modeling.sam.transformer as transformer

    saved = transformer.apply_rotary_enc, transformer.apply_rotary_enc_v2
    transformer.apply_rotary_enc = lambda q, k, freqs_cis, repeat_freqs_k=False: (q, k)
    transformer.apply_rotary_enc_v2 = lambda x, freqs_cis, repeat_freqs: x
    try:
        yield
    finally:
        transformer.apply_rotary_enc, transformer.apply_rotary_enc_v2 = saved


@contextlib.contextmanager
def _parameters(model, names, value):
    params = dict(model.named_parameters())
    saved = {n: params[n].detach().clone() for n in names}
    with torch.no_grad():
        for n in names:
            params[n].fill_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for n in names:
                params[n].copy_(saved[n])


def sensitivity(out: Path, checkpoint: Path) -> dict[str, float]:
    """Relative change of the basic video case's logits under each mistake a re-implementation could make."""
    predictor = authors.build(checkpoint=str(checkpoint), video=True, fill_hole_area=0)
    steps = cases.VIDEO_SESSIONS["one"]
    frames = out / cases.FRAMES_DIR

    def logits():
        return np.concatenate([r["logits"] for r in cases.run_session(predictor, frames, steps)])

    base = logits()
    gammas = [n for n, _ in predictor.named_parameters() if n.endswith(".gamma")]
    mistakes = {
        "rope_left_out": _without_rope(),
        "fuser_layer_scale_1e-6": _parameters(predictor, gammas, 1e-6),
        "temporal_encoding_zero": _parameters(predictor, ["maskmem_tpos_enc"], 0.0),
    }
    changes = {}
    for name, mistake in mistakes.items():
        with mistake:
            changes[name] = float(np.abs(logits() - base).max() / np.abs(base).max())
    return changes


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _write_base(out: Path, seed: int) -> Path:
    import sam2
    import timm

    checkpoint = out / "edgetam.pt"
    if checkpoint.exists():
        return checkpoint
    cases.write_inputs(out)
    meta = {
        "seed": seed, "sam2": sam2.__path__[0], "torch": torch.__version__, "timm": timm.__version__,
        "patched": ["TimmBackbone builds its trunk with pretrained=False",
                    "the video predictor's stored memory features: rounded to bfloat16, kept as float32 tensors"],
        "fill_hole_area": 0,
    }
    (out / "reference.json").write_text(json.dumps(meta, indent=2))
    return write_checkpoint(out, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=cases.SEED)
    parser.add_argument("--image", action="store_true", help="write image.npz")
    parser.add_argument("--sessions", nargs="*", default=[], choices=sorted(cases.VIDEO_SESSIONS),
                        help="write video_NAME.npz for these sessions")
    parser.add_argument("--sensitivity", action="store_true", help="write sensitivity.json")
    args = parser.parse_args()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    checkpoint = _write_base(out, args.seed)
    if args.image and not (out / "image.npz").exists():
        _save(out / "image.npz", image_reference(out, checkpoint))
    for name in args.sessions:
        if not (out / f"video_{name}.npz").exists():
            _save(out / f"video_{name}.npz", video_reference(out, checkpoint, name))
    if args.sensitivity and not (out / "sensitivity.json").exists():
        (out / "sensitivity.json").write_text(json.dumps(sensitivity(out, checkpoint), indent=2))


if __name__ == "__main__":
    main()
