"""Published weights by name, against a local stand-in for Hugging Face and GitHub (see conftest.py).

References nobody here wrote: timm builds and loads its own RepVit from the same file (``pretrained_cfg_overlay``
``file``); the authors' layout comes from timm's state dict renamed by the independent helper in
``tests/models/test_timm_parity.py``; huggingface_hub does the Hugging Face side of the transfer.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import repvit
from repvit.models import CheckpointError
from repvit.weights import (
    DEFAULT_TAGS,
    WeightsError,
    cached_path,
    download_weights,
    get_weights,
    list_weights,
    manual_path,
    resolve_weights,
    weights_url,
)
from tests.helpers import randomize_bn, rel_err

X = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))


def _timm_file(tmp_path, arch: str, seed: int) -> tuple[bytes, torch.nn.Module]:
    torch.manual_seed(seed)
    model = randomize_bn(timm.create_model(arch, pretrained=False), seed).eval()
    path = tmp_path / f"src_{arch}_{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path.read_bytes(), model


def _authors_m0_6(seed: int = 5) -> tuple[bytes, torch.nn.Module]:
    from tests.models.test_timm_parity import _timm_model, _timm_to_authors

    torch.manual_seed(seed)
    ref = randomize_bn(_timm_model("repvit_m0_6"), seed).eval()
    buf = io.BytesIO()
    torch.save({"model": _timm_to_authors(ref.state_dict()), "epoch": 299}, buf)
    return buf.getvalue(), ref


@pytest.fixture
def m0_9_files(hosts, tmp_path):
    """timm-layout files for repvit_m0_9's two tags, served as timm's Hugging Face repos."""
    out = {}
    for tag, seed in (("dist_300e_in1k", 1), ("dist_450e_in1k", 2)):
        data, _ = _timm_file(tmp_path, "repvit_m0_9", seed)
        hosts.add_hf(f"timm/repvit_m0_9.{tag}", "model.safetensors", data)
        out[tag] = tmp_path / f"src_repvit_m0_9_{seed}.safetensors"
    return out


# ------------------------------------------------------------------------------------------------ registry


def test_registry_names_and_timm_default_tags():
    from timm.models import get_pretrained_cfg

    names = list_weights()
    for m in ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3"):
        for tag in ("dist_300e_in1k", "dist_450e_in1k"):
            e = get_weights(f"repvit_{m}.{tag}")
            assert (e.host, e.repo_id, e.filename, e.layout) == ("huggingface", f"timm/repvit_{m}.{tag}",
                                                                 "model.safetensors", "timm")
        for ep in ("300e", "450e"):
            assert get_weights(f"repvit_{m}_distill_{ep}").url.endswith(f"/v1.0/repvit_{m}_distill_{ep}.pth")
    for n in ("repvit_m1.dist_in1k", "repvit_m2.dist_in1k", "repvit_m3.dist_in1k", "repvit_m0_6_distill_300e",
              "repvit_m1_1_coco", "repvit_m2_3_ade20k", "repvit_sam", "edge_sam", "edge_sam_3x"):
        assert n in names
    assert get_weights("repvit_m0_6.dist_300e_in1k").url == get_weights("repvit_m0_6_distill_300e").url
    assert get_weights("edge_sam_3x").repo_type == "space"
    # the default tag is timm's (the first tag of its default_cfgs), for every model timm has
    for arch, tag in DEFAULT_TAGS.items():
        if arch in timm.list_models("repvit_*"):
            assert get_pretrained_cfg(arch).tag == tag, arch
        assert get_weights(arch).name == f"{arch}.{tag}"
    with pytest.raises(ValueError, match=r"repvit_m0_9\.dist_450e_in1k"):
        get_weights("repvit_m0_9.dist_451e_in1k")


# ----------------------------------------------------------------------------------------- classification


def test_timm_weights_by_tag_match_timm(hosts, m0_9_files):
    model = repvit.create_model("repvit_m0_9.dist_450e_in1k", pretrained=True).eval()
    ref = timm.create_model("repvit_m0_9", pretrained=True,
                            pretrained_cfg_overlay={"file": str(m0_9_files["dist_450e_in1k"])}).eval()
    with torch.no_grad():
        a, b = model(X), ref(X)
    assert a.shape == (2, 1000) and rel_err(a, b) < 1e-5
    assert model.pretrained_cfg["tag"] == "dist_450e_in1k"
    # the default tag is dist_300e_in1k: another file, other outputs
    default = repvit.create_model("repvit_m0_9", pretrained=True).eval()
    ref300 = timm.create_model("repvit_m0_9", pretrained=True,
                               pretrained_cfg_overlay={"file": str(m0_9_files["dist_300e_in1k"])}).eval()
    with torch.no_grad():
        assert rel_err(default(X), ref300(X)) < 1e-5
        assert rel_err(default(X), a) > 1e-2
    # a file path works too, and is used as it is
    by_path = repvit.create_model("repvit_m0_9", pretrained=str(m0_9_files["dist_450e_in1k"])).eval()
    with torch.no_grad():
        assert torch.equal(by_path(X), a)
    # another class count: the head is left out with the existing warning, the body is the published one
    with pytest.warns(UserWarning, match="head is not loaded"):
        ft = repvit.create_model("repvit_m0_9.dist_450e_in1k", pretrained=True, num_classes=10).eval()
    with torch.no_grad():
        assert ft(X).shape == (2, 10)
        assert torch.equal(ft.forward_features(X), model.forward_features(X))


def test_timm_kwargs_match_timm_shapes(hosts, m0_9_files):
    """global_pool, num_classes=0, drop rates and in_chans behave as on timm's RepVit (same file loaded)."""
    file = str(m0_9_files["dist_300e_in1k"])
    for kw in (dict(num_classes=0, global_pool=""), dict(num_classes=0), dict(drop_rate=0.2),
               dict(in_chans=1, num_classes=0), dict(in_chans=5)):
        # timm's RepVit takes no drop_path_rate; ours does (stochastic depth: the identity in eval mode)
        ours = repvit.create_model("repvit_m0_9", pretrained=True, drop_path_rate=0.1, **kw).eval()
        ref = timm.create_model("repvit_m0_9", pretrained=True, pretrained_cfg_overlay={"file": file}, **kw).eval()
        x = X[:, :1].repeat(1, kw.get("in_chans", 3), 1, 1)
        with torch.no_grad():
            a, b = ours(x), ref(x)
            assert a.shape == b.shape, kw
            assert rel_err(a, b) < 1e-5, kw  # in_chans: the stem weight adapted as timm adapts it
            feats = ours.forward_features(x)
            assert ours.forward_head(feats, pre_logits=True).shape == ref.forward_head(feats, pre_logits=True).shape
    overlay = repvit.create_model("repvit_m0_9", pretrained_cfg_overlay={"crop_pct": 0.95, "mean": (0.5,) * 3})
    assert overlay.pretrained_cfg["crop_pct"] == 0.95 and tuple(overlay.pretrained_cfg["mean"]) == (0.5,) * 3
    # timm's pretrained_cfg_overlay=dict(file=...) idiom
    via_overlay = repvit.create_model("repvit_m0_9", pretrained=True, pretrained_cfg_overlay={"file": file}).eval()
    ref = timm.create_model("repvit_m0_9", pretrained=True, pretrained_cfg_overlay={"file": file}).eval()
    with torch.no_grad():
        assert rel_err(via_overlay(X), ref(X)) < 1e-5


