"""SAM distillation tests: one PyTorch thread, skipped without segment-anything (the teachers and the student's
prompt encoder and mask decoder are its modules)."""

import pytest

from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture)

pytest.importorskip("segment_anything", reason="distillation needs segment-anything: pip install 'repvit-pytorch[sam]'")
