"""EdgeTAM video tracking on the CPU at 1024 x 1024: tracked frames per second of repvit's EdgeTAM (fused trunk) against
the authors' EdgeTAM code on the same weights and against SAM 2.1 tiny built from Meta's code with random weights;
repvit's EdgeTAM in ONNX Runtime (``OnnxEdgeTamTracker`` on the graphs ``repvit sam export`` writes, exported and
checked against PyTorch first) against the same in eager PyTorch, per pass and per tracked frame (target: ONNX Runtime
no slower); and the image encoder's time against EdgeSAM's (fused, repvit.sam).

Each tracker runs in a process of its own (its own thread pool, ``--threads`` threads) that builds its model once and
then waits; the rounds are interleaved (one tracker at a time, the order rotating), so machine noise hits all alike.
A pass is: ``init_state`` on a folder of JPEG frames (shifted crops of scikit-image's astronaut), one click on frame 0,
``propagate_in_video`` over all frames; the tracked frames per second are the frames after the first over the
propagation's time. The authors' code is the reference environment of the tests (``make edgetam-ref``: PyPI's
``edgetam-dimos``, module ``sam2``, with its configs for SAM 2.1), run with their trunk built offline and their
bfloat16-rounded memories held as float32 (tests/sam/sam2/_reference/authors.py); without it only repvit's side is
timed. The weights are the parity tests' perturbed random ones (speed only). Writes JSON and prints a table with
ratios, the CPU model and its ISA flags.

    python benchmarks/edgetam_fps.py [--frames 8] [--rounds 3] [--threads 2] [--no-sam21] [--no-onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = ROOT / "tests" / "sam" / "sam2" / "_reference"
REFERENCE_ENV = Path(os.environ.get("REPVIT_EDGETAM_REF", ROOT / ".venv-edgetam-ref")).resolve()
IMG = 1024
CLICK = (230.0, 110.0)

OURS = "repvit EdgeTAM (fused)"
OURS_ORT = "repvit EdgeTAM (onnxruntime)"
AUTHORS = "authors' EdgeTAM"
SAM21 = "SAM 2.1 tiny (Meta's code)"
EDGESAM = "EdgeSAM encoder (fused)"
TARGETS = {AUTHORS: 1.5, SAM21: 5.0}


# ----------------------------------------------------------------------------------------------- the worker side
def _build_worker(kind: str, checkpoint: str, onnx_dir: str | None = None):
    """The video predictor and the image encoders a worker times (``kind``: repvit, repvit-onnx, authors or
    sam21)."""
    import torch

    if kind == "repvit-onnx":
        import numpy as np

        from repvit.sam.sam2.onnx_tracker import OnnxEdgeTamTracker

        tracker = OnnxEdgeTamTracker(onnx_dir, threads=torch.get_num_threads(), fill_hole_area=0)
        encoder = tracker.sessions["image_encoder"]
        return tracker, {OURS_ORT: lambda x: encoder.run(None, {"image": np.ascontiguousarray(x.numpy())})}
    if kind == "repvit":
        from repvit.sam import build_repvit_sam
        from repvit.sam.sam2 import build_edgetam, build_edgetam_video_predictor

        predictor = build_edgetam_video_predictor(checkpoint, fused=True, fill_hole_area=0)
        encoders = {OURS: build_edgetam(checkpoint, fused=True).image_encoder.eval(),
                    EDGESAM: build_repvit_sam(variant="edge_sam", fused=True).image_encoder.eval()}
        return predictor, encoders
    sys.path.insert(0, str(REFERENCE_DIR))
    import authors

    if kind == "authors":
        predictor = authors.build(checkpoint=checkpoint, video=True, fill_hole_area=0)
        return predictor, {AUTHORS: predictor.image_encoder}
    torch.manual_seed(0)
    predictor = authors.build(authors.SAM21_TINY_CONFIG, video=True, fill_hole_area=0)
    return predictor, {SAM21: predictor.image_encoder}


def _track(predictor, frames: str, max_frames: int | None = None) -> dict[str, float]:
    import numpy as np

    t0 = time.perf_counter()
    state = predictor.init_state(frames)
    t1 = time.perf_counter()
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=np.asarray([CLICK], np.float32),
                                    labels=np.asarray([1], np.int32))
    t2 = time.perf_counter()
    n = sum(1 for _ in predictor.propagate_in_video(state, max_frame_num_to_track=max_frames))
    t3 = time.perf_counter()
    return {"init_s": t1 - t0, "click_s": t2 - t1, "propagate_s": t3 - t2, "pass_s": t3 - t0, "frames": n,
            "tracked_fps": (n - 1) / (t3 - t2)}


def _encode(encoders: dict, iters: int) -> dict[str, list[float]]:
    import torch

    x = torch.randn(1, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    out = {}
    for name, encoder in encoders.items():
        samples = []
        for _ in range(iters):
            t0 = time.perf_counter()
            encoder(x)
            samples.append((time.perf_counter() - t0) * 1e3)
        out[name] = samples
    return out


def worker(kind: str, checkpoint: str, frames: str, threads: int, onnx_dir: str | None = None) -> None:
    """Build, warm up, then answer ``track`` / ``encode N`` lines on stdin with ``RESULT {json}`` lines on stdout."""
    import torch

    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    reply, sys.stdout = sys.stdout, sys.stderr  # the authors' builders and tqdm print; only RESULT lines go out
    predictor, encoders = _build_worker(kind, checkpoint, onnx_dir)
    with torch.inference_mode():
        _track(predictor, frames, max_frames=1)
        _encode(encoders, 1)
        print("RESULT " + json.dumps({"ready": True}), file=reply, flush=True)
        for line in sys.stdin:
            op, *arg = line.split()
            if op == "quit":
                break
            result = _track(predictor, frames) if op == "track" else _encode(encoders, int(arg[0]))
            print("RESULT " + json.dumps(result), file=reply, flush=True)


# ----------------------------------------------------------------------------------------------- the parent side
class Worker:
    """A worker process and its line protocol."""

    def __init__(self, kind: str, checkpoint: Path, frames: Path, threads: int, reference_env: Path | None,
                 onnx_dir: Path | None = None):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
        if reference_env is not None:
            env["PYTHONPATH"] = str(reference_env)  # the authors' sam2; repvit and torch come from this Python
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--checkpoint", str(checkpoint),
               "--frames-dir", str(frames), "--threads", str(threads)]
        if onnx_dir is not None:
            cmd += ["--onnx-dir", str(onnx_dir)]
        self.kind = kind
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, bufsize=1)

    def ask(self, line: str) -> dict:
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        for out in self.proc.stdout:
            if out.startswith("RESULT "):
                return json.loads(out[len("RESULT "):])
        self.log.seek(0)
        raise RuntimeError(f"the {self.kind} worker ended without a result:\n{self.log.read()[-3000:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.log.close()


def write_frames(folder: Path, n: int) -> None:
    """``n`` JPEG frames ``00000.jpg`` ...: 360 x 480 crops of scikit-image's astronaut, shifted a little each frame."""
    from PIL import Image
    from skimage import data

    photo = data.astronaut()
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        y, x = (3 * t) % 140, (2 * t) % 30
        Image.fromarray(photo[y:y + 360, x:x + 480]).save(folder / f"{t:05d}.jpg", quality=95)


