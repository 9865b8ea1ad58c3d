"""A convolution or Linear layer and the activation after it as one oneDNN call, for eager inference on a CPU.

The activation then runs on each block of the layer's output while that block is still in cache (a oneDNN post-op)
instead of as a second pass over the whole map. In a fused RepViT at 1024 px the FFNs' GELU over their widened maps
is about a tenth of the CPU time; folded into the 1x1 convolution before it, most of that goes. The FFN's residual
add goes into its second 1x1 convolution the same way (:func:`conv_add`).

:func:`conv_act`, :func:`conv_add` and :func:`linear_act` call torch's own oneDNN kernels
(``torch.ops.mkldnn._convolution_pointwise`` and ``_linear_pointwise``, the ones ``torch.compile`` uses for this
fusion) only where that changes nothing but the speed: plain float32 CPU tensors, no gradient asked for, no CPU
autocast, no dispatch mode (``FlopCounterMode`` counts the two ops), and no tracer, exporter or compiler running
(those see the layer and the activation as two ordinary ops, so exported graphs are unchanged). Anywhere else, and
with a torch built without oneDNN, they run the two ops. Results agree with the two-op form to float32 rounding (the
post-op's GELU is the exact erf form).

:func:`mlp` runs a two-layer MLP over many rows (the memory-attention FFN's 4096 tokens x 2048, the memory encoder's
ConvNeXt MLP) a block of rows at a time, under the same conditions: each block's widened hidden (a few MiB) is still
in cache when the second layer reads it, instead of a 32 MiB map written out and read back. The outputs equal the
two whole layers' to float32 rounding.

Callers guard the call with ``not torch.jit.is_scripting()``: TorchScript compiles the two-op branch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = ["act_spec", "conv_act", "conv_add", "linear_act", "mlp", "plain_cpu_inference"]


def _has_pointwise_ops() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return callable(torch.ops.mkldnn._convolution_pointwise) and callable(torch.ops.mkldnn._linear_pointwise)
    except (AttributeError, RuntimeError):
        return False


_HAS_POINTWISE = _has_pointwise_ops()

#: the fewest positions (a conv's input height x width, a Linear's rows) at which the one call pays: oneDNN builds
#: the call and reorders the weights each time, which costs more than the saved pass on small maps (a 224 px
#: classifier's 56x56 first stage, the digits' 32 px images)
MIN_POSITIONS = 4096


#: the bytes of one row block's hidden in :func:`mlp` (2048 wide: 384 rows), about what a core's L2 and its share of L3
#: hold together on the CPUs measured (AMD Zen 3: 4096 x 256 -> 2048 -> 256 in 0.8x the unblocked time)
MLP_BLOCK_BYTES = 3 << 20


def act_spec(act: nn.Module) -> tuple[str, str] | None:
    """oneDNN's name and algorithm for ``act`` (``("gelu", "none")``, ``("gelu", "tanh")``, ``("relu", "")``),
    or None for an activation without a post-op here."""
    if type(act) is nn.GELU:
        return "gelu", act.approximate
    if type(act) is nn.ReLU:
        return "relu", ""
    return None


def _fusable(x: Tensor, weight: Tensor, positions: int) -> bool:
    """True where the one-call form can change nothing but the speed, and pays (``positions`` >= MIN_POSITIONS)."""
    if not _HAS_POINTWISE or torch.jit.is_tracing():  # traced shapes are tensors: no comparison with them
        return False
    return positions >= MIN_POSITIONS and plain_cpu_inference(x, weight)


def plain_cpu_inference(*tensors: Tensor) -> bool:
    """True when ``tensors`` are plain float32 CPU tensors in eager inference: no gradient asked for, no CPU autocast,
    no dispatch mode, and no tracer, exporter or compiler running; where a kernel call that only eager CPU inference
    has changes nothing but the speed."""
    if is_fx_symbolic_tracing() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if any(type(t) not in (Tensor, nn.Parameter) for t in tensors):  # fake, functional and traced tensors
        return False
    if any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
        return False
    if torch.onnx.is_in_onnx_export() or torch.is_autocast_enabled("cpu"):  # autocast would not cast these calls
        return False
    if _get_current_dispatch_mode() is not None:  # e.g. FlopCounterMode: it counts convolutions and matmuls only
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


@torch.jit.unused
def conv_act(conv: nn.Module, act: nn.Module, x: Tensor) -> Tensor:
    """``act(conv(x))``, in one oneDNN call where ``conv`` is a plain ``nn.Conv2d``, ``act`` has a post-op
    (:func:`act_spec`) and the call is safe; otherwise the two modules one after the other."""
    spec = act_spec(act) if type(conv) is nn.Conv2d and not is_fx_symbolic_tracing() else None  # a Proxy: no tests
    if (spec is not None and conv.padding_mode == "zeros" and not isinstance(conv.padding, str) and x.dim() == 4
            and _fusable(x, conv.weight, x.shape[-2] * x.shape[-1])):
        return torch.ops.mkldnn._convolution_pointwise(
            x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
            spec[0], [], spec[1])
    return act(conv(x))


@torch.jit.unused
def conv_add(conv: nn.Module, x: Tensor, other: Tensor) -> Tensor:
    """``other + conv(x)`` for a 1x1, stride-1 ``conv`` (a plain ``nn.Conv2d``), in one oneDNN call (the add as a
    post-op) where ``other`` has the output's shape and the call is safe; otherwise the two ops."""
    if (not is_fx_symbolic_tracing() and type(conv) is nn.Conv2d
            and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)
            and conv.dilation == (1, 1) and conv.groups == 1 and x.dim() == 4 and type(other) is Tensor
            and other.shape == (x.shape[0], conv.out_channels, x.shape[2], x.shape[3]) and other.dtype == x.dtype
            and _fusable(x, conv.weight, x.shape[-2] * x.shape[-1])):
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, conv.weight, conv.bias, [0, 0], [1, 1], [1, 1], 1, "add", None, None, [], None)
    return other + conv(x)


