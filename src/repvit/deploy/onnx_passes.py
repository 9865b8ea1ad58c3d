"""Graph rewrites applied to exported ONNX models so ONNX Runtime's CPU kernels keep a fast path.

* ``reduce_mean_to_global_pool``: ``ReduceMean(axes=[2, 3], keepdims=1)`` (how PyTorch exports
  ``x.mean((2, 3), keepdim=True)``, used by squeeze-excite and the classifier's pooling) becomes
  ``GlobalAveragePool``, which ONNX Runtime's NCHWc layout transformer supports; a ReduceMean forces a reorder back
  to NCHW and forward again around every squeeze-excite block. ``keepdims=0`` becomes
  ``GlobalAveragePool`` + ``Flatten``. Numerically the same operation.
* ``remove_identities``: drop ``Identity`` nodes left by the exporter.
* ``cubic_upsample_to_conv``: PyTorch's x2 bicubic upsampling (``Resize``, cubic, ``half_pixel``, a = -0.75, clamped
  borders), which ONNX Runtime runs with a slow generic kernel (EdgeSAM's neck: a tenth of the encoder's time),
  becomes edge padding, x2 nearest upsampling and two depthwise 9-tap convolutions. The same function, not an
  approximation: see :func:`cubic_upsample_to_conv`.
"""

from __future__ import annotations

from repvit.runtime import require

__all__ = ["reduce_mean_to_global_pool", "remove_identities", "cubic_upsample_to_conv", "apply_passes"]


def _axes(node, graph) -> list[int] | None:
    for a in node.attribute:
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1 and node.input[1]:  # opset >= 18: axes as an input
        onnx = require("onnx")
        for init in graph.initializer:
            if init.name == node.input[1]:
                return [int(v) for v in onnx.numpy_helper.to_array(init).reshape(-1)]
        for n in graph.node:
            if n.op_type == "Constant" and n.output[0] == node.input[1]:
                return [int(v) for v in onnx.numpy_helper.to_array(n.attribute[0].t).reshape(-1)]
    return None


def reduce_mean_to_global_pool(model):
    """Rewrite spatial ``ReduceMean`` over a 4-D NCHW tensor into ``GlobalAveragePool`` (in place; returns it)."""
    onnx = require("onnx", "ONNX graph passes")
    graph = model.graph
    new_nodes = []
    for node in graph.node:
        if node.op_type == "ReduceMean":
            axes = _axes(node, graph)
            keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
            if axes is not None and sorted(a % 4 if a < 0 else a for a in axes) == [2, 3]:
                if keep:
                    new_nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output),
                                                           name=node.name + "_gap"))
                else:
                    mid = node.output[0] + "_gap"
                    new_nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [mid],
                                                           name=node.name + "_gap"))
                    new_nodes.append(onnx.helper.make_node("Flatten", [mid], list(node.output), axis=1,
                                                           name=node.name + "_flatten"))
                continue
        new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model


def remove_identities(model):
    """Remove ``Identity`` nodes whose output is not a graph output, rewiring their consumers (in place)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
            continue
        keep.append(node)

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    del graph.node[:]
    graph.node.extend(keep)
    return model


def _constant(graph, name: str):
    """The value of ``name`` when it is an initializer or a ``Constant`` node's output, else None."""
    onnx = require("onnx")
    for init in graph.initializer:
        if init.name == name:
            return onnx.numpy_helper.to_array(init)
    for n in graph.node:
        if n.op_type == "Constant" and n.output[0] == name and n.attribute[0].name == "value":
            return onnx.numpy_helper.to_array(n.attribute[0].t)
    return None


def _cubic_weight(t: float, a: float) -> float:
    """The cubic convolution kernel (Keys) at distance ``t`` with coefficient ``a``."""
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0


def _cubic_x2_kernel(a: float = -0.75):
    """The 9-tap filter that, run over the x2 nearest-upsampled signal, gives x2 cubic (half-pixel) upsampling.

    Output ``2k`` of x2 cubic upsampling weighs ``x[k-2..k+1]`` by ``w1, w2, w3, w4`` = ``w(1.75), w(0.75),
    w(0.25), w(1.25)`` (``w`` the cubic kernel with coefficient ``a``) and output ``2k+1`` weighs ``x[k-1..k+2]`` by
    the reverse. Over ``u[i] = x[i // 2]``, the filter centred on ``i`` must sum to those weights over each pair
    ``u[2j], u[2j+1]``; the unique solution with 7 non-zero taps is
    ``[w1, w4-w1, w2-w4+w1, w3-w2+w4-w1, w2-w4+w1, w4-w1, w1]``, padded with a zero at each end so that it spans
    the 4 extra samples on each side that edge-padding ``x`` by 2 gives ``u``.
    """
    import numpy as np

    w1, w2, w3, w4 = (_cubic_weight(t, a) for t in (1.75, 0.75, 0.25, 1.25))
    return np.array([0, w1, w4 - w1, w2 - w4 + w1, w3 - w2 + w4 - w1, w2 - w4 + w1, w4 - w1, w1, 0], np.float64)


