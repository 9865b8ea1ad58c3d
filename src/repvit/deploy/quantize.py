"""INT8 post-training quantization with ONNX Runtime: static, QDQ format, per-channel weights.

The float model is first pre-processed (``onnxruntime.quantization.quant_pre_process``: shape inference and graph
optimization, so Conv+Add+Relu patterns become one quantizable unit), then calibrated on a few batches of real
images (MinMax by default) and written with QuantizeLinear/DequantizeLinear pairs around every Conv, Gemm and Add.
ONNX Runtime then runs the Conv/Gemm in INT8 (u8s8 kernels).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np

from ._optional import require

__all__ = ["quantize_onnx_bytes", "ArrayCalibrationReader"]

_LOG = logging.getLogger(__name__)


class ArrayCalibrationReader:
    """A ``CalibrationDataReader`` over a list of float32 arrays (N, C, H, W) for a model's single input."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name = input_name
        self._batches = [np.ascontiguousarray(b, dtype=np.float32) for b in batches]
        self._it = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        return None if b is None else {self.input_name: b}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_onnx_bytes(
    data: bytes,
    calib_batches: Sequence[np.ndarray],
    per_channel: bool = True,
    method: str = "minmax",
    preprocess: bool = True,
    op_types: Sequence[str] | None = None,
) -> bytes:
    """Quantize a float ONNX model statically to INT8 (QDQ) and return the quantized model.

    Args:
        data: the float model (serialized ONNX).
        calib_batches: calibration inputs, float32 arrays shaped (N, C, H, W), already normalized like the model's
            input. A few hundred images are plenty.
        per_channel: per-output-channel weight scales (needed for depthwise convolutions to stay accurate).
        method: calibration method, ``minmax``, ``entropy`` or ``percentile``.
        preprocess: run ``quant_pre_process`` first (shape inference + ORT graph optimization).
        op_types: node types to quantize; default Conv, Gemm, MatMul, Add, Mul.
    """
    require("onnx", "INT8 quantization")
    require("onnxruntime", "INT8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if method not in methods:
        raise ValueError(f"Unknown calibration method {method!r}; supported: {', '.join(methods)}.")
    if not calib_batches:
        raise ValueError("INT8 quantization needs calibration data (a folder of images or the built-in set).")
    import onnx

    input_name = onnx.load_from_string(data).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "float.onnx")
        pre = os.path.join(tmp, "pre.onnx")
        dst = os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as f:
            f.write(data)
        if preprocess:
            try:
                quant_pre_process(src, pre, skip_symbolic_shape=True)
                src = pre
            except Exception as e:  # noqa: BLE001 - pre-processing is an optimization only
                _LOG.warning("quant_pre_process failed (%s); quantizing the model as exported", e)
        quantize_static(
            src,
            dst,
            ArrayCalibrationReader(input_name, calib_batches),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=methods[method],
            op_types_to_quantize=list(op_types) if op_types else ["Conv", "Gemm", "MatMul", "Add", "Mul"],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        with open(dst, "rb") as f:
            out = f.read()
    _LOG.info("quantized model: %d -> %d bytes", len(data), len(out))
    return out


