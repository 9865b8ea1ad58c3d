"""``repvit sam``: RepViT-SAM / EdgeSAM / EdgeTAM prediction, video tracking (EdgeTAM), automatic masks, export,
distillation and the web app."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repvit.runtime import add_device_arg, resolve_device, set_threads

from ._engine_flags import add_engine_flags, config_from_args, run_training

_CHECKPOINT_HELP = ("repvit_sam.pt (authors), edge_sam.pth (EdgeSAM), edgetam.pt (EdgeTAM), our .safetensors, a "
                    "distillation last.pt/best.pt, or a published weights name (edge_sam, edge_sam_3x, repvit_sam, "
                    "edgetam)")


def _model_args(p: argparse.ArgumentParser, checkpoint_required: bool = True) -> None:
    p.add_argument("--checkpoint", required=checkpoint_required, metavar="NAME_OR_PATH", help=_CHECKPOINT_HELP)
    p.add_argument("--decoder-checkpoint", help="SAM checkpoint for the prompt encoder and mask decoder (needed for "
                                                "distillation checkpoints, which hold only the encoder)")
    p.add_argument("--variant", help="encoder variant (repvit_sam_m2_3, m0_9, edge_sam, ...); default: the "
                                     "checkpoint's")
    p.add_argument("--img-size", type=int, help="input side (default: the checkpoint's, else 1024)")
    p.add_argument("--fused", action="store_true", help="the checkpoint holds a fused encoder")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    add_device_arg(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sam", help="RepViT-SAM, EdgeTAM: predict, track, segment-all, export, distill",
                       description="Segment anything with a RepViT image encoder (segment-anything's prompt encoder "
                                   "and mask decoder). Needs the sam extra: pip install 'repvit-pytorch[sam]'.")
    ss = p.add_subparsers(dest="sam_command", metavar="SAM_COMMAND")
    for add in (_add_predict, _add_track, _add_segment_all, _add_export, _add_distill, _add_app):
        add(ss)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _add_predict(ss: argparse._SubParsersAction) -> None:
    q = ss.add_parser("predict", help="masks from point / box prompts (SamPredictor)")
    q.add_argument("image")
    _model_args(q)
    q.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="a prompt point in image pixels; LABEL 1 foreground (default), 0 background; repeatable")
    q.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a prompt box in image pixels")
    q.add_argument("--multimask", action=argparse.BooleanOptionalAction, default=None,
                   help="three candidates, keep the best (default: only for a single point)")
    q.add_argument("--output-dir", required=True)
    q.set_defaults(func=run_predict)


_TRACK_DESCRIPTION = (
    "Click on an object in one frame of a video (or give its box) and follow it with EdgeTAM: forward to the last "
    "frame, then backward to the first when the prompt is not on frame 0. Writes OUTPUT_DIR/masks/00000.png, ... "
    "(one per frame, 0/255, the frame's size) and OUTPUT_DIR/overlay.gif. Video files need the video extra: "
    "pip install 'repvit-pytorch[video]'.")


def _add_track(ss: argparse._SubParsersAction) -> None:
    t = ss.add_parser("track", help="follow an object through a video (EdgeTAM)", description=_TRACK_DESCRIPTION)
    t.add_argument("video", metavar="VIDEO_OR_FRAMES_DIR",
                   help="a video file (MP4, AVI, ...) or a folder of frames named by number (00000.jpg, ...)")
    t.add_argument("--checkpoint", default="edgetam", metavar="NAME_OR_PATH",
                   help="edgetam.pt or the published name edgetam (default)")
    t.add_argument("--point", action="append", default=[], metavar="X,Y[,LABEL]",
                   help="a click in the frame's pixels; LABEL 1 on the object (default), 0 beside it; repeatable")
    t.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box around the object in the frame's pixels")
    t.add_argument("--frame", type=int, default=0, metavar="N", help="the frame the prompts are on (default 0)")
    t.add_argument("--direction", choices=["both", "forward", "backward"], default="both",
                   help="propagate from the prompted frame both ways (default), or one way only")
    t.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                   help="torch (default), or EdgeTAM's ONNX graphs in ONNX Runtime on the CPU (exported on the fly "
                        "into a temporary folder unless --onnx-dir is given)")
    t.add_argument("--onnx-dir", metavar="DIR", help="graphs from repvit sam export --checkpoint edgetam "
                                                     "(--backend onnxruntime; the graphs hold the weights, so "
                                                     "--checkpoint is not read)")
    t.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                   help="re-parameterized (deploy-form) trunk (default: fused)")
    t.add_argument("--threads", type=int, help="torch / ONNX Runtime CPU threads")
    add_device_arg(t)
    t.add_argument("--output-dir", required=True)
    t.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    t.set_defaults(func=run_track)


def _add_segment_all(ss: argparse._SubParsersAction) -> None:
    a = ss.add_parser("segment-all", help="automatic masks for the whole image (SamAutomaticMaskGenerator)")
    a.add_argument("image")
    _model_args(a)
    a.add_argument("--points-per-side", type=int, default=32, help="grid of point prompts (fewer: faster)")
    a.add_argument("--points-per-batch", type=int, default=64)
    a.add_argument("--pred-iou-thresh", type=float, default=0.88)
    a.add_argument("--stability-score-thresh", type=float, default=0.95)
    a.add_argument("--min-mask-region-area", type=int, default=0)
    a.add_argument("--output-dir", required=True)
    a.set_defaults(func=run_segment_all)


def _add_export(ss: argparse._SubParsersAction) -> None:
    e = ss.add_parser("export", help="encoder.onnx (fused, checked with ONNX Runtime) and decoder.onnx")
    _model_args(e)
    e.add_argument("--output-dir", required=True)
    e.add_argument("--preprocess-in-graph", action="store_true",
                   help="encoder input: a 0..255 RGB image of any size; resize, normalize and pad inside the graph")
    e.add_argument("--multimask-decoder", action="store_true", help="decoder returns all candidate masks")
    e.add_argument("--coreml", action="store_true", help="also write encoder.mlpackage (checked by its spec)")
    e.add_argument("--rtol", type=float, default=1e-4, help="parity tolerance against the fused PyTorch model")
    e.add_argument("--upsample-mode", choices=["bicubic", "bilinear"],
                   help="EdgeSAM only: the fusion neck's upsampling in the exported encoders (default: the model's, "
                        "bicubic, for ONNX; bilinear for Core ML, which has no bicubic)")
    e.set_defaults(func=run_export)


_DISTILL_DESCRIPTION = (
    "Phase 1 (--phase encoder, default): decoupled distillation (MobileSAM / RepViT-SAM), MSE between the student's "
    "and the teacher's image embeddings. Phase 2 (--phase prompt): EdgeSAM's prompt-in-the-loop distillation, the "
    "student's SAM learns the teacher's masks for box and point prompts (BCE + Dice) with refinement points from the "
    "errors; start it from phase 1 with --init OUT/best.pt. --phase both runs phase 1 into OUT/encoder, then phase 2 "
    "into OUT/prompt. Teacher embeddings are cached once (sharded, resumable) and shared by both phases. Settings: "
    "defaults < --config YAML < --set KEY=VALUE < flags. torchrun for DDP.")


def _add_distill(ss: argparse._SubParsersAction) -> None:
    d = ss.add_parser("distill", help="train a RepViT-SAM encoder on a SAM teacher's image embeddings and masks",
                      description=_DISTILL_DESCRIPTION)
    add_engine_flags(
        d, ["data", "output_dir", "model", "epochs", "iters", "batch_size", "lr", "img_size", "resume", "seed",
            "amp", "amp_dtype", "channels_last", "compile", "workers", "device", "threads"],
        helps={"data": "folder of training images (searched recursively)",
               "model": "student trunk (default repvit_m2_3)", "lr": "for a total batch of lr_base_batch (8)"},
        names={"data": "--images"}, recipes="e.g. sam_repvit_m2_3")
    # distillation's own flags (dest = the SamDistillConfig field they set)
    d.add_argument("--phase", choices=["encoder", "prompt", "both"],
                   help="encoder (default): embedding MSE; prompt: EdgeSAM's prompt-in-the-loop; both: one, then the "
                        "other (phase 2 settings: --set prompt_epochs=/prompt_iters=/prompt_lr=)")
    d.add_argument("--teacher", choices=["vit_h", "vit_l", "vit_b", "repvit_sam"])
    d.add_argument("--teacher-checkpoint", help="the SAM checkpoint file (nothing is downloaded)")
    d.add_argument("--init", help="phase 1: a RepViT classification checkpoint for the trunk (any format); phase 2: "
                                  "the phase-1 best.pt (or any RepViT-SAM checkpoint) for the encoder")
    d.add_argument("--max-prompts", type=int, help="phase 2: prompts per image and step (default 16)")
    d.add_argument("--refine-iters", type=int, help="phase 2: refinement decodes, one new point each (default 2)")
    d.add_argument("--prompt-masks", choices=["auto", "teacher", "annotations"],
                   help="phase 2: where prompts come from; auto (default): the COCO (instances*.json) or SA-1B "
                        "(per-image .json) masks when the image folder has them, else the teacher's masks")
    d.add_argument("--cache-dir", help="teacher-embedding cache root (default ~/.cache/repvit/sam_embeddings)")
    d.add_argument("--max-images", type=int)
    d.set_defaults(func=run_distill)


_APP_DESCRIPTION = (
    "Upload a photo and click on it: points (foreground / background), boxes, undo, clear, automatic masks; the mask "
    "downloads as a PNG. The image is encoded once and each click runs only the mask decoder. The video tab: upload a "
    "short video, click on an object in a frame, press Track; EdgeTAM follows it through the video and the masks "
    "download as a zip of per-frame PNGs. Scripting: gradio_client with api_name='/segment', '/segment_all' and "
    "'/track_video' (docs/sam.md). Needs the app extra: pip install 'repvit-pytorch[app]'.")


def _add_app(ss: argparse._SubParsersAction) -> None:
    from repvit.sam.app import DEFAULT_LIMITS  # no gradio, no segment_anything on import

    w = ss.add_parser("app", help="a web page (Gradio): click on a photo or a video frame, get a mask or a track",
                      description=_APP_DESCRIPTION)
    w.add_argument("--checkpoint", default="edge_sam", metavar="NAME_OR_PATH",
                   help="the image tab's model: a RepViT-SAM, EdgeSAM or EdgeTAM checkpoint file or name (default "
                        "edge_sam; edgetam, repvit_sam, ...); a name that cannot be had (unknown, not cached, "
                        "offline) gives random weights with a warning")
    w.add_argument("--video-checkpoint", default="edgetam", metavar="NAME_OR_PATH",
                   help="the video tab's EdgeTAM weights: edgetam.pt or the name edgetam (default); a name that "
                        "cannot be had gives random weights with a warning")
    w.add_argument("--max-video-frames", type=int, default=150, metavar="N",
                   help="the longest video the video tab accepts, in frames (default 150; tracking costs about one "
                        "image encoding per frame)")
    w.add_argument("--max-video-mb", type=float, default=100.0, metavar="MB",
                   help="the largest video file the video tab accepts (default 100 MB)")
    w.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                   help="re-parameterized (deploy-form) encoder (default: fused)")
    w.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    w.add_argument("--port", type=int, default=7860)
    w.add_argument("--threads", type=int, help="torch CPU threads")
    add_device_arg(w)
    w.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default="auto",
                   help="where a SAM model encodes photos and decodes clicks: auto (default) is onnxruntime when it "
                        "is installed and the model is on the CPU, else torch; onnxruntime exports the encoder and "
                        "the per-click decoder at start (about 6 s for EdgeSAM) and runs them with --threads threads")
    w.add_argument("--points-per-side", type=int, default=16, help="the everything mode's point grid")
    lim = w.add_argument_group("limits under load (many users at once)")
    lim.add_argument("--max-queue", type=_positive(int), default=DEFAULT_LIMITS["max_queue"], metavar="N",
                     help="requests that may wait for the model; one more is refused at once with 'queue is full' "
                          f"(default {DEFAULT_LIMITS['max_queue']})")
    lim.add_argument("--concurrency", type=_positive(int), default=DEFAULT_LIMITS["concurrency"], metavar="N",
                     help="requests running the model at once, sharing the --threads (default "
                          f"{DEFAULT_LIMITS['concurrency']})")
    lim.add_argument("--cache-images", type=_positive(int), default=DEFAULT_LIMITS["cache_images"], metavar="N",
                     help="image embeddings kept, so that clicks on those photos skip the encoder (default "
                          f"{DEFAULT_LIMITS['cache_images']}; 18 MB each for SAM at 1024 px, 16 MB for EdgeTAM)")
    lim.add_argument("--cache-mb", type=_positive(float), default=DEFAULT_LIMITS["cache_mb"], metavar="MB",
                     help="memory of the kept embeddings; the least recently used beyond it are dropped (default "
                          f"{DEFAULT_LIMITS['cache_mb']:g} MB)")
    lim.add_argument("--max-image-pixels", type=_positive(int), default=DEFAULT_LIMITS["max_image_pixels"],
                     metavar="N", help="the largest photo accepted, width x height in pixels (default "
                                       f"{DEFAULT_LIMITS['max_image_pixels']:,}); a larger one is refused")
    lim.add_argument("--max-image-mb", type=_positive(float), default=DEFAULT_LIMITS["max_image_mb"], metavar="MB",
                     help=f"the largest photo file accepted (default {DEFAULT_LIMITS['max_image_mb']:g} MB)")
    lim.add_argument("--max-sessions", type=_positive(int), default=DEFAULT_LIMITS["max_sessions"], metavar="N",
                     help="browser tabs whose photo and prompts are kept; the least recently used beyond are "
                          f"forgotten (default {DEFAULT_LIMITS['max_sessions']})")
    w.set_defaults(func=run_app)


def _positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)``, refused unless above zero."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    return parse


def _load(args: argparse.Namespace):
    from repvit.sam import build_repvit_sam

    set_threads(args.threads)
    device = resolve_device(args.device)
    sam = build_repvit_sam(args.checkpoint, fused=args.fused, variant=args.variant, img_size=args.img_size,
                           decoder_checkpoint=args.decoder_checkpoint)
    return sam.to(device)


def _is_edgetam(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is EdgeTAM's: the published name, or a file laid out as the authors' edgetam.pt."""
    import torch

    import repvit.weights

    found = repvit.weights.lookup(checkpoint, kind="sam")
    if isinstance(found, repvit.weights.WeightsEntry):
        return found.layout == "edgetam"
    if found.suffix == ".safetensors":
        return False
    try:  # memory-mapped: only the keys are looked at
        obj = torch.load(found, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a file EdgeTAM reads; the SAM loader says what is wrong with it
        return False
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    return isinstance(sd, dict) and any(str(k).startswith("spatial_perceiver.") for k in sd)


def _load_edgetam(args: argparse.Namespace):
    from repvit.sam.sam2 import build_edgetam

    for flag in ("variant", "img_size", "decoder_checkpoint"):
        if getattr(args, flag, None) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} is for SAM (v1) checkpoints; EdgeTAM's checkpoint "
                             "holds its whole model (drop the flag)")
    set_threads(args.threads)
    return build_edgetam(args.checkpoint, fused=args.fused, device=resolve_device(args.device))


