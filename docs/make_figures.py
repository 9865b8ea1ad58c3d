"""Draw the documentation's pictures from the library's own outputs (each doc names the command that redraws it).

    python docs/make_figures.py segment-overlay --checkpoint runs/demo/segment/best.pt
        -> docs/img/segment_overlay_digits.png: held-out digit scenes, their true labels and the Semantic FPN's
           prediction (``repvit segment predict``'s overlays), for docs/dense.md
    python docs/make_figures.py sam-masks [--checkpoint edge_sam]
        -> docs/img/sam_masks_photo.png: scikit-image's astronaut with point and box prompts and their masks
           (``repvit sam predict``) and the automatic masks (``repvit sam segment-all``), for docs/sam.md

    python docs/make_figures.py edgetam-track [--checkpoint edgetam]
        -> docs/img/edgetam_track.png: EdgeTAM following an object clicked in the first of six frames (shifted
           crops of scikit-image's astronaut, a camera panning right) with ``repvit sam track``'s functions, for
           docs/sam.md

``make docs-figures`` runs the first two (after ``make demo-segment``). Needs the plot extra (matplotlib) and, for
the SAM pictures, the sam extra (and for EdgeTAM's, the video extra) and scikit-image.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

IMG = Path(__file__).resolve().parent / "img"


def _quantized_png(fig, path: Path) -> Path:
    """Save a matplotlib figure as a 256-colour PNG (small in git)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    return path


def segment_overlay(checkpoint: str, out: Path, n: int = 6, zoom: int = 4) -> Path:
    """The first ``n`` held-out digit scenes (the checkpoint's own validation scenes) with two or more digit
    classes, their true labels and the prediction; the overlays are drawn by
    :func:`repvit.dense.segmentation.predict.predict_images` (``repvit segment predict``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from PIL import Image
    from torchvision.utils import draw_segmentation_masks

    from repvit.dense.scenes import SCENE_CLASSES, DigitScenes
    from repvit.dense.segmentation.metrics import confusion_matrix, metrics_from_confusion
    from repvit.dense.segmentation.model import load_segmenter_checkpoint
    from repvit.dense.segmentation.predict import palette, predict_images
    from repvit.engine.checkpoint import load_train_checkpoint

    _, cfg, _ = load_segmenter_checkpoint(checkpoint)
    ck = load_train_checkpoint(checkpoint)
    scenes = DigitScenes("val", size=cfg.img_size, num_scenes=cfg.val_scenes, seed=cfg.scenes_seed,
                         scale=(cfg.scene_scale_min, cfg.scene_scale_max), min_digits=cfg.scene_min_digits,
                         max_digits=cfg.scene_max_digits, instances=False)
    colors = palette(len(SCENE_CLASSES), True)
    rows, shown = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(len(scenes)):
            if len(shown) == n:
                break
            image, target = scenes[i]
            if len(target["semantic"].unique()) < 3:  # the background and at least two digits
                continue
            shown.append(i)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(Path(tmp) / f"scene{i:03d}.png")
            truth = target["semantic"]
            masks = torch.stack([truth == c for c in range(1, len(SCENE_CLASSES))])
            true_overlay = draw_segmentation_masks(image, masks, alpha=0.5, colors=colors[1:])
            rows.append([image.permute(1, 2, 0).numpy(), true_overlay.permute(1, 2, 0).numpy(), truth])
        results = predict_images(checkpoint, tmp, Path(tmp) / "pred")
        for i, r in enumerate(results):
            rows[i].append(np.asarray(Image.open(r["overlay_png"]).convert("RGB")))
            rows[i].append(torch.from_numpy(np.array(Image.open(r["label_png"]))).long())
    fig, axes = plt.subplots(3, n, figsize=(1.9 * n, 6.4))
    for i, (image, true_overlay, truth, pred_overlay, pred) in enumerate(rows):
        acc = metrics_from_confusion(confusion_matrix(pred, truth.as_subclass(torch.Tensor), len(SCENE_CLASSES)))
        for ax, pic in zip(axes[:, i], (image, true_overlay, pred_overlay)):
            ax.imshow(np.kron(pic, np.ones((zoom, zoom, 1), np.uint8)), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[2, i].set_xlabel(f"pixel acc {acc['pixel_acc']:.3f}", fontsize=9)
    for ax, label in zip(axes[:, 0], ("scene", "true labels", "prediction")):
        ax.set_ylabel(label, fontsize=11)
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(colors[c]) / 255) for c in range(1, len(SCENE_CLASSES))]
    fig.legend(handles, [str(c) for c in SCENE_CLASSES[1:]], loc="lower center", ncol=len(handles), fontsize=9,
               title="class colours (background uncoloured)", title_fontsize=9, frameon=False)
    fig.suptitle(f"Semantic FPN ({cfg.model}), held-out {cfg.img_size} px digit scenes {shown} (the first with 2+ "
                 f"digit classes)\n"
                 f"{int(ck['step'])} training steps, held-out mIoU {float(ck['best']):.3f} (all {cfg.val_scenes})",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    return _quantized_png(fig, out)


def _weights_file(checkpoint: str, what: str) -> Path | None:
    """The local file of a weights name, path or URL, or None (said on stdout) when it cannot be had (offline): the
    picture then says RANDOM weights, never passing them off as trained ones."""
    from repvit.weights import resolve_weights

    try:
        return Path(resolve_weights(checkpoint))
    except Exception as e:  # noqa: BLE001 - any failure to get the weights means a random-weights picture
        print(f"could not get the {checkpoint} weights ({e}); drawing with RANDOM {what} weights")
        return None


def _sam(checkpoint: str):
    """``(sam, what, trained)``: the named or given RepViT-SAM weights, or random ``edge_sam`` weights when they
    cannot be had (offline); ``what`` says which, for the picture's title."""
    import torch

    from repvit.sam import build_repvit_sam

    path = _weights_file(checkpoint, "edge_sam")
    if path is None:
        torch.manual_seed(0)
        return build_repvit_sam(variant="edge_sam").eval(), "RANDOM edge_sam weights", False
    return build_repvit_sam(path).eval(), f"weights {path.name}", True


