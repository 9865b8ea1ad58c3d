"""One-shot CUDA check of the dense and classification paths (run on a machine with a GPU; writes JSON).

What it runs, each as the user would (``python -m repvit ...``, ``torchrun``), on data it writes itself:

1. the CUDA-only tests (``tests/models/test_fuse.py``: fused vs unfused on the GPU);
2. classification on digits with ``--device cuda --amp``;
3. the paper's ADE20K Semantic FPN recipe (``segment_semfpn_ade20k``: M1.1, 512 crops, AMP) through ``torchrun
   --nproc_per_node 1`` on a generated ADE20K-layout folder, a few iterations, then ``segment eval --device cuda``;
4. the paper's Mask R-CNN 1x recipe (``detect_maskrcnn_coco_1x``: M1.1, 1333x800, AMP) through ``torchrun`` on
   the digit scenes written in COCO layout at 800 px, a few iterations, then ``detect eval --device cuda``;
5. the throughput of one training step of each paper recipe on this GPU (img/s, AMP), so that a full run's time
   can be estimated;
6. RepViT-SAM: ``sam distill`` (torchrun, AMP) from a random ViT-B teacher on generated images, ``sam predict`` on
   the GPU, and the image-encoder latency at 1024x1024, batch 1, fp16 of fused RepViT-SAM M2.3 / M0.9 against
   segment-anything's ViT-B and ViT-H encoders, interleaved.

``--only sam`` runs step 6 alone.

Usage: ``python benchmarks/gpu_check.py --out-dir DIR``; the summary goes to ``DIR/gpu_check.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def sh(cmd: list[str], log: Path, timeout: int = 300) -> dict:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    out = log.read_text()
    return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - t0, 1), "tail": out[-1500:]}


def last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def write_data(root: Path) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    from repvit.dense.detection.coco import write_coco_split
    from repvit.dense.scenes import DigitScenes

    ade = root / "ade"
    for split, n, seed in (("training", 64, 0), ("validation", 8, 1)):
        (ade / "images" / split).mkdir(parents=True, exist_ok=True)
        (ade / "annotations" / split).mkdir(parents=True, exist_ok=True)
        ds = DigitScenes("train", num_scenes=n, size=512, seed=seed)  # a smoke set: both splits from train glyphs
        for i in range(n):
            img, tgt = ds[i]
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(ade / "images" / split / f"ADE_{i:04d}.jpg")
            # background -> 0 ("other", ignored after reduce_zero_label), digit d -> 1 + d
            Image.fromarray(tgt["semantic"].numpy().astype(np.uint8)).save(
                ade / "annotations" / split / f"ADE_{i:04d}.png")
    coco = root / "coco"
    names = [str(d) for d in range(10)]
    for split, n, seed in (("train", 32, 0), ("val", 8, 1)):
        ds = DigitScenes("train", num_scenes=n, size=800, seed=seed)
        write_coco_split((ds[i] for i in range(n)), coco, split, names)
    return ade, coco


def step_rate(recipe: str, device: str) -> dict:
    """Images per second of the recipe's training step on random data of the recipe's size (AMP, batch per GPU)."""
    import torch

    from repvit.dense.detection.model import DetectorSpec, build_detector
    from repvit.dense.segmentation.model import build_semantic_fpn

    torch.manual_seed(0)
    if recipe == "segment":
        model = build_semantic_fpn("repvit_m1_1", num_classes=150).to(device).train()
        x = torch.randn(4, 3, 512, 512, device=device)
        y = torch.randint(0, 150, (4, 512, 512), device=device)

        def loss_fn():
            return torch.nn.functional.cross_entropy(model(x), y, ignore_index=255)
        batch = 4
    else:
        model = build_detector(DetectorSpec(model="repvit_m1_1"), num_classes=81).to(device).train()
        imgs = [torch.rand(3, 800, 1216, device=device) for _ in range(2)]
        tgts = []
        for _ in range(2):
            boxes = torch.tensor([[100., 120., 400., 500.], [600., 200., 900., 700.]], device=device)
            masks = torch.zeros(2, 800, 1216, dtype=torch.uint8, device=device)
            masks[0, 120:500, 100:400] = 1
            masks[1, 200:700, 600:900] = 1
            tgts.append({"boxes": boxes, "labels": torch.tensor([3, 7], device=device), "masks": masks})

        def loss_fn():
            return sum(model(imgs, tgts).values())
        batch = 2
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for i in range(25):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return {"recipe": recipe, "batch_per_gpu": batch, "step_s_median": round(med, 4),
            "img_per_s": round(batch / med, 1), "max_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def sam_encoder_latency(device: str) -> dict:
    """Median ms per 1024x1024 image (batch 1, fp16 autocast) of fused RepViT-SAM encoders and SAM's ViT-B/H."""
    import torch
    from segment_anything import sam_model_registry

    import repvit
    from repvit.sam import build_repvit_sam

    encs = {}
    for v in ("repvit_sam_m0_9", "repvit_sam_m2_3"):
        sam = build_repvit_sam(variant=v)
        encs[v] = repvit.fuse_model(sam.image_encoder).to(device).eval()
    for v in ("vit_b", "vit_h"):
        encs[v] = sam_model_registry[v]().image_encoder.to(device).eval()
    x = torch.randn(1, 3, 1024, 1024, device=device)
    times: dict[str, list[float]] = {k: [] for k in encs}
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        for m in encs.values():  # warm-up (cuDNN autotuning)
            for _ in range(5):
                m(x)
        for _ in range(10):  # interleaved rounds
            for k, m in encs.items():
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(5):
                    m(x)
                torch.cuda.synchronize()
                times[k].append((time.perf_counter() - t0) / 5 * 1e3)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"ms_median": {k: round(v, 3) for k, v in med.items()},
            "vit_h_over_repvit_m2_3": round(med["vit_h"] / med["repvit_sam_m2_3"], 2),
            "vit_b_over_repvit_m2_3": round(med["vit_b"] / med["repvit_sam_m2_3"], 2)}


