"""``repvit sam app``: a Gradio page to click on a photo and get a RepViT-SAM mask.

The image embedding is computed once per image and kept in a small per-app LRU keyed by a hash of the pixels
(:class:`~repvit.sam.session.SamSession`, which holds all the model-side logic), so every further click runs only SAM's
prompt encoder and mask decoder. The model itself is never mutated after loading; each request gets its own
``SamPredictor`` view of the cached embedding.

Scripting (``gradio_client``)::

    from gradio_client import Client, handle_file
    c = Client("http://127.0.0.1:7860/")
    overlay, mask_png, score = c.predict(handle_file("photo.jpg"), "[[500, 375, 1]]", "", api_name="/segment")
    overlay, n_masks = c.predict(handle_file("photo.jpg"), api_name="/segment_all")

Prompts are in image pixels: points ``[[x, y, label], ...]`` (label 1 foreground, 0 background), a box
``[x0, y0, x1, y1]`` or ``""``. A single point alone returns the best of SAM's three candidates, as
``repvit sam predict``.
"""

from __future__ import annotations

import inspect
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from .session import (  # noqa: F401 - the session's names lived here first and are still imported from here
    ImageEmbedding,
    PromptError,
    SamSession,
    SegmentResult,
    check_prompts,
    image_key,
    parse_box_json,
    parse_points_json,
    time_click,
)
from .session import __all__ as _SESSION_NAMES

__all__ = [*_SESSION_NAMES, "load_app_model", "create_app", "launch_app", "require_gradio", "DEFAULT_CHECKPOINT"]

DEFAULT_CHECKPOINT = "edge_sam"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin")
_MODES = ("point", "box", "everything")


def require_gradio(purpose: str = "the RepViT-SAM app") -> Any:
    """Import ``gradio`` or raise an ImportError naming the ``app`` extra."""
    try:
        import gradio
    except ImportError as e:
        raise ImportError(f"gradio is needed for {purpose} but is not installed: pip install 'repvit-pytorch[app]'") \
            from e
    return gradio


# ----------------------------------------------------------------------------------------------------- model


def load_app_model(checkpoint: str | os.PathLike | None = DEFAULT_CHECKPOINT, fused: bool = True,
                   ) -> tuple[nn.Module, str | None]:
    """The app's model and, when it has random weights, a note saying why.

    An existing file is loaded strictly (errors propagate). A name (``edge_sam``, ...) is passed to
    :func:`repvit.sam.build_repvit_sam`; when it cannot be had (unknown, not cached, offline) the model is the
    ``edge_sam`` variant (or ``repvit_sam_m0_9`` where there is none) with random weights, and the note says so.
    A path that looks like a file (a separator or a checkpoint suffix) and does not exist is an error.
    """
    from repvit.sam import EDGE_SAM_VARIANTS, SAM_VARIANTS, build_repvit_sam

    if checkpoint is not None:
        path = Path(checkpoint)
        looks_like_path = os.sep in str(checkpoint) or path.suffix in _CHECKPOINT_SUFFIXES
        if path.is_file() or looks_like_path:
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint file {path} does not exist; pass an existing file or a "
                                        f"checkpoint name such as {DEFAULT_CHECKPOINT!r}.")
            return build_repvit_sam(path, fused=fused), None
        try:
            return build_repvit_sam(str(checkpoint), fused=fused), None
        except Exception as e:  # noqa: BLE001 - any failure to get a named checkpoint falls back to random weights
            reason = f"checkpoint {str(checkpoint)!r} could not be loaded ({type(e).__name__}: {e})"
    else:
        reason = "no checkpoint given"
    variant = "edge_sam" if "edge_sam" in {**SAM_VARIANTS, **EDGE_SAM_VARIANTS} else "repvit_sam_m0_9"
    sam = build_repvit_sam(variant=variant, fused=fused)
    return sam, (f"{reason}; using {variant} with RANDOM weights, so the masks are meaningless. Pass "
                 "--checkpoint with a RepViT-SAM file (repvit_sam.pt, a .safetensors from save_repvit_sam or a "
                 "distillation) for real masks.")


# ----------------------------------------------------------------------------------------------------- gradio app


def _private_kwargs(gr: Any) -> dict[str, Any]:
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


