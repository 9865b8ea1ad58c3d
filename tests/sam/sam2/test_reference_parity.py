"""repvit's EdgeTAM against the authors' code on the same weights (issue 25's "Must show").

The reference (``make edgetam-ref``: the PyPI packaging ``edgetam-dimos`` of the authors' code in a folder of its own)
runs in subprocesses (``_reference/make_reference.py``): it builds the authors' EdgeTAM from their config, perturbs its
random weights so that a wrong part shows (authors.randomize), saves ``edgetam.pt`` as ``{'model': state_dict}`` and
records the authors' SAM2ImagePredictor and SAM2VideoPredictor on a photo and on shifted crops of another. Here the
same file loads strictly into repvit's model and the same calls (``_reference/cases.py``) are played on repvit's
predictors. Relative error (max |a - b| / max |b|): at most 1e-4 for the image predictor (masks as logits, IoU, low-res
logits) and 1e-3 for the video predictor's per-frame mask logits.

The authors' video predictor stores each frame's memory rounded to bfloat16, as repvit's does; the reference keeps
those values as float32 tensors so that its CPU arithmetic is float32 throughout (authors.py says why). Both video
predictors fill no holes (``fill_hole_area=0``): the authors' hole filling needs OpenCV or their CUDA extension,
neither of which the reference has.

Without the reference folder every test here skips and names the make target. The reference files are made once per
test session under pytest's temporary folder, or kept in ``REPVIT_EDGETAM_REF_CACHE`` when that names a folder (delete
it after changing ``_reference/``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.sam.sam2._reference import cases

ROOT = Path(__file__).resolve().parents[3]
REFERENCE_ENV = Path(os.environ.get("REPVIT_EDGETAM_REF", ROOT / ".venv-edgetam-ref")).resolve()
SCRIPT = Path(__file__).parent / "_reference" / "make_reference.py"
IMAGE_TOL = 1e-4
VIDEO_TOL = 1e-3


class Reference:
    """The reference files in one folder, each made by a subprocess the first time it is asked for."""

    def __init__(self, env: Path, out: Path):
        self.env, self.out = env, out
        self._image: dict[str, np.ndarray] | None = None

    def _make(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(self.env), HF_HUB_OFFLINE="1")
        proc = subprocess.run([sys.executable, str(SCRIPT), str(self.out), *args], env=env, capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"the EdgeTAM reference script failed ({' '.join(args)}):\n{proc.stderr[-4000:]}")

    def prepare(self) -> None:
        """Make the files the default tests read (the checkpoint, the image outputs, session "one") in one subprocess:
        each start of the authors' code costs seconds of imports."""
        if not all((self.out / f).exists() for f in ("edgetam.pt", "image.npz", "video_one.npz")):
            self._make("--image", "--sessions", "one")

    def _file(self, name: str, *args: str) -> Path:
        path = self.out / name
        if not path.exists():
            self._make(*args)
        return path

    @property
    def checkpoint(self) -> Path:
        return self._file("edgetam.pt")

    def image(self) -> dict[str, np.ndarray]:
        if self._image is None:
            self._image = dict(np.load(self._file("image.npz", "--image")))
        return self._image

    def session(self, name: str) -> list[dict[str, np.ndarray]]:
        return cases.session_from_npz(np.load(self._file(f"video_{name}.npz", "--sessions", name)), name)

    def sensitivity(self) -> dict[str, float]:
        import json

        return json.loads(self._file("sensitivity.json", "--sensitivity").read_text())


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Reference:
    if not (REFERENCE_ENV / "sam2" / "configs" / "edgetam.yaml").is_file():
        pytest.skip(f"the authors' EdgeTAM reference is not at {REFERENCE_ENV}: run `make edgetam-ref` "
                    "(or point REPVIT_EDGETAM_REF at such a folder)")
    cache = os.environ.get("REPVIT_EDGETAM_REF_CACHE")
    ref = Reference(REFERENCE_ENV, Path(cache) if cache else tmp_path_factory.mktemp("edgetam_reference"))
    ref.prepare()
    return ref


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|."""
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(float(np.abs(b).max()), 1e-30))


@pytest.fixture(scope="module")
def model(reference):
    from repvit.sam.sam2 import build_edgetam

    return build_edgetam(str(reference.checkpoint))


def test_authors_checkpoint_loads_strictly(reference, model):
    state = torch.load(reference.checkpoint, map_location="cpu", weights_only=True)
    assert list(state) == ["model"]
    ours = model.state_dict()
    assert sorted(ours) == sorted(state["model"])
    for name, value in state["model"].items():
        assert ours[name].shape == value.shape, name
        assert torch.equal(ours[name].to(value.dtype), value), f"{name} differs after loading"


def test_image_features_match(reference, model):
    """The encoder's features as the authors' predictor keeps them (stride 4, 8 and the 64 x 64 embedding)."""
    ref = reference.image()
    with torch.no_grad():
        backbone_out = model.forward_image(torch.from_numpy(ref["features/input"]))
        _, feats, _, sizes = model._prepare_backbone_features(backbone_out)
        feats[-1] = feats[-1] + model.no_mem_embed
    maps = [f.permute(1, 2, 0).reshape(1, -1, *hw).numpy() for f, hw in zip(feats, sizes)]
    assert rel_err(maps[0], ref["features/high_res_0"]) <= IMAGE_TOL
    assert rel_err(maps[1], ref["features/high_res_1"]) <= IMAGE_TOL
    assert rel_err(maps[2], ref["features/image_embed"]) <= IMAGE_TOL


@pytest.fixture(scope="module")
def image_predictor(reference, model):
    from repvit.sam.sam2 import EdgeTamImagePredictor

    predictor = EdgeTamImagePredictor(model)
    predictor.set_image(cases.load_image(reference.out))
    return predictor


@pytest.mark.parametrize("name", sorted(cases.IMAGE_CASES))
def test_image_predictor_matches_authors(reference, image_predictor, name):
    ref = reference.image()
    case = cases.IMAGE_CASES[name]
    ours = cases.run_image_case(image_predictor, case, ref)
    for key in ("masks", "iou", "low_res"):
        expected = ref[f"{name}/{key}"]
        assert ours[key].shape == expected.shape, key
        assert rel_err(ours[key], expected) <= IMAGE_TOL, f"{name}: {key} differs from the authors'"
    # the binary masks: equal wherever the authors' logit is not within the tolerance of the threshold
    kw = cases.image_prompts(case, ref)
    kw["return_logits"] = False
    masks = np.asarray(image_predictor.predict(**kw)[0])
    logits = ref[f"{name}/masks"]
    decided = np.abs(logits) > IMAGE_TOL * np.abs(logits).max()
    assert masks.dtype == bool
    assert np.array_equal(masks[decided], logits[decided] > 0)


def _video_predictor(reference):
    from repvit.sam.sam2 import build_edgetam_video_predictor

    return build_edgetam_video_predictor(str(reference.checkpoint), fill_hole_area=0)


def _assert_informative(steps: list[dict[str, np.ndarray]]) -> None:
    """The reference tracks something: on every frame the object is present and its mask is neither empty nor full."""
    for step in steps:
        for frame, logits in zip(step["frames"], step["logits"]):
            assert (logits > 0).mean() > 0.001 and (logits <= 0).mean() > 0.001, \
                f"reference frame {frame}: the weights give a trivial mask; change authors.randomize"


def _assert_session_matches(ours: list[dict], ref: list[dict], where: str, objects=slice(None)) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a["frames"].tolist() == b["frames"].tolist(), f"{where} step {i}: frames"
        assert a["logits"].shape[-2:] == b["logits"].shape[-2:], f"{where} step {i}: mask size"
        for frame, x, y in zip(b["frames"], a["logits"][:, objects], b["logits"]):
            err = rel_err(x, y)
            assert err <= VIDEO_TOL, f"{where} step {i}, frame {frame}: relative error {err:.2e}"


def test_video_predictor_one_object_matches_authors(reference):
    """One click on frame 0 and propagation over all 6 frames: the per-frame mask logits at the video's size."""
    ref = reference.session("one")
    assert len(ref[1]["frames"]) >= 6
    _assert_informative(ref)
    ours = cases.run_session(_video_predictor(reference), reference.out / cases.FRAMES_DIR, cases.VIDEO_SESSIONS["one"])
    for a, b in zip(ours, ref):
        assert a["obj_ids"].tolist() == b["obj_ids"].tolist()
    _assert_session_matches(ours, ref, "one")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["obj1", "obj2", "correct", "middle"])
