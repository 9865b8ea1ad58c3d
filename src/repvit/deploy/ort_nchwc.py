"""Keep RepViT's squeeze-excite blocks in ONNX Runtime's blocked NCHWc layout.

ONNX Runtime's CPU provider rewrites convolutions into its blocked ``NCHWc`` layout (channels split into blocks of
8 or 16, the CPU's vector width) when the graph optimization level is ``all``. Convolutions, pooling, GELU and
same-shape residual adds stay in that layout, but its layout pass does not handle a broadcast ``Mul``: the
squeeze-excite scale ``x * sigmoid(...)`` of shape (N, C, 1, 1) against x of shape (N, C, H, W). Around every SE
block ONNX Runtime therefore converts both operands back to plain NCHW (``ReorderOutput``), multiplies, adds the
residual in NCHW and converts the result to blocks again (``ReorderInput``): about a tenth of RepViT-M0.9's time
at batch 1.

:func:`rewrite_se_blocks` edits the graph ONNX Runtime has already optimized so those blocks stay in NCHWc. A
blocked tensor's memory is laid out as ``(N, C/b, H, W, b)``, so a zero-copy ``Reshape`` to ``(N, C/b, H*W, b)``
and the scale to ``(N, C/b, 1, b)`` makes the broadcast ``Mul`` exact in blocked memory; the result is reshaped
back, and the residual ``Add`` becomes the ``Sum`` input of the convolution producing it (as ONNX Runtime itself
does for blocks without SE). When the graph's batch is fixed at 1 (a SAM encoder), the multiply is instead a
depthwise 1x1 NCHWc ``Conv`` whose filter is the scale itself: an NCHWc depthwise filter of shape (C, 1, 1, 1) is
stored in channel order, which is the blocked scale's memory, so a zero-copy ``Reshape`` makes it the filter; ONNX
Runtime's NCHWc convolution reads its filter at run time and splits the work over its threads (the reshape, expand
and multiply run in three passes, the expand on one thread).

The rewritten graph is tied to this CPU's block size and only runs in ONNX Runtime, so it is built when a session is
created (:func:`repvit.deploy.onnx_export.make_session` with ``nchwc_se=True``), never written as the exported
file, and checked against the plain session before use.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from repvit.runtime import require

from .onnx_passes import GraphUses

__all__ = ["nchwc_block_size", "ort_optimized_bytes", "rewrite_se_blocks"]

_LOG = logging.getLogger(__name__)
_NCHWC = "com.microsoft.nchwc"


def ort_optimized_bytes(data: bytes) -> bytes:
    """The graph ONNX Runtime's CPU provider runs at optimization level ``all`` (NCHWc layout included)."""
    from .onnx_export import optimize_onnx_bytes  # onnx_export imports this module lazily

    return optimize_onnx_bytes(data, "all")


