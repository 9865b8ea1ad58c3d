"""RepViT-SAM tests: one PyTorch thread, skipped without segment-anything, a small model shared by the tests.

The small model (RepViT-M0.9 trunk at 256 x 256, embedding 256 x 16 x 16) has the real architecture with fewer
pixels, so the default suite stays fast; the authors' M2.3 at 1024 is covered by the slow tests.
"""

import tempfile

import pytest
import torch

from tests.helpers import one_torch_thread  # noqa: F401  (an autouse fixture)

pytest.importorskip("segment_anything", reason="RepViT-SAM needs segment-anything: pip install 'repvit-pytorch[sam]'")

SMALL = dict(variant="repvit_sam_m0_9", img_size=256)


@pytest.fixture(scope="module")
def gradio_temp(tmp_path_factory):
    """A folder of the module's for gradio's files: the served copies (``GRADIO_TEMP_DIR``), and gradio_client's
    downloads (pass it as ``download_files``) and the empty folder it leaves in ``tempfile.gettempdir()`` for each
    file it downloads, so that the app tests leave nothing in the system's temporary folder."""
    d = tmp_path_factory.mktemp("gradio")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(d / "served"))
    mp.setattr(tempfile, "tempdir", str(d))
    yield d
    mp.undo()


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    from tests.helpers import randomize_bn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial LayerNorm2d affine parameters in the neck
        for name, p in model.named_parameters():
            if "neck" in name and p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
    return randomize_bn(model, seed)


@pytest.fixture(scope="module")
def small_sam():
    """A small RepViT-SAM with random weights and random BatchNorm statistics (eval mode)."""
    from repvit.sam import build_repvit_sam

    torch.manual_seed(0)
    return _randomize(build_repvit_sam(**SMALL), seed=1).eval()


@pytest.fixture(scope="module")
def astronaut():
    """A real photo that ships with scikit-image (512 x 512 RGB)."""
    data = pytest.importorskip("skimage.data", reason="scikit-image is in the dev extra")
    return data.astronaut()
