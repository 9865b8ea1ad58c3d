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
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["INT8_MODES", "Int8Choice", "isa_class", "read_cpu_flags", "resolve_int8_mode", "LOWP_DROP_HINT"]

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
class Int8Choice:
    """A resolved INT8 mode: what was asked, what is used, for which ISA class, and why.

    Attributes:
        requested: the mode asked for (``auto``, ``safe`` or ``full``).
        mode: ``safe`` or ``full``.
        isa: :func:`isa_class` of this machine.
        reason: one sentence on why ``mode`` was chosen.
    """

    requested: str
    mode: str
    isa: str
    reason: str

    @property
    def saturation_safe(self) -> bool:
        """7-bit weights (ONNX Runtime ``reduce_range``, NNCF ``overflow_fix``)."""
        return self.mode == "safe"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"saturation_safe": self.saturation_safe}

    def metadata(self) -> dict[str, str]:
        """String metadata for an exported file."""
        return {"int8_mode": self.mode, "int8_mode_requested": self.requested, "int8_isa_at_export": self.isa,
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
    if requested != "auto":
        return Int8Choice(requested, requested, isa, f"{requested} requested")
    if isa in ("avx2", "avx512", "x86"):
        return Int8Choice("auto", "safe", isa, f"this CPU ({isa}) has no VNNI/AMX: 8-bit u8*s8 products saturate "
                          "in vpmaddubsw's 16-bit sums, so weights are kept to 7 bits")
    if isa == "unknown":
        return Int8Choice("auto", "safe", isa, "the CPU's ISA is unknown: 7-bit weights are safe on every CPU")
    return Int8Choice("auto", "full", isa, f"this CPU ({isa}) accumulates INT8 products in 32 bits: full 8-bit "
                      "weights are exact")
