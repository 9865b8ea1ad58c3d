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
* ``channel_layer_norm``: LayerNorm over the channels of an NCHW map written out in elementwise ops (how PyTorch
  exports segment-anything's ``LayerNorm2d``, used in SAM's neck: ``ReduceMean`` over axis 1, ``Sub``, ``Pow``,
  ``ReduceMean``, ``Add``, ``Sqrt``, ``Div``, ``Mul``, ``Add``) becomes ``Transpose`` to NHWC, one
  ``LayerNormalization`` over the last axis and ``Transpose`` back. ONNX Runtime reduces over a strided channel axis
  slowly (EdgeSAM's neck: 2% of the encoder's time) and, at level ``all``, folds the two transposes into the NCHWc
  reorders around the neighbouring convolutions.
"""

from __future__ import annotations

from repvit.runtime import require

__all__ = ["GraphUses", "reduce_mean_to_global_pool", "remove_identities", "cubic_upsample_to_conv",
           "channel_layer_norm", "apply_passes"]


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


class GraphUses:
    """Producer and consumers of every tensor of an ONNX graph; :meth:`refresh` after an edit (graphs here have a
    few hundred nodes). Shared by this module's passes and :mod:`repvit.deploy.ort_nchwc`."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.refresh()

    def refresh(self) -> None:
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.graph.output}

    def op(self, name: str, op_type: str, domain: str = ""):
        """The producer of ``name`` when it is an ``op_type`` node of ``domain``, else None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type and node.domain == domain else None

    def only(self, name: str, op_type: str):
        """The single consumer of ``name`` when it is an ``op_type`` node and ``name`` is not a graph output."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type or name in self.outputs:
            return None
        return users[0]


def _scalar(graph, name: str) -> float | None:
    value = _constant(graph, name)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def _channel_vector(graph, name: str, channels: int | None):
    """A constant of shape (C, 1, 1) or (1, C, 1, 1) as a float32 (C,) vector, else None."""
    import numpy as np

    value = _constant(graph, name)
    if value is None or value.ndim not in (3, 4) or any(d != 1 for d in value.shape[-2:]):
        return None
    if value.ndim == 4 and value.shape[0] != 1:
        return None
    vec = value.reshape(-1).astype(np.float32)
    return vec if channels is None or vec.size == channels else None


def _match_channel_layer_norm(graph, uses: GraphUses, mean, channels: int | None):
    """The nodes, epsilon, scale and bias of a LayerNorm over axis 1 whose first ``ReduceMean`` is ``mean``; None
    when the ops around ``mean`` are not exactly that pattern (or an intermediate is used elsewhere)."""
    import numpy as np

    def reduce_over_channels(node) -> bool:
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        return node.op_type == "ReduceMean" and _axes(node, graph) in ([1], [-3]) and keep == 1

    if not reduce_over_channels(mean):
        return None
    x = mean.input[0]
    sub = uses.only(mean.output[0], "Sub")
    if sub is None or list(sub.input) != [x, mean.output[0]]:
        return None
    diff_users = uses.consumers.get(sub.output[0], [])
    pow_ = next((n for n in diff_users if n.op_type == "Pow"), None)
    div = next((n for n in diff_users if n.op_type == "Div"), None)
    if len(diff_users) != 2 or pow_ is None or div is None or sub.output[0] in uses.outputs:
        return None
    if pow_.input[0] != sub.output[0] or _scalar(graph, pow_.input[1]) != 2.0:
        return None
    var = uses.only(pow_.output[0], "ReduceMean")
    if var is None or not reduce_over_channels(var):
        return None
    add = uses.only(var.output[0], "Add")
    if add is None:
        return None
    eps = _scalar(graph, add.input[1] if add.input[0] == var.output[0] else add.input[0])
    sqrt = uses.only(add.output[0], "Sqrt")
    if eps is None or sqrt is None or list(div.input) != [sub.output[0], sqrt.output[0]]:
        return None
    nodes, out = [mean, sub, pow_, var, add, sqrt, div], div.output[0]
    scale = bias = None
    mul = uses.only(out, "Mul")
    if mul is not None:
        scale = _channel_vector(graph, mul.input[0] if mul.input[1] == out else mul.input[1], channels)
        if scale is not None:
            nodes, out = [*nodes, mul], mul.output[0]
            channels = scale.size
            plus = uses.only(out, "Add")
            if plus is not None:
                bias = _channel_vector(graph, plus.input[1] if plus.input[0] == out else plus.input[0], channels)
                if bias is not None:
                    nodes, out = [*nodes, plus], plus.output[0]
    if channels is None:
        return None
    scale = np.ones(channels, np.float32) if scale is None else scale
    bias = np.zeros(channels, np.float32) if bias is None else bias
    return nodes, x, out, eps, scale, bias