def test_authors_m0_6_by_name_equals_its_file(hosts):
    data, ref = _authors_m0_6()
    hosts.add_github("repvit_m0_6_distill_300e.pth", data)
    model = repvit.create_model("repvit_m0_6.dist_300e_in1k", pretrained=True).eval()
    with torch.no_grad():
        assert rel_err(model(X), ref(X)) < 1e-5
    path = cached_path("repvit_m0_6.dist_300e_in1k")
    assert path == manual_path("repvit_m0_6_distill_300e") and path.read_bytes() == data
    assert str(path).startswith(str(torch.hub.get_dir()))
    # the same file under the authors' own name: no second download
    n = len(hosts.requests)
    assert resolve_weights("repvit_m0_6_distill_300e") == path and len(hosts.requests) == n


def test_task_mismatch_and_wrong_arch_are_clear(hosts):
    with pytest.raises(ValueError, match="repvit.load_detector"):
        repvit.create_model(pretrained="repvit_m1_1_coco")
    with pytest.raises(ValueError, match="are for repvit_m1_1, not repvit_m0_9"):
        repvit.create_model("repvit_m0_9", pretrained="repvit_m1_1.dist_300e_in1k")
    with pytest.raises(ValueError, match="neither an existing file nor a published weights name"):
        resolve_weights("repvit_m9_9_nonsense")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_weights("missing/dir/w.pth")


