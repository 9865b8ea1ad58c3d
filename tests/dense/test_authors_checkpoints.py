"""The authors' dense checkpoints (mmseg 0.30 Semantic FPN, mmdet 2.x Mask R-CNN) load exactly.

The checkpoints are written here, in the authors' layouts, with random weights (random BatchNorm statistics too).
The references are independent of the package: the backbone is timm's RepViT (forward hooks give the authors'
segmentation taps), and mmseg's FPN neck and FPNHead are re-implemented below from their published behaviour.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import repvit

timm = pytest.importorskip("timm")

MODEL = "repvit_m1_1"  # the authors' segmentation/detection backbone (taps features.[3, 7, 21, 24])
WIDTHS = (64, 128, 256, 512)
NUM_CLASSES = 150

# our (timm's) suffixes -> the authors' suffixes, for a stride-1 block and for a downsampling (stride-2) block
_BLOCK = (("token_mixer.", "token_mixer.0."), ("se.", "token_mixer.1."),
          ("channel_mixer.conv1.", "channel_mixer.m.0."), ("channel_mixer.conv2.", "channel_mixer.m.2."))
_DOWN = (("spatial_downsample.", "token_mixer.0."), ("channel_downsample.", "token_mixer.2."),
         ("ffn.conv1.", "channel_mixer.m.0."), ("ffn.conv2.", "channel_mixer.m.2."))


def _randomize_bn(module: torch.nn.Module, g: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.2
            m.running_mean = torch.randn(n, generator=g) * 0.2
            m.running_var = torch.rand(n, generator=g) * 1.5 + 0.5


@pytest.fixture(scope="module")
def timm_backbone():
    torch.manual_seed(0)
    m = timm.create_model(MODEL, pretrained=False, num_classes=0)
    _randomize_bn(m, torch.Generator().manual_seed(1))
    return m.eval()


def _to_authors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's RepViT state dict in the authors' flat ``features.N`` layout (written here from their model code)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def put(prefix: str, index: int, rules, skip: str | None = None) -> None:
        for k, v in sd.items():
            if not k.startswith(prefix) or (skip and k.startswith(skip)):
                continue
            rest = k[len(prefix):]
            src, dst = next((a, b) for a, b in rules if rest.startswith(a))
            out[f"features.{index}.{dst}{rest[len(src):]}"] = v
            used.add(k)

    put("stem.", 0, (("conv1.", "0."), ("conv2.", "2.")))
    index = 1
    stages = sorted({int(k.split(".")[1]) for k in sd if k.startswith("stages.")})
    for s in stages:
        if any(k.startswith(f"stages.{s}.downsample.") for k in sd):
            put(f"stages.{s}.downsample.pre_block.", index, _BLOCK)
            put(f"stages.{s}.downsample.", index + 1, _DOWN, skip=f"stages.{s}.downsample.pre_block.")
            index += 2
        blocks = sorted({int(k.split(".")[3]) for k in sd if k.startswith(f"stages.{s}.blocks.")})
        for b in blocks:
            put(f"stages.{s}.blocks.{b}.", index, _BLOCK)
            index += 1
    assert used == {k for k in sd if not k.startswith("head.")}
    return out


def _rand(g: torch.Generator, *shape: int, fan_in: int | None = None) -> torch.Tensor:
    scale = 1.0 / math.sqrt(fan_in) if fan_in else 0.1
    return torch.randn(*shape, generator=g) * scale


def _bn(g: torch.Generator, prefix: str, n: int) -> dict[str, torch.Tensor]:
    return {f"{prefix}.weight": torch.rand(n, generator=g) + 0.5, f"{prefix}.bias": torch.randn(n, generator=g) * 0.2,
            f"{prefix}.running_mean": torch.randn(n, generator=g) * 0.2,
            f"{prefix}.running_var": torch.rand(n, generator=g) * 1.5 + 0.5,
            f"{prefix}.num_batches_tracked": torch.tensor(1000)}


def _fpn_neck_sd(g: torch.Generator, prefix: str = "neck", c: int = 256) -> dict[str, torch.Tensor]:
    sd = {}
    for i, w in enumerate(WIDTHS):
        sd[f"{prefix}.lateral_convs.{i}.conv.weight"] = _rand(g, c, w, 1, 1, fan_in=w)
        sd[f"{prefix}.lateral_convs.{i}.conv.bias"] = _rand(g, c)
        sd[f"{prefix}.fpn_convs.{i}.conv.weight"] = _rand(g, c, c, 3, 3, fan_in=9 * c)
        sd[f"{prefix}.fpn_convs.{i}.conv.bias"] = _rand(g, c)
    return sd


# ------------------------------------------------------------------------ mmseg, re-implemented from its behaviour

STRIDES = (4, 8, 16, 32)


def _mmseg_head_sd(g: torch.Generator, channels: int = 128) -> dict[str, torch.Tensor]:
    sd = {}
    for i, s in enumerate(STRIDES):
        n = max(1, int(math.log2(s) - math.log2(STRIDES[0])))
        j = 0
        for k in range(n):
            cin = 256 if k == 0 else channels
            sd[f"decode_head.scale_heads.{i}.{j}.conv.weight"] = _rand(g, channels, cin, 3, 3, fan_in=9 * cin)
            sd.update(_bn(g, f"decode_head.scale_heads.{i}.{j}.bn", channels))
            j += 2 if s != STRIDES[0] else 1  # a bilinear Upsample (no weights) follows each conv of levels > 0
    sd["decode_head.conv_seg.weight"] = _rand(g, NUM_CLASSES, channels, 1, 1, fan_in=channels)
    sd["decode_head.conv_seg.bias"] = _rand(g, NUM_CLASSES)
    return sd


def _ref_fpn(feats: list[torch.Tensor], sd: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """mmseg's FPN neck (no norm, no activation, nearest top-down, num_outs = inputs)."""
    lat = [F.conv2d(f, sd[f"neck.lateral_convs.{i}.conv.weight"], sd[f"neck.lateral_convs.{i}.conv.bias"])
           for i, f in enumerate(feats)]
    for i in range(len(lat) - 1, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="nearest")
    return [F.conv2d(x, sd[f"neck.fpn_convs.{i}.conv.weight"], sd[f"neck.fpn_convs.{i}.conv.bias"], padding=1)
            for i, x in enumerate(lat)]