@functools.lru_cache(maxsize=1)
def nchwc_block_size() -> int | None:
    """ONNX Runtime's NCHWc block size on this CPU (16 with AVX-512, 8 with AVX2), or None when it has none."""
    onnx = require("onnx", "probing ONNX Runtime's layout")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 3, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.zeros((1,), np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opt = onnx.load_from_string(ort_optimized_bytes(model.SerializeToString()))
    inits = {i.name: i for i in opt.graph.initializer}
    for node in opt.graph.node:
        if node.domain == _NCHWC and node.op_type == "Conv" and len(node.input) > 2 and node.input[2] in inits:
            return int(inits[node.input[2]].dims[0])  # the 1-channel bias, padded to one block
    return None


def _is_se_scale(g: GraphUses, blocked: str) -> bool:
    """Whether ``blocked`` is a squeeze-excite scale (spatially 1x1): a chain of at most 8 pointwise convs,
    activations and layout reorders fed by a global average pool."""
    passthrough = {(_NCHWC, "Conv"), (_NCHWC, "ReorderInput"), (_NCHWC, "ReorderOutput"), ("", "Conv"),
                   ("", "Relu"), ("", "Sigmoid"), ("", "HardSigmoid")}
    name = blocked
    for _ in range(8):
        node = g.producer.get(name)
        if node is None:
            return False
        if node.op_type == "GlobalAveragePool":
            return True
        if (node.domain, node.op_type) not in passthrough:
            return False
        if node.op_type == "Conv" and any(a.name == "kernel_shape" and list(a.ints) != [1, 1] for a in node.attribute):
            return False
        name = node.input[0]
    return False


def rewrite_se_blocks(data: bytes, block: int) -> tuple[bytes, int]:
    """Rewrite the squeeze-excite blocks of an ONNX Runtime-optimized (level ``all``) graph to stay in NCHWc.

    Args:
        data: the graph as :func:`ort_optimized_bytes` returns it.
        block: this CPU's NCHWc block size (:func:`nchwc_block_size`).

    Returns:
        The rewritten graph and the number of SE blocks rewritten (0: ``data`` unchanged).
    """
    onnx = require("onnx", "rewriting ONNX graphs")
    from onnx import numpy_helper

    proto = onnx.load_from_string(data)
    g = GraphUses(proto.graph)
    single = _batch_is_one(proto.graph)
    count = 0
    for product in [n.output[0] for n in proto.graph.node if n.op_type == "Mul" and n.domain == ""]:
        mul = g.producer[product]  # the current node: earlier rewrites may have rebuilt the node list
        found = _se_operands(g, mul)
        if found is None:
            continue
        x, s, channels = found
        tag = f"se_nchwc_{count}"
        padded = -(-channels // block) * block
        if single:
            shape = numpy_helper.from_array(np.array([padded, 1, 1, 1], np.int64), f"{tag}_filter_shape")
        else:
            shape = numpy_helper.from_array(np.array([0, padded // block, -1, block], np.int64), f"{tag}_shape")
        proto.graph.initializer.append(shape)
        y = f"{tag}_out"
        nchw_product = _reroute_consumers(proto, g, mul.output[0], y, channels, tag)
        proto.graph.node.remove(mul)
        scaled = _scale_conv(x, s, shape.name, padded, y, tag) if single else _blocked_mul(x, s, shape.name, y, tag)
        proto.graph.node.extend(scaled)
        if nchw_product:
            proto.graph.node.append(_reorder_output(y, mul.output[0], channels, f"{tag}_product_nchw"))
        count += 1
        _drop_dead(proto.graph)
        _toposort(proto.graph)
        g.refresh()
    if count == 0:
        return data, 0
    return proto.SerializeToString(), count


def _se_operands(g: GraphUses, mul) -> tuple[str, str, int] | None:
    """``(x, scale, channels)`` when ``mul`` multiplies two NCHWc tensors brought back to NCHW, one of them an SE
    scale of the same channel count, both in channels-first order; None otherwise."""
    outs = [g.op(i, "ReorderOutput", _NCHWC) for i in mul.input]
    if len(outs) != 2 or any(o is None for o in outs):
        return None
    scales = [_is_se_scale(g, o.input[0]) for o in outs]
    if scales.count(True) != 1:
        return None
    x_out, s_out = (outs[1], outs[0]) if scales[0] else (outs[0], outs[1])
    x_attrs, s_attrs = ({a.name: a.i for a in o.attribute} for o in (x_out, s_out))
    channels = x_attrs.get("channels", 0)
    if channels <= 0 or s_attrs.get("channels") != channels or x_attrs.get("channels_last", 0) \
            or s_attrs.get("channels_last", 0):
        return None
    return x_out.input[0], s_out.input[0], channels


def _blocked_mul(x: str, s: str, shape4: str, y: str, tag: str) -> list:
    """Nodes computing ``y`` = ``x * s`` on the NCHWc tensors viewed as (N, C/b, H*W, b), back in NCHWc."""
    from onnx import helper

    return [
        helper.make_node("Reshape", [x, shape4], [f"{tag}_x"], name=f"{tag}_reshape_x"),
        helper.make_node("Reshape", [s, shape4], [f"{tag}_s"], name=f"{tag}_reshape_s"),
        # ONNX Runtime broadcasts (.., H*W, b) * (.., 1, b) in spans of b values, slowly; expanding the scale
        # first and multiplying same-shape tensors is about twice as fast
        helper.make_node("Shape", [f"{tag}_x"], [f"{tag}_x4shape"], name=f"{tag}_shape_of_x4"),
        helper.make_node("Expand", [f"{tag}_s", f"{tag}_x4shape"], [f"{tag}_s_full"], name=f"{tag}_expand_s"),
        helper.make_node("Mul", [f"{tag}_x", f"{tag}_s_full"], [f"{tag}_mul"], name=f"{tag}_mul"),
        helper.make_node("Shape", [x], [f"{tag}_xshape"], name=f"{tag}_shape_of_x"),
        helper.make_node("Reshape", [f"{tag}_mul", f"{tag}_xshape"], [y], name=f"{tag}_reshape_back"),
    ]


def _batch_is_one(graph) -> bool:
    """Whether every graph input (initializers aside) has a fixed batch (first axis) of 1."""
    weights = {i.name for i in graph.initializer}
    dims = [i.type.tensor_type.shape.dim for i in graph.input if i.name not in weights]
    return bool(dims) and all(len(d) > 0 and d[0].HasField("dim_value") and d[0].dim_value == 1 for d in dims)


def _scale_conv(x: str, s: str, filter_shape: str, padded: int, y: str, tag: str) -> list:
    """Nodes computing ``y`` = ``x * s`` (batch 1, both NCHWc with ``padded`` channels) as a depthwise 1x1 NCHWc
    convolution whose filter is ``s`` reshaped to (C, 1, 1, 1)."""
    from onnx import helper

    return [
        helper.make_node("Reshape", [s, filter_shape], [f"{tag}_filter"], name=f"{tag}_reshape_s"),
        helper.make_node("Conv", [x, f"{tag}_filter"], [y], name=f"{tag}_scale_conv", domain=_NCHWC,
                         kernel_shape=[1, 1], group=padded, strides=[1, 1], dilations=[1, 1], pads=[0, 0, 0, 0]),
    ]


def _reroute_consumers(proto, g: GraphUses, product: str, y: str, channels: int, tag: str) -> bool:
    """Point the consumers of the NCHW ``product`` at the NCHWc ``y``; True when some still need it in NCHW.

    A ReorderInput reads ``y`` directly. A residual Add(product, ReorderOutput(conv)) becomes the conv's Sum input:
    the Add's ReorderInput users read the conv's output, and anything else that needs the NCHW sum gets it from a
    ReorderOutput of the conv under the Add's output name. Any other consumer (a graph output, an op ONNX Runtime
    keeps in NCHW) needs the product in NCHW.
    """
    nchw_product = False
    for c in list(g.consumers.get(product, [])):
        if c.op_type == "ReorderInput" and c.domain == _NCHWC:
            _rename_input(g, c.output[0], y)
            continue
        conv = _fusable_residual(g, c, product)
        if conv is None:
            nchw_product = True
            continue
        conv.input.append(y)
        add_out = c.output[0]
        for u in list(g.consumers.get(add_out, [])):
            if u.op_type == "ReorderInput" and u.domain == _NCHWC:
                _rename_input(g, u.output[0], conv.output[0])
        proto.graph.node.remove(c)
        proto.graph.node.append(_reorder_output(conv.output[0], add_out, channels, f"{tag}_sum_nchw"))
    return nchw_product


def _fusable_residual(g: GraphUses, node, product: str):
    """The NCHWc conv that can take ``product`` as its Sum input in place of ``node`` = Add(product,
    ReorderOutput(conv)), or None."""
    if node.op_type != "Add" or node.domain != "" or len(node.input) != 2:
        return None
    other = node.input[1] if node.input[0] == product else node.input[0]
    r = g.op(other, "ReorderOutput", _NCHWC)
    conv = g.op(r.input[0], "Conv", _NCHWC) if r is not None else None
    if (conv is None or len(conv.input) != 3 or any(a.name == "activation" for a in conv.attribute)
            or len(g.consumers.get(conv.output[0], [])) != 1 or conv.output[0] in g.outputs):
        return None
    return conv


def _reorder_output(src: str, dst: str, channels: int, name: str):
    from onnx import helper

    return helper.make_node("ReorderOutput", [src], [dst], name=name, domain=_NCHWC, channels=channels,
                            channels_last=0)


def _toposort(graph) -> None:
    """Order ``graph.node`` so every node follows the producers of its inputs (stable otherwise)."""
    produced = {o for n in graph.node for o in n.output}
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i == "" or i in ready or i not in produced for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError("the rewritten graph has a cycle")
        pending = rest
    nodes = [type(n)() for n in ordered]
    for dst, src in zip(nodes, ordered, strict=True):
        dst.CopyFrom(src)
    del graph.node[:]
    graph.node.extend(nodes)


def _rename_input(g: GraphUses, old: str, new: str) -> None:
    """Make every consumer of ``old`` read ``new`` instead (``old``'s producer becomes dead)."""
    for node in g.consumers.get(old, []):
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def _drop_dead(graph) -> None:
    """Remove nodes whose outputs nobody reads (repeatedly), keeping graph outputs."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)
