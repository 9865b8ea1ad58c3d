"""Run an ExecuTorch program in its own worker process, so its process-wide thread pool is pinned for it alone.

ExecuTorch's thread pool (used by the XNNPACK delegate) is one per process, and resetting it
(``_unsafe_reset_threadpool``) affects every program loaded there. :class:`RemoteProgram` starts a worker
process (``python -c``, so the caller's ``__main__`` is never re-imported) that pins the pool to ``threads``, loads
the ``.pte`` and waits on a pipe. The benchmark drives it from the interleaved timing loop:
:meth:`RemoteProgram.time_calls` runs ``n`` calls in the worker and returns the worker's own per-call timings, so
the pipe round trip is not counted; calling the object runs one inference and returns its outputs (for accuracy
checks). While the parent times other candidates the worker sleeps in a blocking read.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from typing import Any

import numpy as np

__all__ = ["RemoteProgram"]

def _serve() -> None:  # the worker: ``python -c "from repvit.bench.remote import _serve; _serve()"``
    proto = os.fdopen(os.dup(1), "wb")  # the protocol channel; anything the libraries print goes to stderr
    os.dup2(2, 1)
    inp = sys.stdin.buffer

    def send(obj: Any) -> None:
        pickle.dump(obj, proto, protocol=pickle.HIGHEST_PROTOCOL)
        proto.flush()

    try:
        pte, threads, example = pickle.load(inp)
        import torch

        torch.set_num_threads(1)  # nothing else in this process should hold a spinning pool
        from repvit.deploy.executorch_export import load_method

        method = load_method(pte, threads=threads)
        x = torch.from_numpy(example)
        method.execute([x])
        send(("ready", None))
    except Exception as e:  # noqa: BLE001 - report any start-up failure to the parent, which raises it
        send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        try:
            msg = pickle.load(inp)
        except EOFError:
            return
        if msg[0] == "time":
            samples = []
            for _ in range(int(msg[1])):
                t0 = time.perf_counter()
                method.execute([x])
                samples.append((time.perf_counter() - t0) * 1e3)
            send(samples)
        elif msg[0] == "run":
            send([np.asarray(o) for o in method.execute([x])])
        else:
            return


class RemoteProgram:
    """An ExecuTorch ``.pte`` loaded in a worker process with ``threads`` pinned threads, on a fixed input.

    Args:
        pte: the program bytes (:func:`repvit.deploy.executorch_export.export_executorch_bytes`).
        example: the input every call runs on.
        threads: the worker's ExecuTorch thread pool size.

    Raises:
        RuntimeError: the worker could not load or run the program (the worker's error message is included).
    """

    def __init__(self, pte: bytes, example: Any, threads: int = 2) -> None:
        arr = np.ascontiguousarray(np.asarray(example, dtype=np.float32))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from repvit.bench.remote import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.threads = int(threads)
        try:
            self._send((pte, self.threads, arr))
            status, err = self._recv()
        except (EOFError, OSError, pickle.UnpicklingError) as e:
            self.close()
            raise RuntimeError(f"the ExecuTorch worker process died while starting ({type(e).__name__}).") from e
        if status != "ready":
            self.close()
            raise RuntimeError(f"the ExecuTorch worker process failed: {err}")

    def _send(self, obj: Any) -> None:
        pickle.dump(obj, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._proc.stdin.flush()

    def _recv(self) -> Any:
        return pickle.load(self._proc.stdout)

    def __call__(self) -> list[np.ndarray]:
        self._send(("run",))
        return self._recv()

    def time_calls(self, n: int) -> list[float]:
        """Run ``n`` calls in the worker; their durations in ms, timed there."""
        if n <= 0:
            return []
        self._send(("time", int(n)))
        return self._recv()

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        self._proc = None
        try:
            pickle.dump(("stop",), proc.stdin)
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()

    def __del__(self) -> None:
        self.close()
