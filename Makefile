# Two entry points: `make demo` and `make test`. Both create .venv and install what they need.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
DEMO_DIR ?= runs/demo

.PHONY: demo demo-segment demo-detect demo-sam demo-app docs-sam-app test test-all lint bench clean edgetam-ref

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml | $(PY)
	$(PIP) -e ".[onnx,plot,digits]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PIP) -e ".[dev]"
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/repvit demo --output-dir $(DEMO_DIR)

# Dense tasks and RepViT-SAM (each its own command; see docs/dense.md, docs/detection.md, docs/sam.md)
$(VENV)/.dense-installed: pyproject.toml | $(PY)
	$(PIP) -e ".[onnx,plot,digits,dense]"
	touch $@

$(VENV)/.sam-installed: pyproject.toml | $(PY)
	$(PIP) -e ".[onnx,plot,sam]" "scikit-image>=0.22"
	touch $@

demo-segment: $(VENV)/.dense-installed
	$(VENV)/bin/repvit segment train --data digits --output-dir $(DEMO_DIR)/segment --seed 0 --no-progress
	$(VENV)/bin/repvit segment eval --checkpoint $(DEMO_DIR)/segment/best.pt --data digits --json
	$(VENV)/bin/repvit segment export --checkpoint $(DEMO_DIR)/segment/best.pt --output $(DEMO_DIR)/segment/semfpn.onnx

demo-detect: $(VENV)/.dense-installed
	$(VENV)/bin/repvit detect train --data digits --output-dir $(DEMO_DIR)/detect --seed 0 --no-progress
	$(VENV)/bin/repvit detect eval --checkpoint $(DEMO_DIR)/detect/best.pt --data digits --json
	$(VENV)/bin/repvit detect export --checkpoint $(DEMO_DIR)/detect/best.pt --output $(DEMO_DIR)/detect/maskrcnn.onnx

# SAM's pipeline (predict, segment-all, ONNX export) on a real photo (scikit-image's astronaut).
# The published weights by name when they can be fetched (SAM_WEIGHTS: edge_sam, edge_sam_3x or repvit_sam); when they
# cannot (offline, no network), the demo says so plainly and runs the same pipeline on random EdgeSAM weights.
SAM_WEIGHTS ?= edge_sam
define DEMO_SAM_WEIGHTS_PY
import sys
from repvit.sam import build_repvit_sam, save_repvit_sam
from repvit.weights import resolve_weights
out = sys.argv[1]
try:
    path = str(resolve_weights("$(SAM_WEIGHTS)"))
    print(f"using the published $(SAM_WEIGHTS) weights: {path}")
except Exception as e:
    path = out + "/edge_sam_random.safetensors"
    print(f"could not get the published $(SAM_WEIGHTS) weights ({e}).")
    print("FALLING BACK TO RANDOM WEIGHTS (the edge_sam architecture): the masks below are meaningless.")
    save_repvit_sam(build_repvit_sam(variant="edge_sam"), path)
open(out + "/checkpoint.txt", "w").write(path)
endef
export DEMO_SAM_WEIGHTS_PY

demo-sam: $(VENV)/.sam-installed
	mkdir -p $(DEMO_DIR)/sam
	$(PY) -c "import skimage.data, PIL.Image; PIL.Image.fromarray(skimage.data.astronaut()).save('$(DEMO_DIR)/sam/astronaut.png')"
	$(PY) -c "$$DEMO_SAM_WEIGHTS_PY" $(DEMO_DIR)/sam
	$(VENV)/bin/repvit sam predict $(DEMO_DIR)/sam/astronaut.png --checkpoint $$(cat $(DEMO_DIR)/sam/checkpoint.txt) --point 250,150 --output-dir $(DEMO_DIR)/sam
	$(VENV)/bin/repvit sam segment-all $(DEMO_DIR)/sam/astronaut.png --checkpoint $$(cat $(DEMO_DIR)/sam/checkpoint.txt) --points-per-side 8 --output-dir $(DEMO_DIR)/sam
	$(VENV)/bin/repvit sam export --checkpoint $$(cat $(DEMO_DIR)/sam/checkpoint.txt) --output-dir $(DEMO_DIR)/sam/onnx

