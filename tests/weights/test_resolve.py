"""The one resolver from a published name, a path or a URL to a local file (``repvit.weights.resolve``), against the
local stand-in hosts of conftest.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from repvit.io import CheckpointError
from repvit.weights import (
    WeightsEntry,
    WeightsFileNotFoundError,
    WrongWeightsError,
    is_path,
    lookup,
    manual_path,
    resolve_weights,
    url_weights,
)


def _file_bytes() -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(6.0)}, buf)
    return buf.getvalue()


@pytest.mark.parametrize(("source", "expected"), [
    ("w.pth", True), ("runs/best.pt", True), ("model.safetensors", True), ("x.pth.tar", True), (Path("w"), True),
    ("edge_sam", False), ("repvit_m0_9.dist_450e_in1k", False), ("https://example.org/w.pth", False),
])
def test_one_rule_tells_a_path_from_a_name(source, expected):
    assert is_path(source) is expected


def test_an_existing_file_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("edge_sam").write_bytes(_file_bytes())
    assert lookup("edge_sam") == Path("edge_sam") and resolve_weights("edge_sam") == Path("edge_sam")


def test_missing_path_names_and_kind_checks():
    with pytest.raises(WeightsFileNotFoundError, match="does not exist") as err:
        resolve_weights("missing/w.pth")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, CheckpointError)
    with pytest.raises(ValueError, match="neither an existing file nor a published weights name"):
        lookup("repvit_m9_9_nonsense")
    assert isinstance(lookup("edge_sam", kind="sam"), WeightsEntry)
    with pytest.raises(WrongWeightsError, match=r"detect weights .* load them with repvit\.load_detector"):
        lookup("repvit_m1_1_coco", kind="classify")
    with pytest.raises(WrongWeightsError, match=r"repvit\.sam\.build_repvit_sam"):
        resolve_weights("repvit_sam", kind="segment")


def test_url_downloads_once_into_torch_hub_and_works_offline(hosts, monkeypatch):
    data = _file_bytes()
    hosts.files["/elsewhere/my_weights.pth"] = data
    url = hosts.url + "/elsewhere/my_weights.pth?download=1"
    entry = url_weights(url)
    assert entry.host == "url" and entry.task is None and entry.filename == "my_weights.pth"
    path = resolve_weights(url)
    assert path == manual_path(entry) and path.read_bytes() == data
    assert str(path).startswith(str(torch.hub.get_dir()))
    n = len(hosts.requests)
    monkeypatch.setenv("REPVIT_OFFLINE", "1")
    assert resolve_weights(url) == path and len(hosts.requests) == n


def test_a_checkpoint_url_builds_the_model(hosts, tmp_path):
    import repvit

    torch.manual_seed(0)
    model = repvit.create_model("repvit_m0_6", num_classes=10).eval()
    src = repvit.save_checkpoint(model, tmp_path / "ft.safetensors")
    hosts.files["/runs/ft.safetensors"] = src.read_bytes()
    loaded = repvit.create_model(checkpoint=hosts.url + "/runs/ft.safetensors").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(WrongWeightsError, match="repvit.load_segmenter"):
        repvit.create_model(checkpoint="repvit_m1_1_ade20k")