@torch.jit.unused
def linear_act(linear: nn.Module, act: nn.Module | str, x: Tensor) -> Tensor:
    """``act(linear(x))``, in one oneDNN call where ``linear`` is a plain ``nn.Linear``, ``act`` has a post-op and
    the call is safe; otherwise the two one after the other. ``act`` may also be ``"gelu"`` or ``"relu"`` (the
    functional forms, GELU exact)."""
    spec = (act, "none" if act == "gelu" else "") if isinstance(act, str) else act_spec(act)
    if (spec is not None and not is_fx_symbolic_tracing() and type(linear) is nn.Linear and x.dim() >= 2
            and _fusable(x, linear.weight, x.numel() // max(1, x.shape[-1]))):
        return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, spec[0], [], spec[1])
    y = linear(x)
    if isinstance(act, str):
        return F.relu(y) if act == "relu" else F.gelu(y)
    return act(y)


@torch.jit.unused
def mlp(linear1: nn.Module, act: str, linear2: nn.Module, x: Tensor) -> Tensor:
    """``linear2(act(linear1(x)))`` for plain ``nn.Linear`` layers and ``act`` ``"relu"`` or ``"gelu"`` (exact), in
    blocks of rows where the call is safe (:func:`plain_cpu_inference`) and ``x`` has at least two blocks of rows;
    otherwise :func:`linear_act` then ``linear2``."""
    if act not in ("relu", "gelu"):
        raise ValueError(f"mlp's activation is 'relu' or 'gelu', not {act!r}.")
    hidden = linear1.out_features if type(linear1) is nn.Linear else 0
    rows = max(64, MLP_BLOCK_BYTES // (4 * max(1, hidden)))
    if (is_fx_symbolic_tracing() or type(linear1) is not nn.Linear or type(linear2) is not nn.Linear or x.dim() < 2
            or torch.jit.is_tracing() or x.numel() // max(1, x.shape[-1]) < 2 * rows
            or not plain_cpu_inference(x, linear1.weight, linear2.weight)):
        return linear2(linear_act(linear1, act, x))
    flat = x.reshape(-1, x.shape[-1])
    w1, w2 = linear1.weight.t(), linear2.weight.t()
    out = flat.new_empty(flat.shape[0], linear2.out_features)
    activate = torch.relu_ if act == "relu" else torch.ops.aten.gelu_
    for start in range(0, flat.shape[0], rows):
        block = flat[start:start + rows]
        h = activate(torch.mm(block, w1) if linear1.bias is None else torch.addmm(linear1.bias, block, w1))
        if linear2.bias is None:
            torch.mm(h, w2, out=out[start:start + rows])
        else:
            torch.addmm(linear2.bias, h, w2, out=out[start:start + rows])
    return out.view(*x.shape[:-1], linear2.out_features)