def make_checkpoint(folder: Path, reference: bool) -> Path:
    """The parity tests' edgetam.pt (from the reference environment), else repvit's EdgeTAM with random weights."""
    if reference:
        env = dict(os.environ, PYTHONPATH=str(REFERENCE_ENV), HF_HUB_OFFLINE="1")
        subprocess.run([sys.executable, str(REFERENCE_DIR / "make_reference.py"), str(folder / "reference")], env=env,
                       check=True, capture_output=True)
        return folder / "reference" / "edgetam.pt"
    import torch

    from repvit.sam.sam2 import build_edgetam

    torch.manual_seed(0)
    path = folder / "edgetam.pt"
    torch.save({"model": build_edgetam().state_dict()}, path)
    return path


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run(args: argparse.Namespace) -> dict:
    reference = REFERENCE_ENV.joinpath("sam2", "configs", "edgetam.yaml").is_file() and not args.no_reference
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)
    write_frames(folder / "frames", args.frames)
    t0 = time.perf_counter()
    checkpoint = make_checkpoint(folder, reference)
    kinds = {"repvit": None}
    onnx_dir, parity = None, None
    if not args.no_onnx:  # the graphs `repvit sam export` writes, checked against PyTorch
        onnx_dir = folder / "onnx"
        parity = export_graphs(checkpoint, onnx_dir, args.threads)
        kinds["repvit-onnx"] = None
    if reference:
        kinds["authors"] = REFERENCE_ENV
        if not args.no_sam21:
            kinds["sam21"] = REFERENCE_ENV
    workers = {k: Worker(k, checkpoint, folder / "frames", args.threads, env, onnx_dir if k == "repvit-onnx" else None)
               for k, env in kinds.items()}
    names = {"repvit": OURS, "repvit-onnx": OURS_ORT, "authors": AUTHORS, "sam21": SAM21}
    passes: dict[str, list[dict]] = {names[k]: [] for k in workers}
    encoder_ms: dict[str, list[float]] = {}
    try:
        for w in workers.values():
            w.ask("")  # built and warmed up
        setup_s = time.perf_counter() - t0
        order = list(workers)
        for r in range(args.rounds):
            for k in order[r % len(order):] + order[:r % len(order)]:
                passes[names[k]].append(workers[k].ask("track"))
                for name, samples in workers[k].ask(f"encode {args.encoder_iters}").items():
                    encoder_ms.setdefault(name, []).extend(samples)
    finally:
        for w in workers.values():
            w.close()
        tmp.cleanup()
    return _summary(args, passes, encoder_ms, setup_s, reference, parity)