def _is_cubic_x2(node, graph) -> bool:
    """Whether ``node`` is a ``Resize`` doing x2 cubic half-pixel upsampling of H and W with clamped borders."""
    attrs = {a.name: a for a in node.attribute}

    def s(name: str, default: str) -> str:
        return attrs[name].s.decode() if name in attrs else default

    if node.op_type != "Resize" or s("mode", "nearest") != "cubic":
        return False
    if s("coordinate_transformation_mode", "half_pixel") not in ("half_pixel", "pytorch_half_pixel"):
        return False  # pytorch_half_pixel differs from half_pixel only for an output of length 1, not at x2
    if (attrs["exclude_outside"].i if "exclude_outside" in attrs else 0) != 0:
        return False
    if s("keep_aspect_ratio_policy", "stretch") != "stretch" or "axes" in attrs or len(node.input) < 3:
        return False
    if len(node.input) > 3 and node.input[3]:
        return False  # given by sizes: the factor is not known here
    scales = _constant(graph, node.input[2])
    return scales is not None and [float(v) for v in scales.reshape(-1)] == [1.0, 1.0, 2.0, 2.0]


def cubic_upsample_to_conv(model):
    """Rewrite x2 bicubic ``Resize`` nodes over 4-D NCHW tensors with a known channel count (in place; returns it).

    ``Resize(x, scales=[1, 1, 2, 2], mode=cubic, half_pixel, exclude_outside=0)`` with coefficient ``a`` becomes
    ``Pad(x, 2, edge)`` -> ``Resize(nearest, asymmetric, floor, x2)`` -> depthwise ``Conv`` 9x1 -> depthwise
    ``Conv`` 1x9 with the filter of :func:`_cubic_x2_kernel` (no padding). Edge padding reproduces the clamped border of
    PyTorch's and ONNX's cubic mode, so the result is the same function (in float arithmetic the sums are taken
    in another order: differences of a few float32 ulps). Other ``Resize`` nodes are left as they are.
    """
    onnx = require("onnx", "ONNX graph passes")
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    targets = {i for i, n in enumerate(graph.node) if _is_cubic_x2(n, graph)}
    if not targets:
        return model
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in (*inferred.graph.value_info, *inferred.graph.input)}
    new_nodes = []
    for i, node in enumerate(graph.node):
        shape = shapes.get(node.input[0]) if i in targets else None
        if shape is None or len(shape) != 4 or not shape[1]:
            new_nodes.append(node)
            continue
        a = next((at.f for at in node.attribute if at.name == "cubic_coeff_a"), -0.75)
        channels, tag = shape[1], node.name or node.output[0]
        k = _cubic_x2_kernel(a).astype(np.float32)
        graph.initializer.extend([
            numpy_helper.from_array(np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64), f"{tag}_pads"),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), f"{tag}_scales"),
            numpy_helper.from_array(np.tile(k.reshape(1, 1, 9, 1), (channels, 1, 1, 1)), f"{tag}_kh"),
            numpy_helper.from_array(np.tile(k.reshape(1, 1, 1, 9), (channels, 1, 1, 1)), f"{tag}_kw"),
        ])
        new_nodes += [
            helper.make_node("Pad", [node.input[0], f"{tag}_pads"], [f"{tag}_padded"], mode="edge",
                             name=f"{tag}_pad"),
            helper.make_node("Resize", [f"{tag}_padded", "", f"{tag}_scales"], [f"{tag}_nearest"], mode="nearest",
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                             name=f"{tag}_nearest"),
            helper.make_node("Conv", [f"{tag}_nearest", f"{tag}_kh"], [f"{tag}_rows"], group=channels,
                             kernel_shape=[9, 1], name=f"{tag}_conv_h"),
            helper.make_node("Conv", [f"{tag}_rows", f"{tag}_kw"], list(node.output), group=channels,
                             kernel_shape=[1, 9], name=f"{tag}_conv_w"),
        ]
    used = {i for n in new_nodes for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    # Constants nobody reads any more (the replaced Resizes' scales) are dropped
    graph.node.extend(n for n in new_nodes if n.op_type != "Constant" or n.output[0] in used)
    return model


def apply_passes(data: bytes) -> bytes:
    """Apply every pass of this module to a serialized model and check the result."""
    onnx = require("onnx", "ONNX graph passes")
    model = onnx.load_from_string(data)
    remove_identities(model)
    reduce_mean_to_global_pool(model)
    cubic_upsample_to_conv(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()
