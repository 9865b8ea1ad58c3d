"""``repvit sam app``: a Gradio page to click on a photo and get a RepViT-SAM, EdgeSAM or EdgeTAM mask, and a video
tab to click on an object in a video frame and have EdgeTAM track it (:mod:`repvit.sam.video_tab`).

The image embedding is computed once per image and kept in a per-app LRU keyed by a hash of the pixels
(:class:`~repvit.sam.session.SamSession`, or :class:`~repvit.sam.sam2.image_session.EdgeTamSession` for EdgeTAM,
which hold all the model-side logic), so every further click runs only the prompt encoder and mask decoder. The
model itself is never mutated after loading; requests only read the cached embeddings.

Scripting (``gradio_client``)::

    from gradio_client import Client, handle_file
    c = Client("http://127.0.0.1:7860/")
    overlay, mask_png, score = c.predict(handle_file("photo.jpg"), "[[500, 375, 1]]", "", api_name="/segment")
    overlay, n_masks = c.predict(handle_file("photo.jpg"), api_name="/segment_all")
    overlay_gif, masks_zip, frames = c.predict(handle_file("clip.mp4"), 0, "[[320, 240, 1]]", api_name="/track_video")

Prompts are in image pixels: points ``[[x, y, label], ...]`` (label 1 foreground, 0 background), a box
``[x0, y0, x1, y1]`` or ``""``. A single point alone returns the best of SAM's three candidates, as
``repvit sam predict``. ``/segment_all`` needs a RepViT-SAM / EdgeSAM model; ``/track_video`` tracks the object
clicked on the given frame (points in that frame's pixels) through the whole video.

Many users at once: each browser tab's photo and prompts live in its own ``gr.State``; the model is only read; the
shared embedding LRU is keyed by the pixels' hash (and bounded in entries and bytes); every event that runs the
model is in one Gradio concurrency group (``concurrency`` at a time) behind a queue of at most ``max_queue`` waiting
requests (:func:`launch_app`); one more gets Gradio's "queue is full" error. Photos over ``max_image_pixels`` or
``max_image_mb``, or files that are not images, are refused with an error saying so.
"""

from __future__ import annotations

import collections
import inspect
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

import repvit.weights
from repvit.io import CheckpointError
from repvit.runtime import require
from repvit.weights import is_path

from .encoder import EDGE_SAM_VARIANTS, SAM_VARIANTS
from .model import build_repvit_sam
from .predict import MaskPainter, mask_png, masks_overlay
from .prompts import PromptError, parse_box, parse_points, validate_prompts
from .sam2 import EdgeTAM, EdgeTamVideoPredictor, build_edgetam, build_edgetam_video_predictor, read_edgetam_checkpoint
from .sam2.image_session import EdgeTamSession
from .sam2.video_session import VideoSession
from .session import SamSession, image_key
from .video_tab import VideoPage, video_api, video_tab

__all__ = ["load_app_model", "load_video_model", "create_app", "launch_app", "DEFAULT_CHECKPOINT",
           "DEFAULT_VIDEO_CHECKPOINT", "DEFAULT_LIMITS"]

DEFAULT_CHECKPOINT = "edge_sam"
DEFAULT_VIDEO_CHECKPOINT = "edgetam"
DEFAULT_LIMITS = {  # the app's bounds under load (create_app / launch_app arguments, repvit sam app flags)
    "cache_images": 16,  # embeddings kept (each 18 MB for SAM at 1024 px with the decoder's per-image part, 16 MB
    # for EdgeTAM)
    "cache_mb": 256.0,  # bytes of embeddings kept, in MB (2**20 bytes)
    "max_image_pixels": 25_000_000,  # width x height of a photo (e.g. 6000 x 4000)
    "max_image_mb": 20.0,  # file size of a photo, in MB
    "max_queue": 32,  # requests waiting for the model; one more is refused (queue full)
    "concurrency": 2,  # requests running the model at once
    "max_sessions": 100,  # browser tabs whose state (photo, prompts) is kept
}
_MODEL_GROUP = "repvit-sam-model"  # the Gradio concurrency group of every event that runs the model
_MODES = ("point", "box", "everything")
_NO_IMAGE = (None, None, None, "Upload a photo.")


