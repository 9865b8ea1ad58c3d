"""The RepViT-SAM encoder: architecture facts, SAM's neck and parts, and exact re-parameterization."""

import pytest
import torch

import repvit
from repvit.models import is_fused
from repvit.sam import SAM_VARIANTS, RepViTSamEncoder, build_repvit_sam, get_sam_config
from tests.helpers import randomize_bn, rel_err


def test_m2_3_parameter_count_and_stride():
    enc = RepViTSamEncoder()  # the authors' RepViT-SAM: M2.3 at 1024
    assert enc.img_size == 1024 and enc.cfg.variant == "repvit_m2_3"
    assert sum(p.numel() for p in enc.parameters()) == 23_158_920  # RepViT-SAM's published encoder size
    assert enc.trunk_channels == 640
    # the last downsampling runs at stride 1: the trunk stays at stride 16 where the classifier goes to 32
    classifier = repvit.create_model("repvit_m2_3", features_only=True)
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        assert classifier.eval()(x)[-1].shape == (1, 640, 4, 4)
        assert enc.eval().forward_trunk(x).shape == (1, 640, 8, 8)
        assert enc(x).shape == (1, 256, 8, 8)


def test_embedding_shape_at_1024():
    enc = RepViTSamEncoder(get_sam_config("m0_9")).eval()  # same stride as M2.3, 4x cheaper
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 1024, 1024)).shape == (1, 256, 64, 64)


def test_neck_is_sams():
    """Same weights in segment_anything's own ViT neck give the same output (conv 1x1, LN2d, conv 3x3, LN2d)."""
    from segment_anything.modeling import ImageEncoderViT

    enc = RepViTSamEncoder(get_sam_config("m0_9", img_size=64)).eval()
    vit = ImageEncoderViT(img_size=64, patch_size=16, embed_dim=384, depth=1, num_heads=2, out_chans=256).eval()
    assert [type(m) for m in enc.neck] == [type(m) for m in vit.neck]
    for p in enc.neck.parameters():
        torch.nn.init.normal_(p, std=0.1)
    vit.neck.load_state_dict(enc.neck.state_dict())  # strict: same names and shapes
    assert vit.neck[1].eps == enc.neck[1].eps == 1e-6
    x = torch.randn(2, 384, 4, 4)
    with torch.no_grad():
        assert torch.equal(enc.neck(x), vit.neck(x))


def test_sam_parts_match_segment_anything():
    """Prompt encoder, mask decoder and pixel statistics are SAM's: same parameter names and shapes as the ViT-B
    SAM that segment_anything builds, and the same mean/std."""
    from segment_anything import sam_model_registry

    ref = sam_model_registry["vit_b"]()
    ours = build_repvit_sam(variant="m0_9")
    for part in ("prompt_encoder", "mask_decoder"):
        a = {k: v.shape for k, v in getattr(ours, part).state_dict().items()}
        b = {k: v.shape for k, v in getattr(ref, part).state_dict().items()}
        assert a == b, part
    assert torch.equal(ours.pixel_mean, ref.pixel_mean) and torch.equal(ours.pixel_std, ref.pixel_std)
    assert ours.mask_decoder.num_multimask_outputs == 3 and ours.prompt_encoder.image_embedding_size == (64, 64)
    assert type(ours).__module__.startswith("segment_anything")


@pytest.mark.parametrize("name", sorted(SAM_VARIANTS))
def test_fuse_exact_float64(name):
    """Re-parameterization with randomized BatchNorm statistics is exact to 1e-9 relative in float64."""
    enc = randomize_bn(RepViTSamEncoder(get_sam_config(name, img_size=64)), seed=3).double().eval()
    fused = enc.fuse()
    assert is_fused(fused) and not is_fused(enc)
    assert fused.trunk.stages[3].downsample.spatial_downsample.stride == (1, 1)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ref, out = enc(x), fused(x)
    assert out.dtype == torch.float64 and rel_err(out, ref) < 1e-9
    assert is_fused(fused.fuse())  # idempotent


def test_build_fused_flag(small_sam):
    from repvit.sam import is_fused_sam

    sam = build_repvit_sam(variant="m0_9", img_size=256, fused=True)
    assert is_fused_sam(sam) and not is_fused_sam(small_sam)


def test_config_errors():
    with pytest.raises(ValueError, match="multiple of 16"):
        get_sam_config("m0_9", img_size=100)
    with pytest.raises(ValueError, match="unknown model"):
        get_sam_config("m9_9")
    assert get_sam_config("repvit_sam_m2_3") == get_sam_config("m2_3") == get_sam_config(None)