def sam_masks(checkpoint: str, out: Path, points_per_side: int = 8) -> Path:
    """scikit-image's astronaut: the prompts (a point, a box), their masks and the automatic masks, through the same
    functions as ``repvit sam predict`` and ``repvit sam segment-all``. With random weights (offline) the picture
    says so: it then shows the pipeline, not what the model sees."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import skimage.data
    import torch

    from repvit.sam.predict import mask_overlay, masks_overlay, predict_masks, segment_everything

    torch.set_num_threads(max(1, torch.get_num_threads()))
    image = skimage.data.astronaut()
    sam, what, trained = _sam(checkpoint)
    point = [(250.0, 150.0, 1)]  # the face (the Makefile's demo-sam point)
    box = (150.0, 240.0, 440.0, 512.0)  # the suit, chest to the bottom edge
    with torch.inference_mode():
        by_point = predict_masks(sam, image, points=point)
        by_box = predict_masks(sam, image, box=box)
        auto = segment_everything(sam, image, points_per_side=points_per_side)
    panels = [
        (mask_overlay(image, np.zeros(image.shape[:2], bool), points=point, box=box),
         "the prompts: a point (250, 150)\nand a box (150, 240, 440, 512)"),
        (mask_overlay(image, by_point.mask, points=point), f"point (250, 150)\npredicted IoU {by_point.score:.2f}"),
        (mask_overlay(image, by_box.mask, box=box), f"box (150, 240, 440, 512)\npredicted IoU {by_box.score:.2f}"),
        (masks_overlay(image, auto), f"segment-all, {points_per_side}x{points_per_side} points\n{len(auto)} masks"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.9))
    for ax, (pic, title) in zip(axes, panels):
        ax.imshow(pic)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    title = f"repvit sam predict / segment-all on scikit-image's astronaut, {what}"
    if not trained:
        title += ("\nrandom weights: the masks are noise" + ("" if auto else " and no automatic mask passes SAM's "
                  "quality filters") + "; with the published edge_sam weights they follow objects")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.9 if not trained else 0.95))
    return _quantized_png(fig, out)


def _random_edgetam(frames: Path, point: tuple[float, float]):
    """EdgeTAM's video predictor with random weights from seeds 0, 1, ...: the first whose click segments something
    on the first frame and still on the second (at random the object-score head often says "no object", which
    would leave every mask empty); returns ``(predictor, seed)``."""
    import torch

    from repvit.sam.sam2 import build_edgetam_video_predictor

    for seed in range(20):
        torch.manual_seed(seed)
        predictor = build_edgetam_video_predictor(fused=True)
        with torch.inference_mode():
            state = predictor.init_state(frames)
            _, _, masks = predictor.add_new_points_or_box(state, 0, 1, points=[point], labels=[1])
            if not (masks > 0).any():
                continue
            *_, (_, _, masks) = predictor.propagate_in_video(state, max_frame_num_to_track=1)
            if (masks > 0).any():
                break
    return predictor, seed


def _edgetam(checkpoint: str, frames: Path, point: tuple[float, float]):
    """``(video predictor, what, trained)``: EdgeTAM with the named or given weights, or random weights when they
    cannot be had (offline); ``what`` says which, for the picture's title."""
    from repvit.sam.sam2 import build_edgetam_video_predictor

    path = _weights_file(checkpoint, "EdgeTAM")
    if path is None:
        predictor, seed = _random_edgetam(frames, point)
        return predictor, f"RANDOM weights (seed {seed})", False
    return build_edgetam_video_predictor(path, fused=True), f"weights {path.name}", True


