"""Detectors on RepViT: torchvision composition, exact fusing (float64, randomized BN), ONNX Runtime parity, and
a few training iterations + COCO evaluation for Faster R-CNN and RetinaNet on the shared engine."""

import pytest
import torch

from repvit.dense.detection import DETECTORS, DetectorSpec, build_detector, fuse_detector
from tests.helpers import randomize_bn

TINY = dict(model="repvit_m0_6", fpn_channels=16, min_size=64, max_size=64, box_head_dim=32, mask_head_channels=8,
            mask_head_convs=1, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=100, anchor_scale=4)


def _detector(kind: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_detector(DetectorSpec(detector=kind, **{**TINY, **kw}), 11)
    randomize_bn(m.backbone)
    if kind == "retinanet":  # spread the class scores so detections are many and their order has no ties
        torch.nn.init.normal_(m.head.classification_head.cls_logits.weight, std=5.0)
        m.score_thresh = 0.0
    else:
        m.roi_heads.score_thresh = 0.0
    return m.eval()


def test_composition_matches_the_issue():
    from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    from repvit.dense import DenseBackbone, RepViTFPN

    m = build_detector(DetectorSpec(), 81)  # the paper recipe's heads (MMDetection defaults)
    assert isinstance(m, MaskRCNN) and isinstance(m.backbone, RepViTFPN) and m.backbone.out_channels == 256
    assert isinstance(m.backbone.backbone, DenseBackbone) and m.backbone.backbone.taps == "stage"
    assert m.backbone.backbone.frozen_bn and isinstance(m.backbone.fpn.extra_blocks, LastLevelMaxPool)
    with torch.no_grad():
        levels = m.backbone(torch.zeros(1, 3, 256, 256))
    assert [(k, v.shape[-1]) for k, v in levels.items()] == [("0", 64), ("1", 32), ("2", 16), ("3", 8), ("pool", 4)]
    assert m.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))
    assert m.roi_heads.box_roi_pool.output_size == (7, 7) and m.roi_heads.mask_roi_pool.output_size == (14, 14)
    assert m.roi_heads.box_head.fc7.out_features == 1024 and len(m.roi_heads.mask_head) == 4
    assert m.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert m.transform.min_size == (800,) and m.transform.max_size == 1333
    assert isinstance(build_detector(DetectorSpec(detector="fasterrcnn"), 3), FasterRCNN)
    r = build_detector(DetectorSpec(detector="retinanet"), 3)
    assert isinstance(r, RetinaNet) and isinstance(r.backbone.fpn.extra_blocks, LastLevelP6P7)
    with torch.no_grad():
        levels = r.backbone(torch.zeros(1, 3, 256, 256))
    assert [(k, v.shape[-1]) for k, v in levels.items()] == [("1", 32), ("2", 16), ("3", 8), ("p6", 4), ("p7", 2)]
    with pytest.raises(ValueError, match="detector must be one of"):
        DetectorSpec(detector="yolo")


def test_frozen_bn_statistics_do_not_move_in_training():
    m = _detector("maskrcnn").train()
    bn = [x for x in m.backbone.backbone.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    before = [b.running_mean.clone() for b in bn]
    target = {"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([3]),
              "masks": torch.zeros(1, 64, 64, dtype=torch.uint8)}
    target["masks"][0, 4:30, 4:30] = 1
    loss = sum(m([torch.rand(3, 64, 64)], [target]).values())
    loss.backward()
    assert all(not b.training for b in bn)
    assert all(torch.equal(a, b.running_mean) for a, b in zip(before, bn))
    assert bn[0].weight.grad is not None  # affine parameters still train


@pytest.mark.parametrize("kind", DETECTORS)
def test_fused_detector_gives_the_same_detections_float64(kind):
    m = _detector(kind).double()
    f = fuse_detector(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in f.backbone.backbone.modules())
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        a, b = m([x])[0], f([x])[0]
    assert a["boxes"].shape[0] > 10 and a["boxes"].shape == b["boxes"].shape
    assert torch.equal(a["labels"], b["labels"])
    assert ((a["boxes"] - b["boxes"]).abs().max() / a["boxes"].abs().max()).item() <= 1e-6
    assert (a["scores"] - b["scores"]).abs().max().item() <= 1e-6
    if kind == "maskrcnn":
        assert (a["masks"] - b["masks"]).abs().max().item() <= 1e-6


@pytest.mark.parametrize("kind", ["fasterrcnn", pytest.param("maskrcnn", marks=pytest.mark.slow),
                                  pytest.param("retinanet", marks=pytest.mark.slow)])
def test_whole_detector_onnx_matches_onnx_runtime(kind, tmp_path):
    pytest.importorskip("onnxruntime")
    from repvit.dense.detection.export import _parity_ok, export_detector_onnx, onnx_parity

    m = fuse_detector(_detector(kind))
    path = export_detector_onnx(m, tmp_path / "d.onnx", height=64, width=64, metadata={"class_names": ["a"]})
    p = onnx_parity(m, path, torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2)))
    assert p["detections"] > 10 and p["same_count"] and p["labels_equal"], p
    assert _parity_ok(p), p
    import onnx

    proto = onnx.load(str(path))
    props = {q.key: q.value for q in proto.metadata_props}
    assert props["class_names"] == '["a"]'
    ops = {n.op_type for n in proto.graph.node}
    if kind != "retinanet":  # the RoI levels are merged by a row gather, not an element-wise scatter
        assert "RoiAlign" in ops and "ScatterElements" not in ops, sorted(ops)
        # the detections come from one NMS per class (the classes as NonMaxSuppression's batch axis)
        assert any(n.op_type == "NonMaxSuppression" and n.name.startswith("/detector/roi_heads/")
                   for n in proto.graph.node)
    if kind == "maskrcnn":  # the masks are pasted by one batched product, not a Loop over the detections
        assert "Loop" not in ops and "MatMul" in ops, sorted(ops)