def test_video_predictor_session_matches_authors(reference, name):
    """Reverse propagation, a box, a click on a later frame, a correction after tracking."""
    ref = reference.session(name)
    ours = cases.run_session(_video_predictor(reference), reference.out / cases.FRAMES_DIR, cases.VIDEO_SESSIONS[name])
    _assert_session_matches(ours, ref, name)


@pytest.mark.slow
def test_video_predictor_two_objects_keep_their_tracks(reference):
    """Object 1 clicked on frame 0 and object 2 added on frame 2: each track is the one-object session's.

    The authors' predictor (edgetam-dimos) tracks objects as one batch and, when an object gets an input on a frame
    where another has none, conditions the other one on an empty mask there (it drops it); repvit tracks each object
    on its own, as SAM 2 does since its per-object inference, so the reference is the two one-object sessions.
    """
    per_object = {1: reference.session("obj1"), 2: reference.session("obj2")}
    ours = cases.run_session(_video_predictor(reference), reference.out / cases.FRAMES_DIR, cases.TWO_OBJECTS)
    assert ours[0]["obj_ids"].tolist() == [1] and ours[1]["obj_ids"].tolist() == [1, 2]
    # the clicks: object 1's on frame 0, object 2's on frame 2 (its slot in the second output)
    _assert_session_matches(ours[:1], per_object[1][:1], "two objects, click 1")
    _assert_session_matches(ours[1:2], per_object[2][:1], "two objects, click 2", objects=slice(1, 2))
    for k, obj in enumerate((1, 2)):
        _assert_session_matches(ours[2:], per_object[obj][1:], f"two objects, object {obj}", objects=slice(k, k + 1))


@pytest.mark.slow
def test_reference_weights_make_mistakes_visible(reference):
    """Leaving out RoPE, a layer scale of 1e-6 in the fuser or no temporal encoding moves the logits far past 1e-3."""
    for mistake, change in reference.sensitivity().items():
        assert change > 10 * VIDEO_TOL, f"{mistake}: the reference's logits change by only {change:.1e}"
