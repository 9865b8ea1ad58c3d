"""Shared test helpers (import as `from tests.helpers import ...`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm random running statistics and affine parameters.

    With default statistics (mean 0, var 1, weight 1, bias 0) a wrong fuse can still pass, so every fuse test uses
    this first.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            dt = m.running_mean.dtype
            m.running_mean.copy_((torch.randn(n, generator=g) * 0.5).to(dt))
            m.running_var.copy_((torch.rand(n, generator=g) * 1.5 + 0.5).to(dt))
            m.weight.copy_((torch.randn(n, generator=g) * 0.5 + 1.0).to(dt))
            m.bias.copy_((torch.randn(n, generator=g) * 0.3).to(dt))
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One PyTorch thread for a test directory that imports this fixture into its conftest.

    The machine is shared, and an oversubscribed OpenMP pool at 2 threads is many times slower than 1 thread
    (timings are measured by ``benchmarks/``, never in tests).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def cpu_threads(n: int = 2) -> int:
    """Threads for a test's PyTorch or ONNX Runtime work: ``n`` when the suite runs in one process, 1 in a
    pytest-xdist worker (``make test`` runs two workers on two cores)."""
    import os

    return 1 if os.environ.get("PYTEST_XDIST_WORKER") else n


def require_openvino() -> None:
    """Skip the calling test unless openvino imports (through ``repvit``, so the import sends no telemetry).

    ``pytest.importorskip("openvino")`` would import it directly, which sends OpenVINO's usage event.
    """
    from repvit.deploy.openvino_runtime import import_openvino

    try:
        import_openvino()
    except ImportError:
        pytest.skip("needs openvino: pip install 'repvit-pytorch[openvino]'")


def kill_in_second_epoch_then_resume(cmd, tmp_path, *, sleep_s: float, timeout_s: float):
    """Run ``cmd(out_dir, *extra)`` uninterrupted into ``tmp_path/ref`` and, beside it, into ``tmp_path/victim``,
    SIGKILL the victim ``sleep_s`` after its first ``last.pt`` appears (inside the second epoch), resume it with
    ``--resume auto``, and return both final ``last.pt`` checkpoints ``(uninterrupted, resumed)``.

    Asserts what the harness itself needs: the kill landed in the second epoch and both runs finished.
    """
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": _pythonpath(root), "OMP_NUM_THREADS": "1"}
    ref = subprocess.Popen(cmd(tmp_path / "ref"), env=env, cwd=root, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    victim_dir = tmp_path / "victim"
    victim = subprocess.Popen(cmd(victim_dir), env=env, cwd=root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    last = victim_dir / "last.pt"
    deadline = time.time() + timeout_s
    while not last.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert last.exists(), "the run never finished its first epoch"
    time.sleep(sleep_s)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert int(torch.load(last, map_location="cpu", weights_only=True)["epoch"]) == 0, \
        "the kill did not land in the second epoch; make the epoch longer"

    resumed = subprocess.run(cmd(victim_dir, "--resume", "auto"), env=env, cwd=root, capture_output=True,
                             text=True, timeout=timeout_s)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    _, err = ref.communicate(timeout=timeout_s)
    assert ref.returncode == 0, err[-3000:]
    return (torch.load(tmp_path / "ref" / "last.pt", weights_only=True), torch.load(last, weights_only=True))


def run_torchrun(script, *args: str, timeout_s: float = 400, env: dict | None = None):
    """Run ``script`` (a path) on 2 CPU processes under torch.distributed.run, from the repository root, in its own
    process group; return the ``subprocess.CompletedProcess`` (stdout and stderr as text).

    On a timeout the whole group (agent, ranks, their loader workers) is killed and the calling test fails, so a
    hung run leaves no orphaned processes behind.
    """
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": _pythonpath(root), "OMP_NUM_THREADS": "1", **(env or {})}
    with tempfile.TemporaryDirectory(prefix="torchrun_logs_") as logs:  # else the agent leaves one in /tmp per run
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--log-dir",
               logs, str(script), *args]
        proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"torchrun {Path(script).name} {' '.join(args)} hung for {timeout_s:.0f} s and was killed; "
                        f"stderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

def run_cli(capsys, *argv) -> str:
    """``repvit ARGV`` in this process (arguments str()-ed); asserts exit code 0 and returns what it printed."""
    from repvit.cli.main import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert rc == 0, out.err[-3000:]
    return out.out


def state_hash(sd: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over the keys and values of ``sd`` (equal weights give equal hashes)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode())
        h.update(sd[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference between two state dicts with the same keys."""
    assert a.keys() == b.keys()
    return max(((a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0) for k in a)


def _pythonpath(root) -> str:
    """``PYTHONPATH`` for a subprocess of the tests: this checkout's ``src`` (so the code under test is the code
    beside the tests, also when another checkout is installed) and its root (for ``tests.*``)."""
    import os

    return os.pathsep.join([str(root / "src"), str(root)])