def export_graphs(checkpoint: Path, onnx_dir: Path, threads: int) -> dict:
    """EdgeTAM's four ONNX graphs from ``checkpoint`` (fused), as ``repvit sam export`` writes them; returns the
    parity check's worst deviations. The tolerance is 1e-3: the parity tests' perturbed weights amplify float32
    rounding in the memory encoder, where PyTorch and ONNX Runtime each differ from a float64 run by about 1e-4."""
    import torch

    from repvit.sam.sam2 import build_edgetam
    from repvit.sam.sam2.export import export_edgetam_onnx

    torch.set_num_threads(threads)
    return export_edgetam_onnx(build_edgetam(str(checkpoint)), onnx_dir, rtol=1e-3)["parity"]


def _summary(args, passes: dict[str, list[dict]], encoder_ms: dict[str, list[float]], setup_s: float,
             reference: bool, parity: dict | None = None) -> dict:
    from repvit.bench.latency import environment_info

    tracking = {name: {"tracked_fps": _median([p["tracked_fps"] for p in ps]),
                       "propagate_s": _median([p["propagate_s"] for p in ps]),
                       "init_s": _median([p["init_s"] for p in ps]), "click_s": _median([p["click_s"] for p in ps]),
                       "pass_s": _median([p["pass_s"] for p in ps]),
                       "passes": ps} for name, ps in passes.items()}
    encoders = {name: {"median_ms": _median(s), "samples_ms": s} for name, s in encoder_ms.items()}
    ours = tracking[OURS]["tracked_fps"]
    ratios = {f"{OURS} / {name} (tracked fps)": ours / t["tracked_fps"] for name, t in tracking.items() if name != OURS}
    for name, e in encoders.items():
        if name != OURS:
            ratios[f"{name} / {OURS} (encoder ms)"] = e["median_ms"] / encoders[OURS]["median_ms"]
    targets = {}
    if OURS_ORT in tracking:  # ONNX Runtime against eager: a whole pass (open, click, track) and a tracked frame
        ort, eager = tracking[OURS_ORT], tracking[OURS]
        for what, ratio in (("pass time", ort["pass_s"] / eager["pass_s"]),
                            ("time per tracked frame", eager["tracked_fps"] / ort["tracked_fps"])):
            ratios[f"{OURS_ORT} / {OURS} ({what})"] = ratio
            targets[f"{OURS_ORT} / {OURS} ({what}) <= 1"] = {"ratio": ratio, "met": ratio <= 1}
    for name, target in TARGETS.items():
        if name in tracking:
            ratio = ours / tracking[name]["tracked_fps"]
            targets[f"{OURS} / {name} >= {target}"] = {"ratio": ratio, "met": ratio >= target}
    notes = [] if reference else ["no reference environment (make edgetam-ref): only repvit's EdgeTAM was timed"]
    return {
        "benchmark": "edgetam_fps", "img_size": IMG, "frames": args.frames, "threads": args.threads,
        "rounds": args.rounds, "encoder_iters_per_round": args.encoder_iters, "setup_s": setup_s,
        "tracking": tracking, "encoders": encoders, "ratios": ratios, "targets": targets, "onnx_parity": parity,
        "notes": notes,
        "environment": environment_info(),
    }


