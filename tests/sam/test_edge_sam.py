"""EdgeSAM: its ``edge_sam.pth`` layout loads into ``build_repvit_sam`` and reproduces an independent
re-implementation of its encoder; fusing is exact; our formats round-trip; weight names resolve; ONNX parity.

The reference below is written here from EdgeSAM's model definition (its ``rep_vit.py``), independently of repvit's
modules and key converter: one flat ``features`` list (``features.0`` the stem, then the first RepViT release's
blocks with the legacy RepVGGDW), the fusion neck ``fuse_stage2`` / ``fuse_stage3.op_list.0`` and SAM's neck. The
prompt encoder and mask decoder are ``segment_anything``'s, assembled here into its ``Sam``.
"""


import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from repvit.models import CheckpointError
from repvit.sam import build_repvit_sam, save_repvit_sam
from tests.helpers import randomize_bn, rel_err

IMG = 128  # EdgeSAM is built for 1024; the architecture works at any multiple of 32, and 128 keeps the test fast

# EdgeSAM's "m1" (legacy RepViT-M0.9): (channels, SE, stride) per block after the stem
M1 = ([(48, 1, 1), (48, 0, 1), (48, 0, 1), (96, 0, 2), (96, 1, 1), (96, 0, 1), (96, 0, 1), (192, 0, 2)]
      + [(192, (i + 1) % 2, 1) for i in range(14)] + [(192, 0, 1), (384, 0, 2), (384, 1, 1), (384, 0, 1)])


class ConvBN(nn.Sequential):
    """The authors' Conv2d_BN: children ``c`` (conv without bias) and ``bn``."""

    def __init__(self, a, b, k=1, stride=1, pad=0, groups=1):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, k, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(b))