# --------------------------------------------------------------------------------------------- SAM


def test_repvit_sam_by_name_equals_by_path(hosts, tmp_path):
    pytest.importorskip("segment_anything")
    from repvit.sam import build_repvit_sam

    torch.manual_seed(0)
    sam = randomize_bn(build_repvit_sam(variant="repvit_sam_m0_9", img_size=256), 7)
    src = tmp_path / "src_repvit_sam.pt"
    torch.save(sam.state_dict(), src)
    hosts.add_github("repvit_sam.pt", src.read_bytes())
    by_name = build_repvit_sam(resolve_weights("repvit_sam"))
    by_path = build_repvit_sam(src)
    sa, sb = by_name.state_dict(), by_path.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(sa["mask_decoder.iou_token.weight"], sam.state_dict()["mask_decoder.iou_token.weight"])


# ------------------------------------------------------------------------------------ offline, cut, corrupt


def test_offline_uses_cache_without_network_and_names_uncached(hosts, m0_9_files, monkeypatch):
    data, _ = _authors_m0_6()
    hosts.add_github("repvit_m0_6_distill_300e.pth", data)
    online = repvit.create_model("repvit_m0_9.dist_450e_in1k", pretrained=True).eval()
    resolve_weights("repvit_m0_6_distill_300e")
    hosts.stop()
    n = len(hosts.requests)
    for var in ("HF_HUB_OFFLINE", "REPVIT_OFFLINE"):
        monkeypatch.setenv(var, "1")
        offline = repvit.create_model("repvit_m0_9.dist_450e_in1k", pretrained=True).eval()
        with torch.no_grad():
            assert torch.equal(offline(X), online(X))
        assert resolve_weights("repvit_m0_6.dist_300e_in1k").read_bytes() == data
        for name in ("repvit_m1_1.dist_300e_in1k", "repvit_m1_1_distill_450e"):
            with pytest.raises(WeightsError) as err:
                resolve_weights(name)
            msg = str(err.value)
            assert "\n" not in msg and name in msg and weights_url(name) in msg and str(manual_path(name)) in msg
        monkeypatch.delenv(var)
    assert len(hosts.requests) == n


def test_cli_offline_error_is_one_line(hosts, monkeypatch, capsys):
    monkeypatch.setenv("REPVIT_OFFLINE", "1")
    rc = _cli("path", "repvit_m2_3_coco")
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "repvit_m2_3_coco" in lines[0] and "repvit_m2_3_coco.pth" in lines[0]