def run_sam(res: dict, out: Path, work: Path, py: str, save) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from segment_anything import sam_model_registry

    imgs = work / "sam_images"
    imgs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(16):
        a = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        a[100:300, 200:400] = rng.integers(0, 255, 3)
        Image.fromarray(a).save(imgs / f"im{i:02d}.png")
    teacher = work / "sam_vit_b_random.pth"
    torch.manual_seed(0)
    torch.save(sam_model_registry["vit_b"]().state_dict(), teacher)
    tr = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "repvit"]
    run = res["steps"]
    run["sam_distill"] = sh(tr + ["sam", "distill", "--teacher", "vit_b", "--teacher-checkpoint", str(teacher),
                                  "--images", str(imgs), "--model", "repvit_m0_9", "--iters", "16",
                                  "--batch-size", "4", "--amp", "--device", "cuda", "--workers", "2",
                                  "--cache-dir", str(work / "sam_cache"), "--output-dir", str(work / "sam"),
                                  "--no-progress"], out / "sam_distill.log", timeout=400)
    save()
    best = work / "sam" / "best.pt"
    run["sam_predict"] = sh([py, "-m", "repvit", "sam", "predict", str(imgs / "im00.png"), "--checkpoint", str(best),
                             "--decoder-checkpoint", str(teacher), "--point", "300,200", "--device", "cuda",
                             "--output-dir", str(work / "sam_pred")], out / "sam_predict.log")
    save()
    try:
        res["sam_encoder_latency"] = sam_encoder_latency("cuda")
    except Exception as e:  # noqa: BLE001 - a failure is a result here
        res["sam_encoder_latency"] = {"error": repr(e)}
    save()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--only", choices=["sam"], help="run one part only")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check.py needs a CUDA GPU and this torch sees none; run it on a machine with one.", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "repvit_gpu_check"
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "steps": {}}
    py = sys.executable
    run = res["steps"]

    def save():
        (out / "gpu_check.json").write_text(json.dumps(res, indent=2))

    if args.only == "sam":
        run_sam(res, out, work, py, save)
        ok = all(v["rc"] == 0 for v in run.values())
        res["all_ok"] = ok
        save()
        print(json.dumps({k: (v["rc"], v["seconds"]) for k, v in run.items()}))
        print(json.dumps(res.get("sam_encoder_latency")))
        return 0 if ok else 1
    run["pytest_cuda"] = sh([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/models/test_fuse.py",
                             "-m", "not slow or slow", "-rs"], out / "pytest.log")
    save()
    run["classify"] = sh([py, "-m", "repvit", "train", "--data", "digits", "--device", "cuda", "--amp",
                          "--epochs", "3", "--img-size", "32", "--output-dir", str(work / "cls"), "--no-progress"],
                         out / "classify.log")
    save()
    ade, coco = write_data(work)
    tr = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "repvit"]
    run["segment_train"] = sh(tr + ["segment", "train", "--config", "segment_semfpn_ade20k", "--data", str(ade),
                                    "--num-classes", "10", "--iters", "40", "--batch-size", "4", "--amp",
                                    "--workers", "2", "--device", "cuda", "--output-dir", str(work / "seg"),
                                    "--no-progress"], out / "segment_train.log")
    save()
    run["segment_eval"] = sh([py, "-m", "repvit", "segment", "eval", "--checkpoint", str(work / "seg" / "best.pt"),
                              "--data", str(ade), "--json", "--device", "cuda"], out / "segment_eval.log")
    run["segment_eval"]["json"] = last_json(run["segment_eval"]["tail"])
    save()
    run["detect_train"] = sh(tr + ["detect", "train", "--config", "detect_maskrcnn_coco_1x", "--data", str(coco),
                                   "--iters", "30", "--batch-size", "2", "--amp", "--workers", "2",
                                   "--device", "cuda", "--output-dir", str(work / "det"), "--no-progress"],
                             out / "detect_train.log")
    save()
    run["detect_eval"] = sh([py, "-m", "repvit", "detect", "eval", "--checkpoint", str(work / "det" / "best.pt"),
                             "--data", str(coco), "--json", "--device", "cuda"], out / "detect_eval.log")
    run["detect_eval"]["json"] = last_json(run["detect_eval"]["tail"])
    save()
    for recipe in ("segment", "detect"):
        try:
            res[f"rate_{recipe}"] = step_rate(recipe, "cuda")
        except Exception as e:  # noqa: BLE001 - a failure is a result here
            res[f"rate_{recipe}"] = {"error": repr(e)}
        save()
    ok = all(v["rc"] == 0 for v in run.values())
    res["all_ok"] = ok
    save()
    print(json.dumps({k: (v["rc"], v["seconds"]) for k, v in run.items()}))
    print(json.dumps({k: res[k] for k in res if k.startswith("rate_")}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
