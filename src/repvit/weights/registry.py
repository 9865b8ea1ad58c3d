"""The published RepViT weights, by name: where each file lives, its layout and the model it builds.

Names (see ``docs/weights.md``):

* timm's ``model.tag`` for the ImageNet-1k classifiers timm hosts on Hugging Face (``timm/<model>.<tag>``,
  ``model.safetensors``): ``repvit_m0_9`` ... ``repvit_m2_3`` x ``dist_300e_in1k`` / ``dist_450e_in1k``, the legacy
  ``repvit_m1``/``m2``/``m3`` x ``dist_in1k``; plus ``repvit_m0_6.dist_300e_in1k`` (timm has no M0.6; it is the
  authors' file).
* the authors' release files (``github.com/THU-MIG/RepViT/releases/download/v1.0/``) by file stem:
  ``repvit_m0_9_distill_300e``, ``repvit_m1_1_coco`` (mmdet Mask R-CNN), ``repvit_m1_1_ade20k`` (mmseg Semantic FPN),
  ``repvit_sam``, ...
* EdgeSAM (``edge_sam``, ``edge_sam_3x``) from the Hugging Face Space ``chongzhou/EdgeSAM``.

timm's and the authors' classification weights differ (the authors' issue #89), so both are kept.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Literal

from repvit.tasks import WEIGHT_KINDS, WEIGHT_LAYOUTS

__all__ = [
    "WeightsEntry",
    "UnknownWeightsError",
    "list_weights",
    "get_weights",
    "default_weights",
    "GITHUB_RELEASE",
    "DEFAULT_TAGS",
]

Host = Literal["huggingface", "github", "url"]

GITHUB_RELEASE = "https://github.com/THU-MIG/RepViT/releases/download/v1.0/"
# EdgeTAM's checkpoint as committed in the authors' repository
EDGETAM_GITHUB = "https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints/edgetam.pt"


class UnknownWeightsError(ValueError):
    """A weights name that is not registered; the message lists the closest names."""


@dataclass(frozen=True)
class WeightsEntry:
    """One published weights file.

    Attributes:
        name: the name to ask for (``repvit_m0_9.dist_450e_in1k``, ``repvit_m1_1_coco``, ``edge_sam``).
        model: the architecture it builds (a ``repvit list`` name, ``repvit_sam_m2_3`` or ``edge_sam``).
        host: ``"huggingface"``, ``"github"`` (the authors' release) or ``"url"`` (any other HTTP(S) file); the last
            two are downloaded into torch.hub's cache.
        layout: how the file is laid out (:data:`repvit.tasks.WEIGHT_LAYOUTS`): ``timm``, ``authors_cls``
            (``{'model': sd}``, ``features.N``), ``mmseg_semfpn``, ``mmdet_maskrcnn``, ``repvit_sam`` (one flat SAM
            state dict), ``edge_sam`` or ``edgetam`` (SAM 2's ``{'model': sd}``); None when unknown until the file
            is read (a URL).
        task: the kind of weights (:data:`repvit.tasks.WEIGHT_KINDS`): ``classify``, ``segment``, ``detect`` or
            ``sam``; None when unknown (a URL).
        repo_id: Hugging Face repository (``huggingface`` host).
        filename: the file inside the repository, or the release file name (``github`` host).
        repo_type: ``model`` or ``space`` (Hugging Face).
        url: the download URL (``github`` host; Hugging Face URLs are made from ``HF_ENDPOINT``).
        description: one line for ``repvit weights list``.
        second_url: the same file on a second host (a GitHub URL), tried when the first host fails.
    """

    name: str
    model: str
    host: Host
    layout: str | None
    task: str | None
    repo_id: str | None = None
    filename: str = ""
    repo_type: str = "model"
    url: str | None = None
    description: str = ""
    second_url: str | None = None

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in WEIGHT_LAYOUTS:
            raise ValueError(f"weights {self.name!r}: unknown layout {self.layout!r} (known: "
                             f"{', '.join(WEIGHT_LAYOUTS)}; a task registers its layouts in repvit.tasks).")
        if self.task is not None and self.task not in WEIGHT_KINDS:
            raise ValueError(f"weights {self.name!r}: unknown kind {self.task!r} (known: {', '.join(WEIGHT_KINDS)}).")

    @property
    def local_filename(self) -> str:
        """The file name a local (cached or hand-downloaded) copy has in the torch.hub checkpoints folder."""
        if self.host != "huggingface":
            return self.filename
        suffix = self.filename.rsplit(".", 1)[-1]
        return f"{self.name}.{suffix}"


# timm's default tag per model: the first tag of its default_cfgs (checked against timm by the tests)
DEFAULT_TAGS: dict[str, str] = {
    **{f"repvit_{m}": "dist_300e_in1k" for m in ("m0_6", "m0_9", "m1_0", "m1_1", "m1_5", "m2_3")},
    **{f"repvit_{m}": "dist_in1k" for m in ("m1", "m2", "m3")},
}

_NEW = ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3")


def _build() -> dict[str, WeightsEntry]:
    out: list[WeightsEntry] = []
    for m in _NEW:
        for tag in ("dist_300e_in1k", "dist_450e_in1k"):
            out.append(WeightsEntry(f"repvit_{m}.{tag}", f"repvit_{m}", "huggingface", "timm", "classify",
                                    repo_id=f"timm/repvit_{m}.{tag}", filename="model.safetensors",
                                    description=f"ImageNet-1k, distilled, {tag.split('_')[1]} (timm)"))
    for m in ("m1", "m2", "m3"):
        out.append(WeightsEntry(f"repvit_{m}.dist_in1k", f"repvit_{m}", "huggingface", "timm", "classify",
                                repo_id=f"timm/repvit_{m}.dist_in1k", filename="model.safetensors",
                                description="ImageNet-1k, distilled, first release (timm)"))

    def gh(name: str, model: str, layout: str, task: str, filename: str, desc: str) -> WeightsEntry:
        return WeightsEntry(name, model, "github", layout, task, filename=filename, url=GITHUB_RELEASE + filename,
                            description=desc)

    out.append(gh("repvit_m0_6.dist_300e_in1k", "repvit_m0_6", "authors_cls", "classify",
                  "repvit_m0_6_distill_300e.pth", "ImageNet-1k, distilled, 300e (the authors' file)"))
    for m in ("m0_6", *_NEW):
        for ep in ("300e", "450e") if m != "m0_6" else ("300e",):
            out.append(gh(f"repvit_{m}_distill_{ep}", f"repvit_{m}", "authors_cls", "classify",
                          f"repvit_{m}_distill_{ep}.pth", f"ImageNet-1k, distilled, {ep} (the authors' release)"))
    for m in ("m1_1", "m1_5", "m2_3"):
        out.append(gh(f"repvit_{m}_coco", f"repvit_{m}", "mmdet_maskrcnn", "detect", f"repvit_{m}_coco.pth",
                      "COCO Mask R-CNN (mmdet 2.x; repvit.load_detector)"))
        out.append(gh(f"repvit_{m}_ade20k", f"repvit_{m}", "mmseg_semfpn", "segment", f"repvit_{m}_ade20k.pth",
                      "ADE20K Semantic FPN (mmseg 0.30; repvit.load_segmenter)"))
    out.append(gh("repvit_sam", "repvit_sam_m2_3", "repvit_sam", "sam", "repvit_sam.pt",
                  "RepViT-SAM (M2.3 encoder at 1024, SAM decoder; repvit.sam.build_repvit_sam)"))
    for stem, desc in (("edge_sam", "EdgeSAM"), ("edge_sam_3x", "EdgeSAM 3x")):
        out.append(WeightsEntry(stem, "edge_sam", "huggingface", "edge_sam", "sam", repo_id="chongzhou/EdgeSAM",
                                filename=f"weights/{stem}.pth", repo_type="space",
                                description=f"{desc} (Hugging Face Space chongzhou/EdgeSAM)"))
    out.append(WeightsEntry("edgetam", "edgetam", "huggingface", "edgetam", "sam", repo_id="facebook/EdgeTAM",
                            filename="edgetam.pt", second_url=EDGETAM_GITHUB,
                            description="EdgeTAM: SAM 2 for images and video on a RepViT trunk (Hugging Face "
                            "facebook/EdgeTAM, else the authors' GitHub repository; repvit.sam.build_edgetam)"))
    return {e.name: e for e in out}


_WEIGHTS: dict[str, WeightsEntry] = _build()


def list_weights(pattern: str = "*", *, task: str | None = None) -> list[str]:
    """Registered weights names matching the shell-style ``pattern`` (and ``task``, if given), sorted."""
    return sorted(n for n, e in _WEIGHTS.items()
                  if fnmatch.fnmatch(n, pattern) and (task is None or e.task == task))


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def default_weights(model: str) -> WeightsEntry:
    """The default classification weights of a model name (timm's default tag: ``dist_300e_in1k`` ...).

    ``model`` is an architecture name (``repvit_m0_9``; ``m0_9`` is accepted too). This module does not import the
    model registry (weights sit below models): :func:`repvit.create_model` resolves aliases before it asks here.
    """
    key = model.strip().lower().replace("-", "_").replace(".", "_")
    for arch in (key, f"repvit_{key}"):
        if arch in DEFAULT_TAGS:
            return _WEIGHTS[f"{arch}.{DEFAULT_TAGS[arch]}"]
    raise UnknownWeightsError(f"model {model!r} has no published weights; models with weights: "
                              f"{', '.join(sorted(DEFAULT_TAGS))}.")


def get_weights(name: str) -> WeightsEntry:
    """The registry entry of a weights name.

    Accepts a weights name (``repvit_m0_9.dist_450e_in1k``, ``repvit_sam``) or a model name with published
    classification weights (``repvit_m0_9``, ``m0_9``), which gives its default tag.

    Raises:
        UnknownWeightsError: the name is not registered (the message lists the closest names).
    """
    if not isinstance(name, str):
        raise TypeError(f"weights name must be a string, got {type(name).__name__}.")
    key = _normalize(name)
    for candidate in (key, f"repvit_{key}"):
        if candidate in _WEIGHTS:
            return _WEIGHTS[candidate]
    if "." not in key:
        try:
            return default_weights(key)
        except UnknownWeightsError:
            pass
    names = list(_WEIGHTS) + list(DEFAULT_TAGS)
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
    close += [n for n in difflib.get_close_matches(f"repvit_{key}", names, n=5, cutoff=0.6) if n not in close]
    hint = f" Did you mean: {', '.join(close[:5])}?" if close else ""
    raise UnknownWeightsError(f"unknown weights {name!r}.{hint} Run `repvit weights list` to see all "
                              f"{len(_WEIGHTS)} names.")
