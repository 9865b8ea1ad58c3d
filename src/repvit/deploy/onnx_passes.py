"""Graph rewrites applied to exported ONNX models so ONNX Runtime's CPU kernels keep a fast path.

* ``reduce_mean_to_global_pool``: ``ReduceMean(axes=[2, 3], keepdims=1)`` (how PyTorch exports
  ``x.mean((2, 3), keepdim=True)``, used by squeeze-excite and the classifier's pooling) becomes
  ``GlobalAveragePool``, which ONNX Runtime's NCHWc layout transformer supports; a ReduceMean forces a reorder back
  to NCHW and forward again around every squeeze-excite block. ``keepdims=0`` becomes
  ``GlobalAveragePool`` + ``Flatten``. Numerically the same operation.
* ``remove_identities``: drop ``Identity`` nodes left by the exporter.
"""

from __future__ import annotations

from repvit.runtime import require

__all__ = ["reduce_mean_to_global_pool", "remove_identities", "apply_passes"]


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


def apply_passes(data: bytes) -> bytes:
    """Apply every pass of this module to a serialized model and check the result."""
    onnx = require("onnx", "ONNX graph passes")
    model = onnx.load_from_string(data)
    remove_identities(model)
    reduce_mean_to_global_pool(model)
    onnx.checker.check_model(model)
    return model.SerializeToString()
