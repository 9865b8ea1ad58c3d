"""Stress test: run the 2-process DDP digits job with loader workers many times and count the runs that finish.

Each run is ``torchrun --nproc-per-node 2 -m repvit train --data digits --workers 2 ...`` on the CPU (gloo), kept
short (a training subset, 2 epochs, so each run forks training and evaluation loader workers several times). A run
that does not finish within ``--timeout`` seconds is counted as hung; its whole process group (agent, ranks, loader
workers) is killed, after the stacks of its processes are saved with py-spy or gdb when one is installed. Writes
``benchmarks/results/ddp_stress.json`` and prints a table.

    python benchmarks/ddp_stress.py --runs 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    return kids + [d for k in kids for d in _descendants(k)]


def _stacks(pid: int) -> str:
    """Native + Python stacks of ``pid`` and its descendants (py-spy if installed, else gdb), for a hung run."""
    parts = []
    for p in [pid, *_descendants(pid)]:
        if shutil.which("py-spy"):
            cmd = ["py-spy", "dump", "--native", "--pid", str(p)]
        elif shutil.which("gdb"):
            cmd = ["gdb", "-p", str(p), "-batch", "-ex", "thread apply all bt 25"]
        else:
            return "no py-spy or gdb installed"
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            parts.append(f"--- pid {p}\n" + "\n".join(line for line in res.stdout.splitlines()
                                                      if line.startswith(("#", "Thread", "    ", "Process"))))
        except subprocess.TimeoutExpired:
            parts.append(f"--- pid {p}: stack dump timed out")
    return "\n".join(parts)


def run_once(i: int, args: argparse.Namespace, work: Path) -> dict:
    out_dir = work / f"run{i}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "repvit",
           "train", "--data", "digits", "--workers", str(args.workers), "--epochs", str(args.epochs),
           "--output-dir", str(out_dir), "--seed", str(i), "--no-progress", "--threads", "1",
           "--set", f"train_subset={args.train_subset}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=args.timeout)
        status = "finished" if proc.returncode == 0 else "failed"
        stacks = ""
    except subprocess.TimeoutExpired:
        status = "hung"
        stacks = _stacks(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    rec = {"run": i, "status": status, "seconds": round(time.perf_counter() - t0, 2), "returncode": proc.returncode}
    if status != "finished":
        rec["stderr_tail"] = err[-2000:]
        rec["stacks"] = stacks[-6000:]
    shutil.rmtree(out_dir, ignore_errors=True)
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a run counts as hung")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=256, help="training images (the held-out split is whole)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ddp_stress.json"))
    args = ap.parse_args()

    with open("/proc/loadavg") as f:
        load_before = f.read().split()[:3]
    records = []
    with tempfile.TemporaryDirectory(prefix="ddp_stress_") as tmp:
        for i in range(args.runs):
            rec = run_once(i, args, Path(tmp))
            records.append(rec)
            print(f"run {i + 1:3d}/{args.runs}: {rec['status']:8s} {rec['seconds']:6.1f} s", flush=True)
    with open("/proc/loadavg") as f:
        load_after = f.read().split()[:3]
    counts = {s: sum(r["status"] == s for r in records) for s in ("finished", "hung", "failed")}
    secs = sorted(r["seconds"] for r in records if r["status"] == "finished")
    result = {
        "command": "torchrun --nproc-per-node 2 -m repvit train --data digits "
                   f"--workers {args.workers} --epochs {args.epochs} --set train_subset={args.train_subset}",
        "runs_started": len(records), **{f"runs_{k}": v for k, v in counts.items()},
        "timeout_s": args.timeout, "median_run_s": secs[len(secs) // 2] if secs else None,
        "python": platform.python_version(), "loadavg_before": load_before, "loadavg_after": load_after,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "records": records,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n| runs started | finished | hung (> {args.timeout:.0f} s) | failed | median run |")
    print("|---:|---:|---:|---:|---:|")
    med = f"{result['median_run_s']:.1f} s" if secs else "-"
    print(f"| {len(records)} | {counts['finished']} | {counts['hung']} | {counts['failed']} | {med} |")
    print(f"finished / started: {counts['finished']}/{len(records)}; load average {' '.join(load_before)} -> "
          f"{' '.join(load_after)}; written to {args.out}")
    return 0 if counts["finished"] == len(records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