def _predict_edgetam(args: argparse.Namespace, image, points, box):
    """:class:`~repvit.sam.predict.Prediction` of EdgeTAM's image predictor, chosen as ``predict_masks`` does."""
    import numpy as np

    from repvit.sam.predict import Prediction
    from repvit.sam.sam2 import EdgeTamImagePredictor

    predictor = EdgeTamImagePredictor(_load_edgetam(args))
    predictor.set_image(image)
    multimask = args.multimask if args.multimask is not None else len(points) == 1 and box is None
    masks, scores, _ = predictor.predict(
        point_coords=np.array([p[:2] for p in points], dtype=np.float32) if points else None,
        point_labels=np.array([p[2] for p in points], dtype=np.int64) if points else None,
        box=None if box is None else np.asarray(box, dtype=np.float32), multimask_output=multimask)
    best = int(np.argmax(scores))
    return Prediction(masks[best], float(scores[best]), masks, scores)


def run_predict(args: argparse.Namespace) -> int:
    from repvit.sam.predict import mask_overlay, predict_masks, save_png
    from repvit.sam.preprocess import load_rgb
    from repvit.sam.prompts import PromptError, parse_box, parse_points, validate_prompts

    points = [p for text in args.point for p in parse_points(text)]
    box = parse_box(args.box)
    image = load_rgb(args.image)
    if not points and box is None:
        raise PromptError("give at least one prompt: a point (--point X,Y) or a box (--box X0,Y0,X1,Y1).")
    validate_prompts(points, box, image.shape[:2])  # before loading the model
    if _is_edgetam(args.checkpoint):
        pred = _predict_edgetam(args, image, points, box)
    else:
        pred = predict_masks(_load(args), image, points, box, args.multimask)
    out, stem = Path(args.output_dir), Path(args.image).stem
    m = save_png(pred.mask, out / f"{stem}_mask.png")
    o = save_png(mask_overlay(image, pred.mask, points, box), out / f"{stem}_overlay.png")
    print(f"mask: {m} ({int(pred.mask.sum())} px, predicted IoU {pred.score:.3f})\noverlay: {o}")
    return 0


