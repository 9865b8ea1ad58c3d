"""RepViT-SAM checkpoints: the authors' ``repvit_sam.pt`` layout, ours, distillation checkpoints, clear errors."""

import numpy as np
import pytest
import torch

from repvit.models import CheckpointError, CheckpointMismatchError
from repvit.sam import build_repvit_sam, save_repvit_sam

# ---------------------------------------------------------------------------------------------------------------
# Our layout -> the authors' (written here from their model definition, independently of repvit's converter).
# Their classifier is one flat ``features`` list: features.0 is the stem (conv-BN, GELU, conv-BN); every later entry
# is a block with ``token_mixer`` (stride 1: Sequential(RepVGGDW, SE or Identity); stride 2: Sequential(dw conv-BN,
# SE or Identity, 1x1 conv-BN)) and ``channel_mixer`` (Residual(Sequential(conv-BN, GELU, conv-BN)), its ``m``).
# The pre-downsampling stride-1 block comes right before its stride-2 block.

_STRIDE1 = {"token_mixer.": "token_mixer.0.", "se.": "token_mixer.1.", "channel_mixer.conv1.": "channel_mixer.m.0.",
            "channel_mixer.conv2.": "channel_mixer.m.2."}
_STRIDE2 = {"spatial_downsample.": "token_mixer.0.", "channel_downsample.": "token_mixer.2.",
            "ffn.conv1.": "channel_mixer.m.0.", "ffn.conv2.": "channel_mixer.m.2."}


def to_authors_layout(sam_sd: dict) -> dict:
    enc = "image_encoder.trunk."
    trunk = {k[len(enc):]: v for k, v in sam_sd.items() if k.startswith(enc)}
    blocks = []  # (our prefix, rules) in execution order
    n_stages = 1 + max(int(k.split(".")[1]) for k in trunk if k.startswith("stages."))
    for s in range(n_stages):
        if s > 0:
            blocks.append((f"stages.{s}.downsample.pre_block.", _STRIDE1))
            blocks.append((f"stages.{s}.downsample.", _STRIDE2))
        n_blocks = len({k.split(".")[3] for k in trunk if k.startswith(f"stages.{s}.blocks.")})
        blocks += [(f"stages.{s}.blocks.{b}.", _STRIDE1) for b in range(n_blocks)]
    out = {}
    for k, v in trunk.items():
        if k.startswith("stem."):
            new = k.replace("stem.conv1.", "features.0.0.").replace("stem.conv2.", "features.0.2.")
        else:
            # longest prefix first: "stages.1.downsample.pre_block." before "stages.1.downsample."
            i, (prefix, rules) = max(((i, b) for i, b in enumerate(blocks) if k.startswith(b[0])),
                                     key=lambda t: len(t[1][0]))
            rest = k[len(prefix):]
            src = next(r for r in rules if rest.startswith(r))
            new = f"features.{i + 1}." + rules[src] + rest[len(src):]
        out["image_encoder." + new] = v
    out.update({k: v for k, v in sam_sd.items() if not k.startswith(enc)})
    return out


def _predict(sam, image, **prompt):
    from segment_anything import SamPredictor

    p = SamPredictor(sam)
    p.set_image(image)
    return p.predict(**prompt, return_logits=True), p.get_image_embedding()


PROMPTS = {
    "point": dict(point_coords=np.array([[250.0, 160.0]]), point_labels=np.array([1]), multimask_output=True),
    "points": dict(point_coords=np.array([[250.0, 160.0], [300, 400]]), point_labels=np.array([1, 0]),
                   multimask_output=False),
    "box": dict(box=np.array([120.0, 20.0, 420.0, 500.0]), multimask_output=False),
}


def test_authors_layout_loads_and_reproduces(small_sam, astronaut, tmp_path):
    sd = to_authors_layout(small_sam.state_dict())
    assert any(k.startswith("image_encoder.features.20.") for k in sd)  # M0.9: 1 stem + 20 blocks
    assert not any(".trunk." in k for k in sd)
    torch.save(sd, tmp_path / "repvit_sam.pt")
    loaded = build_repvit_sam(tmp_path / "repvit_sam.pt", img_size=256)  # the variant is read from the keys
    assert loaded.image_encoder.cfg.variant == "repvit_m0_9"
    for name, prompt in PROMPTS.items():
        (m0, s0, l0), e0 = _predict(small_sam, astronaut, **prompt)
        (m1, s1, l1), e1 = _predict(loaded, astronaut, **prompt)
        assert torch.equal(e0, e1), name  # the same image embedding
        assert np.array_equal(m0, m1) and np.array_equal(s0, s1), name  # the same mask logits and IoU scores
        assert np.array_equal(m0 > 0, m1 > 0) and (m0 > 0).any(), name