def channel_layer_norm(model):
    """Rewrite LayerNorms over the channels of 4-D NCHW tensors written out in elementwise ops into ``Transpose``,
    ``LayerNormalization`` (last axis) and ``Transpose`` back (in place; returns it).

    The pattern is segment-anything's ``LayerNorm2d`` as PyTorch exports it: ``u = ReduceMean(x, axis 1)``,
    ``d = x - u``, ``(d / Sqrt(ReduceMean(d ** 2, axis 1) + eps))``, then optionally ``* w + b`` with ``w`` and
    ``b`` of shape (C, 1, 1). ONNX Runtime's ``LayerNormalization`` takes the variance as ``E[x^2] - E[x]^2`` in
    float32, which differs from ``E[(x - u)^2]`` by float rounding only while the channel mean is not many times
    the channel spread (true of normalized features; the export's parity check compares with PyTorch).
    """
    onnx = require("onnx", "ONNX graph passes")
    from onnx import helper, numpy_helper

    graph = model.graph
    if not any(o.domain in ("", "ai.onnx") and o.version >= 17 for o in model.opset_import):
        return model  # LayerNormalization is an opset-17 op
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in (*inferred.graph.value_info, *inferred.graph.input)}
    dims = {v.name: v.type.tensor_type.shape.dim for v in (*inferred.graph.value_info, *inferred.graph.input)}
    removed_inputs: set[str] = set()
    while True:
        uses = GraphUses(graph)
        found = None
        for node in graph.node:
            if node.op_type != "ReduceMean" or ranks.get(node.input[0]) != 4:
                continue
            c = dims[node.input[0]][1]
            found = _match_channel_layer_norm(graph, uses, node, c.dim_value if c.HasField("dim_value") else None)
            if found is not None:
                break
        if found is None:
            break
        nodes, x, out, eps, scale, bias = found
        tag = f"{nodes[0].name or nodes[0].output[0]}_layer_norm"
        graph.initializer.extend([numpy_helper.from_array(scale, f"{tag}_scale"),
                                  numpy_helper.from_array(bias, f"{tag}_bias")])
        new = [
            helper.make_node("Transpose", [x], [f"{tag}_nhwc"], perm=[0, 2, 3, 1], name=f"{tag}_to_nhwc"),
            helper.make_node("LayerNormalization", [f"{tag}_nhwc", f"{tag}_scale", f"{tag}_bias"], [f"{tag}_out"],
                             axis=-1, epsilon=eps, name=tag),
            helper.make_node("Transpose", [f"{tag}_out"], [out], perm=[0, 3, 1, 2], name=f"{tag}_to_nchw"),
        ]
        at = list(graph.node).index(nodes[0])
        for n in nodes:
            removed_inputs.update(n.input)
            graph.node.remove(n)
        for k, n in enumerate(new):
            graph.node.insert(at + k, n)
    if removed_inputs:  # the replaced ops' constants (scalars, (C, 1, 1) scale and bias) nobody reads any more
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        keep = [n for n in graph.node if n.op_type != "Constant" or n.output[0] in used]
        del graph.node[:]
        graph.node.extend(keep)
        dead = [i for i in graph.initializer if i.name in removed_inputs and i.name not in used]
        for init in dead:
            graph.initializer.remove(init)
    return model


def apply_passes(data: bytes) -> bytes:
    """Apply every pass of this module to a serialized model and check the result."""
    onnx = require("onnx", "ONNX graph passes")
    model = onnx.load_from_string(data)
    remove_identities(model)
    reduce_mean_to_global_pool(model)
    cubic_upsample_to_conv(model)
    channel_layer_norm(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()