@pytest.mark.slow
def test_mask_rcnn_onnx_with_dynamic_size_pastes_at_the_image_size(tmp_path):
    """Exported with symbolic height and width, the masks are pasted at the size of the image given, not the
    example's."""
    pytest.importorskip("onnxruntime")
    from repvit.dense.detection.export import _parity_ok, export_detector_onnx, onnx_parity

    m = fuse_detector(_detector("maskrcnn"))
    path = export_detector_onnx(m, tmp_path / "d.onnx", height=64, width=64, dynamic_size=True)
    p = onnx_parity(m, path, torch.rand(3, 80, 112, generator=torch.Generator().manual_seed(4)))
    assert p["detections"] > 10 and _parity_ok(p), p


def test_paste_masks_equals_torchvision():
    """:func:`paste_masks` against torchvision's own ``paste_masks_in_image``: boxes inside, across the edges, tiny,
    degenerate and larger than the image."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from repvit.dense.detection.model import paste_masks

    g = torch.Generator().manual_seed(3)
    masks = torch.rand(9, 1, 28, 28, generator=g)
    boxes = torch.tensor([[10.0, 12.0, 40.0, 30.0], [-8.0, -5.0, 20.0, 25.0], [50.0, 40.0, 80.0, 70.0],
                          [33.2, 7.7, 34.1, 8.3], [20.0, 20.0, 19.0, 25.0], [-30.0, -30.0, 120.0, 110.0],
                          [0.0, 0.0, 63.0, 47.0], [5.5, 44.9, 70.3, 47.9], [61.0, 1.0, 90.0, 3.0]])
    want = paste_masks_in_image(masks, boxes, (48, 64))
    got = paste_masks(masks, boxes, (48, 64))
    assert got.shape == want.shape == (9, 1, 48, 64)
    assert (got - want).abs().max().item() < 1e-5
    assert (want > 0).flatten(1).any(1)[:4].all()  # the boxes inside the image do paste something


@pytest.mark.parametrize("kind", ["fasterrcnn", "retinanet"])
def test_other_detectors_train_a_few_iterations_and_evaluate(kind, tmp_path):
    from repvit.dense.detection.config import DetectConfig
    from repvit.dense.detection.task import DetectTask
    from repvit.engine.run import run_task

    cfg = DetectConfig(output_dir=str(tmp_path), detector=kind, iters=3, batch_size=2, img_size=64, train_scenes=16,
                       val_scenes=200, val_subset=8, fpn_channels=16, box_head_dim=32, progress=False,
                       tensorboard=False, plot=False, warmup_steps=1)
    res = run_task(DetectTask(), cfg)
    assert res["steps"] == 3 and not res["interrupted"]
    ev = res["eval"]
    assert ev["images"] == 8 and 0.0 <= ev["bbox_ap"] <= 1.0 and "mask_ap" not in ev
    ck = torch.load(tmp_path / "best.pt", weights_only=True)
    assert ck["task"] == "detect" and ck["meta"]["category_ids"] == list(range(1, 11))
    assert ck["config"]["detector"] == kind


def test_recipes_match_the_defaults_and_the_paper():
    from repvit.dense.detection.config import DetectConfig
    from repvit.dense.detection.model import detector_spec
    from repvit.engine.config import load_config

    assert load_config("detect_digits", cls=DetectConfig) == DetectConfig()  # the YAML is the default recipe
    paper = load_config("detect_maskrcnn_coco_1x", cls=DetectConfig)
    spec = detector_spec(paper)
    # MMDetection 2.x Mask R-CNN defaults (the paper's detection setting) are DetectorSpec's defaults, sizes 800 x 1333
    assert spec == DetectorSpec(model="repvit_m1_1", min_size=800, max_size=1333)
    assert (paper.lr, paper.lr_base_batch, paper.weight_decay, paper.epochs) == (2e-4, 16, 0.05, 12)
    assert (paper.sched, list(paper.decay_milestones), paper.warmup_steps) == ("multistep", [8, 11], 500)


def test_detection_evaluation_runs_under_autocast_when_amp_is_on(monkeypatch):
    """The detect task evaluates as it trains: under the engine's autocast with AMP on, results read in float32."""
    from repvit.dense.detection import evaluate as det

    seen, dtypes = [], []

    class Fake(torch.nn.Module):
        def forward(self, images):
            seen.append(torch.is_autocast_enabled("cpu"))
            return [{"boxes": torch.zeros(0, 4, dtype=torch.bfloat16)} for _ in images]

    monkeypatch.setattr(det, "detections_to_coco",
                        lambda outputs, ids, cats: dtypes.extend(o["boxes"].dtype for o in outputs) or [])
    monkeypatch.setattr(det, "coco_evaluate", lambda gt, results, ids, masks: {"images": len(ids)})
    loader = [([torch.zeros(3, 8, 8)], [{"image_id": 1}])]
    for amp in (False, True):
        assert det.evaluate_detector(Fake(), loader, torch.device("cpu"), None, None, masks=False, amp=amp,
                                     amp_dtype=torch.bfloat16) == {"images": 1}
    assert seen == [False, True] and dtypes == [torch.bfloat16, torch.float32]
