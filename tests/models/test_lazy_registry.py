"""``import repvit`` does not import the roadmap package; its ``roadmap_*`` models register on first need. The two
distillation heads are one piece of code shared by RepViT's and the roadmap's classifiers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
import repvit
print("after import:", "repvit.roadmap" in sys.modules)
repvit.get_model_entry("m0_9")
print("after a RepViT lookup:", "repvit.roadmap" in sys.modules)
names = repvit.list_models("roadmap_*")
print("roadmap models:", len(names), "repvit.roadmap" in sys.modules)
"""

_PROBE_BY_NAME = """
import sys
import repvit
m = repvit.create_model("roadmap_0_mobilenetv3_l_gelu")
print(type(m).__name__, "repvit.roadmap" in sys.modules)
"""


def _python(code: str) -> str:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_import_repvit_leaves_the_roadmap_alone_until_asked():
    out = _python(_PROBE).splitlines()
    assert out[0] == "after import: False"
    assert out[1] == "after a RepViT lookup: False"
    n, loaded = out[2].split(": ")[1].split()
    assert int(n) >= 6 and loaded == "True"
    assert _python(_PROBE_BY_NAME).split() == ["RoadmapNet", "True"]


def test_both_classifiers_share_the_two_heads():
    from repvit.models.layers import TwoHeadsMixin, mean_linear
    from repvit.models.repvit import RepViTClassifier
    from repvit.roadmap.blocks import MobileNetV3Classifier

    for head in (RepViTClassifier(16, 5, distillation=True), MobileNetV3Classifier(16, 24, 5, distillation=True)):
        assert isinstance(head, TwoHeadsMixin)
        x = torch.randn(3, 16)
        head.eval()
        head.training = True  # the heads' own train-mode output, with their layers (BN, dropout) in eval mode
        a, b = head(x)
        head.training = False
        assert a.shape == b.shape == (3, 5) and not torch.equal(a, b)
        torch.testing.assert_close(head(x), (a + b) / 2)
        torch.testing.assert_close(head.fuse()(x), (a + b) / 2, rtol=1e-5, atol=1e-6)
    la, lb = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
    x = torch.randn(5, 4)
    torch.testing.assert_close(mean_linear(la, lb)(x), (la(x) + lb(x)) / 2)