def _video_tracker(args: argparse.Namespace, tmp: Path):
    """The torch video predictor, or the ONNX Runtime tracker on ``--onnx-dir`` or on graphs exported into ``tmp``."""
    import torch

    from repvit.sam.sam2 import build_edgetam_video_predictor

    if args.backend == "torch":
        set_threads(args.threads)
        return build_edgetam_video_predictor(args.checkpoint, fused=args.fused, device=resolve_device(args.device))
    from repvit.sam.sam2.export import export_edgetam_onnx
    from repvit.sam.sam2.onnx_tracker import OnnxEdgeTamTracker

    onnx_dir = args.onnx_dir
    if onnx_dir is None:  # the video predictor's model: the tracking settings travel in the manifest
        model = build_edgetam_video_predictor(args.checkpoint).model
        export_edgetam_onnx(model, tmp, fused=args.fused, check=False)
        onnx_dir = tmp
    return OnnxEdgeTamTracker(onnx_dir, threads=args.threads or torch.get_num_threads())


def run_track(args: argparse.Namespace) -> int:
    import json
    import tempfile
    import time

    from repvit.sam.prompts import PromptError, parse_box, parse_points, validate_prompts
    from repvit.sam.sam2.frames import open_video_frames
    from repvit.sam.sam2.track import save_masks, track_video

    points = [p for text in args.point for p in parse_points(text)]
    box = parse_box(args.box)
    if not points and box is None:
        raise PromptError("give at least one prompt: a point (--point X,Y) or a box (--box X0,Y0,X1,Y1).")
    frames = open_video_frames(args.video)  # before loading the model: a bad video or prompt fails fast
    if not 0 <= args.frame < len(frames):
        raise ValueError(f"--frame {args.frame} is outside the video: it has {len(frames)} frames (0 to "
                         f"{len(frames) - 1}).")
    validate_prompts(points, box, (frames.height, frames.width))
    if args.backend == "torch" and args.onnx_dir:
        raise ValueError("--onnx-dir is for --backend onnxruntime")
    with tempfile.TemporaryDirectory(prefix="repvit-edgetam-onnx-") as tmp:
        tracker = _video_tracker(args, Path(tmp))
        start = time.perf_counter()
        masks = track_video(tracker, frames if args.backend == "torch" else args.video,
                            points=[p[:2] for p in points] or None, labels=[p[2] for p in points] or None, box=box,
                            frame_idx=args.frame, direction=args.direction)
        res = save_masks(masks, args.output_dir, video=frames,
                         prompts={"frame_idx": args.frame, "points": points, "box": box})
        seconds = time.perf_counter() - start
    res.update(backend=args.backend, seconds=round(seconds, 3), frames_per_second=res["num_frames"] / seconds)
    if args.json:
        print(json.dumps(res))
    else:
        seen = sum(1 for px in res["mask_pixels"] if px)
        n = res["num_frames"]
        print(f"{n} frame{'s' if n != 1 else ''} tracked ({args.backend}, {res['frames_per_second']:.2f} frames/s); "
              f"a non-empty mask on {seen}; masks: {res['masks_dir']}/; overlay: {res['overlay']}")
    return 0


