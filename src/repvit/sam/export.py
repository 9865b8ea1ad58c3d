"""RepViT-SAM exports: the fused encoder to ONNX (optionally with SAM's preprocessing in the graph) checked against
ONNX Runtime, SAM's standard ONNX decoder (``segment_anything.utils.onnx.SamOnnxModel``), and the encoder as a
Core ML ``.mlpackage`` checked by its spec."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repvit.deploy.onnx_export import OPSET, add_metadata, export_onnx_bytes, make_session, optimize_onnx_bytes
from repvit.deploy.onnx_passes import apply_passes
from repvit.deploy.parity import ParityReport, compare_outputs
from repvit.io import atomic_write
from repvit.runtime import require

from .model import encoder_config
from .preprocess import PreprocessingEncoder, sam_pixel_stats

__all__ = ["export_encoder_onnx", "encoder_onnx_session", "export_decoder_onnx", "decoder_example_inputs",
           "run_decoder_onnx", "export_encoder_coreml", "DECODER_INPUTS", "DECODER_OUTPUTS"]

DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
DECODER_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]


def _fused_encoder(sam: nn.Module, upsample_mode: str | None = None) -> nn.Module:
    enc = copy.deepcopy(sam.image_encoder).float().eval().fuse(inplace=True)
    if upsample_mode is not None and getattr(enc, "fusion", False):
        enc.set_upsample_mode(upsample_mode)
    return enc


def _model_meta(enc: nn.Module) -> dict[str, Any]:
    cfg = enc.cfg
    meta: dict[str, Any] = {"model": "edge-sam" if cfg.neck == "fusion" else "repvit-sam", "sam_config": cfg.to_dict()}
    return meta


def _encoder_graph(sam: nn.Module, preprocess: bool, opset: int, upsample_mode: str | None,
                   check_size: tuple[int, int] | None) -> tuple[bytes, nn.Module, list[torch.Tensor]]:
    """The fused encoder's ONNX graph (:func:`export_encoder_onnx`'s), the module it was exported from and the
    inputs its parity check runs on."""
    cfg = encoder_config(sam)
    enc = _fused_encoder(sam, upsample_mode)
    s = cfg.img_size
    meta = {**_model_meta(enc), "fused": True, "preprocess_in_graph": preprocess,
            "pixel_mean": sam_pixel_stats()[0], "pixel_std": sam_pixel_stats()[1],
            "graph_optimization": "basic; repvit.deploy.onnx_passes"}
    gen = torch.Generator().manual_seed(0)
    if not preprocess:
        example = torch.randn(1, 3, s, s, generator=gen)
        data = export_onnx_bytes(enc, example, dynamic_batch=False, opset=opset, input_names=["image"],
                                 output_names=["image_embeddings"])
        checks = [example]
    else:
        enc = PreprocessingEncoder(enc).eval()
        h, w = check_size or (s * 3 // 4, s)
        example = torch.rand(1, 3, h, w, generator=gen) * 255
        data = export_onnx_bytes(enc, example, dynamic_batch=False, opset=opset, input_names=["image"],
                                 output_names=["image_embeddings"], dynamic_axes={"image": {2: "height", 3: "width"}})
        checks = [example, torch.rand(1, 3, w, h // 2 * 2, generator=gen) * 255]  # also a portrait image
    return add_metadata(optimize_onnx_bytes(apply_passes(data), "basic"), meta), enc, checks


def _check_encoder(sess: Any, enc: nn.Module, checks: list[torch.Tensor], rtol: float) -> ParityReport:
    report = ParityReport()
    for i, x in enumerate(checks):
        with torch.no_grad():
            ref = enc(x)
        got = torch.from_numpy(sess.run(None, {"image": x.numpy()})[0])
        compare_outputs([got], [ref], rtol, f"onnxruntime, input {i} {tuple(x.shape)}", ["image_embeddings"], report)
    return report


def export_encoder_onnx(sam: nn.Module, path: str | os.PathLike, *, preprocess: bool = False, opset: int = OPSET,
                        rtol: float = 1e-4, check_size: tuple[int, int] | None = None,
                        upsample_mode: str | None = None) -> dict[str, Any]:
    """Write the fused image encoder as ONNX and check it against ONNX Runtime.

    The graph goes through :func:`repvit.deploy.onnx_passes.apply_passes` (squeeze-excite pooling as
    ``GlobalAveragePool``, EdgeSAM's x2 bicubic upsampling as edge padding, nearest upsampling and depthwise
    convolutions, the neck's LayerNorm2d as ``LayerNormalization``: the same functions in the ops ONNX Runtime runs
    fast) and ONNX Runtime's ``basic`` optimizations,
    so the file stays standard ONNX; :func:`repvit.deploy.onnx_export.make_session` adds the CPU-specific ones.
    The parity check runs in such a session.

    ``upsample_mode`` (``"bilinear"``, as EdgeSAM's own export scripts do) replaces EdgeSAM's bicubic upsampling in
    the exported graph, and the parity check is then against the PyTorch encoder with the same mode. The mode is
    recorded in the metadata (``sam_config``).

    Without ``preprocess`` the graph is the authors' form: input ``image`` (1, 3, S, S), already normalized and
    padded (``Sam.preprocess``), output ``image_embeddings`` (1, 256, S/16, S/16). With ``preprocess`` the input is
    a (1, 3, H, W) float RGB image in 0..255 of any size; the graph resizes its longest side to S, normalizes and pads
    (:class:`repvit.sam.preprocess.PreprocessingEncoder`).

    Returns:
        ``path``, ``preprocess``, ``parity`` (max abs / relative difference vs the fused PyTorch encoder on random
        inputs; a :class:`repvit.deploy.parity.ParityError` is raised above ``rtol``).
    """
    data, enc, checks = _encoder_graph(sam, preprocess, opset, upsample_mode, check_size)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
    report = _check_encoder(make_session(data, threads=2), enc, checks, rtol)
    return {"path": str(path), "preprocess": preprocess, "parity": report.to_dict()}


def encoder_onnx_session(sam: nn.Module, threads: int = 2, rtol: float = 1e-4) -> Any:
    """:func:`export_encoder_onnx`'s graph (the authors' form: normalized, padded input ``image``) loaded in ONNX
    Runtime (:func:`repvit.deploy.onnx_export.make_session`, ``threads`` intra-op threads), without writing a file;
    checked against the fused PyTorch encoder on a random input (a :class:`repvit.deploy.parity.ParityError` above
    ``rtol``)."""
    data, enc, checks = _encoder_graph(sam, False, OPSET, None, None)
    sess = make_session(data, threads=threads)
    _check_encoder(sess, enc, checks, rtol)
    return sess


def decoder_example_inputs(sam: nn.Module, num_points: int = 5, seed: int = 0,
                           orig_im_size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Inputs of SAM's ONNX decoder: random embedding and points, a mask input, an original image size (default
    3/4 x 1 of the input side)."""
    g = torch.Generator().manual_seed(seed)
    s = int(sam.image_encoder.img_size)
    side = sam.prompt_encoder.image_embedding_size
    return {
        "image_embeddings": torch.randn(1, 256, *side, generator=g),
        "point_coords": torch.randint(0, s, (1, num_points, 2), generator=g).float(),
        "point_labels": torch.randint(0, 4, (1, num_points), generator=g).float(),
        "mask_input": torch.randn(1, 1, 4 * side[0], 4 * side[1], generator=g),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor(orig_im_size or (s * 3 // 4, s), dtype=torch.float32),
    }


def export_decoder_onnx(sam: nn.Module, path: str | os.PathLike, *, return_single_mask: bool = True,
                        opset: int = OPSET, rtol: float = 1e-4) -> dict[str, Any]:
    """Write SAM's prompt encoder + mask decoder + mask post-processing as ONNX with ``SamOnnxModel`` (inputs
    :data:`DECODER_INPUTS`, a symbolic number of points) and check it against the same module in PyTorch."""
    model = _onnx_decoder(sam, return_single_mask)
    example = decoder_example_inputs(sam)
    points = {1: "num_points"}
    data = export_onnx_bytes(model, tuple(example.values()), dynamic_batch=False, opset=opset,
                             input_names=DECODER_INPUTS, output_names=DECODER_OUTPUTS,
                             dynamic_axes={"point_coords": points, "point_labels": points})
    data = add_metadata(data, {"model": "sam-decoder", "img_size": int(sam.image_encoder.img_size),
                                         "return_single_mask": return_single_mask})
    atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))
    sess = make_session(data, threads=2, level="basic")
    report = ParityReport()
    s = int(sam.image_encoder.img_size)
    for n, size in ((5, None), (2, (s + 37, s // 2 - 5))):  # the exported example, then other points and image size
        inputs = decoder_example_inputs(sam, num_points=n, seed=n, orig_im_size=size)
        with torch.no_grad():
            ref = model(**inputs)
        got = run_decoder_onnx(sess, inputs)
        compare_outputs(got[:2], list(ref[:2]), rtol, f"onnxruntime, {n} points", DECODER_OUTPUTS[:2], report)
    return {"path": str(path), "parity": report.to_dict(), "inputs": DECODER_INPUTS}


def _onnx_decoder(sam: nn.Module, return_single_mask: bool) -> nn.Module:
    """``SamOnnxModel`` whose mask post-processing keeps the crop size symbolic.

    ``SamOnnxModel.mask_postprocessing`` crops with ``int(prepadded_size[i])``, which the tracing exporter records as
    the example's constant: the decoder would only un-pad images of the example's aspect ratio correctly. Here the crop
    is a traced slice, so ``orig_im_size`` may be any size; everything else is segment_anything's.
    """
    require("segment_anything", "the SAM ONNX decoder")
    import torch.nn.functional as F
    from segment_anything.utils.onnx import SamOnnxModel

    class DynamicCropSamOnnxModel(SamOnnxModel):
        def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
            masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
            pre = self.resize_longest_image_size(orig_im_size, self.img_size)
            masks = masks[..., : pre[0], : pre[1]]
            size = orig_im_size.to(torch.int64)
            return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)

    return DynamicCropSamOnnxModel(sam, return_single_mask=return_single_mask).eval()


def run_decoder_onnx(sess, inputs: dict[str, Any]) -> list[torch.Tensor]:
    """Run the decoder session on a dict of tensors or arrays; returns masks, iou_predictions, low_res_masks."""
    import numpy as np

    feed = {k: np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v, dtype=np.float32) for k, v in inputs.items()}
    return [torch.from_numpy(o) for o in sess.run(None, feed)]


def export_encoder_coreml(sam: nn.Module, path: str | os.PathLike, *,
                          upsample_mode: str | None = None) -> dict[str, Any]:
    """Write the fused encoder as a Core ML ML program (``.mlpackage``): tensor input ``input`` (1, 3, S, S),
    normalized and padded as for the ONNX encoder; output ``image_embeddings``. Returns its spec summary
    (Core ML runs only on Apple platforms; on Linux the package is checked by its spec).

    coremltools has no conversion for bicubic upsampling, so an EdgeSAM encoder (fusion neck) is written with
    bilinear upsampling unless ``upsample_mode`` says otherwise, as EdgeSAM's own export scripts do; the metadata
    records the mode (``upsample_mode``)."""
    from repvit.deploy.coreml import convert_coreml, coreml_spec_summary, save_mlpackage

    cfg = encoder_config(sam)
    if cfg.neck == "fusion" and upsample_mode is None:
        upsample_mode = "bilinear"
    enc = _fused_encoder(sam, upsample_mode)
    cfg = enc.cfg
    s = cfg.img_size
    with torch.no_grad():
        traced = torch.jit.trace(enc, torch.randn(1, 3, s, s), check_trace=False)
    meta = {"model": _model_meta(enc)["model"], "variant": cfg.variant, "img_size": str(s)}
    if cfg.neck == "fusion":
        meta["upsample_mode"] = cfg.upsample_mode
    name = "EdgeSAM" if cfg.neck == "fusion" else "RepViT-SAM"
    mlmodel = convert_coreml(traced, (s, s), ["image_embeddings"], meta,
                             image_input=False, description=f"{name} image encoder (fused), exported by repvit")
    mlmodel.input_description["input"] = "normalized, padded RGB image (Sam.preprocess)"
    mlmodel.output_description["image_embeddings"] = "SAM image embedding"
    save_mlpackage(mlmodel, path)
    return {"path": str(path), "spec": coreml_spec_summary(path)}
