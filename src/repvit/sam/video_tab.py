"""The video tab of ``repvit sam app``: upload a short video, pick a frame, click on an object, press Track; EdgeTAM
follows it through the video (an overlay GIF) and the masks download as a zip of per-frame 0/255 PNGs.

All model-side work is :class:`~repvit.sam.sam2.video_session.VideoSession`'s; this module only wires it to Gradio.
Scripting (``gradio_client``)::

    overlay_gif, masks_zip, frames = c.predict(handle_file("clip.mp4"), 0, "[[320, 240, 1]]", api_name="/track_video")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .predict import mask_overlay
from .prompts import PromptError, parse_points
from .sam2.video_session import VideoError, VideoSession

__all__ = ["VideoPage", "video_tab", "video_api"]


class VideoPage:
    """The tab's callbacks on one :class:`VideoSession`. The page state is a dict per browser tab: the video's
    :class:`~repvit.sam.sam2.video_session.VideoInfo`, the frame shown and the points clicked on it."""

    def __init__(self, gr: Any, session: VideoSession):
        self.gr, self.session = gr, session

    def _error(self, e: Exception) -> Exception:
        return self.gr.Error(str(e))

    def on_upload(self, path):
        if not path:
            return None, self.gr.update(value=0, maximum=1), None, None, None, "Upload a video."
        try:
            info = self.session.open(path)
            frame = self.session.frame(info, 0)
        except (VideoError, ImportError) as e:
            raise self._error(e) from None
        st = {"info": info, "frame_idx": 0, "points": []}
        fps = f", {info.fps:.3g} fps" if info.fps else ""
        msg = (f"{info.num_frames} frames, {info.width} x {info.height}{fps}. Pick a frame, click on the object, "
               "then press Track.")
        return st, self.gr.update(value=0, maximum=max(1, info.num_frames - 1)), frame, None, None, msg

    def _shown(self, st) -> np.ndarray:
        frame = self.session.frame(st["info"], st["frame_idx"])
        return mask_overlay(frame, np.zeros(frame.shape[:2], bool), st["points"]) if st["points"] else frame

    def on_frame(self, st, index):
        if st is None:
            return None, self.gr.update(), "Upload a video first."
        index = int(index)
        if index == st["frame_idx"]:
            return st, self.gr.update(), self.gr.update()
        try:
            self.session.check_frame(st["info"], index)
        except VideoError as e:
            raise self._error(e) from None
        st = {**st, "frame_idx": index, "points": []}  # clicks belong to the frame they were made on
        return st, self._shown(st), f"Frame {index}. Click on the object to track."

    def on_click(self, st, background, evt):
        if st is None:
            raise self.gr.Error("upload a video first.")
        x, y = (float(v) for v in evt.index[:2])
        point = (x, y, 0 if background else 1)
        try:
            self.session.check_click(st["info"], st["frame_idx"], [point])
        except (VideoError, PromptError) as e:
            raise self._error(e) from None
        st = {**st, "points": st["points"] + [point]}
        n = len(st["points"])
        return st, self._shown(st), f"Frame {st['frame_idx']}: {n} point(s). Press Track."

    def on_clear(self, st):
        if st is None:
            return None, None, "Upload a video."
        st = {**st, "points": []}
        return st, self._shown(st), "Points cleared."

    def on_track(self, st):
        if st is None:
            raise self.gr.Error("upload a video first.")
        try:
            res = self.session.track(st["info"], st["frame_idx"], st["points"])
        except (VideoError, PromptError) as e:
            raise self._error(e) from None
        per = res.track_ms / max(1, res.num_frames)
        seen = sum(a > 0 for a in res.areas)
        msg = (f"Tracked {res.num_frames} frames from frame {res.frame_idx} in {res.track_ms / 1e3:.1f} s "
               f"({per:.0f} ms per frame); the object is found in {seen} of them.")
        return str(res.overlay), str(res.masks_zip), msg

    def api_track(self, path, frame_idx, points_json):
        if not path:
            raise self.gr.Error("no video given.")
        try:
            points = parse_points(points_json)
            res = self.session.track(Path(path), int(frame_idx), points)
        except (VideoError, PromptError) as e:
            raise self._error(e) from None
        return str(res.overlay), str(res.masks_zip), res.num_frames


def video_tab(gr: Any, page: VideoPage, private: dict[str, Any], note: str | None = None) -> None:
    """The tab's components wired to ``page``'s callbacks (``private`` keeps them out of the scripting API)."""
    s = page.session
    gr.Markdown(f"Upload a short video (at most {s.max_frames} frames and {s.max_mb:g} MB), pick a frame, click on "
                "the object and press **Track**: EdgeTAM follows it forwards and backwards through the video.")
    if note:
        gr.Markdown(f"⚠️ {note}", elem_id="video-model-note")
    state = gr.State(None)
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Video (MP4, WebM, MOV, AVI, GIF, ...)", type="filepath", elem_id="video-file")
            index = gr.Slider(0, 1, value=0, step=1, label="Frame", elem_id="video-frame-index")
            frame = gr.Image(label="Frame (click on the object)", type="numpy", interactive=False,
                             elem_id="video-frame")
            with gr.Row():
                background = gr.Checkbox(False, label="background point (label 0)", elem_id="video-background")
                clear = gr.Button("Clear points", elem_id="video-clear")
                track = gr.Button("Track", variant="primary", elem_id="track")
        with gr.Column():
            overlay = gr.Image(label="Tracked object (every frame)", type="filepath", interactive=False,
                               elem_id="video-overlay")
            masks = gr.File(label="Masks: a zip of 0/255 PNGs, one per frame, the video's size",
                            elem_id="video-masks")
    status = gr.Markdown("Upload a video.", elem_id="video-status")

    def on_click(st, background, evt):
        return page.on_click(st, background, evt)

    on_click.__annotations__["evt"] = gr.SelectData  # gradio passes the click by this annotation (a real class)
    upload.upload(page.on_upload, [upload], [state, index, frame, overlay, masks, status], **private)
    upload.clear(lambda: page.on_upload(None), None, [state, index, frame, overlay, masks, status], **private)
    index.change(page.on_frame, [state, index], [state, frame, status], **private)
    frame.select(on_click, [state, background], [state, frame, status], **private)
    clear.click(page.on_clear, [state], [state, frame, status], **private)
    track.click(page.on_track, [state], [overlay, masks, status], **private)


def video_api(gr: Any, page: VideoPage, events: dict[str, Any] | None = None) -> None:
    """``/track_video`` for ``gradio_client``: (video file, frame index, points JSON) -> (overlay GIF, masks zip,
    number of frames); ``events``: more keywords of the event (e.g. its concurrency group)."""
    with gr.Row(visible=False):
        video = gr.File(label="video file", type="filepath")
        frame_idx = gr.Number(0, label="frame index", precision=0)
        points = gr.Textbox(label="points JSON [[x, y, label], ...] on that frame")
        overlay = gr.File(label="overlay GIF")
        masks = gr.File(label="masks zip")
        count = gr.Number(label="frames tracked", precision=0)
        btn = gr.Button("track video")
    btn.click(page.api_track, [video, frame_idx, points], [overlay, masks, count], api_name="track_video",
              **(events or {}))
