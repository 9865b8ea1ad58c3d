"""RepViT-SAM distillation (``repvit sam distill``): the training code the authors did not release.

Phase 1 (``phase="encoder"``, the default): decoupled distillation as in MobileSAM and RepViT-SAM: the student image
encoder learns the teacher's (SAM ViT-H) image embeddings with an MSE loss; prompt encoder and mask decoder take no
part, and the student is later paired with the teacher's decoder. Phase 2 (``phase="prompt"``): EdgeSAM's
prompt-in-the-loop distillation of the student's whole SAM on the teacher's masks (:mod:`repvit.sam.prompt_distill`);
``phase="both"`` runs phase 1 into ``OUT/encoder`` and phase 2 from its ``best.pt`` into ``OUT/prompt``.
The teacher's embeddings are computed once into :class:`EmbeddingCache`; training is a
:class:`SamDistillTask` on the shared engine (:func:`repvit.engine.run_task`: resume, DDP, AMP, EMA, progress,
``metrics.jsonl``, curves). :func:`train` is the entry point (``distill`` is its older name).

Since the package mirrors the other tasks, the code lives in :mod:`~repvit.sam.config`, :mod:`~repvit.sam.data`,
:mod:`~repvit.sam.model` and :mod:`~repvit.sam.task`; this module keeps every name it had.
"""

from .config import PHASES, PROMPT_TYPES, TEACHERS, SamDistillConfig  # noqa: F401
from .data import EmbeddingPairs, split_indices  # noqa: F401
from .data import collate_embedding_pairs as _collate  # noqa: F401
from .model import load_teacher_encoder, load_teacher_sam  # noqa: F401
from .task import SamDistillTask, _distill_both, _is_main, distill, phase_configs, train  # noqa: F401

__all__ = ["SamDistillConfig", "SamDistillTask", "EmbeddingPairs", "load_teacher_encoder", "load_teacher_sam",
           "train", "distill", "TEACHERS", "PHASES"]
