"""Which INT8 settings this CPU's kernels need: saturation-safe (7-bit weights) or full 8-bit.

x86 CPUs without VNNI (AVX2-only parts such as AMD Zen 1-3 and Intel before Cascade Lake / Ice Lake, and AVX-512
parts without VNNI) multiply unsigned 8-bit activations by signed 8-bit weights with ``vpmaddubsw``, whose 16-bit
pairwise sums saturate: a u8 x s8 pair can reach 2 x 255 x 127 = 64770, beyond int16. ONNX Runtime's u8s8 kernels
and OpenVINO's INT8 kernels take that path there, and a quantized RepViT loses ~10 points of top-1 on the digits
set (measured on AMD EPYC Zen 3). Keeping the weights to 7 bits (``reduce_range`` in ONNX Runtime, NNCF's
``overflow_fix``) halves the products so the sums cannot saturate. With VNNI (``vpdpbusd``: AVX512-VNNI, AVX-VNNI)
or AMX the products accumulate in 32 bits and full 8-bit weights are exact; ARM's dot-product kernels do not
saturate either. XNNPACK (ExecuTorch) widens to 16 bits before multiplying on AVX2, so it needs no setting.

Modes:
    ``auto``: ``safe`` on x86 CPUs without VNNI/AMX, ``full`` elsewhere (decided from ``/proc/cpuinfo``; an oneDNN ISA
        cap ``ONEDNN_MAX_CPU_ISA`` at AVX2 or below counts as a CPU without VNNI).
    ``safe``: 7-bit weights everywhere (a file that runs accurately on every CPU; costs a little resolution).
    ``full``: 8-bit weights (accurate only where the kernels accumulate in 32 bits: VNNI, AMX, ARM).

The environment variable ``REPVIT_INT8_MODE`` sets the default where no mode is passed.

Plans (:class:`Int8Plan`, :func:`int8_plan`): next to the weight mode, which ops of the ONNX graph are quantized and
which INT8 runtime is fastest, per ISA class. On AVX2 the INT8 convolutions are at most 2x the FP32 ones (two
instructions, ``vpmaddubsw`` + ``vpmaddwd``, per 32 multiply-adds against one FMA per 8), so the time of everything
left in float decides: GELU is fused into one op before quantizing (ONNX Runtime's own fusion cannot
fire in a QDQ graph, where each consumer of a tensor gets its own DequantizeLinear), the convolutions, the classifier
and the residual adds run in INT8, and the squeeze-excite scale (a Mul) stays in float.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["INT8_MODES", "Int8Choice", "Int8Plan", "int8_plan", "isa_class", "read_cpu_flags", "resolve_int8_mode",
           "LOWP_DROP_HINT"]

INT8_MODES: tuple[str, ...] = ("auto", "safe", "full")

#: What a user reads next to an INT8 / bf16 result that dropped too far below FP32.
LOWP_DROP_HINT = (
    "likely cause: INT8 kernels that saturate on x86 CPUs without VNNI (vpmaddubsw); quantize with "
    "--int8-mode safe (7-bit weights), or calibrate on more/representative images"
)

# oneDNN's ISA names at or below AVX2 (https://oneapi-src.github.io/oneDNN/dev_guide_cpu_dispatcher_control.html)
_CAPPED_NO_VNNI = ("sse41", "avx", "avx2")


def read_cpu_flags() -> set[str] | None:
    """The CPU flags ``/proc/cpuinfo`` lists for the first core; None where there is no ``/proc/cpuinfo``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def isa_class(flags: set[str] | None = None, machine: str | None = None) -> str:
    """The class of INT8 kernels this CPU gets: ``amx``, ``vnni``, ``avx512`` (no VNNI), ``avx2``, ``x86`` (older),
    ``arm`` or ``unknown``.

    Args:
        flags: CPU flags (default: :func:`read_cpu_flags`).
        machine: ``platform.machine()`` (default: this machine's).
    """
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64") or machine.startswith("arm"):
        return "arm"
    if flags is None:
        flags = read_cpu_flags()
    if not flags:
        return "unknown"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().lower()
    if cap in _CAPPED_NO_VNNI:
        return "avx2" if cap == "avx2" else "x86"
    if any(f.startswith("amx") for f in flags):
        return "amx"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "x86"


@dataclass(frozen=True)
class Int8Plan:
    """How to quantize for one ISA class, and where INT8 runs fastest there.

    Attributes:
        name: the plan's name (``avx2`` or ``dot-product``).
        op_types: ONNX op types that :func:`repvit.deploy.quantize.quantize_onnx_bytes` quantizes.
        fuse_gelu: replace the exported erf-GELU subgraph with one ``Gelu`` op before quantizing.
        runtime: the fastest INT8 runtime measured for the class, as a ``repvit bench`` backend
            (``openvino-int8``: NNCF's transformer scheme; ``executorch-int8``: XNNPACK).
        reason: one sentence on the measurement behind the plan.
    """

    name: str
    op_types: tuple[str, ...]
    fuse_gelu: bool
    runtime: str
    reason: str


