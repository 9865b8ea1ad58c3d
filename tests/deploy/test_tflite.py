"""TFLite export through litert-torch: the ``.tflite`` written by ``repvit export``, run by the LiteRT interpreter
(``ai_edge_litert``, independent of our code), matches the fused PyTorch model of a checkpoint with randomized BN
statistics. The conversion takes tens of seconds, so the test is marked slow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import repvit
from repvit.cli.main import main
from tests.helpers import randomize_bn, rel_err

IMG = 64


@pytest.mark.slow
def test_tflite_matches_fused_pytorch_in_litert(tmp_path):
    # imported here, not at collection: litert-torch takes seconds to import
    pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch: pip install 'repvit-pytorch[tflite]'")
    interpreter = pytest.importorskip("ai_edge_litert.interpreter",
                                      reason="needs ai-edge-litert: pip install 'repvit-pytorch[tflite]'")
    model = randomize_bn(repvit.create_model("repvit_m0_6", num_classes=10, distillation=True), seed=5)
    ckpt = repvit.save_checkpoint(model, tmp_path / "m.safetensors")
    out = tmp_path / "m.tflite"
    assert main(["export", "--checkpoint", str(ckpt), "--output", str(out), "--img-size", str(IMG)]) == 0
    fused = repvit.fuse_model(repvit.create_model(checkpoint=ckpt))
    interp = interpreter.Interpreter(model_path=str(out), num_threads=1)
    interp.allocate_tensors()
    inp, (outp,) = interp.get_input_details()[0], interp.get_output_details()
    assert tuple(inp["shape"]) == (1, 3, IMG, IMG)  # NCHW, as in PyTorch
    x = torch.randn(1, 3, IMG, IMG)
    interp.set_tensor(inp["index"], x.numpy())
    interp.invoke()
    got = torch.from_numpy(np.array(interp.get_tensor(outp["index"])))
    with torch.no_grad():
        ref = fused(x)
    assert got.shape == (1, 10)
    assert rel_err(got, ref) < 1e-4
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["runtime"] == "litert" and meta["input_size"] == [3, IMG, IMG]
