"""``repvit sam app`` with several users at once: six ``gradio_client`` clients in threads, each with its own photo
and four clicks through ``/segment``, must each get the mask :class:`~repvit.sam.session.SamSession` computes for
that photo and prompt alone (so no embedding or prompt of one user reaches another), while the embedding cache
stays within its byte limit; a file that is not an image, or a photo over the limits, is a clear error and the app
keeps answering; a request beyond the queue's size gets Gradio's "queue is full".
"""

import json
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from repvit.sam.session import EmbeddingLru, SamSession

pytest.importorskip("gradio", reason="the app needs gradio: pip install 'repvit-pytorch[app]'")
gc = pytest.importorskip("gradio_client", reason="the scripting API test needs gradio_client")
pytestmark = pytest.mark.usefixtures("gradio_temp")

USERS = 6
MAX_PIXELS = 400_000  # above every photo below (at most 427 x 640 = 273,280), below the 700 x 700 one refused


def _photos() -> list[np.ndarray]:
    """Six different photos: five of scikit-image's, of four sizes, and random noise."""
    data = pytest.importorskip("skimage.data", reason="scikit-image is in the dev extra")
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry(), noise]


def _clicks(image: np.ndarray) -> list[tuple[list[tuple[float, float, int]], tuple[float, ...] | None]]:
    """Four clicks as a user makes them on ``image``: a point, a second (background) point, a box with them, a box."""
    h, w = image.shape[:2]
    p1, p2 = (0.45 * w, 0.4 * h, 1), (0.7 * w, 0.75 * h, 0)
    box = (0.2 * w, 0.1 * h, 0.8 * w, 0.9 * h)
    return [([p1], None), ([p1, p2], None), ([p1, p2], box), ([], (0.1 * w, 0.3 * h, 0.6 * w, 0.95 * h))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(demo, **kw):
    from repvit.sam.app import launch_app

    port = _free_port()
    launch_app(demo, host="127.0.0.1", port=port, block=False, quiet=True, **kw)
    return f"http://127.0.0.1:{port}/"


def _client(url: str):
    return gc.Client(url, verbose=False, download_files=tempfile.gettempdir())  # the module's folder (gradio_temp)


def _segment(client, photo, points, box):
    from gradio_client import handle_file

    _, mask_png, score = client.predict(handle_file(str(photo)), json.dumps([list(p) for p in points]),
                                        json.dumps(list(box)) if box else "", api_name="/segment")
    return np.asarray(Image.open(mask_png)) > 0, score


def test_embedding_lru_bounds_entries_and_bytes():
    import torch

    from repvit.sam.session import ImageEmbedding

    def emb(n):  # an embedding of n float32 values
        return ImageEmbedding(str(n), torch.zeros(n), (1, 1), (1, 1), 0.0)

    lru = EmbeddingLru(4, max_bytes=1000)
    lru.put("a", emb(100))  # 400 bytes
    lru.put("b", emb(100))
    assert len(lru) == 2 and lru.nbytes == 800
    lru.get("a")  # a is now the most recently used: b goes first
    lru.put("c", emb(100))
    assert lru.get("b") is None and lru.get("a") is not None and lru.nbytes == 800
    shared = torch.zeros(200)  # 800 bytes, held three times by one entry: counted once
    lru.put("d", (ImageEmbedding("d", shared, (1, 1), (1, 1), 0.0), {"again": shared, "view": shared[:10]}))
    assert lru.nbytes == 800 and len(lru) == 1  # c, then a (least recently used first) dropped to fit
    with pytest.raises(ValueError, match=r"more than the embedding cache's limit of 0\.0 MB.*--cache-mb"):
        lru.put("e", emb(300))
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        EmbeddingLru(4, max_bytes=0)
    small = EmbeddingLru(2)
    for k in "xyz":
        small.put(k, emb(1))
    assert len(small) == 2 and small.get("x") is None


def test_page_tabs_keep_their_own_photo_and_prompts(small_sam, tmp_path):
    """Two browser tabs' callbacks interleaved on one page (the events the scripting API does not reach): each
    tab's state holds its own photo and prompts, and its masks are those of its photo alone."""
    import types

    import gradio as gr

    from repvit.sam.app import _Page

    photos = _photos()[:2]
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, image in zip(paths, photos):
        Image.fromarray(image).save(path)
    page = _Page(gr, SamSession(small_sam, cache_size=1), {}, max_image_pixels=MAX_PIXELS, max_image_mb=1.0)
    states = [page.on_upload(str(path))[0] for path in paths]  # tab b's upload evicts tab a's embedding
    reference = SamSession(small_sam)
    for step in range(2):  # a click on each tab in turn
        for t, image in enumerate(photos):
            points, _ = _clicks(image)[step]
            evt = types.SimpleNamespace(index=list(points[-1][:2]))
            states[t], _, mask_file, status = page.on_click(states[t], "point", points[-1][2] == 0, evt)
            assert states[t]["points"] == points and np.array_equal(states[t]["image"], image)
            want = reference.segment(image, points)
            assert np.array_equal(np.asarray(Image.open(mask_file)) > 0, want.mask), (t, step, status)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    with pytest.raises(gr.Error, match="not an image that can be read"):
        page.on_upload(str(text))
    small = _Page(gr, page.session, {}, max_image_pixels=MAX_PIXELS, max_image_mb=0.1)  # photo a is 0.4 MB
    with pytest.raises(gr.Error, match=r"MB, over this app's limit of 0\.1 MB.*--max-image-mb"):
        small.on_upload(str(paths[0]))
    assert page.on_upload(str(paths[0]))[0]["key"] == states[0]["key"]  # and the page goes on


def test_many_users_at_once_get_their_own_masks(small_sam, tmp_path):
    from gradio_client import handle_file

    from repvit.sam.app import create_app

    photos = _photos()
    paths = []
    for i, image in enumerate(photos):
        paths.append(tmp_path / f"photo{i}.png")
        Image.fromarray(image).save(paths[-1])
    reference = SamSession(small_sam, runtime="auto")  # each photo and prompt alone, outside the app (its runtime)
    expected = [[reference.segment(image, points, box) for points, box in _clicks(image)] for image in photos]
    firsts = [e[0].mask for e in expected]
    assert all(not np.array_equal(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1:] if a.shape == b.shape)

    # room for three of the six users' photos (an entry: the embedding and what each click reuses): the cache must evict
    cache_mb = 3.5 * reference._cache.nbytes / len(reference._cache) / 2**20
    demo = create_app(small_sam, cache_images=16, cache_mb=cache_mb, max_image_pixels=MAX_PIXELS, max_image_mb=1.0)
    assert demo.repvit_session.runtime == reference.runtime
    cache = demo.repvit_session._cache
    held = []  # the cache's bytes and entries after every store
    put = cache.put

    def recording_put(key, value):
        put(key, value)
        held.append((cache.nbytes, len(cache)))

    cache.put = recording_put
    url = _launch(demo, max_queue=32, concurrency=2)
    try:
        start = threading.Barrier(USERS)

        def user(i):
            client = _client(url)
            start.wait()  # every user clicks at the same time
            return [_segment(client, paths[i], points, box) for points, box in _clicks(photos[i])]

        t0 = time.perf_counter()
        with ThreadPoolExecutor(USERS) as pool:
            answers = list(pool.map(user, range(USERS)))  # re-raises the first failure
        print(f"{USERS} users x 4 clicks in {time.perf_counter() - t0:.1f} s; cache after each store: {held}")
        for i, (got, want) in enumerate(zip(answers, expected)):
            for (mask, score), ref in zip(got, want):
                assert mask.shape == photos[i].shape[:2] and np.array_equal(mask, ref.mask), f"user {i}"
                assert score == pytest.approx(ref.score, rel=1e-4, abs=1e-5), f"user {i}"
        limit = int(cache_mb * 2**20)
        assert held and max(b for b, _ in held) <= limit and max(n for _, n in held) == 3  # full, never over
        assert len(held) >= USERS  # every photo was embedded (some twice, after eviction)

        client = _client(url)
        text = tmp_path / "notes.png"
        text.write_text("not an image\n" * 20)
        with pytest.raises(Exception, match="notes.png is not an image that can be read: upload a photo"):
            client.predict(handle_file(str(text)), "[[10, 10, 1]]", "", api_name="/segment")
        big = tmp_path / "big.png"
        Image.new("RGB", (700, 700)).save(big)
        with pytest.raises(Exception, match=r"700 x 700 = 490,000 pixels, over this app's limit of 400,000.*"
                                            r"--max-image-pixels"):
            client.predict(handle_file(str(big)), "[[10, 10, 1]]", "", api_name="/segment")
        heavy = tmp_path / "heavy.png"  # 1.4 MB of noise: over the 1 MB upload limit (gradio_client checks it too)
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(heavy)
        assert heavy.stat().st_size > 2**20
        with pytest.raises(Exception, match="exceeds the maximum file size of 1048576 bytes"):
            client.predict(handle_file(str(heavy)), "[[10, 10, 1]]", "", api_name="/segment")
        points, box = _clicks(photos[1])[2]  # the app still answers, and correctly
        mask, score = _segment(client, paths[1], points, box)
        assert np.array_equal(mask, expected[1][2].mask)
        assert score == pytest.approx(expected[1][2].score, rel=1e-4, abs=1e-5)
    finally:
        demo.close()


def test_a_request_beyond_the_queue_is_refused_as_queue_full(small_sam, tmp_path):
    from gradio_client import handle_file
    from gradio_client.utils import QueueError

    from repvit.sam.app import create_app

    photo = tmp_path / "noise.png"
    image = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(image).save(photo)
    demo = create_app(small_sam)
    session = demo.repvit_session
    running, release = threading.Event(), threading.Event()
    segment = session.segment

    def held_segment(*args, **kwargs):  # the first request holds the model until released
        running.set()
        assert release.wait(60)
        return segment(*args, **kwargs)

    session.segment = held_segment
    url = _launch(demo, max_queue=1, concurrency=1)
    try:
        client = _client(url)
        args = (handle_file(str(photo)), "[[40, 30, 1]]", "")
        first = client.submit(*args, api_name="/segment")
        assert running.wait(30)  # running: the queue is empty
        second = client.submit(*args, api_name="/segment")  # waits: the queue is full
        time.sleep(1.0)
        third = client.submit(*args, api_name="/segment")
        with pytest.raises(QueueError, match="(?i)queue is full"):
            third.result(timeout=30)
        release.set()
        want = SamSession(small_sam, runtime=session.runtime).segment(image, [(40, 30, 1)])
        for job in (first, second):
            _, mask_png, score = job.result(timeout=60)
            assert np.array_equal(np.asarray(Image.open(mask_png)) > 0, want.mask)
    finally:
        release.set()
        demo.close()