def edgetam_track(checkpoint: str, out: Path, n: int = 6, step: int = 16) -> Path:
    """Six frames cut from scikit-image's astronaut, each ``step`` px further right (a camera panning), a click on
    the face in the first, and the mask EdgeTAM tracks on each, through :func:`repvit.sam.sam2.track.track_video`
    and :func:`~repvit.sam.sam2.track.save_masks` (``repvit sam track``). With random weights (offline) the picture
    says so: it then shows the pipeline, not what the model sees."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import skimage.data
    import torch
    from PIL import Image

    from repvit.sam.predict import mask_overlay
    from repvit.sam.sam2.track import save_masks, track_video

    torch.set_num_threads(max(1, torch.get_num_threads()))
    photo = skimage.data.astronaut()
    h, w, x0 = 320, 360, 40
    point = (250.0 - x0, 150.0 - 40, 1)  # the face on the first frame
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()
        for i in range(n):
            x = x0 + step * i
            Image.fromarray(photo[40:40 + h, x:x + w]).save(frames / f"{i:05d}.jpg", quality=95)
        predictor, what, trained = _edgetam(checkpoint, frames, point[:2])
        with torch.inference_mode():
            res = save_masks(track_video(predictor, frames, points=[point[:2]]), Path(tmp) / "out")
        pics, masks = [], []
        for i in range(n):
            masks.append(np.asarray(Image.open(Path(res["masks_dir"]) / f"{i:05d}.png")))
            image = np.asarray(Image.open(frames / f"{i:05d}.jpg").convert("RGB"))
            pics.append(mask_overlay(image, masks[-1] > 127, [point] if i == 0 else ()))
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.9))
    for i in range(n):
        axes[0, i].imshow(pics[i])
        axes[1, i].imshow(masks[i], cmap="gray", vmin=0, vmax=255)
        axes[0, i].set_title(f"frame {i}" + (": click (210, 110)" if i == 0 else ""), fontsize=9)
        axes[1, i].set_title(f"masks/{i:05d}.png, {res['mask_pixels'][i]} px", fontsize=9)
        for ax in axes[:, i]:
            ax.axis("off")
    title = f"repvit sam track: EdgeTAM, {what}; the camera pans {step} px right per frame"
    if not trained:
        title += "\nrandom weights: the masks show the pipeline, not tracking; with the published edgetam weights " \
                 "the mask follows the clicked object"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92 if not trained else 0.95))
    return _quantized_png(fig, out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="figure", required=True)
    s = sub.add_parser("segment-overlay", help="docs/img/segment_overlay_digits.png (docs/dense.md)")
    s.add_argument("--checkpoint", default="runs/demo/segment/best.pt", help="a digits segmentation checkpoint")
    s.add_argument("--out", type=Path, default=IMG / "segment_overlay_digits.png")
    m = sub.add_parser("sam-masks", help="docs/img/sam_masks_photo.png (docs/sam.md)")
    m.add_argument("--checkpoint", default="edge_sam", help="a RepViT-SAM file or weight name (default edge_sam)")
    m.add_argument("--out", type=Path, default=IMG / "sam_masks_photo.png")
    m.add_argument("--points-per-side", type=int, default=8)
    t = sub.add_parser("edgetam-track", help="docs/img/edgetam_track.png (docs/sam.md)")
    t.add_argument("--checkpoint", default="edgetam", help="an edgetam.pt file or the weight name (default edgetam)")
    t.add_argument("--out", type=Path, default=IMG / "edgetam_track.png")
    args = p.parse_args(argv)
    if args.figure == "segment-overlay":
        print(segment_overlay(args.checkpoint, args.out))
    elif args.figure == "edgetam-track":
        print(edgetam_track(args.checkpoint, args.out))
    else:
        print(sam_masks(args.checkpoint, args.out, args.points_per_side))


if __name__ == "__main__":
    main()
