"""torch.hub entry points: ``torch.hub.load('<owner>/<repo>', 'repvit_m0_9', pretrained=True)``.

Every RepViT classifier (``repvit_m0_6`` ... ``repvit_m2_3``, the legacy ``repvit_m1``/``m2``/``m3``) and
``repvit_sam``. ``pretrained`` is ``False`` (random weights), ``True`` (the model's default published weights, timm's
default tag) or a weights name / file (``'repvit_m0_9.dist_450e_in1k'``, ``'repvit_m0_9_distill_450e'``); other
keyword arguments go to :func:`repvit.create_model` (``num_classes``, ``global_pool``, ``fused``, ...).
"""

from __future__ import annotations

import os
import sys

dependencies = ["torch", "timm"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if os.path.isdir(os.path.join(_SRC, "repvit")) and _SRC not in sys.path:
    sys.path.insert(0, _SRC)  # this checkout's package (torch.hub puts only the repository root on the path)

_CLASSIFIERS = ("repvit_m0_6", "repvit_m0_9", "repvit_m1_0", "repvit_m1_1", "repvit_m1_5", "repvit_m2_3",
                "repvit_m1", "repvit_m2", "repvit_m3")


def _entry(arch: str):
    def build(pretrained=False, **kwargs):
        import repvit

        return repvit.create_model(arch, pretrained=pretrained, **kwargs)

    build.__name__ = arch
    build.__doc__ = (f"RepViT {arch.removeprefix('repvit_').upper().replace('_', '.')} (ImageNet-1k classifier). "
                     "pretrained: False, True (default weights), or a weights name or file; kwargs: "
                     "repvit.create_model's.")
    return build


for _arch in _CLASSIFIERS:
    globals()[_arch] = _entry(_arch)


def repvit_sam(pretrained=True, **kwargs):
    """RepViT-SAM (a ``segment_anything`` ``Sam``; needs ``pip install 'repvit-pytorch[sam]'``).

    pretrained: ``True`` (the authors' ``repvit_sam.pt``), a weights file, or ``False`` (random weights); kwargs:
    ``repvit.sam.build_repvit_sam``'s (``fused``, ...).
    """
    from repvit.sam import build_repvit_sam

    if pretrained is False or pretrained is None:
        return build_repvit_sam(**kwargs)
    from repvit.weights import resolve_weights

    return build_repvit_sam(resolve_weights("repvit_sam" if pretrained is True else pretrained), **kwargs)


def edgetam(pretrained=True, **kwargs):
    """EdgeTAM (SAM 2 for images and video on a RepViT trunk; ``repvit.sam.EdgeTamImagePredictor`` and
    ``repvit.sam.build_edgetam_video_predictor`` use it).

    pretrained: ``True`` (the published ``edgetam.pt``), a weights file, or ``False`` (random weights); kwargs:
    ``repvit.sam.build_edgetam``'s (``fused``, ``device``).
    """
    from repvit.sam import build_edgetam

    return build_edgetam(None if pretrained is False or pretrained is None else
                         ("edgetam" if pretrained is True else pretrained), **kwargs)
