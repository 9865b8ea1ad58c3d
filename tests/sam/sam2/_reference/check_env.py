"""Check the EdgeTAM reference folder (``make edgetam-ref``): the authors' ``sam2`` imports from it and builds offline.

    python tests/sam/sam2/_reference/check_env.py .venv-edgetam-ref

Run with the main environment's Python; the folder goes first on the path, as the tests put it. The authors' CUDA
extension (``sam2._C``) is not there and not needed: their connected components fall back to OpenCV or are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

_CHECK = """
import importlib.util, os, sys
import authors, torch
import sam2
ref = os.path.realpath(sys.argv[1])
assert os.path.realpath(sam2.__path__[0]).startswith(ref), f"sam2 comes from {sam2.__path__[0]}, not from {ref}"
assert importlib.util.find_spec("sam2._C") is None, "sam2._C (the CUDA extension) should not be built here"
model = authors.build()
print(f"sam2 from {sam2.__path__[0]}: EdgeTAM builds offline on CPU ({sum(p.numel() for p in model.parameters())} "
      f"parameters, torch {torch.__version__})")
"""


def main() -> None:
    ref = os.path.abspath(sys.argv[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ref, HERE]), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "-c", _CHECK, ref], env=env, check=True)


if __name__ == "__main__":
    main()