def run_segment_all(args: argparse.Namespace) -> int:
    from repvit.sam.predict import masks_overlay, save_png, segment_everything
    from repvit.sam.preprocess import load_rgb

    image = load_rgb(args.image)
    masks = segment_everything(_load(args), image, points_per_side=args.points_per_side,
                               points_per_batch=args.points_per_batch, pred_iou_thresh=args.pred_iou_thresh,
                               stability_score_thresh=args.stability_score_thresh,
                               min_mask_region_area=args.min_mask_region_area)
    out = Path(args.output_dir) / f"{Path(args.image).stem}_masks.png"
    save_png(masks_overlay(image, masks), out)
    print(f"{len(masks)} masks; overlay: {out}")
    return 0


def _export_edgetam(args: argparse.Namespace) -> int:
    from repvit.sam.sam2.export import export_edgetam_onnx

    sam_only = {"preprocess_in_graph": False, "multimask_decoder": False, "upsample_mode": None}
    for flag, unset in sam_only.items():
        if getattr(args, flag) != unset:
            raise ValueError(f"--{flag.replace('_', '-')} is for SAM (v1) models; EdgeTAM's graphs take it as fixed")
    model = _load_edgetam(args)
    res = export_edgetam_onnx(model, args.output_dir, rtol=args.rtol)
    files = ", ".join(g["file"] for g in res["graphs"].values())
    print(f"EdgeTAM: {files} and manifest.json in {args.output_dir} (fused; ONNX Runtime vs PyTorch max rel diff "
          f"{res['parity']['max_rel_diff']:.2e}); track with repvit sam track --backend onnxruntime --onnx-dir "
          f"{args.output_dir}")
    if args.coreml:
        from repvit.sam.sam2.export import export_edgetam_image_encoder_coreml

        cm = export_edgetam_image_encoder_coreml(model, Path(args.output_dir) / "image_encoder.mlpackage")
        print(f"core ml: {cm['path']} (the image encoder)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from repvit.sam.export import export_decoder_onnx, export_encoder_coreml, export_encoder_onnx

    if _is_edgetam(args.checkpoint):
        return _export_edgetam(args)
    sam = _load(args)
    out = Path(args.output_dir)
    enc = export_encoder_onnx(sam, out / "encoder.onnx", preprocess=args.preprocess_in_graph, rtol=args.rtol,
                              upsample_mode=args.upsample_mode)
    dec = export_decoder_onnx(sam, out / "decoder.onnx", return_single_mask=not args.multimask_decoder,
                              rtol=args.rtol)
    print(f"encoder: {enc['path']} (fused; ONNX Runtime vs PyTorch max rel diff {enc['parity']['max_rel_diff']:.2e}"
          f"{'; preprocessing in the graph' if enc['preprocess'] else ''})")
    print(f"decoder: {dec['path']} (inputs {', '.join(dec['inputs'])}; max rel diff "
          f"{dec['parity']['max_rel_diff']:.2e})")
    if args.coreml:
        cm = export_encoder_coreml(sam, out / "encoder.mlpackage", upsample_mode=args.upsample_mode)
        spec = cm["spec"]
        print(f"core ml: {cm['path']} (ML program {spec['is_ml_program']}; inputs "
              f"{[(i['name'], i['shape']) for i in spec['inputs']]}; outputs "
              f"{[(o['name'], o['shape']) for o in spec['outputs']]})")
    return 0


def _describe_distill(res: dict) -> str:
    if res["interrupted"]:
        return f"interrupted after {res['epochs']} epochs; resume with --resume auto ({res['last_checkpoint']})"
    ev, lines = res["eval"], []
    if res.get("phase") == "prompt":
        if "phases" in res:
            p1 = res["phases"]["encoder"]
            lines.append(f"phase 1 (encoder): {p1['steps']} steps; held-out embedding MSE {-p1['best']:.5f} (best); "
                         f"{p1['best_checkpoint']}")
        lines.append(f"done: {res['epochs']} epochs, {res['steps']} steps in {res['wall_time_s']:.0f} s; held-out "
                     f"mask loss vs the teacher {ev.get('mask_loss', float('nan')):.4f} (best {-res['best']:.4f}), "
                     f"mIoU {ev.get('miou', float('nan')):.3f}, embedding MSE {ev.get('mse', float('nan')):.5f}")
    else:
        lines.append(f"done: {res['epochs']} epochs, {res['steps']} steps in {res['wall_time_s']:.0f} s; held-out "
                     f"embedding MSE {ev.get('mse', float('nan')):.5f} (best {-res['best']:.5f})")
    lines.append(f"  best: {res['best_checkpoint']}\n  last: {res['last_checkpoint']}")
    lines.append(f"  teacher cache: {res['cache_dir']} ({res['teacher_shards_computed']} shards computed this run)")
    if res["sam_checkpoint"]:
        what = "the student's SAM" if res.get("phase") == "prompt" else "student encoder + teacher decoder"
        lines.append(f"  RepViT-SAM ({what}): {res['sam_checkpoint']}")
    if res["curves_png"]:
        lines.append(f"  curves: {res['curves_png']}")
    return "\n".join(lines)


def run_distill(args: argparse.Namespace) -> int:
    from repvit.sam_distill import SamDistillConfig, train

    return run_training(args, config_from_args(args, SamDistillConfig), train, describe=_describe_distill,
                        summary=lambda res: {k: v for k, v in res.items() if k != "model"})


def _app_video(args: argparse.Namespace, device) -> tuple[object | None, str | None]:
    """The video tab's session and note; no tab (with a warning) without PyAV or SciPy."""
    import sys

    from repvit.runtime import require

    try:
        require("av", "the app's video tab", extra="video")
        require("scipy.ndimage", "the app's video tab", extra="video")
    except ImportError as e:
        print(f"warning: no video tab: {e}", file=sys.stderr)
        return None, None
    from repvit.sam.app import load_video_model
    from repvit.sam.sam2.video_session import VideoSession

    predictor, note = load_video_model(args.video_checkpoint, fused=args.fused)
    predictor.model.to(device)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    hint = "start the app with a higher limit: repvit sam app --max-video-frames N --max-video-mb MB"
    return VideoSession(predictor, max_frames=args.max_video_frames, max_mb=args.max_video_mb, limit_hint=hint), note


def run_app(args: argparse.Namespace) -> int:
    import sys

    from repvit.runtime import require
    from repvit.sam.app import create_app, launch_app, load_app_model

    require("gradio", "the RepViT-SAM app")
    set_threads(args.threads)
    device = resolve_device(args.device)
    sam, note = load_app_model(args.checkpoint, fused=args.fused)
    sam.to(device)  # the session encodes and decodes where the model is
    if note:
        print(f"warning: {note}", file=sys.stderr)
    video, video_note = _app_video(args, device)
    demo = create_app(sam, note=note, video=video, video_note=video_note, points_per_side=args.points_per_side,
                      cache_images=args.cache_images, cache_mb=args.cache_mb, max_image_pixels=args.max_image_pixels,
                      max_image_mb=args.max_image_mb, runtime=args.backend)
    print(f"RepViT-SAM app on http://{args.host}:{args.port}/ (Ctrl-C stops it); {args.concurrency} request(s) at "
          f"once, at most {args.max_queue} waiting", flush=True)
    launch_app(demo, host=args.host, port=args.port, block=True, quiet=True, max_queue=args.max_queue,
               concurrency=args.concurrency, max_sessions=args.max_sessions)
    return 0
