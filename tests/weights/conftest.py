"""A local stand-in for both weights hosts: Hugging Face's resolve endpoint and GitHub's release downloads.

The server runs on 127.0.0.1 in a thread. ``HF_ENDPOINT``, ``HF_HOME``, ``TORCH_HOME`` and
``REPVIT_WEIGHTS_MIRROR`` point at it and at temporary folders, so nothing reaches the internet and no real cache is
touched. It answers HEAD and GET (with ``Range``) with the headers huggingface_hub reads (``ETag``,
``X-Repo-Commit``, ``Content-Length``), and can cut a transfer short or go down (503) until told to recover.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator

import pytest

from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GITHUB_PREFIX = "/THU-MIG/RepViT/releases/download/v1.0/"


class FakeHosts:
    """What the server serves and how it behaves."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode = "ok"  # "ok", "cut" (send half a body, then close; the host is then down), "down" (503)
        self.requests: list[tuple[str, str]] = []
        self.url = ""

    def add_hf(self, repo_id: str, filename: str, data: bytes, repo_type: str = "model") -> None:
        prefix = "/spaces/" if repo_type == "space" else "/"
        self.files[f"{prefix}{repo_id}/resolve/main/{filename}"] = data

    def add_github(self, filename: str, data: bytes) -> None:
        self.files[GITHUB_PREFIX + filename] = data

    def recover(self) -> None:
        self.mode = "ok"


def _handler(hosts: FakeHosts):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _serve(self, body: bool) -> None:
            hosts.requests.append((self.command, self.path))
            if hosts.mode == "down":
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = hosts.files.get(self.path.split("?")[0])
            if data is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():
                start = min(int(rng[6:].split("-")[0]), len(data))
            part = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(part)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if not body:
                return
            if hosts.mode == "cut":
                self.wfile.write(part[: len(part) // 2])
                self.wfile.flush()
                hosts.mode = "down"
                self.close_connection = True
                return
            self.wfile.write(part)

        def do_HEAD(self):  # noqa: N802
            self._serve(body=False)

        def do_GET(self):  # noqa: N802
            self._serve(body=True)

    return Handler


@pytest.fixture
def hosts(tmp_path, monkeypatch) -> Iterator[FakeHosts]:
    """The fake hosts, with the environment pointed at them and at empty caches under ``tmp_path``."""
    import huggingface_hub.constants as hf_constants

    fake = FakeHosts()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    fake.stop = lambda: (server.shutdown(), server.server_close())  # type: ignore[attr-defined]
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REPVIT_WEIGHTS_MIRROR", fake.url + "/")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "REPVIT_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    # huggingface_hub reads these at import; the library passes endpoint and cache_dir itself, offline is reset
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    yield fake
    try:
        server.shutdown()
        server.server_close()
    except OSError:
        pass
