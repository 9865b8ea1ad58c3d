"""Knowledge distillation: the teacher's labels steer the distillation head; teachers load from local files only."""

import pytest
import torch

pytest.importorskip("sklearn", reason="the digits set comes from scikit-learn (pip install 'repvit-pytorch[digits]')")

import repvit  # noqa: E402
from repvit.classification import DistillationLoss, load_teacher, train  # noqa: E402
from repvit.data import load_digits_split  # noqa: E402
from tests.classification._tiny import tiny  # noqa: E402


def constant_teacher(path, cls: int):
    """A repvit checkpoint whose predictions are always ``cls`` (zero weights, a large bias)."""
    t = repvit.create_model("repvit_m0_6", num_classes=10)
    with torch.no_grad():
        t.head.head.l.weight.zero_()
        t.head.head.l.bias.zero_()
        t.head.head.l.bias[cls] = 10.0
    repvit.save_checkpoint(t, path)
    return path


@torch.no_grad()
def head_predictions(model, x):
    model.eval()
    feats = model.forward_head(model.forward_features(x), pre_logits=True)
    return model.head.head(feats).argmax(1), model.head.head_dist(feats).argmax(1)


@pytest.mark.parametrize("kind,teacher_cls", [("hard", 3), ("soft", 7)])
def test_teacher_labels_steer_the_distillation_head(tmp_path, kind, teacher_cls):
    teacher = constant_teacher(tmp_path / "teacher.safetensors", teacher_cls)
    res = train(tiny(tmp_path / "run", distillation=kind, teacher=str(teacher), distillation_tau=1.0,
                     train_subset=256, lr=0.08, epochs=2, model_ema=False))
    model = repvit.create_model(checkpoint=res["last_checkpoint"])
    assert model.distillation
    x, y = load_digits_split("val", 32)
    cls_pred, dist_pred = head_predictions(model, x[:200])
    dist_follows_teacher = (dist_pred == teacher_cls).float().mean().item()
    cls_follows_teacher = (cls_pred == teacher_cls).float().mean().item()
    # the distillation head learned the teacher's (wrong) label, the class head did not
    assert dist_follows_teacher >= 0.9, dist_follows_teacher
    assert cls_follows_teacher <= 0.5, cls_follows_teacher


def test_loss_wrapper_matches_deit_formulas():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 32, 32)
    cls, dist, y = torch.randn(6, 10), torch.randn(6, 10), torch.randint(0, 10, (6,))
    t_logits = torch.randn(6, 10)

    class T(torch.nn.Module):
        def forward(self, inp):
            return t_logits

    base = torch.nn.CrossEntropyLoss()
    hard = DistillationLoss(base, T(), "hard", alpha=0.5)(x, (cls, dist), y)
    ref = 0.5 * base(cls, y) + 0.5 * torch.nn.functional.cross_entropy(dist, t_logits.argmax(1))
    assert torch.allclose(hard, ref)
    tau = 2.0
    soft = DistillationLoss(base, T(), "soft", alpha=0.3, tau=tau)(x, (cls, dist), y)
    kl = torch.nn.functional.kl_div(torch.log_softmax(dist / tau, 1), torch.softmax(t_logits / tau, 1),
                                    reduction="batchmean") * tau * tau / 10
    assert torch.allclose(soft, 0.7 * base(cls, y) + 0.3 * kl, atol=1e-6)
    assert torch.allclose(DistillationLoss(base, None, "none")(x, cls, y), base(cls, y))


def test_timm_teacher_from_local_file_is_frozen(tmp_path):
    timm = pytest.importorskip("timm")
    src = timm.create_model("resnet10t", num_classes=10, pretrained=False)
    torch.save(src.state_dict(), tmp_path / "t.pth")
    t = load_teacher("resnet10t", str(tmp_path / "t.pth"), 10, 3, torch.device("cpu"))
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    assert all(torch.equal(a, b) for a, b in zip(t.state_dict().values(), src.state_dict().values()))
    with pytest.raises(ValueError, match="needs a local weights file"):
        load_teacher("resnet10t", None, 10, 3, torch.device("cpu"))
    with pytest.raises(ValueError, match="do not fit timm 'resnet10t' with 5 classes"):
        load_teacher("resnet10t", str(tmp_path / "t.pth"), 5, 3, torch.device("cpu"))