def report(res: dict, out: str) -> None:
    env = res["environment"]
    print(f"EdgeTAM tracking @ {IMG}x{IMG}, {res['frames']} frames, one object, {res['threads']} threads, "
          f"{res['rounds']} interleaved rounds; load {env.get('loadavg_1m_5m_15m')}")
    print(f"CPU: {env.get('cpu_model', env.get('processor'))} (family {env.get('cpu_family')}, model "
          f"{env.get('cpu_model_number')}); ISA flags: {env.get('cpu_flags')}")
    print(f"| {'tracker':<30} | {'tracked fps':>11} | {'propagate s':>11} | {'init s':>7} | {'click s':>7} | "
          f"{'pass s':>7} |")
    print(f"|{'-' * 32}|{'-' * 13}|{'-' * 13}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for name, t in res["tracking"].items():
        print(f"| {name:<30} | {t['tracked_fps']:>11.2f} | {t['propagate_s']:>11.2f} | {t['init_s']:>7.2f} | "
              f"{t['click_s']:>7.2f} | {t['pass_s']:>7.2f} |")
    print(f"| {'image encoder':<30} | {'median ms':>11} |")
    for name, e in res["encoders"].items():
        print(f"| {name:<30} | {e['median_ms']:>11.1f} |")
    for k, r in res["ratios"].items():
        print(f"{k}: {r:.2f}x")
    for k, t in res["targets"].items():
        print(f"target {k}: {t['ratio']:.2f}x ({'met' if t['met'] else 'NOT met'})")
    for n in res["notes"]:
        print(n)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8, help="frames per pass (the first is clicked, the rest tracked)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encoder-iters", type=int, default=2, help="image encoder calls per worker per round")
    ap.add_argument("--no-sam21", action="store_true", help="skip SAM 2.1 tiny")
    ap.add_argument("--no-reference", action="store_true", help="time repvit's EdgeTAM only")
    ap.add_argument("--no-onnx", action="store_true", help="skip repvit's EdgeTAM in ONNX Runtime")
    ap.add_argument("--out", default="benchmarks/results/edgetam_fps.json")
    ap.add_argument("--worker", choices=["repvit", "repvit-onnx", "authors", "sam21"], help=argparse.SUPPRESS)
    ap.add_argument("--onnx-dir", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--frames-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.checkpoint, args.frames_dir, args.threads, args.onnx_dir)
        return
    if args.frames < 2:
        ap.error("--frames must be at least 2 (one clicked, one tracked)")
    res = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    report(res, args.out)


if __name__ == "__main__":
    main()