@pytest.mark.parametrize("host", ["github", "huggingface"])
def test_cut_transfer_raises_then_retry_gets_the_right_weights(hosts, tmp_path, host):
    data, ref = _authors_m0_6() if host == "github" else _timm_file(tmp_path, "repvit_m0_9", 4)
    name = "repvit_m0_6_distill_300e" if host == "github" else "repvit_m0_9.dist_450e_in1k"
    if host == "github":
        hosts.add_github("repvit_m0_6_distill_300e.pth", data)
    else:
        hosts.add_hf("timm/repvit_m0_9.dist_450e_in1k", "model.safetensors", data)
    hosts.mode = "cut"  # half the body, then the host is down (503) until it recovers
    with pytest.raises(WeightsError, match="could not download"):
        download_weights(name, progress=False)
    assert cached_path(name) is None  # nothing loadable was left
    if host == "github":  # (huggingface_hub retries a 503 HEAD for ~20 s before it gives up)
        with pytest.raises(WeightsError):
            repvit.create_model(pretrained=name)
    hosts.recover()
    path = download_weights(name, progress=False)
    assert path.read_bytes() == data
    model = repvit.create_model(pretrained=name).eval()
    with torch.no_grad():
        assert rel_err(model(X), ref(X)) < 1e-5
    leftovers = [p for p in manual_path(name).parent.glob("*.part")] if manual_path(name).parent.exists() else []
    assert leftovers == []


def test_corrupt_or_wrong_files_are_refused_with_their_path(hosts, tmp_path):
    # a hand-downloaded copy that is not a checkpoint
    bad = manual_path("repvit_m1_0_distill_300e")
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"<html>rate limited</html>" * 10)
    with pytest.raises(CheckpointError) as err:
        repvit.create_model(pretrained="repvit_m1_0_distill_300e")
    assert str(bad) in str(err.value) and "--force" in str(err.value)
    # a truncated zip
    data, _ = _authors_m0_6()
    cut = manual_path("repvit_m0_6_distill_300e")
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(cut)):
        repvit.create_model(pretrained="repvit_m0_6.dist_300e_in1k")
    # a readable checkpoint of another architecture: wrong shapes, refused before anything is loaded
    other, _ = _timm_file(tmp_path, "repvit_m1_1", 3)
    wrong = manual_path("repvit_m0_9.dist_300e_in1k")
    wrong.write_bytes(other)
    with pytest.raises(CheckpointError) as err:
        repvit.create_model("repvit_m0_9", pretrained=True)
    assert str(wrong) in str(err.value) and "does not fit" in str(err.value)
    # a timm-named file holding the authors' layout: not what its name promises
    from tests.models.test_timm_parity import _timm_to_authors

    save_file({k: v.contiguous() for k, v in _timm_to_authors(_timm_file(tmp_path, "repvit_m0_9", 8)[1]
                                                               .state_dict()).items()}, str(wrong))
    with pytest.raises(CheckpointError, match="layout"):
        repvit.create_model(pretrained="repvit_m0_9.dist_300e_in1k")
    # --force replaces a bad copy with the served file
    good, _ = _timm_file(tmp_path, "repvit_m0_9", 6)
    hosts.add_hf("timm/repvit_m0_9.dist_300e_in1k", "model.safetensors", good)
    wrong.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert download_weights("repvit_m0_9", progress=False).read_bytes() == good


# ------------------------------------------------------------------------------------------------ CLI


def _cli(*args: str) -> int:
    from repvit.cli.main import main

    return main(["weights", *args])


