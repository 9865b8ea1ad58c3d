"""`repvit list`, `repvit info`, `repvit convert` and the error contract of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch

import repvit
from repvit.cli.main import main
from repvit.models.config import PUBLISHED
from tests.helpers import randomize_bn


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("repvit_m0_6", "repvit_m2_3", "repvit_m3"):
        assert name in out
    assert main(["list", "repvit_m1*", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert names and all(n.startswith("repvit_m1") for n in names)


def test_info_json_matches_published(capsys):
    assert main(["info", "repvit_m0_9", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    pub = PUBLISHED["repvit_m0_9"]
    assert info["params"] == pytest.approx(pub.params_train, rel=1e-3)
    assert info["fused_params"] == pytest.approx(pub.fused_params, rel=1e-3)
    assert info["fused_macs"] == pytest.approx(pub.fused_macs, rel=1e-3)
    assert info["feature_channels"] == [48, 96, 192, 384] and info["feature_strides"] == [4, 8, 16, 32]


def test_info_img_size_scales_macs(capsys):
    main(["info", "m1_0", "--img-size", "160", "256", "--json"])
    small = json.loads(capsys.readouterr().out)
    main(["info", "m1_0", "--json"])
    full = json.loads(capsys.readouterr().out)
    assert small["img_size"] == [160, 256]
    # convolutions scale with the number of pixels (the head does not)
    assert small["fused_macs"] / full["fused_macs"] == pytest.approx(160 * 256 / 224**2, rel=0.01)


def test_convert_authors_and_timm_to_ours(tmp_path, capsys):
    ref = randomize_bn(timm.create_model("repvit_m0_9")).eval()
    src = tmp_path / "timm.pth"
    torch.save(ref.state_dict(), src)
    out = tmp_path / "m0_9.safetensors"
    assert main(["convert", str(src), str(out)]) == 0
    model = repvit.create_model(checkpoint=out).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6)
    fused_out = tmp_path / "m0_9_fused.safetensors"
    assert main(["convert", str(src), str(fused_out), "--fused"]) == 0
    fused = repvit.create_model(checkpoint=fused_out, fused=True)
    with torch.no_grad():
        assert torch.allclose(fused(x), ref(x), atol=1e-4)


def test_errors_are_one_line_with_nonzero_exit(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage" * 100)
    errors = []
    for args in (["info", "repvit_m0_8"], ["convert", str(bad), str(tmp_path / "o.safetensors")]):
        proc = subprocess.run([sys.executable, "-m", "repvit", *args], capture_output=True, text=True)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("repvit ")]
        assert len(lines) == 1, proc.stderr
        errors.append(proc.stderr)
    assert "Did you mean: repvit_m0_9" in errors[0]