_PLANS = {
    "avx2": Int8Plan(
        "avx2", ("Conv", "Gemm", "Add"), True, "openvino-int8",
        "u8s8 convolutions without VNNI are at most 2x FP32, so the float work around them decides: GELU fused "
        "to one op, residual adds in INT8, the squeeze-excite scale in float; OpenVINO with NNCF (1.75-1.94x on "
        "the pointwise convolutions) is the fastest INT8 runtime measured on AMD Zen 3"),
    "dot-product": Int8Plan(
        "dot-product", ("Conv", "Gemm", "Add"), True, "executorch-int8",
        "VNNI/AMX/ARM dot products make INT8 convolutions ~2x or more; XNNPACK (ExecuTorch) was the fastest INT8 "
        "runtime measured on Sapphire Rapids (AMX)"),
}


def int8_plan(isa: str | None = None) -> Int8Plan:
    """The :class:`Int8Plan` for an ISA class (:func:`isa_class`; default this machine's): ``avx2`` for x86 CPUs
    without VNNI/AMX (and unknown ones), ``dot-product`` for ``vnni``, ``amx`` and ``arm``."""
    isa = isa_class() if isa is None else isa
    return _PLANS["dot-product" if isa in ("vnni", "amx", "arm") else "avx2"]


@dataclass(frozen=True)
class Int8Choice:
    """A resolved INT8 mode: what was asked, what is used, for which ISA class, and why.

    Attributes:
        requested: the mode asked for (``auto``, ``safe`` or ``full``).
        mode: ``safe`` or ``full``.
        isa: :func:`isa_class` of this machine.
        reason: one sentence on why ``mode`` was chosen.
        plan: the :class:`Int8Plan` for ``isa``.
    """

    requested: str
    mode: str
    isa: str
    reason: str
    plan: Int8Plan

    @property
    def saturation_safe(self) -> bool:
        """7-bit weights (ONNX Runtime ``reduce_range``, NNCF ``overflow_fix``)."""
        return self.mode == "safe"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"saturation_safe": self.saturation_safe}

    def metadata(self) -> dict[str, str]:
        """String metadata for an exported file."""
        return {"int8_mode": self.mode, "int8_mode_requested": self.requested, "int8_isa_at_export": self.isa,
                "int8_plan": f"{self.plan.name}: {', '.join(self.plan.op_types)} in INT8"
                             + (", GELU fused" if self.plan.fuse_gelu else ""),
                "int8_weights": "7-bit (saturation-safe on every CPU)" if self.saturation_safe else
                "8-bit (accurate on VNNI/AMX/ARM; saturates on x86 CPUs without VNNI)"}


def resolve_int8_mode(mode: str | Int8Choice | None = None, flags: set[str] | None = None,
                      machine: str | None = None) -> Int8Choice:
    """Resolve an INT8 mode for this CPU.

    Args:
        mode: ``auto``, ``safe``, ``full``, an existing :class:`Int8Choice` (returned as is) or None (the
            ``REPVIT_INT8_MODE`` environment variable, else ``auto``).
        flags: CPU flags for :func:`isa_class` (tests).
        machine: machine name for :func:`isa_class` (tests).

    Raises:
        ValueError: an unknown mode (names the valid ones).
    """
    if isinstance(mode, Int8Choice):
        return mode
    requested = (mode or os.environ.get("REPVIT_INT8_MODE") or "auto").strip().lower()
    if requested not in INT8_MODES:
        src = "REPVIT_INT8_MODE" if mode is None else "int8 mode"
        raise ValueError(f"Unknown {src} {requested!r}; use one of {', '.join(INT8_MODES)}.")
    isa = isa_class(flags, machine)
    plan = int8_plan(isa)
    if requested != "auto":
        return Int8Choice(requested, requested, isa, f"{requested} requested", plan)
    if isa in ("avx2", "avx512", "x86"):
        return Int8Choice("auto", "safe", isa, f"this CPU ({isa}) has no VNNI/AMX: 8-bit u8*s8 products saturate "
                          "in vpmaddubsw's 16-bit sums, so weights are kept to 7 bits", plan)
    if isa == "unknown":
        return Int8Choice("auto", "safe", isa, "the CPU's ISA is unknown: 7-bit weights are safe on every CPU",
                          plan)
    return Int8Choice("auto", "full", isa, f"this CPU ({isa}) accumulates INT8 products in 32 bits: full 8-bit "
                      "weights are exact", plan)
