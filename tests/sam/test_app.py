"""``repvit sam app``: the session (embedding cache, decoder-only clicks) against segment_anything's ``SamPredictor``
and ``SamAutomaticMaskGenerator``, and EdgeTAM's session against ``EdgeTamImagePredictor``; the Gradio app (an image
tab and a video tab) launched in-process on 127.0.0.1 and driven by ``gradio_client`` (``/segment``,
``/segment_all``, ``/track_video``) and by a headless Chromium (Playwright): upload a photo, click, see the mask;
upload a video, click on a frame, press Track, see the tracked object and the masks to download.

The browser test writes its screenshot to ``$REPVIT_SAM_APP_SCREENSHOT`` when set (``make docs-sam-app`` regenerates
``docs/img/sam_app.png`` that way), else to pytest's tmp dir (the path is printed).
"""

import contextlib
import importlib.util
import json
import os
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repvit.sam.app import load_app_model
from repvit.sam.prompts import PromptError, parse_box, parse_points, validate_prompts
from repvit.sam.session import SamSession
from tests.sam.sam2._helpers import small_video_predictor, write_video

CHROMIUM = os.environ.get("REPVIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def _reference(sam, image, points=(), box=None, multimask=False):
    """segment_anything's own predictor: the chosen mask and score."""
    from segment_anything import SamPredictor

    p = SamPredictor(sam)
    p.set_image(image)
    coords = np.array([[x, y] for x, y, _ in points], np.float32) if points else None
    labels = np.array([lab for _, _, lab in points]) if points else None
    masks, scores, _ = p.predict(point_coords=coords, point_labels=labels,
                                 box=None if box is None else np.asarray(box, np.float32), multimask_output=multimask)
    best = int(np.argmax(scores))
    return masks[best], float(scores[best])


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


# ------------------------------------------------------------------------------------------------- the session


def test_session_matches_sam_predictor_and_reuses_the_embedding(small_sam, astronaut):
    s = SamSession(small_sam)
    point = [(250.0, 150.0, 1)]
    first = s.segment(astronaut, point)
    assert first.encode_ms is not None and first.encode_ms > 0  # encoded now
    ref_mask, ref_score = _reference(small_sam, astronaut, point, multimask=True)  # one point: best of three
    assert np.array_equal(first.mask, ref_mask) and first.score == pytest.approx(ref_score, rel=1e-5, abs=1e-6)

    calls = []
    hook = small_sam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        prompts = dict(points=[(250.0, 150.0, 1), (300.0, 420.0, 0)], box=(100.0, 30.0, 420.0, 500.0))
        again = s.segment(astronaut, **prompts)
        assert again.encode_ms is None and calls == []  # the cached embedding: the encoder did not run
    finally:
        hook.remove()
    ref_mask, ref_score = _reference(small_sam, astronaut, **prompts)
    assert np.array_equal(again.mask, ref_mask) and again.score == pytest.approx(ref_score, rel=1e-5, abs=1e-6)
    other = astronaut[::2, ::2].copy()  # another image: a new embedding
    assert s.segment(other, point).encode_ms is not None


def test_session_everything_equals_the_automatic_mask_generator(small_sam, astronaut):
    from segment_anything import SamAutomaticMaskGenerator

    kw = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    s = SamSession(small_sam)
    s.embed(astronaut)
    masks, enc_ms, _ = s.segment_all(astronaut, **kw)
    assert enc_ms is None  # the generator used the cached embedding
    ref = sorted(SamAutomaticMaskGenerator(small_sam, **kw).generate(astronaut), key=lambda m: m["area"], reverse=True)
    assert len(masks) == len(ref) > 0
    for m, r in zip(masks, ref):
        assert np.array_equal(m["segmentation"], r["segmentation"])


def test_click_timing(small_sam, astronaut):
    t = SamSession(small_sam).click_ms(astronaut, (250, 150, 1), repeats=2, warmup=1)
    assert t["click_ms"] == pytest.approx(t["decode_ms"] + t["overlay_ms"], rel=0.5) and t["decode_ms"] > 0


def test_prompt_checks():
    validate_prompts([(0, 0, 1), (512, 400, 0)], (0, 0, 512, 400), (400, 512))  # the edges are inside
    for points, box, what in [([(513, 10, 1)], None, "outside"), ([(-1, 10, 1)], None, "outside"),
                              ([(10, 10, 2)], None, "label"), ([], (10, 10, 5, 50), "X0 < X1"),
                              ([], (10, 10, 50, 10), "Y0 < Y1"), ([], (0, 0, 600, 50), "outside")]:
        with pytest.raises(PromptError, match=what):
            validate_prompts(points, box, (400, 512))
    assert parse_points("[[1, 2, 0], [3.5, 4]]") == [(1.0, 2.0, 0), (3.5, 4.0, 1)]
    assert parse_points("") == [] and parse_box("") is None and parse_box("null") is None
    assert parse_box("[1, 2, 3, 4]") == (1.0, 2.0, 3.0, 4.0)
    for bad in ("[[1, 2, 5]]", "[1, 2]", "nope"):
        with pytest.raises(PromptError):
            parse_points(bad)
    with pytest.raises(PromptError):
        parse_box("[1, 2, 3]")


def test_load_app_model_falls_back_to_random_weights_with_a_note(tmp_path):
    sam, note = load_app_model("no_such_checkpoint_name", fused=True)
    assert "RANDOM weights" in note and "no_such_checkpoint_name" in note
    from repvit.sam import is_fused_sam

    assert is_fused_sam(sam)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_app_model(tmp_path / "missing.safetensors")


def test_cli_app_with_a_missing_checkpoint_file_is_a_one_line_error(tmp_path, capsys):
    from repvit.cli.main import main

    pytest.importorskip("gradio", reason="the app needs gradio: pip install 'repvit-pytorch[app]'")
    assert main(["sam", "app", "--checkpoint", str(tmp_path / "missing.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and len(err.strip().splitlines()) == 1


def test_cli_app_takes_device_like_every_command(capsys):
    from repvit.cli.main import main

    with pytest.raises(SystemExit):
        main(["sam", "app", "--help"])
    assert "--device" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["sam", "app", "--device", "tpu"])
    assert e.value.code == 2 and "auto" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_edgetam():
    """EdgeTAM with random weights at a 256 px input (the architecture of the published model, fewer pixels)."""
    from repvit.sam.sam2 import EdgeTamConfig, build_edgetam

    torch.manual_seed(0)
    return build_edgetam(config=EdgeTamConfig(image_size=256))


def test_edgetam_session_matches_its_image_predictor_and_reuses_the_embedding(small_edgetam, astronaut):
    from repvit.sam.sam2 import EdgeTamImagePredictor
    from repvit.sam.sam2.image_session import EdgeTamSession

    s = EdgeTamSession(small_edgetam)
    ref = EdgeTamImagePredictor(small_edgetam)
    ref.set_image(astronaut)
    first = s.segment(astronaut, [(250.0, 150.0, 1)])
    assert first.encode_ms is not None and first.encode_ms > 0
    masks, scores, _ = ref.predict(np.array([[250.0, 150.0]]), np.array([1]), multimask_output=True)
    best = int(np.argmax(scores))  # one point alone: the best of three, as the SAM session
    assert np.array_equal(first.mask, masks[best]) and first.score == pytest.approx(float(scores[best]), rel=1e-5)
    calls = []
    hook = small_edgetam.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = s.segment(astronaut, [(250.0, 150.0, 1), (300.0, 420.0, 0)], (100.0, 30.0, 420.0, 500.0))
    finally:
        hook.remove()
    assert again.encode_ms is None and calls == []  # the click decoded on the cached embedding
    masks, scores, _ = ref.predict(np.array([[250.0, 150.0], [300.0, 420.0]]), np.array([1, 0]),
                                   box=np.array([100.0, 30.0, 420.0, 500.0]), multimask_output=False)
    assert np.array_equal(again.mask, masks[0]) and again.score == pytest.approx(float(scores[0]), rel=1e-5)
    with pytest.raises(PromptError, match="outside the image"):
        s.segment(astronaut, [(600.0, 10.0, 1)])
    with pytest.raises(PromptError, match="everything mode"):
        s.segment_all(astronaut)


def test_create_app_with_edgetam_has_no_everything_mode(small_edgetam):
    pytest.importorskip("gradio", reason="the app needs gradio: pip install 'repvit-pytorch[app]'")
    from repvit.sam.app import create_app
    from repvit.sam.sam2.image_session import EdgeTamSession

    demo = create_app(small_edgetam, title="EdgeTAM")
    assert isinstance(demo.repvit_session, EdgeTamSession) and demo.repvit_video is None
    radios = [c["props"] for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "mode"]
    assert [[ch[0] for ch in r["choices"]] for r in radios] == [["point", "box"]]


def test_create_app_runs_in_onnx_runtime_by_default(small_sam, small_edgetam, astronaut):
    pytest.importorskip("gradio", reason="the app needs gradio: pip install 'repvit-pytorch[app]'")
    pytest.importorskip("onnxruntime")
    from repvit.cli.main import main
    from repvit.sam.app import create_app

    for runtime in ("onnxruntime", "auto"):  # auto: ONNX Runtime, installed here, for a model on the CPU
        assert create_app(small_sam, runtime=runtime).repvit_session.runtime == "onnxruntime"
    assert create_app(small_sam, runtime="torch").repvit_session.runtime == "torch"
    assert create_app(small_edgetam).repvit_session.__class__.__name__ == "EdgeTamSession"  # auto: PyTorch
    session = create_app(small_sam).repvit_session
    points = [(120.0, 90.0, 1)]
    got = session.segment(astronaut, points)
    ref_mask, ref_score = _reference(small_sam, astronaut, points, multimask=True)
    assert got.score == pytest.approx(ref_score, abs=1e-5)
    assert _iou(got.mask, ref_mask) >= 0.999
    with pytest.raises(ValueError, match="EdgeTAM"):
        create_app(small_edgetam, runtime="onnxruntime")
    with pytest.raises(ValueError, match="brings its own runtime"):
        create_app(session=SamSession(small_sam), runtime="onnxruntime")
    with pytest.raises(ValueError, match="unknown runtime"):
        create_app(small_sam, runtime="tensorrt")
    with pytest.raises(SystemExit):
        main(["sam", "app", "--backend", "tensorrt"])


def test_mode_change_leaves_the_prompts_state_alone(small_sam):
    """A mode change re-renders the page but does not write the state: a click handled at the same time (one page's
    events may run at once) keeps its prompt, whichever finishes last."""
    pytest.importorskip("gradio", reason="the app needs gradio: pip install 'repvit-pytorch[app]'")
    from repvit.sam.app import create_app

    cfg = create_app(small_sam, runtime="torch").config
    types = {c["id"]: c["type"] for c in cfg["components"]}
    (mode,) = [c["id"] for c in cfg["components"] if c.get("props", {}).get("elem_id") == "mode"]
    (dep,) = [d for d in cfg["dependencies"] if any(t[0] == mode for t in d["targets"])]
    assert [types[o] for o in dep["outputs"]] == ["image", "file", "markdown"]
    clicks = [d for d in cfg["dependencies"] if any(t[1] == "select" for t in d["targets"])]
    assert clicks and all(types[d["outputs"][0]] == "state" for d in clicks)  # a click does write it


def test_page_mask_folder_goes_with_the_page():
    import gc

    from repvit.sam.app import _Page

    page = _Page(None, None, {}, max_image_pixels=1, max_image_mb=1.0, keep=2)
    files = [page.new_file("mask") for _ in range(3)]
    assert [f.exists() for f in files] == [False, True, True]  # only the newest `keep` stay
    folder = page.out_dir
    del page
    gc.collect()  # a page is dropped with its app; at exit the same finalizer runs
    assert not folder.exists()


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No cached weights and no downloads: empty caches, offline."""
    from huggingface_hub import constants as hf_constants

    monkeypatch.setenv("REPVIT_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_load_app_model_takes_edgetam_by_file_or_name(tmp_path, no_weights):
    from repvit.sam.app import load_app_model, load_video_model
    from repvit.sam.sam2 import EdgeTAM, EdgeTamVideoPredictor, build_edgetam, is_fused_edgetam, save_edgetam

    torch.manual_seed(0)
    ckpt = save_edgetam(build_edgetam(), tmp_path / "edgetam.pt")
    model, note = load_app_model(ckpt)  # an EdgeTAM file: EdgeTAM, loaded strictly
    assert isinstance(model, EdgeTAM) and note is None and is_fused_edgetam(model)
    model, note = load_app_model("edgetam")  # the name, not cached and offline: random weights, said so
    assert isinstance(model, EdgeTAM) and "RANDOM weights" in note and "'edgetam'" in note
    predictor, note = load_video_model(ckpt, fused=False)
    assert isinstance(predictor, EdgeTamVideoPredictor) and note is None and not is_fused_edgetam(predictor.model)
    saved, loaded = torch.load(ckpt, weights_only=True)["model"], predictor.model.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(v, loaded[k]) for k, v in saved.items())
    predictor, note = load_video_model("edgetam")
    assert isinstance(predictor, EdgeTamVideoPredictor) and "RANDOM weights" in note and "--video-checkpoint" in note
    with pytest.raises(Exception, match="does not exist"):
        load_video_model(tmp_path / "missing.pt")


def test_cli_app_has_the_video_flags(capsys):
    from repvit.cli.main import main

    with pytest.raises(SystemExit):
        main(["sam", "app", "--help"])
    out = capsys.readouterr().out
    assert "--video-checkpoint" in out and "--max-video-frames" in out and "--max-video-mb" in out


def test_cli_app_video_session_tracks_at_the_published_size(tmp_path):
    """The app's video tab as the CLI builds it: the EdgeTAM file given, the limits from the flags, 1024 px."""
    pytest.importorskip("av", reason="the video tab needs PyAV: pip install 'repvit-pytorch[video]'")
    import argparse

    from repvit.cli.sam_cmd import _app_video
    from repvit.sam.sam2 import build_edgetam, is_fused_edgetam, save_edgetam
    from repvit.sam.sam2.video_session import VideoError

    torch.manual_seed(0)
    ckpt = save_edgetam(build_edgetam(), tmp_path / "edgetam.pt")
    args = argparse.Namespace(video_checkpoint=str(ckpt), fused=True, max_video_frames=4, max_video_mb=1.0)
    session, note = _app_video(args, torch.device("cpu"))
    assert note is None and session.max_frames == 4 and session.max_mb == 1.0
    assert is_fused_edgetam(session.predictor.model) and session.predictor.image_size == 1024
    with pytest.raises(VideoError, match="more than 4 frames.*repvit sam app --max-video-frames N"):
        session.open(write_video(tmp_path / "five.mp4", n=5))
    res = session.track(write_video(tmp_path / "four.mp4", n=4), 1, [(80.0, 60.0, 1)])
    assert res.num_frames == 4 and sorted(p.name for p in res.mask_dir.iterdir())[-1] == "00003.png"


# ------------------------------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(small_sam, astronaut, gradio_temp):
    pytest.importorskip("gradio", reason="the app needs gradio: pip install 'repvit-pytorch[app]'")
    from repvit.sam.app import create_app, launch_app

    d = gradio_temp / "sam_app"  # inside the temporary folder, from which gradio serves files
    d.mkdir()
    photo = d / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    video = None
    if importlib.util.find_spec("av") and importlib.util.find_spec("scipy"):
        from repvit.sam.sam2.video_session import VideoSession

        video = VideoSession(small_video_predictor(d), max_frames=5, work_dir=d / "runs",
                             limit_hint="start the app with --max-video-frames N")
        write_video(d / "clip.mp4")
    demo = create_app(small_sam, note="test model: random weights", points_per_side=4, video=video,
                      video_note="test video model: random weights")
    port = _free_port()
    launch_app(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", photo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def clip(server):
    """The server's test video (5 frames, 160 x 128)."""
    path = Path(server[1]).parent / "clip.mp4"
    if not path.is_file():
        pytest.skip("the video tab needs PyAV and SciPy: pip install 'repvit-pytorch[video]'")
    return path


@pytest.fixture(scope="module")
def client(server, gradio_temp):
    gc = pytest.importorskip("gradio_client", reason="the scripting API test needs gradio_client")
    return gc.Client(server[0], verbose=False, download_files=str(gradio_temp))


def test_api_segment_point_and_box_match_sam_predictor(client, server, small_sam, astronaut):
    from gradio_client import handle_file

    photo = handle_file(str(server[1]))
    cases = [([(250.0, 150.0, 1)], None, True),  # one point alone: the best of SAM's three candidates
             ([(250.0, 150.0, 1), (300.0, 420.0, 0)], (100.0, 30.0, 420.0, 500.0), False),
             ([], (60.0, 20.0, 300.0, 260.0), False)]
    for points, box, multimask in cases:
        overlay, mask_png, score = client.predict(photo, json.dumps([list(p) for p in points]),
                                                  json.dumps(list(box)) if box else "", api_name="/segment")
        with Image.open(mask_png) as im:  # a 1-bit PNG: a bool array
            assert im.mode == "1"
            mask = np.asarray(im)
        assert mask.shape == astronaut.shape[:2] and mask.dtype == bool
        ref_mask, ref_score = _reference(small_sam, astronaut, points, box, multimask)
        assert _iou(mask > 0, ref_mask) > 0.999 and np.array_equal(mask > 0, ref_mask)
        assert score == pytest.approx(ref_score, rel=1e-4, abs=1e-5)
        ov = np.asarray(Image.open(overlay).convert("RGB"))
        assert ov.shape == astronaut.shape and not np.array_equal(ov, astronaut)


def test_api_segment_all_returns_a_count(client, server, astronaut):
    from gradio_client import handle_file

    overlay, count = client.predict(handle_file(str(server[1])), api_name="/segment_all")
    assert isinstance(count, int | float) and count >= 0 and int(count) == count
    assert np.asarray(Image.open(overlay).convert("RGB")).shape == astronaut.shape


def test_api_refuses_prompts_outside_the_image(client, server):
    from gradio_client import handle_file

    photo = handle_file(str(server[1]))
    with pytest.raises(Exception, match="outside the image .*512 x 512"):
        client.predict(photo, "[[900, 150, 1]]", "", api_name="/segment")
    with pytest.raises(Exception, match="X0 < X1"):
        client.predict(photo, "", "[300, 10, 100, 200]", api_name="/segment")


def test_api_track_video_returns_the_overlay_and_one_mask_per_frame(client, clip):
    from gradio_client import handle_file

    overlay, masks_zip, frames = client.predict(handle_file(str(clip)), 2, "[[80, 60, 1]]", api_name="/track_video")
    assert frames == 5
    areas = []
    with zipfile.ZipFile(masks_zip) as z:
        names = sorted(z.namelist())
        assert names == [f"masks/{i:05d}.png" for i in range(5)]
        for name in names:
            with z.open(name) as f:
                m = np.asarray(Image.open(f))
            assert m.shape == (128, 160) and set(np.unique(m)) <= {0, 255}
            areas.append(int((m > 0).sum()))
    assert all(a > 0 for a in areas)  # the test model always finds the object (tests/sam/sam2/test_video_session.py)
    gif = Image.open(overlay)
    assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (160, 128)


def test_api_track_video_errors_say_what_is_wrong(client, clip, tmp_path):
    from gradio_client import handle_file

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    with pytest.raises(Exception, match="notes.mp4 is not a video file"):
        client.predict(handle_file(str(text)), 0, "[[80, 60, 1]]", api_name="/track_video")
    long = write_video(tmp_path / "long.mp4", n=6)
    with pytest.raises(Exception, match="more than 5 frames.*--max-video-frames"):
        client.predict(handle_file(str(long)), 0, "[[80, 60, 1]]", api_name="/track_video")
    with pytest.raises(Exception, match="outside the image .*160 x 128"):
        client.predict(handle_file(str(clip)), 0, "[[200, 60, 1]]", api_name="/track_video")
    with pytest.raises(Exception, match="frame 9 is out of range"):
        client.predict(handle_file(str(clip)), 9, "[[80, 60, 1]]", api_name="/track_video")


# ------------------------------------------------------------------------------------------------- the browser


@contextlib.contextmanager
def _browser_page(url):
    """A headless Chromium page on ``url`` that may load nothing but the app's own server; yields the page and the
    lists the test checks at the end: page errors and outside requests."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set REPVIT_CHROMIUM)")
    errors, external = [], []

    def route(r):  # the page must work offline: nothing but the app's own server
        if r.request.url.startswith(url):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", route)
            page.goto(url)
            yield page, errors, external
        finally:
            browser.close()


def _wait_text(page, selector, text, timeout=20_000):
    page.wait_for_function(f"document.querySelector({selector!r}).innerText.includes({text!r})", timeout=timeout)


def test_browser_upload_click_shows_the_mask(server, tmp_path):
    url, photo = server
    with _browser_page(url) as (page, errors, external):
        page.wait_for_selector("#photo input[type=file]", state="attached", timeout=20_000)
        assert page.locator("#overlay img").count() == 0  # no mask before a click
        page.set_input_files("#photo input[type=file]", str(photo))
        _wait_text(page, "#status", "encode")
        img = page.locator("#photo img").first
        box = img.bounding_box()

        def click(x, y):  # in image pixels (the 512 x 512 photo fills the element's box)
            img.click(position={"x": box["width"] * x / 512, "y": box["height"] * y / 512})

        def wait_status(text):
            _wait_text(page, "#status", text)

        click(250, 150)
        wait_status("decode")
        page.wait_for_selector("#overlay img", timeout=10_000)
        status = page.inner_text("#status")
        assert "once, reused" in status and "1 point" in status  # the click reused the embedding
        assert ".png" in page.locator("#mask-file").inner_text()  # the mask PNG to download
        src = page.locator("#overlay img").first.get_attribute("src")
        assert src and url.rstrip("/") in src

        page.locator("#background input").check()  # a background point, then undo it
        click(300, 420)
        wait_status("2 point(s)")
        page.click("#undo")
        wait_status("1 point(s)")
        page.locator("#mode label", has_text="box").click()  # box mode: two corners
        wait_status("Box mode.")  # as a user sees the page answer before clicking on
        click(420, 500)
        wait_status("opposite corner")
        click(100, 30)
        wait_status("a box")
        shot = Path(os.environ.get("REPVIT_SAM_APP_SCREENSHOT") or tmp_path / "sam_app.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        page.locator("#mode label", has_text="everything").click()
        wait_status("masks;")
        click(200, 200)  # no prompts in everything mode
        wait_status("Everything mode")
        page.click("#clear")
        wait_status("Cleared")
    assert errors == [], errors
    assert external == [], f"the page asked for outside resources: {external}"
    assert Image.open(shot).size[0] > 0


def test_browser_video_tab_tracks_the_clicked_object(server, clip, tmp_path):
    url = server[0]
    with _browser_page(url) as (page, errors, external):
        page.get_by_role("tab", name="Video").click()
        page.wait_for_selector("#video-file input[type=file]", state="attached", timeout=20_000)
        assert "random weights" in page.inner_text("#video-model-note")
        page.set_input_files("#video-file input[type=file]", str(clip))
        _wait_text(page, "#video-status", "5 frames, 160 x 128")
        img = page.locator("#video-frame img").first
        img.wait_for(timeout=10_000)
        box = img.bounding_box()
        img.click(position={"x": box["width"] * 80 / 160, "y": box["height"] * 60 / 128})
        _wait_text(page, "#video-status", "1 point(s)")
        page.click("#track")
        _wait_text(page, "#video-status", "Tracked 5 frames", timeout=120_000)
        page.wait_for_selector("#video-overlay img", timeout=10_000)
        src = page.locator("#video-overlay img").first.get_attribute("src")
        assert src and url.rstrip("/") in src and src.endswith(".gif")
        assert ".zip" in page.locator("#video-masks").inner_text()  # the masks to download
        shot = Path(os.environ.get("REPVIT_SAM_APP_VIDEO_SCREENSHOT") or tmp_path / "sam_app_video.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
    assert errors == [], errors
    assert external == [], f"the page asked for outside resources: {external}"