def test_ours_roundtrip_fused_and_unfused(small_sam, tmp_path):
    x = torch.randn(1, 3, 256, 256)
    path = save_repvit_sam(small_sam, tmp_path / "sam.safetensors")
    again = build_repvit_sam(path)  # variant and img_size from the metadata
    assert again.image_encoder.img_size == 256
    with torch.no_grad():
        ref = small_sam.image_encoder(x)
        assert torch.equal(again.image_encoder(x), ref)
    fused = build_repvit_sam(path, fused=True)
    fpath = save_repvit_sam(fused, tmp_path / "fused.safetensors")
    with pytest.raises(CheckpointError, match="fused=True"):
        build_repvit_sam(fpath)
    with torch.no_grad():
        out = build_repvit_sam(fpath, fused=True).image_encoder(x)
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_mismatch_is_a_clear_error(small_sam, tmp_path):
    path = save_repvit_sam(small_sam, tmp_path / "sam.safetensors")
    with pytest.raises(CheckpointMismatchError, match="does not match") as e:
        build_repvit_sam(path, variant="m1_1")
    assert e.value.mismatched and e.value.unexpected  # M0.9 weights into an M1.1: wider and fewer blocks
    sd = small_sam.state_dict()
    sd.pop("mask_decoder.iou_token.weight")
    torch.save(sd, tmp_path / "partial.pt")
    with pytest.raises(CheckpointMismatchError, match="missing keys.*iou_token"):
        build_repvit_sam(tmp_path / "partial.pt", img_size=256)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        build_repvit_sam(tmp_path / "bad.pt")
    torch.save({"image_encoder.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, tmp_path / "vit.pt")
    with pytest.raises(CheckpointError, match="original SAM"):
        build_repvit_sam(tmp_path / "vit.pt")


def test_encoder_only_checkpoint_needs_a_decoder(small_sam, tmp_path):
    """A distillation checkpoint holds the student encoder; the prompt encoder and mask decoder come from a SAM
    checkpoint (here a segment_anything ViT-B state dict)."""
    from segment_anything import sam_model_registry

    train_ckpt = {"model": small_sam.image_encoder.state_dict(), "task": "sam-distill", "config": {},
                  "meta": {"sam_config": small_sam.image_encoder.cfg.to_dict()}}
    torch.save(train_ckpt, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="decoder_checkpoint"):
        build_repvit_sam(tmp_path / "best.pt")
    vit_b = sam_model_registry["vit_b"]()
    torch.save(vit_b.state_dict(), tmp_path / "sam_vit_b.pth")
    sam = build_repvit_sam(tmp_path / "best.pt", decoder_checkpoint=tmp_path / "sam_vit_b.pth")
    assert sam.image_encoder.img_size == 256
    assert torch.equal(sam.mask_decoder.iou_token.weight, vit_b.mask_decoder.iou_token.weight)
    assert torch.equal(sam.image_encoder.neck[0].weight, small_sam.image_encoder.neck[0].weight)
    torch.save({**train_ckpt, "task": "segment"}, tmp_path / "seg.pt")
    with pytest.raises(CheckpointError, match="not of `repvit sam distill`"):
        build_repvit_sam(tmp_path / "seg.pt")


@pytest.mark.slow
def test_authors_layout_m2_3_at_1024(tmp_path, astronaut):
    """The authors' model itself: M2.3 at 1024, read back from their layout with nothing but the file."""
    from .conftest import _randomize

    sam = _randomize(build_repvit_sam(), seed=5).eval()
    torch.save(to_authors_layout(sam.state_dict()), tmp_path / "repvit_sam.pt")
    loaded = build_repvit_sam(tmp_path / "repvit_sam.pt")
    assert loaded.image_encoder.cfg == sam.image_encoder.cfg
    (m0, s0, _), e0 = _predict(sam, astronaut, **PROMPTS["box"])
    (m1, s1, _), e1 = _predict(loaded, astronaut, **PROMPTS["box"])
    assert e0.shape == (1, 256, 64, 64) and torch.equal(e0, e1)
    assert np.array_equal(m0, m1) and np.array_equal(s0, s1)