def _ref_fpn_head(feats: list[torch.Tensor], sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """mmseg's FPNHead in eval mode: ConvModule (3x3 conv without bias, BN, ReLU) chains, x2 bilinear upsampling
    for levels > 0, sum, (dropout), 1x1 conv_seg."""
    out = None
    for i, x in enumerate(feats):
        n = max(1, int(math.log2(STRIDES[i]) - math.log2(STRIDES[0])))
        j = 0
        for _ in range(n):
            p = f"decode_head.scale_heads.{i}.{j}"
            x = F.conv2d(x, sd[f"{p}.conv.weight"], None, padding=1)
            x = F.batch_norm(x, sd[f"{p}.bn.running_mean"], sd[f"{p}.bn.running_var"], sd[f"{p}.bn.weight"],
                             sd[f"{p}.bn.bias"], False, 0.0, 1e-5)
            x = F.relu(x)
            j += 1
            if STRIDES[i] != STRIDES[0]:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                j += 1
        out = x if out is None else out + F.interpolate(x, size=out.shape[2:], mode="bilinear", align_corners=False)
    return F.conv2d(out, sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"])


def _segment_taps(backbone: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The authors' segmentation taps from timm's model: after stages[s+1].downsample.pre_block, and the end."""
    got: dict[int, torch.Tensor] = {}
    hooks = [backbone.stages[s + 1].downsample.pre_block.register_forward_hook(
        lambda mod, inp, out, s=s: got.__setitem__(s, out)) for s in range(3)]
    try:
        last = backbone.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    return [got[0], got[1], got[2], last]


@pytest.fixture(scope="module")
def mmseg_file(tmp_path_factory, timm_backbone):
    g = torch.Generator().manual_seed(2)
    sd = {f"backbone.{k}": v for k, v in _to_authors(timm_backbone.state_dict()).items()}
    sd.update(_fpn_neck_sd(g))
    sd.update(_mmseg_head_sd(g))
    path = tmp_path_factory.mktemp("mmseg") / "repvit_m1_1_ade20k.pth"
    torch.save({"meta": {}, "state_dict": sd}, path)
    return path, sd


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@torch.no_grad()
def test_mmseg_semantic_fpn_gives_mmseg_logits(mmseg_file, timm_backbone):
    path, sd = mmseg_file
    model = repvit.load_segmenter(path)
    fused = repvit.load_segmenter(path, fused=True)
    assert not model.training and not fused.training and model.num_classes == NUM_CLASSES
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    g = torch.Generator().manual_seed(3)
    for h, w in ((64, 64), (96, 128)):
        x = torch.randn(2, 3, h, w, generator=g)
        ref = _ref_fpn_head(_ref_fpn(_segment_taps(timm_backbone, x), sd), sd)
        ref = F.interpolate(ref, size=(h, w), mode="bilinear", align_corners=False)
        out, out_fused = model(x), fused(x)
        assert out.shape == ref.shape == (2, NUM_CLASSES, h, w)
        assert _rel(out, ref) <= 1e-4, (h, w, _rel(out, ref))
        assert _rel(out_fused, ref) <= 1e-4, (h, w, _rel(out_fused, ref))


def test_mmseg_loader_is_strict(tmp_path, mmseg_file):
    from repvit.io import CheckpointError

    _, sd = mmseg_file
    extra = dict(sd, **{"decode_head.conv_seg.extra": torch.zeros(1)})
    torch.save({"meta": {}, "state_dict": extra}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="conv_seg.extra"):
        repvit.load_segmenter(tmp_path / "extra.pth")
    missing = {k: v for k, v in sd.items() if k != "decode_head.scale_heads.3.2.bn.running_var"}
    torch.save({"meta": {}, "state_dict": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="scale_heads.3.2.1.running_var"):
        repvit.load_segmenter(tmp_path / "missing.pth")


def test_numpy_values_in_meta_load(tmp_path, mmseg_file):
    import numpy as np

    _, sd = mmseg_file
    meta = {"hook_msgs": {"best_score": np.float64(0.4), "iter": np.int64(40000)}, "arr": np.zeros(3, np.float32),
            "CLASSES": tuple(f"c{i}" for i in range(NUM_CLASSES))}
    torch.save({"meta": meta, "state_dict": sd}, tmp_path / "np.pth")
    model = repvit.load_segmenter(tmp_path / "np.pth")
    assert model.class_names[:2] == ["c0", "c1"]


def test_missing_file_and_unresolvable_name():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        repvit.load_segmenter("no/such/file.pth")


def test_align_resize_matches_the_authors_sizes():
    from repvit.dense.segmentation.data import AlignResize

    ar = AlignResize((2048, 512), 32)
    # mmcv.imrescale: scale = min(2048 / long, 512 / short); sides int(x * scale + 0.5); then ceil to 32
    for (h, w) in ((300, 400), (48, 64), (683, 512), (256, 3000)):
        s = min(2048 / max(h, w), 512 / min(h, w))
        nh, nw = int(h * s + 0.5), int(w * s + 0.5)
        assert ar.sizes(h, w) == ((nh, nw), (math.ceil(nh / 32) * 32, math.ceil(nw / 32) * 32))
    img = torch.full((3, 48, 64), 124, dtype=torch.uint8)
    out = ar(img)
    assert out.shape == (3, 512, 704)
    expected = (124 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(out[:, 100, 100], expected, atol=1e-5)


def test_segment_eval_uses_the_authors_pipeline(tmp_path, mmseg_file):
    from repvit.dense.segmentation.evaluate import evaluate_checkpoint
    from tests.dense.segmentation._ade import make_ade_folder

    path, _ = mmseg_file
    root = make_ade_folder(tmp_path / "ade", num_classes=NUM_CLASSES, n_train=1, n_val=2, size=(40, 56))
    res = evaluate_checkpoint(path, str(root), batch_size=8)
    assert res["images"] == 2 and "AlignResize" in res["pipeline"]
    assert 0.0 <= res["miou"] <= 1.0 and len(res["per_class_iou"]) == NUM_CLASSES
    with pytest.raises(ValueError, match="ADE20K-layout"):
        evaluate_checkpoint(path, None)


# ---------------------------------------------------------------------------------------------- mmdet Mask R-CNN

K = 80  # COCO classes in mmdet (background last in fc_cls, absent in fc_reg / conv_logits)


def _mmdet_heads_sd(g: torch.Generator) -> dict[str, torch.Tensor]:
    sd = _fpn_neck_sd(g)
    sd["rpn_head.rpn_conv.weight"], sd["rpn_head.rpn_conv.bias"] = _rand(g, 256, 256, 3, 3), _rand(g, 256)
    sd["rpn_head.rpn_cls.weight"], sd["rpn_head.rpn_cls.bias"] = _rand(g, 3, 256, 1, 1), _rand(g, 3)
    sd["rpn_head.rpn_reg.weight"], sd["rpn_head.rpn_reg.bias"] = _rand(g, 12, 256, 1, 1), _rand(g, 12)
    sd["roi_head.bbox_head.shared_fcs.0.weight"] = _rand(g, 1024, 256 * 7 * 7, fan_in=256 * 49)
    sd["roi_head.bbox_head.shared_fcs.0.bias"] = _rand(g, 1024)
    sd["roi_head.bbox_head.shared_fcs.1.weight"] = _rand(g, 1024, 1024, fan_in=1024)
    sd["roi_head.bbox_head.shared_fcs.1.bias"] = _rand(g, 1024)
    sd["roi_head.bbox_head.fc_cls.weight"] = _rand(g, K + 1, 1024)
    sd["roi_head.bbox_head.fc_cls.bias"] = _rand(g, K + 1)
    sd["roi_head.bbox_head.fc_reg.weight"] = _rand(g, 4 * K, 1024)
    sd["roi_head.bbox_head.fc_reg.bias"] = _rand(g, 4 * K)
    for i in range(4):
        sd[f"roi_head.mask_head.convs.{i}.conv.weight"] = _rand(g, 256, 256, 3, 3, fan_in=9 * 256)
        sd[f"roi_head.mask_head.convs.{i}.conv.bias"] = _rand(g, 256)
    sd["roi_head.mask_head.upsample.weight"] = _rand(g, 256, 256, 2, 2)  # ConvTranspose2d: (in, out, kh, kw)
    sd["roi_head.mask_head.upsample.bias"] = _rand(g, 256)
    sd["roi_head.mask_head.conv_logits.weight"] = _rand(g, K, 256, 1, 1)
    sd["roi_head.mask_head.conv_logits.bias"] = _rand(g, K)
    return sd


# mmdet -> torchvision, for the class-independent tensors (written from both libraries' module names)
_TV_NAME = {
    **{f"neck.lateral_convs.{i}.conv.{p}": f"backbone.fpn.inner_blocks.{i}.0.{p}" for i in range(4)
       for p in ("weight", "bias")},
    **{f"neck.fpn_convs.{i}.conv.{p}": f"backbone.fpn.layer_blocks.{i}.0.{p}" for i in range(4)
       for p in ("weight", "bias")},
    **{f"rpn_head.rpn_{a}.{p}": f"rpn.head.{b}.{p}" for a, b in (("conv", "conv.0.0"), ("cls", "cls_logits"),
                                                                 ("reg", "bbox_pred")) for p in ("weight", "bias")},
    **{f"roi_head.bbox_head.shared_fcs.{i}.{p}": f"roi_heads.box_head.fc{6 + i}.{p}" for i in range(2)
       for p in ("weight", "bias")},
    **{f"roi_head.mask_head.convs.{i}.conv.{p}": f"roi_heads.mask_head.{i}.0.{p}" for i in range(4)
       for p in ("weight", "bias")},
    **{f"roi_head.mask_head.upsample.{p}": f"roi_heads.mask_predictor.conv5_mask.{p}" for p in ("weight", "bias")},
}


@pytest.fixture(scope="module")
def mmdet_file(tmp_path_factory, timm_backbone):
    sd = {f"backbone.{k}": v for k, v in _to_authors(timm_backbone.state_dict()).items()}
    sd.update(_mmdet_heads_sd(torch.Generator().manual_seed(4)))
    path = tmp_path_factory.mktemp("mmdet") / "repvit_m1_1_coco.pth"
    torch.save({"meta": {"CLASSES": tuple(str(i) for i in range(K))}, "state_dict": sd}, path)
    return path, sd


@torch.no_grad()
def test_mmdet_maskrcnn_maps_every_tensor_and_reorders_classes(mmdet_file, timm_backbone):
    path, sd = mmdet_file
    model = repvit.load_detector(path)
    assert not model.training
    own = model.state_dict()
    # the backbone: our layout is timm's
    for k, v in timm_backbone.state_dict().items():
        assert torch.equal(own[f"backbone.backbone.{k}"], v), k
    for mm, tv in _TV_NAME.items():
        assert torch.equal(own[tv], sd[mm]), (mm, tv)
    order = [K] + list(range(K))  # torchvision row 0 is the background = mmdet's last row
    for p in ("weight", "bias"):
        cls = own[f"roi_heads.box_predictor.cls_score.{p}"]
        assert torch.equal(cls, sd[f"roi_head.bbox_head.fc_cls.{p}"][order])
        reg = own[f"roi_heads.box_predictor.bbox_pred.{p}"]
        assert reg.shape[0] == 4 * (K + 1)
        for k in range(1, K + 1):
            assert torch.equal(reg[4 * k: 4 * k + 4], sd[f"roi_head.bbox_head.fc_reg.{p}"][4 * (k - 1): 4 * k])
        assert not reg[:4].any()
        logits = own[f"roi_heads.mask_predictor.mask_fcn_logits.{p}"]
        assert torch.equal(logits[1:], sd[f"roi_head.mask_head.conv_logits.{p}"]) and not logits[0].any()
    mapped = ({f"backbone.backbone.{k}" for k in timm_backbone.state_dict()} | set(_TV_NAME.values())
              | {k for k in own if k.startswith(("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn"))})
    assert mapped == set(own)  # nothing in the model is left without a tensor from the file
    assert len(model.class_names) == K + 1 and model.class_names[1] == "person"


@torch.no_grad()
def test_mmdet_test_settings(mmdet_file):
    path, _ = mmdet_file
    model = repvit.load_detector(path, fused=True)
    rpn, roi = model.rpn, model.roi_heads
    assert rpn._pre_nms_top_n["testing"] == 1000 and rpn._post_nms_top_n["testing"] == 1000
    assert rpn.nms_thresh == 0.7 and roi.score_thresh == 0.05 and roi.nms_thresh == 0.5
    assert roi.detections_per_img == 100 and roi.box_coder.weights == (10.0, 10.0, 5.0, 5.0)  # 1 / (.1,.1,.2,.2)
    assert rpn.box_coder.weights == (1.0, 1.0, 1.0, 1.0)  # mmdet's RPN target_stds are 1
    assert model.transform.min_size == (800,) and model.transform.max_size == 1333
    # mmdet's anchors: base size = stride, scale 8, ratios 0.5/1/2 (h/w), centred on the cell's corner, unrounded
    anchors = model.rpn.anchor_generator.cell_anchors
    for stride, cell in zip((4, 8, 16, 32, 64), anchors):
        r = torch.tensor([0.5, 1.0, 2.0])
        w, h = stride * 8 / torch.sqrt(r), stride * 8 * torch.sqrt(r)
        assert torch.allclose(cell, torch.stack([-w / 2, -h / 2, w / 2, h / 2], 1), atol=1e-4)
    assert cell[0, 0] != torch.round(cell[0, 0])
    # fixed strides: a 96 x 160 batch has a 2 x 3 P6 grid, at stride 64 (torchvision's rule: 96 // 2 = 48)
    from torchvision.models.detection.image_list import ImageList

    feats = [torch.zeros(1, 1, 96 // s, 160 // s) for s in (4, 8, 16, 32)] + [torch.zeros(1, 1, 2, 3)]
    got = model.rpn.anchor_generator(ImageList(torch.zeros(1, 3, 96, 160), [(96, 160)]), feats)[0]
    p6 = got[-2 * 3 * 3:].view(2, 3, 3, 4)  # (y, x, ratio, box): location-major, ratios inner
    centres = (p6[..., :2] + p6[..., 2:]) / 2
    assert torch.allclose(centres[:, :, 0, 1], torch.tensor([[0.0] * 3, [64.0] * 3]))
    assert torch.allclose(centres[:, :, 0, 0], torch.tensor([[0.0, 64.0, 128.0]] * 2))
    model.transform.min_size, model.transform.max_size = (96,), 128  # a small forward: it runs end to end
    out = model([torch.rand(3, 72, 90)])[0]
    assert set(out) == {"boxes", "labels", "scores", "masks"} and out["masks"].shape[-2:] == (72, 90)


def test_aligned_roi_align_matches_mmdet_rule():
    """One bin, one sample: the value is the bilinear sample at the box centre - 0.5 px on the level
    floor(log2(sqrt(area) / 56)) (mmcv's RoIAlign with aligned=True, MMDetection's SingleRoIExtractor)."""
    from repvit.dense.detection.model import AlignedMultiScaleRoIAlign

    g = torch.Generator().manual_seed(5)
    feats = {str(i): torch.randn(1, 2, 256 // s, 256 // s, generator=g) for i, s in enumerate((4, 8, 16, 32))}
    pool = AlignedMultiScaleRoIAlign(["0", "1", "2", "3"], 1, 1)
    boxes = torch.tensor([[10.0, 20.0, 60.0, 70.0], [30.0, 12.0, 190.0, 150.0], [0.0, 0.0, 250.0, 240.0]])
    got = pool(feats, [boxes], [(256, 256)])
    for b, val in zip(boxes, got):
        side = math.sqrt(float((b[2] - b[0]) * (b[3] - b[1])))
        lvl = min(max(math.floor(math.log2(side / 56 + 1e-6)), 0), 3)
        f, s = feats[str(lvl)][0], (4, 8, 16, 32)[lvl]
        cx, cy = float(b[0] + b[2]) / 2 / s - 0.5, float(b[1] + b[3]) / 2 / s - 0.5
        x0, y0 = math.floor(cx), math.floor(cy)
        ax, ay = cx - x0, cy - y0
        ref = ((1 - ay) * ((1 - ax) * f[:, y0, x0] + ax * f[:, y0, x0 + 1])
               + ay * ((1 - ax) * f[:, y0 + 1, x0] + ax * f[:, y0 + 1, x0 + 1]))
        assert torch.allclose(val[:, 0, 0], ref, atol=1e-5)


@pytest.mark.slow
def test_detect_eval_runs_the_authors_detector_on_coco_layout(tmp_path, mmdet_file):
    import json

    from PIL import Image

    from repvit.dense.detection.authors import coco_categories
    from repvit.dense.detection.evaluate import evaluate_checkpoint

    path, _ = mmdet_file
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(tmp_path / "val2017" / "a.jpg")
    cats = coco_categories(K)
    ann = {"images": [{"id": 7, "file_name": "a.jpg", "height": 48, "width": 64}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [5, 5, 20, 20], "area": 400,
                            "iscrowd": 0, "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]]}],
           "categories": [{"id": i, "name": n} for i, n in zip(cats.category_ids, cats.names)]}
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(ann))
    res = evaluate_checkpoint(path, data=str(tmp_path))
    assert "bbox_ap" in res and "mask_ap" in res
    with pytest.raises(ValueError, match="COCO-layout"):
        evaluate_checkpoint(path, data="digits")


def test_names_resolve_through_repvit_weights(monkeypatch, mmseg_file, mmdet_file):

    import repvit.weights

    files = {"repvit_m1_1_ade20k": mmseg_file[0], "repvit_m1_1_coco": mmdet_file[0]}
    monkeypatch.setattr(repvit.weights, "resolve_weights", lambda name: files[name])  # the download stands aside
    assert repvit.load_segmenter("repvit_m1_1_ade20k").num_classes == NUM_CLASSES
    assert len(repvit.load_detector("repvit_m1_1_coco").class_names) == K + 1
    from repvit.io import CheckpointError

    with pytest.raises(CheckpointError, match="segmentation checkpoint"):
        repvit.load_detector("repvit_m1_1_ade20k")
