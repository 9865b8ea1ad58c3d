"""SAM distillation (``repvit sam distill``), a task on the shared engine that makes the weights of the
segment-anything model library (:mod:`repvit.sam`): the training code the RepViT-SAM authors did not release.

**Phase 1** (``phase="encoder"``, the default): decoupled distillation as in MobileSAM and RepViT-SAM. The student
image encoder learns the teacher's (SAM ViT-H) image embeddings with an MSE loss; prompt encoder and mask decoder take
no part, and the student is later paired with the teacher's decoder. The teacher's embeddings are computed once into
an :class:`~.embed_cache.EmbeddingCache` (sharded, resumable, shared by both phases).

**Phase 2** (``phase="prompt"``): EdgeSAM's prompt-in-the-loop distillation (Zhou et al., 2023,
https://arxiv.org/abs/2312.06660). The student's whole SAM is trained on the teacher's *masks*: prompts (boxes or
points) go through the student's prompt encoder and mask decoder and, on the same prompts, through the teacher's; the
student's mask logits learn the teacher's masks (``teacher logits > 0``) with BCE (weight 5) + Dice (weight 5). Then
a new point is sampled from where the two masks disagree (a false negative of the student: a foreground point, label
1; a false positive: a background point, label 0), appended to the prompt, and both decode again; ``refine_iters``
such rounds, the loss averaged over all decodes.

As in EdgeSAM's released training code: the student's prompt encoder and mask decoder start as copies of the
teacher's; the prompt encoder stays frozen, the mask decoder trains with the encoder (``train_decoder``; its IoU head
is frozen, no loss reaches it); all four mask outputs are distilled; the refinement point is taken against the output
the teacher rates best; padding pixels are left out of the loss and of the point sampling; previous masks are not fed
back as mask input (``mask_input`` turns that on).

Where the prompts come from (``prompt_masks``, default ``"auto"``): EdgeSAM samples them from SA-1B's masks; here they
come from annotated masks when the image folder has them (COCO ``instances*.json`` or SA-1B's per-image JSON,
:mod:`.mask_annotations`: a box is an annotation's ``bbox``, a point a random pixel of its mask, up to ``max_prompts``
objects per image), and otherwise from the *teacher's* masks on unlabeled images: a seed point is drawn uniformly in
the image, the teacher decodes it (best of SAM's three multimask outputs) and that mask gives the prompt, its bounding
box or a random pixel inside it. A log line says which source a run uses. Each batch uses boxes or points (0.5 each),
``max_prompts`` per image. The teacher's image embeddings come from the phase-1 cache (the same key, so phase 2 after
phase 1 computes nothing), and the teacher's prompt encoder and mask decoder are cheap, so the teacher's image encoder
never runs during training. Phase 2's checkpoints hold the whole SAM (``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``), which :func:`repvit.sam.build_repvit_sam` reads without a decoder checkpoint.

``phase="both"`` runs phase 1 into ``OUT/encoder`` and phase 2 from its ``best.pt`` into ``OUT/prompt``.

* :mod:`.config`          — :class:`SamDistillConfig`, :class:`LoopSettings`, the teachers and phases
* :mod:`.data`            — the held-out split, :class:`EmbeddingPairs` (phase 1), :class:`PromptPairs` (phase 2)
* :mod:`.embed_cache`     — the teacher-embedding cache
* :mod:`.mask_annotations` — COCO / SA-1B masks for phase 2's prompts
* :mod:`.prompt_sampling` — prompts and refinement points
* :mod:`.model`           — the teachers (:func:`load_teacher_sam`), phase 2's student (:class:`PromptDistillSam`)
* :mod:`.loss`            — phase 2's BCE + Dice against the teacher's masks
* :mod:`.evaluate`        — held-out embedding MSE, mask loss and mIoU; :func:`evaluate_prompt_distill`
* :mod:`.task`            — :class:`SamDistillTask`, :class:`SamPromptDistillTask`, :func:`train` (the entry point)
"""

from .config import PHASES, TEACHERS, SamDistillConfig
from .evaluate import evaluate_prompt_distill
from .model import load_teacher_encoder, load_teacher_sam
from .task import SamDistillTask, SamPromptDistillTask, phase_configs, train

__all__ = [
    "train",
    "phase_configs",
    "SamDistillConfig",
    "SamDistillTask",
    "SamPromptDistillTask",
    "evaluate_prompt_distill",
    "load_teacher_sam",
    "load_teacher_encoder",
    "TEACHERS",
    "PHASES",
]
