"""Parameter and MAC counts against the paper's published table, to 0.1%."""

import pytest

import repvit
from repvit.bench.complexity import count_macs, count_params
from repvit.models.config import PUBLISHED

WITH_COUNTS = [n for n, p in PUBLISHED.items() if p.params_train is not None]


def test_every_published_variant_is_registered():
    assert set(PUBLISHED) <= set(repvit.list_models("repvit_*"))
    assert {"repvit_m0_6", "repvit_m0_9", "repvit_m1_0", "repvit_m1_1", "repvit_m1_5", "repvit_m2_3",
            "repvit_m1", "repvit_m2", "repvit_m3"} <= set(repvit.list_models())


@pytest.mark.parametrize("name", WITH_COUNTS)
def test_params_and_macs_match_published(name):
    pub = PUBLISHED[name]
    train = repvit.create_model(name, distillation=True)
    assert count_params(train) == pytest.approx(pub.params_train, rel=1e-3)
    fused = repvit.fuse_model(repvit.create_model(name))
    assert count_params(fused) == pytest.approx(pub.fused_params, rel=1e-3)
    assert count_macs(fused, 224) == pytest.approx(pub.fused_macs, rel=1e-3)


@pytest.mark.parametrize("name,ref", [("repvit_m1", "repvit_m0_9"), ("repvit_m2", "repvit_m1_1")])
def test_legacy_variants_fuse_to_the_same_size_as_their_successors(name, ref):
    # the legacy 1x1 branch (conv+BN) and the current one (conv with bias + outer BN) fuse to the same conv
    a = repvit.fuse_model(repvit.create_model(name))
    b = repvit.fuse_model(repvit.create_model(ref))
    assert count_params(a) == count_params(b)
    assert count_macs(a, 224) == count_macs(b, 224)
