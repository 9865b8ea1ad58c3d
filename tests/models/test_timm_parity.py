"""timm's RepViT port is the reference: its state dicts (saved to files) load into ours and give the same logits,
unfused and fused; so does an authors'-layout checkpoint built from them by renaming keys."""

from __future__ import annotations

import re

import pytest
import timm
import torch
from timm.models.repvit import RepVit as TimmRepVit

import repvit
from repvit.models.config import VARIANTS
from tests.helpers import randomize_bn, rel_err

TIMM_NAMES = [n for n in VARIANTS if n in timm.list_models("repvit_*")]


def _timm_model(name: str) -> torch.nn.Module:
    if name == "repvit_m0_6":  # timm has no m0_6: its RepVit class with m0_6's configuration
        cfg = VARIANTS[name]
        return TimmRepVit(embed_dim=cfg.widths, depth=cfg.depths, distillation=True)
    return timm.create_model(name, pretrained=False)


def test_timm_covers_the_variants_we_claim():
    assert set(TIMM_NAMES) == set(VARIANTS) - {"repvit_m0_6"}


# ------------------------------------------------------------------ authors' layout, written independently here
def _timm_to_authors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename timm keys to the authors' flat ``features.N`` layout, walking the stages in execution order."""
    stages = sorted({int(k.split(".")[1]) for k in sd if k.startswith("stages.")})
    units: list[tuple[str, str]] = [("stem.conv1.", "features.0.0."), ("stem.conv2.", "features.0.2.")]
    idx = 1
    for s in stages:
        if any(k.startswith(f"stages.{s}.downsample.") for k in sd):
            units.append((f"stages.{s}.downsample.pre_block.", f"features.{idx}.#s1"))
            idx += 1
            units.append((f"stages.{s}.downsample.", f"features.{idx}.#s2"))
            idx += 1
        blocks = sorted({int(k.split(".")[3]) for k in sd if k.startswith(f"stages.{s}.blocks.")})
        for b in blocks:
            units.append((f"stages.{s}.blocks.{b}.", f"features.{idx}.#s1"))
            idx += 1
    s1 = {"token_mixer.": "token_mixer.0.", "se.": "token_mixer.1.", "channel_mixer.conv1.": "channel_mixer.m.0.",
          "channel_mixer.conv2.": "channel_mixer.m.2."}
    s2 = {"spatial_downsample.": "token_mixer.0.", "channel_downsample.": "token_mixer.2.",
          "ffn.conv1.": "channel_mixer.m.0.", "ffn.conv2.": "channel_mixer.m.2."}
    out = {}
    for k, v in sd.items():
        if k.startswith("head.head_dist."):
            out["classifier.classifier_dist." + k[len("head.head_dist."):]] = v
            continue
        if k.startswith("head.head."):
            out["classifier.classifier." + k[len("head.head."):]] = v
            continue
        if k.startswith("head."):
            out["classifier." + k[len("head."):]] = v
            continue
        # longest matching unit prefix
        src, dst = max(((s, d) for s, d in units if k.startswith(s)), key=lambda u: len(u[0]))
        rest = k[len(src):]
        if dst.endswith("#s1") or dst.endswith("#s2"):
            table = s1 if dst.endswith("#s1") else s2
            base = dst[:-3]
            a = next(a for a in table if rest.startswith(a))
            out[base + table[a] + rest[len(a):]] = v
        else:
            out[dst + rest] = v
    return out


@pytest.fixture(scope="module", params=TIMM_NAMES + ["repvit_m0_6"])
def timm_pair(request, tmp_path_factory):
    name = request.param
    torch.manual_seed(0)
    ref = randomize_bn(_timm_model(name), seed=4).eval()
    path = tmp_path_factory.mktemp(name) / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    return name, ref, path


def test_timm_state_dict_file_loads_and_matches(timm_pair):
    name, ref, path = timm_pair
    x = torch.randn(2, 3, 128, 128)  # every layer at work (a 4 x 4 map in the last stage) at a third of 224's cost
    ours = repvit.create_model(name, distillation=True, checkpoint=path).eval()
    with torch.no_grad():
        r = ref(x)
        # the same arithmetic in another order: float32 rounding only (about 5e-7 of the largest logit on AVX2 and
        # AVX-512 machines; a wrong mapping or epsilon is 1e-3 or more)
        assert rel_err(ours(x), r) < 1e-5, "unfused logits differ from timm"
        fused = repvit.create_model(name, distillation=True, checkpoint=path, fused=True)
        assert rel_err(fused(x), r) < 1e-4, "fused logits differ from timm"
        # timm's own fuse, saved to a file, loads into our fused model
        timm_fused = _timm_model(name).eval()
        timm_fused.load_state_dict(ref.state_dict())
        timm_fused.fuse()
        fpath = path.with_name("fused.pth")
        torch.save(timm_fused.state_dict(), fpath)
        ours_ff = repvit.create_model(name, checkpoint=fpath, fused=True)
        assert rel_err(ours_ff(x), timm_fused(x)) < 1e-6


def test_authors_layout_loads_and_matches(timm_pair, tmp_path):
    name, ref, _ = timm_pair
    authors = _timm_to_authors(ref.state_dict())
    assert any(re.match(r"features\.\d+\.token_mixer\.0\.", k) for k in authors)
    path = tmp_path / f"{name}_distill_300e.pth"
    # the release wraps the weights in a dict with the training state beside them
    torch.save({"model": authors, "epoch": 299, "optimizer": {"state": {}, "param_groups": []}}, path)
    ours = repvit.create_model(name, checkpoint=path).eval()
    assert ours.distillation
    x = torch.randn(1, 3, 160, 192)
    with torch.no_grad():
        assert rel_err(ours(x), ref(x)) < 1e-5
    ckpt = repvit.models.read_checkpoint(path)
    assert ckpt.source_format == ("authors_legacy" if VARIANTS[name].token_mixer == "legacy" else "authors")


def test_authors_fused_layout_loads(tmp_path):
    ref = randomize_bn(timm.create_model("repvit_m1_1"), seed=5).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        r = ref(x)
    ref.fuse()
    authors = _timm_to_authors(ref.state_dict())
    assert "classifier.weight" in authors and "features.0.0.weight" in authors
    path = tmp_path / "fused.pth"
    torch.save({"model": authors}, path)
    ours = repvit.create_model("repvit_m1_1", checkpoint=path, fused=True)
    with torch.no_grad():
        assert rel_err(ours(x), r) < 1e-4


def test_features_only_loads_classifier_checkpoint(tmp_path):
    ref = randomize_bn(timm.create_model("repvit_m0_9"), seed=6).eval()
    path = tmp_path / "m.pth"
    torch.save(ref.state_dict(), path)
    feats = repvit.create_model("repvit_m0_9", features_only=True, checkpoint=path).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        ours = feats(x)
        theirs = ref.forward_intermediates(x, intermediates_only=True)
    assert len(ours) == 4
    for a, b in zip(ours, theirs):
        assert rel_err(a, b) < 1e-5