def test_cli_list_download_path(hosts, m0_9_files, capsys):
    assert _cli("list", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(list_weights())
    assert rows["repvit_m0_9.dist_450e_in1k"]["url"] == \
        f"{hosts.url}/timm/repvit_m0_9.dist_450e_in1k/resolve/main/model.safetensors"
    assert rows["repvit_sam"]["url"] == f"{hosts.url}/THU-MIG/RepViT/releases/download/v1.0/repvit_sam.pt"
    assert rows["edge_sam"]["url"].endswith("/spaces/chongzhou/EdgeSAM/resolve/main/weights/edge_sam.pth")
    assert not any(r["cached"] for r in rows.values())
    data, _ = _authors_m0_6()
    hosts.add_github("repvit_m0_6_distill_300e.pth", data)
    assert _cli("path", "--no-download", "repvit_m0_6_distill_300e") == 1
    assert capsys.readouterr().out.strip() == str(manual_path("repvit_m0_6_distill_300e"))
    assert _cli("download", "repvit_m0_9.dist_450e_in1k", "repvit_m0_6_distill_300e") == 0
    capsys.readouterr()
    assert _cli("path", "repvit_m0_9.dist_450e_in1k") == 0
    assert Path(capsys.readouterr().out.strip()).read_bytes() == m0_9_files["dist_450e_in1k"].read_bytes()
    assert _cli("list", "--json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["repvit_m0_6_distill_300e"]["cached"] and rows["repvit_m0_6.dist_300e_in1k"]["cached"]
    assert Path(rows["repvit_m0_6_distill_300e"]["path"]).read_bytes() == data
    assert _cli("path", "no_such_weights") == 1
    err = capsys.readouterr().err
    assert "no_such_weights" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_runs_as_a_program(hosts, tmp_path, m0_9_files):
    """The entry point in a fresh process, with the environment (not monkeypatching) pointing at the hosts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "REPVIT_"))}
    env.update(HF_ENDPOINT=hosts.url, HF_HOME=str(tmp_path / "hf2"), TORCH_HOME=str(tmp_path / "torch2"),
               HF_HUB_DISABLE_TELEMETRY="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(repvit.__file__).parents[1]), env.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, "-m", "repvit", "weights", "path", "repvit_m0_9"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).read_bytes() == m0_9_files["dist_300e_in1k"].read_bytes()
    assert str(tmp_path / "hf2") in res.stdout


def test_cli_pretrained_flags(hosts, m0_9_files, tmp_path, capsys):
    from PIL import Image

    from repvit.bench.baselines import resolve_model
    from repvit.bench.runner import _with_weights
    from repvit.cli.main import main

    img = tmp_path / "img.png"
    Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy()).save(img)
    assert main(["predict", str(img), "--model", "repvit_m0_9", "--pretrained", "--json", "--topk", "3"]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert main(["predict", str(img), "--checkpoint", str(m0_9_files["dist_300e_in1k"]), "--json", "--topk", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == by_name and len(by_name["topk"]) == 3
    assert main(["predict", str(img), "--pretrained"]) == 1
    assert "--pretrained without a NAME needs --model" in capsys.readouterr().err
    assert main(["eval", "--pretrained", "repvit_m1_1_coco"]) == 1
    assert "detect weights" in capsys.readouterr().err
    # train: the weights name becomes the fine-tuning source (and decides the architecture)
    assert main(["train", "--pretrained", "repvit_m0_9.dist_450e_in1k", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["finetune"] == "repvit_m0_9.dist_450e_in1k" and cfg["model"] == "repvit_m0_9"
    from repvit.classification.model import _finetune_file

    assert Path(_finetune_file(cfg["finetune"])).read_bytes() == m0_9_files["dist_450e_in1k"].read_bytes()
    # bench: default weights for every repvit model that has them; a name for its architecture only
    bms = _with_weights([resolve_model(s) for s in ("repvit_m0_9", "repvit_m1_1:unfused", "mobileone_s1")], True)
    assert [b.weights for b in bms] == ["repvit_m0_9.dist_300e_in1k", "repvit_m1_1.dist_300e_in1k", None]
    bms = _with_weights([resolve_model(s) for s in ("repvit_m0_9", "repvit_m1_1")], "repvit_m1_1_distill_450e")
    assert [b.weights for b in bms] == [None, "repvit_m1_1_distill_450e"]
    with pytest.raises(ValueError, match="add it to --models"):
        _with_weights([resolve_model("repvit_m0_9")], "repvit_m2_3.dist_300e_in1k")


def test_hubconf_entry_points(hosts, m0_9_files, tmp_path):
    import importlib.util

    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("hubconf_under_test", repo / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    entries = [n for n in dir(hub) if callable(getattr(hub, n)) and not n.startswith("_")]  # as torch.hub.list
    assert hub.dependencies == ["torch", "timm"]
    assert sorted(entries) == sorted([*(n for n in repvit.list_models("repvit_*") if n in DEFAULT_TAGS), "repvit_sam",
                                      "edgetam"])
    assert type(torch.hub.load(str(repo), "edgetam", source="local", pretrained=False)).__name__ == "EdgeTAM"
    model = torch.hub.load(str(repo), "repvit_m0_9", source="local", pretrained="repvit_m0_9.dist_450e_in1k").eval()
    ref = timm.create_model("repvit_m0_9", pretrained=True,
                            pretrained_cfg_overlay={"file": str(m0_9_files["dist_450e_in1k"])}).eval()
    with torch.no_grad():
        assert rel_err(model(X), ref(X)) < 1e-5
    plain = torch.hub.load(str(repo), "repvit_m1_1", source="local", num_classes=0, global_pool="")
    with torch.no_grad():
        assert plain(X).shape == (2, 512, 3, 3)


def test_cli_export_pretrained_builds_the_published_model(hosts, m0_9_files, monkeypatch, tmp_path):
    import repvit.deploy.export as export_mod
    from repvit.cli.main import main

    seen = {}

    def fake_export(model, *a, **kw):  # stop before the (slow) export itself: the model is what is checked
        seen["model"] = model
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(export_mod, "export_model", fake_export)
    assert main(["export", "--model", "repvit_m0_9.dist_450e_in1k", "--pretrained",
                 "--output", str(tmp_path / "m.onnx")]) == 1
    ref = timm.create_model("repvit_m0_9", pretrained=True,
                            pretrained_cfg_overlay={"file": str(m0_9_files["dist_450e_in1k"])}).eval()
    with torch.no_grad():
        assert rel_err(seen["model"].eval()(X), ref(X)) < 1e-5


def test_train_build_model_starts_from_weights_by_name(hosts, m0_9_files):
    from repvit.classification.config import TrainConfig
    from repvit.classification.model import build_model

    cfg = TrainConfig().replace(model="repvit_m0_9", finetune="repvit_m0_9.dist_450e_in1k", distillation="none")
    with pytest.warns(UserWarning, match="head is not loaded"):
        model = build_model(cfg, 10).eval()
    ref = timm.create_model("repvit_m0_9", pretrained=True, num_classes=0,
                            pretrained_cfg_overlay={"file": str(m0_9_files["dist_450e_in1k"])}).eval()
    with torch.no_grad():
        assert model(X).shape == (2, 10)
        assert rel_err(model.forward_head(model.forward_features(X), pre_logits=True), ref(X)) < 1e-5


def test_edgetam_comes_from_the_second_host_when_hugging_face_lacks_it(hosts, tmp_path):
    from repvit.weights import second_url

    buf = io.BytesIO()
    torch.save({"model": {"no_mem_embed": torch.randn(1, 1, 256)}}, buf)
    data = buf.getvalue()
    github_path = "/facebookresearch/EdgeTAM/raw/main/checkpoints/edgetam.pt"
    assert second_url("edgetam") == hosts.url + github_path  # REPVIT_WEIGHTS_MIRROR stands in for github.com
    assert second_url("edge_sam") is None
    # neither host has it: one error naming both
    with pytest.raises(WeightsError) as err:
        download_weights("edgetam", progress=False)
    assert "facebook/EdgeTAM" in str(err.value) and github_path in str(err.value)
    assert cached_path("edgetam") is None
    hosts.files[github_path] = data  # only the authors' GitHub repository has it
    path = download_weights("edgetam", progress=False)
    assert path.read_bytes() == data and path == manual_path("edgetam") and cached_path("edgetam") == path
    assert ("GET", github_path) in hosts.requests
    # Hugging Face first when it has the file
    other = bytes(data)
    path.unlink()
    hosts.add_hf("facebook/EdgeTAM", "edgetam.pt", other)
    n = len(hosts.requests)
    assert download_weights("edgetam", progress=False).read_bytes() == other
    assert all(p != github_path for _, p in hosts.requests[n:])
