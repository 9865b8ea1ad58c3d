"""INT8 post-training quantization with ONNX Runtime: static (QDQ or operator format) or dynamic, per-channel weights.

The float model is first pre-processed (``onnxruntime.quantization.quant_pre_process``: shape inference and graph
optimization, so Conv+Add+Relu patterns become one quantizable unit; the exported erf-GELU subgraph becomes one
``com.microsoft.Gelu`` op), then calibrated on a few batches of real images (MinMax by default) and written with
QuantizeLinear/DequantizeLinear pairs around the op types of the CPU's INT8 plan
(:func:`repvit.deploy.int8_mode.int8_plan`: Conv, Gemm and Add). ONNX Runtime then runs them in INT8 (u8s8 kernels).

GELU is fused here because ONNX Runtime cannot fuse it in a QDQ graph: it gives each consumer of a dequantized tensor
its own DequantizeLinear, so the erf subgraph's two uses of its input no longer match its GELU pattern and five float
ops (Div, Erf, Add, Mul, Mul) run instead of one.

On x86 CPUs without VNNI those kernels saturate (:mod:`repvit.deploy.int8_mode`); ``int8_mode`` ``safe`` (the
``auto`` choice there) quantizes the weights to 7 bits (``reduce_range``), which keeps the sums in range.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence

import numpy as np

from repvit.runtime import require

__all__ = ["quantize_onnx_bytes", "quantize_onnx_dynamic_bytes", "fuse_erf_gelu", "ArrayCalibrationReader",
           "QUANT_FORMATS"]

QUANT_FORMATS: tuple[str, ...] = ("qdq", "operator")

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


# calibration method -> onnxruntime.quantization.CalibrationMethod member
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def quantize_onnx_bytes(
    data: bytes,
    calib_batches: Sequence[np.ndarray],
    per_channel: bool = True,
    method: str = "minmax",
    preprocess: bool = True,
    op_types: Sequence[str] | None = None,
    int8_mode=None,
    quant_format: str = "qdq",
) -> bytes:
    """Quantize a float ONNX model statically to INT8 (QDQ) and return the quantized model.

    Args:
        data: the float model (serialized ONNX).
        calib_batches: calibration inputs, float32 arrays shaped (N, C, H, W), already normalized like the model's
            input. A few hundred images are plenty.
        per_channel: per-output-channel weight scales (needed for depthwise convolutions to stay accurate).
        method: calibration method, ``minmax``, ``entropy`` or ``percentile``.
        preprocess: run ``quant_pre_process`` first (shape inference + ORT graph optimization).
        op_types: node types to quantize; default the INT8 plan's (``int8_mode``'s ``plan.op_types``).
        int8_mode: ``auto``, ``safe``, ``full`` or an :class:`~repvit.deploy.int8_mode.Int8Choice`
            (:func:`~repvit.deploy.int8_mode.resolve_int8_mode`); ``safe`` keeps weights to 7 bits. Its plan also
            decides whether GELU is fused first.
        quant_format: ``qdq`` (QuantizeLinear/DequantizeLinear pairs) or ``operator`` (QLinearConv & co.).
    """
    from .int8_mode import resolve_int8_mode

    choice = resolve_int8_mode(int8_mode)
    if quant_format not in QUANT_FORMATS:
        raise ValueError(f"Unknown quantization format {quant_format!r}; supported: {', '.join(QUANT_FORMATS)}.")
    if method not in _METHODS:
        raise ValueError(f"Unknown calibration method {method!r}; supported: {', '.join(_METHODS)}.")
    if not calib_batches:
        raise ValueError("INT8 quantization needs calibration data (a folder of images or the built-in set).")
    onnx = require("onnx", "INT8 quantization")
    require("onnxruntime", "INT8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = onnx.load_from_string(data).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        dst = os.path.join(tmp, "int8.onnx")
        quantize_static(
            _float_model_file(data, tmp, preprocess, choice.plan.fuse_gelu),
            dst,
            ArrayCalibrationReader(input_name, calib_batches),
            quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=choice.saturation_safe,
            calibrate_method=getattr(CalibrationMethod, _METHODS[method]),
            op_types_to_quantize=list(op_types or choice.plan.op_types),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        with open(dst, "rb") as f:
            out = f.read()
    _LOG.info("quantized model (%s, %s weights): %d -> %d bytes", quant_format,
              "7-bit" if choice.saturation_safe else "8-bit", len(data), len(out))
    return out


def _float_model_file(data: bytes, tmp: str, preprocess: bool, fuse_gelu: bool) -> str:
    """``data`` written into the folder ``tmp``; with ``preprocess``, through ``quant_pre_process`` (shape inference
    and graph optimization) unless that fails; with ``fuse_gelu``, GELU subgraphs as one op. Returns the file to
    quantize."""
    src = os.path.join(tmp, "float.onnx")
    with open(src, "wb") as f:
        f.write(data)
    if preprocess:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = os.path.join(tmp, "pre.onnx")
        try:
            quant_pre_process(src, pre, skip_symbolic_shape=True)
            src = pre
        except Exception as e:  # noqa: BLE001 - pre-processing is an optimization only
            _LOG.warning("quant_pre_process failed (%s); quantizing the model as exported", e)
    if fuse_gelu:
        import onnx

        model = onnx.load(src)
        if fuse_erf_gelu(model):
            src = os.path.join(tmp, "gelu.onnx")
            onnx.save(model, src)
    return src


def _const(name: str, inits: dict) -> float | None:
    """The value of a scalar initializer or Constant output ``name``; None if it is neither."""
    from onnx import numpy_helper

    t = inits.get(name)
    if t is None:
        return None
    a = numpy_helper.to_array(t)
    return float(a.reshape(-1)[0]) if a.size == 1 else None


def fuse_erf_gelu(model) -> int:
    """Replace each exact-GELU subgraph of the exporter, ``x / sqrt(2) -> Erf -> + 1 -> * x -> * 0.5`` (the two
    multiplies in either order), with one ``com.microsoft.Gelu`` node, in place. Returns how many were fused.

    ONNX Runtime runs ``com.microsoft.Gelu`` with the same kernel its own GELU fusion produces for FP32 graphs.
    """
    import math

    from onnx import helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    for n in g.node:  # Constant nodes count as initializers for the value checks
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            inits[n.output[0]] = n.attribute[0].t
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def only_consumer(name: str, op: str):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and c[0].op_type == op else None

    def other(node, name: str) -> str:
        return node.input[1] if node.input[0] == name else node.input[0]

    replaced: dict[int, object] = {}
    dropped: set[int] = set()
    constants: set[str] = set()
    for erf in (n for n in g.node if n.op_type == "Erf"):
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or div.input[0] in inits:
            continue
        x = div.input[0]
        add = only_consumer(erf.output[0], "Add")
        mul1 = add and only_consumer(add.output[0], "Mul")
        mul2 = mul1 and only_consumer(mul1.output[0], "Mul")
        if mul2 is None:
            continue
        a, b = other(mul1, add.output[0]), other(mul2, mul1.output[0])
        if x not in (a, b):
            continue
        c_div, c_add = _const(div.input[1], inits), _const(other(add, erf.output[0]), inits)
        c_half = _const(b if a == x else a, inits)
        if not (c_div and c_add and c_half and math.isclose(c_div, math.sqrt(2), rel_tol=1e-4)
                and math.isclose(c_add, 1.0) and math.isclose(c_half, 0.5)):
            continue
        replaced[id(div)] = helper.make_node("Gelu", [x], [mul2.output[0]], name=f"{div.name}_gelu",
                                             domain="com.microsoft")
        dropped |= {id(erf), id(add), id(mul1), id(mul2)}
        constants |= {div.input[1], *add.input, *mul1.input, *mul2.input}
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in g.node if id(n) not in dropped]
    used = {i for n in nodes for i in n.input} | {o.name for o in g.output}
    nodes = [n for n in nodes if not (n.op_type == "Constant" and n.output[0] in constants - used)]
    del g.node[:]
    g.node.extend(nodes)
    unused = [t for t in g.initializer if t.name in constants - used]  # the GELU constants nothing else reads
    for t in unused:
        g.initializer.remove(t)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replaced)


def quantize_onnx_dynamic_bytes(data: bytes, per_channel: bool = True, int8_mode=None,
                                op_types: Sequence[str] | None = None) -> bytes:
    """Quantize a float ONNX model dynamically (weights INT8 ahead of time, activation scales computed per call).

    Needs no calibration data. ONNX Runtime quantizes MatMul/Gemm (and Conv, as ConvInteger) this way; activations
    are uint8, so on x86 CPUs without VNNI ``int8_mode`` ``safe`` (7-bit weights) matters here as well.

    Args:
        data: the float model (serialized ONNX).
        per_channel: per-output-channel weight scales.
        int8_mode: as for :func:`quantize_onnx_bytes`.
        op_types: node types to quantize; default Conv, MatMul, Gemm.
    """
    require("onnx", "INT8 quantization")
    require("onnxruntime", "INT8 quantization")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .int8_mode import resolve_int8_mode

    choice = resolve_int8_mode(int8_mode)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        with open(src, "wb") as f:
            f.write(data)
        quantize_dynamic(src, dst, per_channel=per_channel, reduce_range=choice.saturation_safe,
                         weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(op_types) if op_types else ["Conv", "MatMul", "Gemm"])
        with open(dst, "rb") as f:
            return f.read()