# The click-to-segment web page (docs/sam.md, "The app") on http://127.0.0.1:7860/. SAM_CHECKPOINT: a RepViT-SAM file
# or name; one that cannot be had gives random weights (a warning says so).
SAM_CHECKPOINT ?= edge_sam
$(VENV)/.app-installed: pyproject.toml | $(PY)
	$(PIP) -e ".[app]"
	touch $@

demo-app: $(VENV)/.app-installed
	$(VENV)/bin/repvit sam app --checkpoint $(SAM_CHECKPOINT) --threads 2

# Regenerates docs/img/sam_app.png: the browser test's screenshot (needs Chromium at /usr/bin/chromium)
docs-sam-app: $(VENV)/.test-installed
	REPVIT_SAM_APP_SCREENSHOT=docs/img/sam_app.png $(PY) -m pytest -q tests/sam/test_app.py -k browser
	$(PY) -c "from PIL import Image; p = 'docs/img/sam_app.png'; Image.open(p).convert('RGB').quantize(256).save(p, optimize=True)"

.PHONY: docs-segment-overlay docs-sam-masks docs-edgetam-track

# Regenerates docs/img/segment_overlay_digits.png (docs/dense.md): held-out scenes, true labels and prediction of
# make demo-segment's checkpoint (trained first when it is not there)
docs-segment-overlay: $(VENV)/.test-installed
	test -f $(DEMO_DIR)/segment/best.pt || $(MAKE) demo-segment
	$(PY) docs/make_figures.py segment-overlay --checkpoint $(DEMO_DIR)/segment/best.pt

# Regenerates docs/img/sam_masks_photo.png (docs/sam.md): prompts and masks on scikit-image's astronaut with
# SAM_WEIGHTS (default edge_sam); offline, random edge_sam weights, and the picture says so
docs-sam-masks: $(VENV)/.test-installed
	$(PY) docs/make_figures.py sam-masks --checkpoint $(SAM_WEIGHTS)

# Regenerates docs/img/edgetam_track.png (docs/sam.md): EdgeTAM tracking a click over six shifted crops of
# scikit-image's astronaut with EDGETAM_WEIGHTS (default edgetam); offline, random weights, and the picture says so
EDGETAM_WEIGHTS ?= edgetam
docs-edgetam-track: $(VENV)/.test-installed
	$(PY) docs/make_figures.py edgetam-track --checkpoint $(EDGETAM_WEIGHTS)


# The authors' EdgeTAM code as a test-only reference (tests/sam/sam2/test_reference_parity.py): the PyPI packaging
# `edgetam-dimos` (module `sam2`) and its pure-Python dependencies in a folder of their own, used only by subprocesses
# that run .venv's Python with PYTHONPATH pointing there (torch, timm, numpy come from .venv). Never a dependency of
# repvit; the tests skip and name this target when the folder is missing.
EDGETAM_REF ?= .venv-edgetam-ref
EDGETAM_REF_PACKAGES := edgetam-dimos==1.0.1 hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 \
	iopath==0.1.10 portalocker==2.10.1
$(EDGETAM_REF)/.installed: | $(VENV)/.test-installed
	rm -rf $(EDGETAM_REF)
	$(PIP) --no-deps --target $(EDGETAM_REF) $(EDGETAM_REF_PACKAGES)
	$(PY) tests/sam/sam2/_reference/check_env.py $(EDGETAM_REF)
	touch $@

edgetam-ref: $(EDGETAM_REF)/.installed

# pytest-xdist workers, a test file to each in turn (a module's fixtures are built once); tests/conftest.py gives each
# worker one PyTorch thread. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(VENV)/.test-installed $(EDGETAM_REF)/.installed
	REPVIT_EDGETAM_REF=$(EDGETAM_REF) $(PYTEST) --durations=25

test-all: $(VENV)/.test-installed $(EDGETAM_REF)/.installed
	REPVIT_EDGETAM_REF=$(EDGETAM_REF) $(PYTEST) -m ""

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.test-installed
	$(PY) benchmarks/latency_fused.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/onnx_vs_bound.py
	$(VENV)/bin/repvit bench --out-dir benchmarks/results

clean:
	rm -rf $(VENV) $(EDGETAM_REF) build dist src/*.egg-info .pytest_cache