class LegacyRepVGGDW(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.conv = ConvBN(d, d, 3, 1, 1, groups=d)
        self.conv1 = ConvBN(d, d, 1, 1, 0, groups=d)

    def forward(self, x):
        return self.conv(x) + self.conv1(x) + x


class Residual(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return x + self.m(x)


class Block(nn.Module):
    def __init__(self, inp, oup, stride, use_se):
        super().__init__()
        from timm.layers import SqueezeExcite  # the module the authors import (timm's SEModule)

        se = SqueezeExcite(inp, 0.25) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(ConvBN(inp, inp, 3, 2, 1, groups=inp), se, ConvBN(inp, oup, 1))
        else:
            self.token_mixer = nn.Sequential(LegacyRepVGGDW(inp), se)
        self.channel_mixer = Residual(nn.Sequential(ConvBN(oup, 2 * oup), nn.GELU(), ConvBN(2 * oup, oup)))

    def forward(self, x):
        return self.channel_mixer(self.token_mixer(x))


class FuseStage3(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op_list = nn.ModuleList([nn.Conv2d(c, 256, 1, bias=False)])

    def forward(self, x):
        return F.interpolate(self.op_list[0](x), scale_factor=2, mode="bicubic", align_corners=False)


class EdgeSamEncoder(nn.Module):
    def __init__(self, img_size=IMG):
        super().__init__()
        from segment_anything.modeling.common import LayerNorm2d

        self.img_size = img_size
        layers = [nn.Sequential(ConvBN(3, 24, 3, 2, 1), nn.GELU(), ConvBN(24, 48, 3, 2, 1))]
        c = 48
        for oup, se, stride in M1:
            layers.append(Block(c, oup, stride, se))
            c = oup
        self.features = nn.ModuleList(layers)
        # the stride-16 tap: the last block before the first 384-channel (stride-2) block
        self.tap = next(i for i, (c, _, s) in enumerate(M1) if c == 384 and s == 2)  # index into features[1:]
        self.fuse_stage2 = nn.Conv2d(192, 256, 1, bias=False)
        self.fuse_stage3 = FuseStage3(384)
        self.neck = nn.Sequential(nn.Conv2d(256, 256, 1, bias=False), LayerNorm2d(256),
                                  nn.Conv2d(256, 256, 3, padding=1, bias=False), LayerNorm2d(256))

    def forward(self, x):
        x = self.features[0](x)
        for i, f in enumerate(self.features[1:]):
            if i == self.tap:
                mid = x
            x = f(x)
        return self.neck(self.fuse_stage2(mid) + self.fuse_stage3(x))


def reference_sam(img_size=IMG, seed=0):
    """segment_anything's Sam with the reference encoder, random weights and random BN / LayerNorm parameters."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    side = img_size // 16
    sam = Sam(EdgeSamEncoder(img_size),
              PromptEncoder(embed_dim=256, image_embedding_size=(side, side), input_image_size=(img_size, img_size),
                            mask_in_chans=16),
              MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=256,
                                                                                 mlp_dim=2048, num_heads=8),
                          transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in sam.image_encoder.named_parameters():
            if "neck" in name and p.dim() == 1:  # LayerNorm2d affine
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
        randomize_bn(sam.image_encoder, seed + 2)
    return sam.eval()


@pytest.fixture(scope="module")
def reference():
    return reference_sam()


@pytest.fixture(scope="module")
def edge_sam_pth(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("edge_sam") / "edge_sam.pth"
    sd = reference.state_dict()
    assert "image_encoder.fuse_stage3.op_list.0.weight" in sd
    assert "image_encoder.features.26.channel_mixer.m.0.c.weight" in sd  # 1 stem + 26 blocks
    torch.save(sd, path)  # a bare state dict, as released
    return path


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (100, 128, 3), dtype=np.uint8)


def _x(img_size=IMG, dtype=torch.float32):
    return torch.randn(1, 3, img_size, img_size, generator=torch.Generator().manual_seed(3)).to(dtype)


def _predict(sam, image, **prompt):
    from segment_anything import SamPredictor

    p = SamPredictor(sam)
    p.set_image(image)
    return p.predict(**prompt, return_logits=True)


PROMPTS = {
    "point": dict(point_coords=np.array([[60.0, 45.0]]), point_labels=np.array([1]), multimask_output=True),
    "box": dict(box=np.array([15.0, 10.0, 100.0, 90.0]), multimask_output=False),
}


def test_variant_builds_edge_sam_architecture():
    sam = build_repvit_sam(variant="edge_sam", img_size=IMG)
    cfg = sam.image_encoder.cfg
    assert (cfg.variant, cfg.neck, cfg.last_stride, cfg.upsample_mode) == ("repvit_m1", "fusion", 2, "bicubic")
    ref = EdgeSamEncoder(IMG)
    n = sum(p.numel() for p in sam.image_encoder.parameters())
    assert n == sum(p.numel() for p in ref.parameters())  # the same architecture, counted independently
    assert 5.4e6 < n < 5.6e6  # EdgeSAM's encoder: about 5.5 M parameters
    with torch.no_grad():
        assert sam.image_encoder(_x()).shape == (1, 256, IMG // 16, IMG // 16)


def test_edge_sam_layout_loads_and_reproduces(reference, edge_sam_pth, image):
    sam = build_repvit_sam(edge_sam_pth, img_size=IMG)  # the architecture is read from the keys
    assert sam.image_encoder.cfg.neck == "fusion" and sam.image_encoder.cfg.variant == "repvit_m1"
    with torch.no_grad():
        ref, got = reference.image_encoder(_x()), sam.image_encoder(_x())
    assert rel_err(got, ref) <= 1e-4
    for name, prompt in PROMPTS.items():
        m0, s0, l0 = _predict(reference, image, **prompt)
        m1, s1, l1 = _predict(sam, image, **prompt)
        assert rel_err(torch.from_numpy(l1), torch.from_numpy(l0)) <= 1e-4, name  # low-res mask logits
        assert np.allclose(s1, s0, atol=1e-5), name
        assert np.mean((m0 > 0) == (m1 > 0)) > 0.999, name


def test_fused_edge_sam(reference, edge_sam_pth):
    fused = build_repvit_sam(edge_sam_pth, fused=True, img_size=IMG)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.image_encoder.modules())
    with torch.no_grad():
        assert rel_err(fused.image_encoder(_x()), reference.image_encoder(_x())) <= 3e-4
        ref64 = reference.image_encoder.double()
        try:
            f64 = build_repvit_sam(edge_sam_pth, img_size=IMG).image_encoder.double().fuse()
            assert rel_err(f64(_x(dtype=torch.float64)), ref64(_x(dtype=torch.float64))) <= 1e-9
        finally:
            reference.image_encoder.float()


def test_our_formats_round_trip(edge_sam_pth, tmp_path):
    sam = build_repvit_sam(edge_sam_pth, img_size=IMG)
    with torch.no_grad():
        want = sam.image_encoder(_x())
    for fused in (False, True):
        model = build_repvit_sam(edge_sam_pth, img_size=IMG, fused=fused)
        path = save_repvit_sam(model, tmp_path / f"edge_{fused}.safetensors")
        again = build_repvit_sam(path, fused=fused)
        assert again.image_encoder.cfg == model.image_encoder.cfg
        with torch.no_grad():
            assert rel_err(again.image_encoder(_x()), want) <= (3e-4 if fused else 1e-6)
        torch.save(model.state_dict(), tmp_path / "plain.pt")  # a plain state dict in our layout
        if not fused:
            assert build_repvit_sam(tmp_path / "plain.pt").image_encoder.cfg.neck == "fusion"


def test_upsample_mode_setting(edge_sam_pth):
    bicubic = build_repvit_sam(edge_sam_pth, img_size=IMG)
    bilinear = build_repvit_sam(edge_sam_pth, img_size=IMG, upsample_mode="bilinear")
    assert bilinear.image_encoder.upsample.mode == "bilinear"
    with torch.no_grad():
        a, b = bicubic.image_encoder(_x()), bilinear.image_encoder(_x())
        bicubic.image_encoder.set_upsample_mode("bilinear")
        assert torch.equal(bicubic.image_encoder(_x()), b)
    assert not torch.allclose(a, b)  # the setting is used
    with pytest.raises(ValueError, match="upsample_mode"):
        build_repvit_sam(variant="edge_sam", img_size=IMG, upsample_mode="nearest")


def test_strict_loading(edge_sam_pth, tmp_path):
    from repvit.models import CheckpointMismatchError

    sd = torch.load(edge_sam_pth, weights_only=True)
    del sd["image_encoder.fuse_stage2.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(CheckpointMismatchError, match="fuse_stage2"):
        build_repvit_sam(tmp_path / "broken.pth", variant="edge_sam", img_size=IMG)


def test_weight_names_resolve(edge_sam_pth, monkeypatch):
    import repvit.weights

    asked = []
    monkeypatch.setattr(repvit.weights, "resolve_weights", lambda name: asked.append(name) or edge_sam_pth)
    sam = build_repvit_sam("edge_sam", img_size=IMG)
    assert asked == ["edge_sam"] and sam.image_encoder.cfg.neck == "fusion"
    with pytest.raises(CheckpointError, match="variant="):
        build_repvit_sam("repvit_sam_m0_9")  # a variant, not weights
    with pytest.raises(CheckpointError, match="does not exist"):
        build_repvit_sam("missing/edge_sam.pth")


def test_config_errors():
    from repvit.sam import RepViTSamConfig

    with pytest.raises(ValueError, match="last_stride=2"):
        RepViTSamConfig("repvit_m1", neck="fusion")
    with pytest.raises(ValueError, match="multiple of 32"):
        RepViTSamConfig("repvit_m1", img_size=240, last_stride=2, neck="fusion")
    with pytest.raises(ValueError, match="neck"):
        RepViTSamConfig("repvit_m1", neck="fpn")


@pytest.mark.slow  # ~15 s on two shared cores: three exports, each checked with ONNX Runtime
def test_onnx_encoder_and_decoder_parity(reference, edge_sam_pth, image, tmp_path):
    """``repvit sam export`` of an EdgeSAM checkpoint: the encoder (bicubic kept) and SAM's standard decoder, run
    with ONNX Runtime, against the independent reference."""
    ort = pytest.importorskip("onnxruntime", reason="ONNX export needs: pip install 'repvit-pytorch[onnx]'")
    from segment_anything import SamPredictor

    from repvit.cli.main import main
    from repvit.sam.export import DECODER_INPUTS

    assert main(["sam", "export", "--checkpoint", str(edge_sam_pth), "--img-size", str(IMG),
                 "--output-dir", str(tmp_path)]) == 0
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    enc = ort.InferenceSession(str(tmp_path / "encoder.onnx"), so, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(tmp_path / "decoder.onnx"), so, providers=["CPUExecutionProvider"])
    assert [i.name for i in enc.get_inputs()] == ["image"] and enc.get_inputs()[0].shape == [1, 3, IMG, IMG]
    assert [i.name for i in dec.get_inputs()] == DECODER_INPUTS
    p = SamPredictor(reference)
    p.set_image(image)
    ref_emb = p.get_image_embedding()
    x = reference.preprocess(torch.as_tensor(p.transform.apply_image(image)).permute(2, 0, 1)[None].float())
    emb = enc.run(None, {"image": x.numpy()})[0]
    assert rel_err(torch.from_numpy(emb), ref_emb) <= 1e-4
    coords = p.transform.apply_coords(np.array([[60.0, 45.0], [0.0, 0.0]]), image.shape[:2])
    feed = {"image_embeddings": emb, "point_coords": coords[None].astype(np.float32),
            "point_labels": np.array([[1, -1]], np.float32),
            "mask_input": np.zeros((1, 1, IMG // 4, IMG // 4), np.float32),
            "has_mask_input": np.zeros(1, np.float32), "orig_im_size": np.array(image.shape[:2], np.float32)}
    masks, iou, low = dec.run(None, feed)
    m, s, lo = p.predict(point_coords=np.array([[60.0, 45.0]]), point_labels=np.array([1]), multimask_output=True,
                         return_logits=True)
    best = int(np.argmax(s))  # SamOnnxModel's single mask for a point: the best-scoring multimask candidate
    assert masks.shape == (1, 1, *image.shape[:2]) and low.shape == (1, 1, IMG // 4, IMG // 4)
    assert rel_err(torch.from_numpy(masks[0, 0]), torch.from_numpy(m[best])) <= 1e-3
    assert rel_err(torch.from_numpy(low[0, 0]), torch.from_numpy(lo[best])) <= 1e-3
    assert iou[0, 0] == pytest.approx(float(s[best]), abs=1e-4)
    assert np.mean((masks[0, 0] > 0) == (m[best] > 0)) > 0.999

    # --preprocess-in-graph: raw 0..255 pixels in; the image's longest side is already IMG, so the graph's resize is
    # the identity and its output is SamPredictor's embedding of the same image
    assert main(["sam", "export", "--checkpoint", str(edge_sam_pth), "--img-size", str(IMG), "--preprocess-in-graph",
                 "--output-dir", str(tmp_path / "pp")]) == 0
    pp = ort.InferenceSession(str(tmp_path / "pp" / "encoder.onnx"), so, providers=["CPUExecutionProvider"])
    raw = image.transpose(2, 0, 1)[None].astype(np.float32)
    assert rel_err(torch.from_numpy(pp.run(None, {"image": raw})[0]), ref_emb) <= 1e-4


@pytest.mark.slow
def test_coreml_encoder_converts(edge_sam_pth, tmp_path):
    """coremltools has no bicubic upsampling: the Core ML encoder is written with bilinear (recorded)."""
    pytest.importorskip("coremltools", reason="Core ML export needs coremltools: pip install 'repvit-pytorch[coreml]'")
    from repvit.sam.export import export_encoder_coreml

    spec = export_encoder_coreml(build_repvit_sam(edge_sam_pth, img_size=IMG), tmp_path / "enc.mlpackage")["spec"]
    assert spec["is_ml_program"] and spec["outputs"][0]["shape"] == [1, 256, IMG // 16, IMG // 16]
    assert spec["metadata"]["upsample_mode"] == "bilinear" and spec["metadata"]["model"] == "edge-sam"
