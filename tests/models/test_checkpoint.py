"""Our own format, format detection, CUDA-saved tensors, fine-tuning heads and every bad-input case."""

from __future__ import annotations

import argparse
import io
import zipfile

import pytest
import torch

import repvit
from repvit import CheckpointError, CheckpointMismatchError
from repvit.models import read_checkpoint
from tests.helpers import randomize_bn


def _sd_file(tmp_path, model, name="w.pth"):
    p = tmp_path / name
    torch.save(model.state_dict(), p)
    return p


def test_own_format_round_trip_rebuilds_without_name(tmp_path):
    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=7, distillation=True)).eval()
    path = repvit.save_checkpoint(model, tmp_path / "m.safetensors", class_names=list("abcdefg"))
    ckpt = read_checkpoint(path)
    assert ckpt.source_format == "repvit" and ckpt.meta["class_names"] == list("abcdefg")
    again = repvit.create_model(checkpoint=path).eval()
    assert again.build_info["model_name"] == "repvit_m0_6"
    assert again.num_classes == 7 and again.distillation
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_own_format_fused_round_trip(tmp_path):
    model = repvit.fuse_model(randomize_bn(repvit.create_model("repvit_m1", num_classes=5)))
    path = repvit.save_checkpoint(model, tmp_path / "f.safetensors")
    again = repvit.create_model(checkpoint=path, fused=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    with pytest.raises(CheckpointError, match="fused=True"):
        repvit.create_model(checkpoint=path)


def test_timm_safetensors_and_ddp_prefix(tmp_path):
    from safetensors.torch import save_file

    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=3)).eval()
    sd = {f"module.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, tmp_path / "ddp.safetensors")
    again = repvit.create_model("repvit_m0_6", num_classes=3, checkpoint=tmp_path / "ddp.safetensors").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_save_is_atomic_and_needs_safetensors_suffix(tmp_path):
    model = repvit.create_model("repvit_m0_6", num_classes=2)
    with pytest.raises(ValueError, match="safetensors"):
        repvit.save_checkpoint(model, tmp_path / "m.pth")
    repvit.save_checkpoint(model, tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left behind


def _relocate_to_cuda(path):
    """Rewrite a torch zip checkpoint so that its storages claim to live on cuda:0 (as a release file saved on a
    GPU machine does); loading must map them to the CPU."""
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # BINUNICODE, protocol 2
                assert old in data
                data = data.replace(old, new)
            zout.writestr(item, data)
    path.write_bytes(buf.getvalue())


def test_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path):
    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=4)).eval()
    path = tmp_path / "cuda.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(lr=4e-3), "epoch": 3}, path)
    _relocate_to_cuda(path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):  # proves the file really claims CUDA storages
            torch.load(path, weights_only=True)
    again = repvit.create_model("repvit_m0_6", checkpoint=path).eval()
    assert next(again.parameters()).device.type == "cpu"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_other_class_count_drops_head_with_warning(tmp_path):
    src = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=1000, distillation=True))
    path = _sd_file(tmp_path, src)
    with pytest.warns(UserWarning, match="1000 classes"):
        model = repvit.create_model("repvit_m0_6", num_classes=10, distillation=True, checkpoint=path)
    assert model.head.head.l.out_features == 10
    # the backbone was loaded
    assert torch.equal(model.stem.conv1.c.weight, src.stem.conv1.c.weight)
    # and fine-tuning works: a step moves the loss
    model.train()
    out = model(torch.randn(4, 3, 32, 32))
    (out[0].sum() + out[1].sum()).backward()
    assert model.head.head.l.weight.grad is not None


def test_distillation_head_ignored_by_single_head_model(tmp_path):
    path = _sd_file(tmp_path, repvit.create_model("repvit_m0_6", distillation=True))
    with pytest.warns(UserWarning, match="distillation head"):
        model = repvit.create_model("repvit_m0_6", distillation=False, checkpoint=path)
    assert not model.distillation


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    path = _sd_file(tmp_path, repvit.create_model("repvit_m0_9"))
    with pytest.raises(CheckpointMismatchError) as ei:
        repvit.create_model("repvit_m1_0", checkpoint=path)
    msg = str(ei.value)
    assert "shape mismatches" in msg and "stem.conv1.c.weight" in msg
    with pytest.raises(CheckpointMismatchError) as ei:
        repvit.create_model("repvit_m1_5", checkpoint=path)  # m1_5 is deeper: keys missing
    assert "missing keys" in str(ei.value) and ei.value.missing
    with pytest.raises(CheckpointMismatchError) as ei:
        m = repvit.create_model("repvit_m0_9")
        sd = m.state_dict()
        sd["stages.9.blocks.0.extra"] = torch.zeros(1)
        repvit.load_checkpoint(m, sd)
    assert "unexpected keys" in str(ei.value)
    # strict=False tolerates missing keys but never wrong shapes
    m = repvit.create_model("repvit_m0_9")
    res = repvit.load_checkpoint(m, {k: v for k, v in m.state_dict().items() if "stages.3" not in k}, strict=False)
    assert res.missing


def test_truncated_and_corrupt_files(tmp_path):
    good = _sd_file(tmp_path, repvit.create_model("repvit_m0_6"))
    data = good.read_bytes()
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        repvit.create_model("repvit_m0_6", checkpoint=trunc)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        repvit.create_model("repvit_m0_6", checkpoint=junk)
    model = repvit.create_model("repvit_m0_6")
    st = repvit.save_checkpoint(model, tmp_path / "m.safetensors")
    st_trunc = tmp_path / "t.safetensors"
    st_trunc.write_bytes(st.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        repvit.create_model(checkpoint=st_trunc)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        repvit.create_model("repvit_m0_6", checkpoint=empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        repvit.create_model("repvit_m0_6", checkpoint=tmp_path / "nope.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": repvit.create_model("repvit_m0_6").state_dict(), "x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        repvit.create_model("repvit_m0_6", checkpoint=path)


def test_unknown_layout_and_non_state_dict(tmp_path):
    p = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, p)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        repvit.create_model("repvit_m0_6", checkpoint=p)
    p2 = tmp_path / "list.pth"
    torch.save([1, 2, 3], p2)
    with pytest.raises(CheckpointError, match="does not contain a model state dict"):
        repvit.create_model("repvit_m0_6", checkpoint=p2)
