"""The paper's ablations as networks: one design switch of :mod:`.config` applied to one roadmap step.

An :class:`Ablation` is a key and a value (``se=none``, ``reparam=off``, ``expansion=4``, ``kernel=5``); a
:class:`RoadmapVariant` is a step with one ablation applied, e.g. ``roadmap_8 + se=none``. Variants are single
changes to their base step, not combinations, as in the paper's ablation tables. :func:`register_variant` adds a
variant to the model registry (once; registering it again is a no-op) under a name such as
``roadmap_8_cross_block_se__se_none``, so it builds, fuses, times and trains by name like any step; ``repvit
roadmap --ablate`` does that for the variants it measures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from repvit.models.registry import ModelEntry, UnknownModelError, get_model_entry

from .config import RoadmapConfig, with_expansion, with_kernel, with_se, with_token_mixer
from .steps import RoadmapStep, register_roadmap_model

__all__ = ["ABLATIONS", "Ablation", "RoadmapVariant", "parse_ablations", "ablation_variants", "register_variant"]


def _parse_se(text: str) -> str:
    if text not in ("all", "cross", "none"):
        raise ValueError
    return text


def _parse_reparam(text: str) -> str:
    if text not in ("on", "off"):
        raise ValueError
    return text


def _parse_expansion(text: str) -> str:
    ratio = float(text)
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError
    return f"{ratio:g}"


def _parse_kernel(text: str) -> str:
    k = int(text)
    if k < 3 or k % 2 == 0:
        raise ValueError
    return str(k)


def _apply_expansion(cfg: RoadmapConfig, value: str) -> RoadmapConfig:
    ratio = float(value)
    widths = [b.in_chs for b in cfg.blocks()]
    widths += [c for s in cfg.stages if s.downsample for c in (s.downsample.in_chs, s.downsample.out_chs)]
    if int(min(widths) * ratio) < 1:
        raise ValueError(f"expansion={value} leaves no hidden channel in a {min(widths)}-channel FFN; "
                         f"use a ratio >= {1 / min(widths):g}.")
    return with_expansion(cfg, ratio)


@dataclass(frozen=True)
class _Switch:
    choices: str  # the valid values, for error messages
    parse: Callable[[str], str]  # text -> canonical value; ValueError when invalid
    apply: Callable[[RoadmapConfig, str], RoadmapConfig]
    describe: Callable[[str], str]


ABLATIONS: dict[str, _Switch] = {
    "se": _Switch(
        "one of all, cross, none", _parse_se, lambda cfg, v: with_se(cfg, v),
        lambda v: {"all": "SE on every block", "cross": "SE on blocks 1, 3, 5, ... of every stage (RepViT)",
                   "none": "no SE"}[v],
    ),
    "reparam": _Switch(
        "on or off", _parse_reparam, lambda cfg, v: with_token_mixer(cfg, v == "on"),
        lambda v: "RepVGGDW token mixers (re-parameterized)" if v == "on"
        else "plain depthwise conv + BN token mixers (no training-time branches)",
    ),
    "expansion": _Switch(
        "a number > 0, e.g. 2, 4", _parse_expansion, _apply_expansion,
        lambda v: f"FFN expansion ratio {v} in every block and downsampling layer",
    ),
    "kernel": _Switch(
        "an odd integer >= 3, e.g. 3, 5, 7", _parse_kernel, lambda cfg, v: with_kernel(cfg, int(v)),
        lambda v: f"{v}x{v} depthwise kernels everywhere",
    ),
}
"""The ablation keys: ``se`` (:func:`.with_se`), ``reparam`` (:func:`.with_token_mixer`), ``expansion``
(:func:`.with_expansion`) and ``kernel`` (:func:`.with_kernel`)."""


def _choices() -> str:
    return "; ".join(f"{k} ({sw.choices})" for k, sw in ABLATIONS.items())


@dataclass(frozen=True)
class Ablation:
    """One switch and its value, e.g. ``Ablation("se", "none")``; the value is validated and made canonical
    (``expansion=4.0`` becomes ``expansion=4``)."""

    key: str
    value: str

    def __post_init__(self) -> None:
        if self.key not in ABLATIONS:
            raise ValueError(f"unknown ablation {self.key!r}; choose from: {_choices()}.")
        text = str(self.value).strip().lower()
        try:
            value = ABLATIONS[self.key].parse(text)
        except ValueError:
            choices = ABLATIONS[self.key].choices
            raise ValueError(f"bad value {text!r} for ablation {self.key}: give {choices}.") from None
        object.__setattr__(self, "value", value)

    @property
    def label(self) -> str:
        return f"{self.key}={self.value}"

    @property
    def description(self) -> str:
        return ABLATIONS[self.key].describe(self.value)

    def apply(self, cfg: RoadmapConfig) -> RoadmapConfig:
        """``cfg`` with this switch applied."""
        return ABLATIONS[self.key].apply(cfg, self.value)


def parse_ablations(specs: Iterable[str]) -> list[Ablation]:
    """``["se=all,cross,none", "kernel=5"]`` → one :class:`Ablation` per value, in order, without repeats."""
    out: list[Ablation] = []
    for spec in specs:
        key, sep, values = str(spec).partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise ValueError(f"an ablation is KEY=VALUE[,VALUE...], got {spec!r}; keys and values: {_choices()}.")
        if key not in ABLATIONS:
            raise ValueError(f"unknown ablation {key!r} in {spec!r}; choose from: {_choices()}.")
        texts = [v for v in values.split(",") if v.strip()]
        if not texts:
            raise ValueError(f"ablation {spec!r} has no value; give {ABLATIONS[key].choices}.")
        for text in texts:
            a = Ablation(key, text)
            if a not in out:
                out.append(a)
    return out


@dataclass(frozen=True)
class RoadmapVariant:
    """A roadmap step with one ablation applied (its ``config`` is built, and checked, on construction)."""

    base: RoadmapStep
    ablation: Ablation
    config: RoadmapConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", self.ablation.apply(self.base.config))

    @property
    def index(self) -> int:
        return self.base.index

    @property
    def name(self) -> str:
        """The registry name, e.g. ``roadmap_8_cross_block_se__se_none`` (lower case, no ``.`` or ``-``)."""
        return f"{self.base.name}__{self.ablation.key}_{re.sub(r'[^0-9a-z]', '_', self.ablation.value)}"

    @property
    def label(self) -> str:
        """How tables and plots show it, e.g. ``roadmap_8 + se=none``."""
        return f"roadmap_{self.base.index} + {self.ablation.label}"

    @property
    def same_as_base(self) -> bool:
        """Whether the switch leaves the base step's architecture unchanged (e.g. ``se=cross`` on step 8)."""
        return self.config == self.base.config

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "label": self.label,
                "title": f"{self.base.title}, {self.ablation.label}",
                "description": f"{self.base.name} with {self.ablation.description}.",
                "base": self.base.name, "ablation": self.ablation.label, "same_as_base": self.same_as_base}


def ablation_variants(specs: Iterable[str], base: RoadmapStep) -> list[RoadmapVariant]:
    """One :class:`RoadmapVariant` of ``base`` per value in ``specs`` (see :func:`parse_ablations`)."""
    return [RoadmapVariant(base, a) for a in parse_ablations(specs)]


def register_variant(variant: RoadmapVariant) -> ModelEntry:
    """Register ``variant`` under :attr:`RoadmapVariant.name` (``create_model``, the trainer and the fuser then
    take it by name); a variant registered before is returned as it is."""
    try:
        entry = get_model_entry(variant.name)
    except UnknownModelError:
        return register_roadmap_model(variant.name, variant.config,
                                      f"roadmap ablation: {variant.to_dict()['description']}",
                                      tags=("roadmap", "ablation"))
    if entry.config != variant.config:
        raise ValueError(f"model {variant.name!r} is already registered with another architecture.")
    return entry
