"""Core ML export: an ``.mlpackage`` ML program with an RGB image input and ImageNet normalization baked in.

The traced fused model is wrapped so that it takes pixels in 0..1 and normalizes per channel inside the graph; the
Core ML ``ImageType`` input scales 0..255 pixels by 1/255. (Core ML's own ``ImageType`` takes one scale for all
channels, so per-channel std cannot be expressed there exactly; in-graph it is exact and costs one Mul+Add.)

Core ML runs only on Apple platforms, so on Linux the package is checked by its spec (see ``coreml_spec_summary``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from repvit.runtime import require

__all__ = ["convert_coreml", "save_mlpackage", "coreml_spec_summary"]

_LOG = logging.getLogger(__name__)


def convert_coreml(
    traced: torch.jit.ScriptModule,
    img_size: tuple[int, int],
    output_names: list[str],
    metadata: dict[str, str],
    image_input: bool = True,
    description: str = "",
):
    """Convert a traced module (input 0..1 RGB, normalization inside) to a Core ML ML program.

    Args:
        traced: the traced module; its input is (1, 3, H, W).
        img_size: (H, W).
        output_names: names for the outputs (``logits`` or ``feat0..3``).
        metadata: string key/values stored as the model's user-defined metadata.
        image_input: an ``ImageType`` input (pixels 0..255 scaled by 1/255); else a float tensor input.
        description: the model's short description.
    """
    ct = require("coremltools", "Core ML export")
    h, w = img_size
    if image_input:
        inp = ct.ImageType(name="image", shape=(1, 3, h, w), scale=1.0 / 255.0, bias=[0.0, 0.0, 0.0],
                           color_layout=ct.colorlayout.RGB)
    else:
        inp = ct.TensorType(name="input", shape=(1, 3, h, w))
    mlmodel = ct.convert(
        traced,
        inputs=[inp],
        outputs=[ct.TensorType(name=n) for n in output_names],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        compute_precision=ct.precision.FLOAT16,
    )
    mlmodel.short_description = description or "RepViT (fused), exported by repvit"
    mlmodel.author = "repvit"
    mlmodel.user_defined_metadata.update({k: str(v) for k, v in metadata.items()})
    mlmodel.input_description[inp.name] = "RGB image, pixels 0..255; ImageNet mean/std applied inside the model"
    for n in output_names:
        mlmodel.output_description[n] = "class logits" if n == "logits" else f"feature map {n}"
    return mlmodel


def save_mlpackage(mlmodel, path: str | Path) -> Path:
    """Save an ML program as ``path`` (an ``.mlpackage`` directory), written beside it first then renamed."""
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise ValueError(f"Core ML output must end in .mlpackage, got {path.name!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent)) / path.name
    try:
        mlmodel.save(str(tmp))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    _LOG.info("wrote Core ML package %s", path)
    return path


def _shape(feature) -> list[int]:
    t = feature.type
    if t.WhichOneof("Type") == "imageType":
        return [1, 3, int(t.imageType.height), int(t.imageType.width)]
    if t.WhichOneof("Type") == "multiArrayType":
        return [int(s) for s in t.multiArrayType.shape]
    return []


def coreml_spec_summary(path_or_model) -> dict[str, Any]:
    """Inputs, outputs (names, kinds, shapes), metadata and program type of a Core ML model or ``.mlpackage``."""
    ct = require("coremltools", "reading Core ML packages")
    if isinstance(path_or_model, (str, Path)):
        spec = ct.utils.load_spec(str(path_or_model))
    else:
        spec = path_or_model.get_spec()
    d = spec.description
    return {
        "spec_version": spec.specificationVersion,
        "is_ml_program": spec.WhichOneof("Type") == "mlProgram",
        "inputs": [{"name": f.name, "kind": f.type.WhichOneof("Type"), "shape": _shape(f),
                    "color_space": (f.type.imageType.colorSpace if f.type.WhichOneof("Type") == "imageType" else None)}
                   for f in d.input],
        "outputs": [{"name": f.name, "kind": f.type.WhichOneof("Type"), "shape": _shape(f)} for f in d.output],
        "metadata": dict(d.metadata.userDefined),
        "short_description": d.metadata.shortDescription,
    }