def _draw_pending(overlay: np.ndarray, corner: tuple[float, float] | None) -> np.ndarray:
    """Mark the first corner of a box being drawn (a yellow square)."""
    if corner is None:
        return overlay
    from PIL import Image, ImageDraw

    pil = Image.fromarray(overlay)
    r = max(3, round(max(overlay.shape[:2]) / 150))
    x, y = corner
    ImageDraw.Draw(pil).rectangle((x - r, y - r, x + r, y + r), outline=(255, 215, 0), width=max(2, r // 2))
    return np.asarray(pil)


def create_app(sam: nn.Module | None = None, *, session: SamSession | None = None, note: str | None = None,
               points_per_side: int = 16, pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
               title: str = "RepViT-SAM") -> Any:
    """The Gradio ``Blocks`` of the app (not launched): ``create_app(sam).launch(server_name=..., server_port=...)``.

    Args:
        sam: a ``segment_anything`` ``Sam`` (e.g. :func:`repvit.sam.build_repvit_sam`); or pass ``session``.
        session: a :class:`SamSession` to share (its embedding cache) instead of ``sam``.
        note: a warning shown at the top of the page (e.g. random weights, from :func:`load_app_model`).
        points_per_side, pred_iou_thresh, stability_score_thresh: the "everything" mode's automatic mask generator.
        title: the page title.
    """
    gr = require_gradio()
    from .predict import mask_overlay, masks_overlay, save_png

    if session is None:
        if sam is None:
            raise ValueError("create_app needs a model (sam=...) or a SamSession (session=...).")
        session = SamSession(sam)
    out_dir = Path(tempfile.mkdtemp(prefix="repvit_sam_app_"))
    private = _private_kwargs(gr)
    auto_kw = dict(points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                   stability_score_thresh=stability_score_thresh)

    def new_file(stem: str, keep: int = 64) -> Path:
        """A fresh PNG path in the app's folder; only the newest ``keep`` files stay (gradio copies what it serves)."""
        old = sorted(out_dir.glob("*.png"), key=lambda f: f.stat().st_mtime)
        for f in old[:max(0, len(old) - keep)]:
            f.unlink(missing_ok=True)
        fd, name = tempfile.mkstemp(prefix=stem + "_", suffix=".png", dir=out_dir)
        os.close(fd)
        return Path(name)

    def enc_text(ms: float | None, st: dict[str, Any]) -> str:
        """The encode time of this request, or the first one's when the embedding was reused."""
        return f"encode {ms:.0f} ms" if ms is not None else f"encode {st.get('encode_ms', 0):.0f} ms once, reused"

    # ---- the scripting API
    def api_segment(image, points_json, box_json):
        try:
            if image is None:
                raise PromptError("no image given.")
            points, box = parse_points_json(points_json), parse_box_json(box_json)
            res = session.segment(image, points, box)
        except PromptError as e:
            raise gr.Error(str(e)) from None
        mask_path = save_png(res.mask, new_file("mask"))
        return mask_overlay(image, res.mask, points, box), str(mask_path), res.score

    def api_segment_all(image):
        if image is None:
            raise gr.Error("no image given.")
        try:
            masks, _, _ = session.segment_all(image, **auto_kw)
        except PromptError as e:
            raise gr.Error(str(e)) from None
        return masks_overlay(image, masks), len(masks)

    # ---- the page
    def on_upload(image):
        if image is None:
            return None, None, None, "Upload a photo."
        key = image_key(image)
        emb, fresh = session.embed(image, key)
        st = {"key": key, "image": image, "points": [], "box": None, "corner": None, "history": [],
              "encode_ms": emb.encode_ms}
        cached = "" if fresh else " (cached)"
        msg = (f"{image.shape[1]} x {image.shape[0]} image; encode {emb.encode_ms:.0f} ms{cached}. "
               "Click on the photo to add prompts.")
        return st, image, None, msg

    def render(st, mode, extra=""):
        image = st["image"]
        if mode == "everything":
            masks, enc, gen_ms = session.segment_all(image, key=st["key"], **auto_kw)
            return (masks_overlay(image, masks), None,
                    f"{len(masks)} masks; {enc_text(enc, st)}, automatic masks {gen_ms:.0f} ms. {extra}")
        if st["corner"] is not None:
            extra = f"Box: click the opposite corner. {extra}"
        if not st["points"] and st["box"] is None:
            return _draw_pending(image, st["corner"]), None, extra or "No prompts."
        try:
            res = session.segment(image, st["points"], st["box"], key=st["key"])
        except PromptError as e:
            raise gr.Error(str(e)) from None
        t0 = time.perf_counter()
        ov = _draw_pending(mask_overlay(image, res.mask, st["points"], st["box"]), st["corner"])
        ovl_ms = (time.perf_counter() - t0) * 1e3
        path = str(save_png(res.mask, new_file("mask")))
        msg = (f"{enc_text(res.encode_ms, st)}; decode {res.decode_ms:.0f} ms, overlay {ovl_ms:.0f} ms; "
               f"predicted IoU {res.score:.3f}; {len(st['points'])} point(s){', a box' if st['box'] else ''}. {extra}")
        return ov, path, msg

    def on_click(st, mode, background, evt: gr.SelectData):
        if st is None:
            raise gr.Error("upload a photo first.")
        if mode == "everything":  # clicks add no prompts here; keep the automatic masks on screen
            return st, gr.update(), gr.update(), "Everything mode: choose point or box to add prompts."
        x, y = (float(v) for v in evt.index[:2])
        h, w = st["image"].shape[:2]
        if mode == "point":
            check = [(x, y, 0 if background else 1)]
            try:
                check_prompts(check, None, w, h)
            except PromptError as e:
                raise gr.Error(str(e)) from None
            st = {**st, "points": st["points"] + check, "history": st["history"] + ["point"]}
        elif mode == "box":
            if st["corner"] is None:
                st = {**st, "corner": (x, y)}
            else:
                (ax, ay), st = st["corner"], {**st, "corner": None}
                box = (min(ax, x), min(ay, y), max(ax, x), max(ay, y))
                try:
                    check_prompts([], box, w, h)
                except PromptError as e:
                    raise gr.Error(str(e)) from None
                st = {**st, "box": box, "history": [h for h in st["history"] if h != "box"] + ["box"]}
        return (st, *render(st, mode))

    on_click.__annotations__["evt"] = gr.SelectData  # a real class (this module's annotations are strings)

    def on_undo(st, mode):
        if st is None:
            return None, None, None, "Upload a photo."
        if st["corner"] is not None:
            st = {**st, "corner": None}
        elif st["history"]:
            last, hist = st["history"][-1], st["history"][:-1]
            st = {**st, "history": hist, **({"box": None} if last == "box" else {"points": st["points"][:-1]})}
        return (st, *render(st, "point" if mode == "everything" else mode))

    def on_clear(st):
        if st is None:
            return None, None, None, "Upload a photo."
        st = {**st, "points": [], "box": None, "corner": None, "history": []}
        return st, st["image"], None, "Cleared."

    def on_mode(st, mode):
        if st is None:
            return None, None, None, "Upload a photo."
        return (st, *render(st, mode))

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: the page works offline
    blocks_kw: dict[str, Any] = {"title": title, "analytics_enabled": False,
                                 "delete_cache": (3600, 3600)}  # gradio's copies of served files: an hour
    if "theme" in inspect.signature(gr.Blocks.__init__).parameters:
        blocks_kw["theme"] = theme
    with gr.Blocks(**blocks_kw) as demo:
        demo.repvit_theme = theme  # launch_app passes it to launch() on gradio versions that take it there
        gr.Markdown(f"## {title}: click on a photo to segment it\n"
                    "**point** mode: a click adds a foreground point (tick *background* for a background point). "
                    "**box** mode: two clicks are two corners. **everything**: automatic masks. The image is "
                    "encoded once; further clicks run only the mask decoder.")
        if note:
            gr.Markdown(f"⚠️ {note}", elem_id="model-note")
        state = gr.State(None)
        with gr.Row():
            photo = gr.Image(label="Photo (click to add prompts)", type="numpy", sources=["upload", "clipboard"],
                             elem_id="photo")
            overlay = gr.Image(label="Mask", type="numpy", format="png", interactive=False, elem_id="overlay")
        with gr.Row():
            mode = gr.Radio(list(_MODES), value="point", label="Mode", elem_id="mode")
            background = gr.Checkbox(False, label="background point (label 0)", elem_id="background")
            undo = gr.Button("Undo", elem_id="undo")
            clear = gr.Button("Clear", elem_id="clear")
        status = gr.Markdown("Upload a photo.", elem_id="status")
        mask_file = gr.File(label="Mask PNG (0/255, the photo's size)", elem_id="mask-file")

        outs = [state, overlay, mask_file, status]
        photo.upload(on_upload, [photo], outs, **private)
        photo.clear(lambda: (None, None, None, "Upload a photo."), None, outs, **private)
        photo.select(on_click, [state, mode, background], outs, **private)
        overlay.select(on_click, [state, mode, background], outs, **private)
        undo.click(on_undo, [state, mode], outs, **private)
        clear.click(on_clear, [state], outs, **private)
        mode.change(on_mode, [state, mode], outs, **private)

        with gr.Row(visible=False):  # the scripting API (gradio_client)
            api_image = gr.Image(type="numpy", label="image")
            api_points = gr.Textbox(label="points JSON [[x, y, label], ...]")
            api_box = gr.Textbox(label="box JSON [x0, y0, x1, y1] or empty")
            api_overlay = gr.Image(type="numpy", format="png", label="overlay")
            api_mask = gr.File(label="mask PNG")
            api_score = gr.Number(label="predicted IoU")
            api_count = gr.Number(label="number of masks", precision=0)
            api_btn = gr.Button("segment")
            api_all_btn = gr.Button("segment all")
        api_btn.click(api_segment, [api_image, api_points, api_box], [api_overlay, api_mask, api_score],
                      api_name="segment")
        api_all_btn.click(api_segment_all, [api_image], [api_overlay, api_count], api_name="segment_all")
    demo.repvit_session = session
    return demo


def launch_app(demo: Any, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False,
               **kwargs: Any) -> Any:
    """Launch ``create_app``'s Blocks on ``host:port`` (no share link, no analytics); returns what ``launch`` does."""
    import gradio as gr

    params = inspect.signature(gr.Blocks.launch).parameters
    kw: dict[str, Any] = {"server_name": host, "server_port": port, "share": False, "prevent_thread_lock": not block,
                          "quiet": quiet, "show_error": True}
    if "theme" in params and getattr(demo, "repvit_theme", None) is not None:
        kw["theme"] = demo.repvit_theme
    if "ssr_mode" in params:
        kw["ssr_mode"] = False
    kw.update(kwargs)
    return demo.launch(**kw)
