"""A convolution or Linear layer and the activation after it as one oneDNN call, for eager inference on a CPU.

The activation then runs on each block of the layer's output while that block is still in cache (a oneDNN post-op)
instead of as a second pass over the whole map. In a fused RepViT at 1024 px the FFNs' GELU over their widened maps
is about a tenth of the CPU time; folded into the 1x1 convolution before it, most of that goes. The FFN's residual
add goes into its second 1x1 convolution the same way (:func:`conv_add`). The same holds for
the Linear + ReLU of SAM 2's memory-attention FFN and the Linear + GELU of its memory encoder's ConvNeXt blocks.

:func:`conv_act`, :func:`conv_add` and :func:`linear_act` call torch's own oneDNN kernels
(``torch.ops.mkldnn._convolution_pointwise`` and ``_linear_pointwise``, the ones ``torch.compile`` uses for this
fusion) only where that changes nothing but the speed: plain float32 CPU tensors, no gradient asked for, no CPU
autocast, no dispatch mode (``FlopCounterMode`` counts the two ops), and no tracer, exporter or compiler running
(those see the layer and the activation as two ordinary ops, so exported graphs are unchanged). Anywhere else, and
with a torch built without oneDNN, they run the two ops. Results agree with the two-op form to float32 rounding (the
post-op's GELU is the exact erf form).

Callers guard the call with ``not torch.jit.is_scripting()``: TorchScript compiles the two-op branch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = ["act_spec", "conv_act", "conv_add", "linear_act", "plain_cpu_inference"]


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
