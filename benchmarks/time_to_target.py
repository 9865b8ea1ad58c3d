"""Time to target of the digits recipes: this tree against a parent commit, side by side, interleaved.

Each run is the recipe as a user starts it (``repvit train|segment train|detect train --data digits --seed S``) in a
fresh subprocess, with two changes that do not alter the training: the held-out split is evaluated after every epoch
(``eval_every=1``) and there is no progress bar. The child wraps the task's ``evaluate`` with a timer, so the
training time at an epoch's end is the wall time since the CLI started (data, model, every step, checkpoints)
minus the time spent evaluating before it. The time to target is that training time at the first evaluation that
meets the target:

* ``classify``: top-1 >= 97 % (the model's weights, not the EMA's: ``best.pt`` is chosen on them)
* ``segment``: mIoU >= 0.82
* ``detect``: box AP >= 0.70 and mask AP >= 0.64 at the same evaluation

"parent" is a ``git worktree`` of the parent commit (``--parent``, default: where this branch left ``main``), run
with its own ``PYTHONPATH`` in the same venv. The sides alternate (which goes first flips with every pair) so that
machine noise hits both alike. ``--cores N`` runs every child under ``taskset -c N`` with one torch thread (a
quick comparison on a shared machine); ``--cores N M`` runs the two sides of a pair at the same time, one per core
(they swap cores with every pair), each with one thread. Without it each recipe uses its own thread setting and
the runs go one after the other.

    python benchmarks/time_to_target.py --tasks segment --seeds 0 --cores 0 1
    python benchmarks/time_to_target.py --tasks classify segment detect --seeds 0 1 2

Writes ``benchmarks/results/time_to_target.json`` and prints a table with the ratios and the goals (ours / parent
<= 0.7 for segment and detect, <= 0.8 for classify).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# task -> (CLI words, task class, {metric: target}, goal ratio ours / parent)
TASKS = {
    "classify": (["train"], "repvit.classification.task:ClassifyTask", {"top1": 97.0}, 0.8),
    "segment": (["segment", "train"], "repvit.dense.segmentation.task:SegmentTask", {"miou": 0.82}, 0.7),
    "detect": (["detect", "train"], "repvit.dense.detection.task:DetectTask", {"bbox_ap": 0.70, "mask_ap": 0.64},
               0.7),
}


def reached(metrics: dict, targets: dict) -> bool:
    return all(metrics.get(k) is not None and metrics[k] >= v for k, v in targets.items())


def child(task: str, seed: int, run_dir: str, threads: int | None, extra: list[str]) -> None:
    """One training run in this process (whichever tree is on ``PYTHONPATH``); prints one JSON line."""
    words, cls_path, targets, _ = TASKS[task]
    module, name = cls_path.split(":")
    cls = getattr(importlib.import_module(module), name)
    from repvit.cli.main import main as cli_main

    evals: list[dict] = []
    trained_model: list[int] = []  # id of the first model evaluated: the trained weights (EMA comes second)
    original = cls.evaluate
    t0 = time.perf_counter()

    def timed_evaluate(self, model, loader, device):
        start = time.perf_counter()
        out = original(self, model, loader, device)
        end = time.perf_counter()
        if not trained_model:
            trained_model.append(id(model))
        evals.append({"start": start - t0, "end": end - t0, "trained": id(model) == trained_model[0],
                      "metrics": {k: out.get(k) for k in targets}})
        return out

    cls.evaluate = timed_evaluate
    argv = [*words, "--data", "digits", "--seed", str(seed), "--output-dir", run_dir, "--no-progress",
            "--set", "eval_every=1", *extra]
    if threads is not None:
        argv += ["--set", f"threads={threads}"]
    t0 = time.perf_counter()
    rc = cli_main(argv)
    wall = time.perf_counter() - t0
    eval_s, points = 0.0, []
    for e in evals:
        if e["trained"]:
            points.append({"train_s": e["start"] - eval_s, "metrics": e["metrics"]})
        eval_s += e["end"] - e["start"]
    for i, p in enumerate(points):
        p["epoch"] = i + 1
    hit = next((p for p in points if reached(p["metrics"], targets)), None)
    print("RESULT " + json.dumps({"rc": rc, "wall_s": wall, "eval_s": eval_s, "train_s": wall - eval_s,
                                  "points": points, "time_to_target_s": hit["train_s"] if hit else None,
                                  "epoch_reached": hit["epoch"] if hit else None,
                                  "final": points[-1]["metrics"] if points else None}))


def parent_tree(rev: str, keep: Path | None) -> tuple[Path, bool]:
    """A checkout of ``rev`` (``git worktree add --detach``); returns (path, created here)."""
    if keep is not None:
        return keep, False
    path = Path(tempfile.mkdtemp(prefix="repvit-parent-"))
    path.rmdir()
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)
    return path, True


def default_parent() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("cannot find the parent commit (git merge-base HEAD main failed); pass --parent REV.")
    return out.stdout.strip()


def start_side(tree: Path, task: str, seed: int, args, run_dir: Path, core: int | None) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", task, "--seed", str(seed), "--run-dir",
           str(run_dir)]
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd, "--threads", "1"]
    for s in args.set or []:
        cmd.append(f"--extra=--set={s}")
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}")
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_side(p: subprocess.Popen, what: str) -> dict:
    out, err = p.communicate()
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("RESULT ")), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"{what} failed (exit {p.returncode}):\n{err[-3000:]}")
    return json.loads(line[len("RESULT "):])


def _fmt(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.1f}"


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--sides", nargs="+", choices=["ours", "parent"], default=["ours", "parent"])
    ap.add_argument("--parent", help="the parent commit (default: git merge-base HEAD main)")
    ap.add_argument("--parent-tree", type=Path, help="an existing checkout of the parent to use instead")
    ap.add_argument("--cores", nargs="+", type=int, help="taskset -c N and one torch thread per run; two cores: "
                    "the sides of a pair run at the same time, one per core")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="a config override for both sides")
    ap.add_argument("--out", default="benchmarks/results/time_to_target.json")
    ap.add_argument("--child", choices=list(TASKS), help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--extra", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.seed, args.run_dir, args.threads, args.extra)
        return None

    sys.path.insert(0, str(ROOT / "src"))
    from repvit.bench.latency import environment_info

    rev = None
    trees = {"ours": ROOT}
    created = False
    if "parent" in args.sides:
        rev = args.parent or default_parent()
        trees["parent"], created = parent_tree(rev, args.parent_tree)
    work = Path(tempfile.mkdtemp(prefix="repvit-ttt-"))
    runs: list[dict] = []
    try:
        order = 0
        for seed in args.seeds:
            for task in args.tasks:
                sides = [s for s in ("ours", "parent") if s in args.sides]
                cores = list(args.cores or [None])
                if order % 2:  # who goes first, and which core each side gets, flip with every pair
                    sides.reverse()
                together = len(cores) > 1
                procs = []
                for side in sides:
                    core = cores[(("ours", "parent").index(side) + order) % len(cores)]
                    p = start_side(trees[side], task, seed, args, work / f"{task}_{seed}_{side}", core)
                    procs.append((side, core, p))
                    if not together:
                        procs[-1] = (side, core, finish_side(p, f"{task} seed {seed} {side}"))
                order += 1
                for side, core, p in procs:
                    res = p if isinstance(p, dict) else finish_side(p, f"{task} seed {seed} {side}")
                    res.update(task=task, seed=seed, side=side, core=core)
                    runs.append(res)
                    print(f"{task} seed {seed} {side}: time to target {_fmt(res['time_to_target_s'])} s "
                          f"(epoch {res['epoch_reached']}), final {res['final']}, training {res['train_s']:.1f} s",
                          flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["parent"])],
                           capture_output=True)

    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            by = {r["side"]: r for r in runs if r["task"] == task and r["seed"] == seed}
            o, p = by.get("ours"), by.get("parent")
            ratio = None
            if o and p and o["time_to_target_s"] is not None and p["time_to_target_s"] is not None:
                ratio = o["time_to_target_s"] / p["time_to_target_s"]
            rows.append({"task": task, "seed": seed, "targets": TASKS[task][2], "goal_ratio": TASKS[task][3],
                         "ours_s": o and o["time_to_target_s"], "parent_s": p and p["time_to_target_s"],
                         "ours_epoch": o and o["epoch_reached"], "parent_epoch": p and p["epoch_reached"],
                         "ours_full_s": o and o["train_s"], "parent_full_s": p and p["train_s"],
                         "ours_final": o and o["final"], "parent_final": p and p["final"], "ratio": ratio,
                         "met": ratio is not None and ratio <= TASKS[task][3]})
    if not args.cores:
        threads = "each recipe's own threads, one run at a time"
    elif len(args.cores) == 1:
        threads = f"1 thread, taskset -c {args.cores[0]}, one run at a time"
    else:
        threads = f"1 thread per run, the two sides at the same time on cores {args.cores[0]} and {args.cores[1]}"
    result = {"parent": rev, "ours": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                                    text=True).stdout.strip(),
              "threads": threads, "overrides": args.set or [], "environment": environment_info(), "rows": rows,
              "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    env = result["environment"]
    print(f"time to target, digits recipes: {env.get('cpu_model')} (family {env.get('cpu_family')} model "
          f"{env.get('cpu_model_number')}), ISA {env.get('cpu_flags')}, {threads}")
    print(f"{'task':<9} {'seed':>4} {'parent s':>12} {'ours s':>12} {'ours/parent':>12} {'goal':>6}  "
          f"{'full run parent / ours s':>25}")
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        full = f"{_fmt(r['parent_full_s'])} / {_fmt(r['ours_full_s'])}"
        print(f"{r['task']:<9} {r['seed']:>4} {_fmt(r['parent_s']):>12} {_fmt(r['ours_s']):>12} {ratio:>12} "
              f"{'<=' + str(r['goal_ratio']):>6}  {full:>25}")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