def _edgetam_state_dict(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The state dict when ``checkpoint`` is an existing file holding EdgeTAM's weights, else None."""
    if not Path(checkpoint).is_file():
        return None
    try:
        return read_edgetam_checkpoint(checkpoint)
    except CheckpointError:
        return None


def _names_edgetam(checkpoint: str) -> bool:
    """Whether ``checkpoint`` is a published name of EdgeTAM's weights (``edgetam``)."""
    try:
        found = repvit.weights.lookup(checkpoint, kind="sam")
    except ValueError:
        return False
    return getattr(found, "layout", None) == "edgetam"


def load_app_model(checkpoint: str | os.PathLike | None = DEFAULT_CHECKPOINT, fused: bool = True,
                   ) -> tuple[nn.Module, str | None]:
    """The image tab's model (a ``segment_anything`` ``Sam`` or an :class:`~repvit.sam.sam2.EdgeTAM`) and, when it
    has random weights, a note saying why.

    An existing file is loaded strictly (errors propagate): EdgeTAM's weights with
    :func:`repvit.sam.build_edgetam`, any other with :func:`repvit.sam.build_repvit_sam`. A name (``edge_sam``,
    ``edgetam``, ...) is passed to the builder of its model; when it cannot be had (unknown, not cached, offline) the
    model is ``edge_sam`` (EdgeTAM for ``edgetam``) with random weights, and the note says so. A path
    (:func:`repvit.weights.is_path`) that does not exist is an error.
    """
    if checkpoint is not None and is_path(checkpoint):
        sd = _edgetam_state_dict(checkpoint)
        if sd is not None:
            return build_edgetam(sd, fused=fused), None
        return build_repvit_sam(checkpoint, fused=fused), None
    edgetam = checkpoint is not None and _names_edgetam(str(checkpoint))
    reason = "no checkpoint given"
    if checkpoint is not None:
        try:
            model = build_edgetam(str(checkpoint), fused=fused) if edgetam else build_repvit_sam(str(checkpoint),
                                                                                                 fused=fused)
            return model, None
        except Exception as e:  # noqa: BLE001 - any failure to get a named checkpoint falls back to random weights
            reason = f"checkpoint {str(checkpoint)!r} could not be loaded ({type(e).__name__}: {e})"
    if edgetam:
        return build_edgetam(fused=fused), (f"{reason}; using EdgeTAM with RANDOM weights, so the masks are "
                                            "meaningless. Pass --checkpoint with edgetam.pt for real masks.")
    variant = "edge_sam" if "edge_sam" in {**SAM_VARIANTS, **EDGE_SAM_VARIANTS} else "repvit_sam_m0_9"
    sam = build_repvit_sam(variant=variant, fused=fused)
    return sam, (f"{reason}; using {variant} with RANDOM weights, so the masks are meaningless. Pass "
                 "--checkpoint with a RepViT-SAM file (repvit_sam.pt, a .safetensors from save_repvit_sam or a "
                 "distillation) or edgetam.pt for real masks.")


def load_video_model(checkpoint: str | os.PathLike | None = DEFAULT_VIDEO_CHECKPOINT, fused: bool = True,
                     ) -> tuple[EdgeTamVideoPredictor, str | None]:
    """The video tab's EdgeTAM video predictor and, when it has random weights, a note saying why.

    A path is loaded strictly (errors propagate); a name (``edgetam``) that cannot be had (not cached, offline)
    gives EdgeTAM with random weights, and the note says so.
    """
    if checkpoint is not None and is_path(checkpoint):
        return build_edgetam_video_predictor(checkpoint, fused=fused), None
    reason = "no video checkpoint given"
    if checkpoint is not None:
        try:
            return build_edgetam_video_predictor(str(checkpoint), fused=fused), None
        except Exception as e:  # noqa: BLE001 - any failure to get a named checkpoint falls back to random weights
            reason = f"video checkpoint {str(checkpoint)!r} could not be loaded ({type(e).__name__}: {e})"
    return build_edgetam_video_predictor(None, fused=fused), (
        f"{reason}; tracking with EdgeTAM with RANDOM weights, so the tracks are meaningless. Pass "
        "--video-checkpoint with edgetam.pt (or download it: repvit weights download edgetam) for real tracks.")


def _private_kwargs(gr: Any) -> dict[str, Any]:
    """The event keyword that keeps a page callback out of the scripting API, in this gradio version's spelling."""
    from gradio.events import EventListener

    try:
        src = inspect.getsource(EventListener._setup)
    except (OSError, TypeError, AttributeError):
        src = ""
    if "api_visibility" in src:
        return {"api_visibility": "private"}
    if "show_api" in src:
        return {"show_api": False}
    return {}


def _draw_pending(overlay, corner: tuple[float, float] | None):
    """Mark the first corner of a box being drawn (a yellow square) on ``overlay``, an array or a PIL image (a PIL
    image is drawn on in place)."""
    if corner is None:
        return overlay
    from PIL import Image, ImageDraw

    pil = overlay if isinstance(overlay, Image.Image) else Image.fromarray(overlay)
    r = max(3, round(max(pil.size) / 150))
    x, y = corner
    ImageDraw.Draw(pil).rectangle((x - r, y - r, x + r, y + r), outline=(255, 215, 0), width=max(2, r // 2))
    return pil


def _read_photo(gr: Any, path: str | os.PathLike, max_pixels: int, max_mb: float) -> np.ndarray:
    """An uploaded photo as ``(H, W, 3)`` uint8 RGB, turned upright by its EXIF orientation (as the browser shows
    it); a file that is not an image, or over ``max_mb`` or ``max_pixels`` (read from the header, before decoding),
    is a ``gr.Error`` saying so and how to fix it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    mb = path.stat().st_size / 2**20
    if mb > max_mb:
        raise gr.Error(f"the photo is {mb:.1f} MB, over this app's limit of {max_mb:g} MB: upload a smaller file "
                       "(e.g. a JPEG), or start the app with a higher limit (repvit sam app --max-image-mb MB).")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise gr.Error(f"the photo is {w} x {h} = {w * h:,} pixels, over this app's limit of {max_pixels:,}: "
                               "resize it (SAM sees at most 1024 px a side anyway), or start the app with a higher "
                               "limit (repvit sam app --max-image-pixels N).")
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except Image.DecompressionBombError as e:  # more pixels than PIL opens at all
        raise gr.Error(f"the photo is too large to open ({e}): resize it.") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise gr.Error(f"the uploaded file {path.name} is not an image that can be read: upload a photo (PNG, JPEG, "
                       "WebP, BMP, TIFF, ...).") from None


class _Page:
    """The page's callbacks on one :class:`SamSession`. The page state ``st`` is a dict per browser tab: the image
    and its key, the :class:`~repvit.sam.predict.MaskPainter` that draws its overlays (the photo's tinted copy made
    once per photo, not per click), the prompts (``points``, ``box``, the first ``corner`` of a box being drawn,
    ``history`` for undo) and the first encode time. Nothing else is per user: the session's cache is keyed by the
    pixels, and the mask files get unique names."""

    def __init__(self, gr: Any, session: SamSession, auto_kw: dict[str, Any], max_image_pixels: int,
                 max_image_mb: float, keep: int = 64):
        self.gr, self.session, self.auto_kw = gr, session, auto_kw
        self.max_image_pixels, self.max_image_mb = int(max_image_pixels), float(max_image_mb)
        self.out_dir = Path(tempfile.mkdtemp(prefix="repvit_sam_app_"))
        weakref.finalize(self, shutil.rmtree, self.out_dir, ignore_errors=True)  # when the page goes, or at exit
        self.keep = max(1, keep)
        self._files: collections.deque[Path] = collections.deque()
        self._files_lock = threading.Lock()

    def new_file(self, stem: str) -> Path:
        """A fresh PNG path in the app's folder; only the newest ``keep`` files stay (gradio copies what it serves
        into its own cache as it answers)."""
        fd, name = tempfile.mkstemp(prefix=stem + "_", suffix=".png", dir=self.out_dir)
        os.close(fd)
        with self._files_lock:
            self._files.append(Path(name))
            while len(self._files) > self.keep:
                self._files.popleft().unlink(missing_ok=True)
        return Path(name)

    def mask_file(self, mask: np.ndarray) -> str:
        """``mask`` as a 1-bit PNG (:func:`~repvit.sam.predict.mask_png`) in a fresh file (unique, so written in
        place: nothing reads it before the answer)."""
        path = self.new_file("mask")
        path.write_bytes(mask_png(mask))
        return str(path)

    def read(self, path: str | os.PathLike) -> np.ndarray:
        return _read_photo(self.gr, path, self.max_image_pixels, self.max_image_mb)

    def check(self, points, box, st) -> None:
        """:func:`validate_prompts` on the page's image, as an error shown in the page."""
        try:
            validate_prompts(points, box, st["image"].shape[:2])
        except PromptError as e:
            raise self.gr.Error(str(e)) from None

    # ---- the scripting API
    def api_segment(self, path, points_json, box_json):
        if not path:
            raise self.gr.Error("no image given.")
        image = self.read(path)
        try:  # ValueError: a bad prompt (PromptError), or an embedding over the cache's byte limit
            points, box = parse_points(points_json), parse_box(box_json)
            res = self.session.segment(image, points, box)
        except ValueError as e:
            raise self.gr.Error(str(e)) from None
        return MaskPainter(image).draw(res.mask, points, box), self.mask_file(res.mask), res.score

    def api_segment_all(self, path):
        if not path:
            raise self.gr.Error("no image given.")
        image = self.read(path)
        try:
            masks, _, _ = self.session.segment_all(image, **self.auto_kw)
        except ValueError as e:
            raise self.gr.Error(str(e)) from None
        return masks_overlay(image, masks), len(masks)

    # ---- the page
    def on_upload(self, path):
        if not path:
            return _NO_IMAGE
        image = self.read(path)
        key = image_key(image)
        try:
            emb, fresh = self.session.embed(image, key)
        except ValueError as e:
            raise self.gr.Error(str(e)) from None
        st = {"key": key, "image": image, "painter": MaskPainter(image), "points": [], "box": None, "corner": None,
              "history": [], "encode_ms": emb.encode_ms}
        cached = "" if fresh else " (cached)"
        msg = (f"{image.shape[1]} x {image.shape[0]} image; encode {emb.encode_ms:.0f} ms{cached}. "
               "Click on the photo to add prompts.")
        return st, image, None, msg

    @staticmethod
    def _encode_text(ms: float | None, st: dict[str, Any]) -> str:
        """The encode time of this request, or the first one's when the embedding was reused."""
        return f"encode {ms:.0f} ms" if ms is not None else f"encode {st.get('encode_ms', 0):.0f} ms once, reused"

    def render(self, st, mode, extra=""):
        """The overlay, the mask file and the status line for the state's prompts (or the automatic masks)."""
        image = st["image"]
        if mode == "everything":
            try:
                masks, enc, gen_ms = self.session.segment_all(image, key=st["key"], **self.auto_kw)
            except ValueError as e:
                raise self.gr.Error(str(e)) from None
            return (masks_overlay(image, masks), None,
                    f"{len(masks)} masks; {self._encode_text(enc, st)}, automatic masks {gen_ms:.0f} ms. {extra}")
        if st["corner"] is not None:
            extra = f"Box: click the opposite corner. {extra}"
        if not st["points"] and st["box"] is None:
            return _draw_pending(image, st["corner"]), None, extra or "No prompts."
        try:
            res = self.session.segment(image, st["points"], st["box"], key=st["key"])
        except ValueError as e:
            raise self.gr.Error(str(e)) from None
        t0 = time.perf_counter()
        ov = _draw_pending(st["painter"].draw(res.mask, st["points"], st["box"]), st["corner"])
        ovl_ms = (time.perf_counter() - t0) * 1e3
        path = self.mask_file(res.mask)
        msg = (f"{self._encode_text(res.encode_ms, st)}; decode {res.decode_ms:.0f} ms, overlay {ovl_ms:.0f} ms; "
               f"predicted IoU {res.score:.3f}; {len(st['points'])} point(s){', a box' if st['box'] else ''}. {extra}")
        return ov, path, msg

    def on_click(self, st, mode, background, evt):
        if st is None:
            raise self.gr.Error("upload a photo first.")
        if mode == "everything":  # clicks add no prompts here; keep the automatic masks on screen
            return st, self.gr.update(), self.gr.update(), "Everything mode: choose point or box to add prompts."
        x, y = (float(v) for v in evt.index[:2])
        if mode == "point":
            point = [(x, y, 0 if background else 1)]
            self.check(point, None, st)
            st = {**st, "points": st["points"] + point, "history": st["history"] + ["point"]}
        elif st["corner"] is None:  # box mode: the first corner
            st = {**st, "corner": (x, y)}
        else:
            (ax, ay), st = st["corner"], {**st, "corner": None}
            box = (min(ax, x), min(ay, y), max(ax, x), max(ay, y))
            self.check([], box, st)
            st = {**st, "box": box, "history": [h for h in st["history"] if h != "box"] + ["box"]}
        return (st, *self.render(st, mode))

    def on_undo(self, st, mode):
        if st is None:
            return _NO_IMAGE
        if st["corner"] is not None:
            st = {**st, "corner": None}
        elif st["history"]:
            last, hist = st["history"][-1], st["history"][:-1]
            st = {**st, "history": hist, **({"box": None} if last == "box" else {"points": st["points"][:-1]})}
        return (st, *self.render(st, "point" if mode == "everything" else mode))

    def on_clear(self, st):
        if st is None:
            return _NO_IMAGE
        st = {**st, "points": [], "box": None, "corner": None, "history": []}
        return st, st["image"], None, "Cleared."

    def on_mode(self, st, mode):
        """The page in the new mode: overlay, mask file and status only. The state is not an output, so a click
        handled while this runs (events of one page may run at once) keeps the prompts it added."""
        if st is None:
            return _NO_IMAGE[1:]
        return self.render(st, mode, f"{mode.capitalize()} mode.")


def _blocks_kwargs(gr: Any, title: str) -> tuple[dict[str, Any], Any]:
    """``gr.Blocks``'s keywords and the page's theme (system fonts only: the page works offline)."""
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    kw: dict[str, Any] = {"title": title, "analytics_enabled": False,
                          "delete_cache": (3600, 3600)}  # gradio's copies of served files: an hour
    if "theme" in inspect.signature(gr.Blocks.__init__).parameters:
        kw["theme"] = theme
    return kw, theme


def _header(gr: Any, title: str, note: str | None, everything: bool = True) -> None:
    gr.Markdown(f"## {title}: click on a photo to segment it\n"
                "**point** mode: a click adds a foreground point (tick *background* for a background point). "
                f"**box** mode: two clicks are two corners. {'**everything**: automatic masks. ' if everything else ''}"
                "The image is encoded once; further clicks run only the mask decoder.")
    if note:
        gr.Markdown(f"⚠️ {note}", elem_id="model-note")


def _page_events(gr: Any, page: _Page, private: dict[str, Any]) -> None:
    """The photo, the overlay, the controls and the status line, wired to ``page``'s callbacks (``private``: out of
    the scripting API, in the model's concurrency group)."""
    state = gr.State(None)
    with gr.Row():  # the photo arrives as a file (image_mode None: gradio only opens it) for _read_photo's checks
        photo = gr.Image(label="Photo (click to add prompts)", type="filepath", image_mode=None,
                         sources=["upload", "clipboard"], elem_id="photo")
        # JPEG: gradio encodes the overlay at every click, a 1024 x 768 photo in ~3 ms (PNG: ~270 ms at PIL's level)
        overlay = gr.Image(label="Mask", type="numpy", format="jpeg", interactive=False, elem_id="overlay")
    with gr.Row():
        modes = _MODES if getattr(page.session, "supports_everything", True) else _MODES[:2]
        mode = gr.Radio(list(modes), value="point", label="Mode", elem_id="mode")
        background = gr.Checkbox(False, label="background point (label 0)", elem_id="background")
        undo = gr.Button("Undo", elem_id="undo")
        clear = gr.Button("Clear", elem_id="clear")
    status = gr.Markdown("Upload a photo.", elem_id="status")
    mask_file = gr.File(label="Mask PNG (1-bit black/white, the photo's size)", elem_id="mask-file")

    def on_click(st, mode, background, evt):
        return page.on_click(st, mode, background, evt)

    on_click.__annotations__["evt"] = gr.SelectData  # gradio passes the click by this annotation (a real class)
    outs = [state, overlay, mask_file, status]
    photo.upload(page.on_upload, [photo], outs, **private)
    photo.clear(lambda: _NO_IMAGE, None, outs, **private)
    photo.select(on_click, [state, mode, background], outs, **private)
    overlay.select(on_click, [state, mode, background], outs, **private)
    undo.click(page.on_undo, [state, mode], outs, **private)
    clear.click(page.on_clear, [state], outs, **private)
    mode.change(page.on_mode, [state, mode], outs[1:], **private)


def _api_events(gr: Any, page: _Page, group: dict[str, Any]) -> None:
    """The scripting API (``gradio_client``): ``/segment`` and ``/segment_all`` on hidden components, in the model's
    concurrency ``group``. The image is a file, so that one that is not an image reaches :func:`_read_photo`."""
    with gr.Row(visible=False):
        api_image = gr.File(type="filepath", label="image file")
        api_points = gr.Textbox(label="points JSON [[x, y, label], ...]")
        api_box = gr.Textbox(label="box JSON [x0, y0, x1, y1] or empty")
        api_overlay = gr.Image(type="numpy", format="jpeg", label="overlay")
        api_mask = gr.File(label="mask PNG")
        api_score = gr.Number(label="predicted IoU")
        api_count = gr.Number(label="number of masks", precision=0)
        api_btn = gr.Button("segment")
        api_all_btn = gr.Button("segment all")
    api_btn.click(page.api_segment, [api_image, api_points, api_box], [api_overlay, api_mask, api_score],
                  api_name="segment", **group)
    api_all_btn.click(page.api_segment_all, [api_image], [api_overlay, api_count], api_name="segment_all", **group)


def _image_session(sam: nn.Module | None, session: Any, cache_images: int, cache_mb: float,
                   runtime: str) -> Any:
    if runtime not in ("auto", "torch", "onnxruntime"):
        raise ValueError(f"unknown runtime {runtime!r}: use 'auto', 'torch' or 'onnxruntime'.")
    if session is not None:
        if runtime not in ("auto", "torch"):
            raise ValueError("runtime is for a model passed as sam=...; a session brings its own runtime "
                             "(SamSession(sam, runtime='onnxruntime')).")
        return session
    if sam is None:
        raise ValueError("create_app needs a model (sam=...) or a session (session=...).")
    if cache_mb <= 0:
        raise ValueError(f"cache_mb must be positive, got {cache_mb}")
    if isinstance(sam, EdgeTAM):
        if runtime == "onnxruntime":
            raise ValueError("ONNX Runtime in the app (--backend onnxruntime, runtime='onnxruntime') is for SAM "
                             "models (RepViT-SAM, EdgeSAM); EdgeTAM's image tab runs in PyTorch: leave the option "
                             "out.")
        return EdgeTamSession(sam, cache_size=cache_images, cache_bytes=int(cache_mb * 2**20))
    return SamSession(sam, cache_size=cache_images, cache_bytes=int(cache_mb * 2**20), runtime=runtime)


def create_app(sam: nn.Module | None = None, *, session: SamSession | EdgeTamSession | None = None,
               note: str | None = None, video: VideoSession | None = None, video_note: str | None = None,
               points_per_side: int = 16, pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
               title: str = "RepViT-SAM", cache_images: int = DEFAULT_LIMITS["cache_images"],
               cache_mb: float = DEFAULT_LIMITS["cache_mb"],
               max_image_pixels: int = DEFAULT_LIMITS["max_image_pixels"],
               max_image_mb: float = DEFAULT_LIMITS["max_image_mb"], runtime: str = "auto") -> Any:
    """The Gradio ``Blocks`` of the app (not launched): ``create_app(sam).launch(server_name=..., server_port=...)``.

    Args:
        sam: a ``segment_anything`` ``Sam`` (e.g. :func:`repvit.sam.build_repvit_sam`) or an EdgeTAM
            (:func:`repvit.sam.build_edgetam`); or pass ``session``.
        session: a :class:`SamSession` or :class:`~repvit.sam.sam2.image_session.EdgeTamSession` to share (its
            embedding cache) instead of ``sam``.
        note: a warning shown at the top of the page (e.g. random weights, from :func:`load_app_model`).
        video: a :class:`~repvit.sam.sam2.video_session.VideoSession` for a video tab (none without it).
        video_note: a warning shown in the video tab (e.g. random weights, from :func:`load_video_model`).
        points_per_side, pred_iou_thresh, stability_score_thresh: the "everything" mode's automatic mask generator.
        title: the page title.
        cache_images, cache_mb: the embedding cache's bounds, in images and in MB (with ``sam``; a ``session``
            brings its own cache).
        max_image_pixels, max_image_mb: the largest photo accepted, in pixels (width x height) and in MB.
        runtime: where a SAM model (``sam``) encodes photos and decodes clicks: ``"auto"`` (ONNX Runtime when it is
            installed and the model is on the CPU, else PyTorch; EdgeTAM: PyTorch), ``"torch"`` or ``"onnxruntime"``
            (the encoder and the per-click decoder exported here, once, about 6 s for EdgeSAM at 1024 px;
            :class:`SamSession`'s ``runtime``).
    """
    gr = require("gradio", "the RepViT-SAM app")
    if max_image_pixels < 1 or max_image_mb <= 0:
        raise ValueError(f"max_image_pixels and max_image_mb must be positive, got {max_image_pixels} and "
                         f"{max_image_mb}")
    session = _image_session(sam, session, cache_images, cache_mb, runtime)
    page = _Page(gr, session, dict(points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                                   stability_score_thresh=stability_score_thresh), max_image_pixels, max_image_mb)
    group = {"concurrency_id": _MODEL_GROUP}
    private = {**_private_kwargs(gr), **group}
    blocks_kw, theme = _blocks_kwargs(gr, title)
    with gr.Blocks(**blocks_kw) as demo:
        demo.repvit_theme = theme  # launch_app passes it to launch() on gradio versions that take it there
        _header(gr, title, note, getattr(session, "supports_everything", True))
        if video is None:
            _page_events(gr, page, private)
        else:
            vpage = VideoPage(gr, video)
            with gr.Tabs():
                with gr.Tab("Image", elem_id="image-tab"):
                    _page_events(gr, page, private)
                with gr.Tab("Video", elem_id="video-tab"):
                    video_tab(gr, vpage, private, video_note)
            video_api(gr, vpage, group)
        _api_events(gr, page, group)
    demo.repvit_session = session
    demo.repvit_video = video
    demo.repvit_max_upload_mb = max(max_image_mb, video.max_mb if video is not None else 0.0)
    return demo


def launch_app(demo: Any, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False,
               max_queue: int = DEFAULT_LIMITS["max_queue"], concurrency: int = DEFAULT_LIMITS["concurrency"],
               max_sessions: int = DEFAULT_LIMITS["max_sessions"], **kwargs: Any) -> Any:
    """Launch ``create_app``'s Blocks on ``host:port`` (no share link, no analytics); returns what ``launch`` does.

    Args:
        max_queue: requests that may wait for the model; one more is refused at once with Gradio's "queue is full".
        concurrency: requests that run the model at once (every model event is in one concurrency group).
        max_sessions: browser tabs whose state (the photo and its prompts) is kept; the least recently used beyond.
        kwargs: more ``Blocks.launch`` keywords. Uploads over the largest limit of the photo and the video (create_app's
            ``max_image_mb``, the video session's ``max_mb``) are refused while uploading (``max_file_size``).
    """
    gr = require("gradio", "the RepViT-SAM app")
    if max_queue < 1 or concurrency < 1 or max_sessions < 1:
        raise ValueError(f"max_queue, concurrency and max_sessions must be at least 1, got {max_queue}, "
                         f"{concurrency} and {max_sessions}")
    demo.queue(max_size=max_queue, default_concurrency_limit=concurrency)
    params = inspect.signature(gr.Blocks.launch).parameters
    kw: dict[str, Any] = {"server_name": host, "server_port": port, "share": False, "prevent_thread_lock": not block,
                          "quiet": quiet, "show_error": True, "state_session_capacity": max_sessions}
    if getattr(demo, "repvit_max_upload_mb", None) and "max_file_size" in params:
        kw["max_file_size"] = int(demo.repvit_max_upload_mb * 2**20)
    if "theme" in params and getattr(demo, "repvit_theme", None) is not None:
        kw["theme"] = demo.repvit_theme
    if "ssr_mode" in params:
        kw["ssr_mode"] = False
    kw.update(kwargs)
    return demo.launch(**kw)
