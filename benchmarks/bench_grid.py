"""Grid-feature extraction throughput: shape-bucketed batches vs one image per forward, side by side.

Baseline (how a per-image grid script works): for each image, decode it, resize it (the same
:func:`vln_clip.features.grid.resize_image`, so both see identical pixels), one fp32 forward
pass of that single image, the grid to numpy, one HDF5 dataset written. Ours:
:func:`vln_clip.features.grid.extract_grid` (images of one input shape batched into one
tensor, decoding in a DataLoader worker while the encoder runs, the journal, the final store;
bf16 autocast on GPU, fp32 on CPU, channels-last). Both skip the attention pool (grid only),
use the same weights, the same images and the same process, alternated ``--repeats`` times;
the two stores are checked to agree.

Images are synthetic textured JPEGs in a COCO-like mix of sizes (6 in 10 are 640x480, 2 in 10
480x640, then 640x427 and 375x500), so decoding, resizing and bucketing behave as on COCO.

    nice -n 10 python benchmarks/bench_grid.py          # CPU: clip_res50, 16 images, 384/640
    nice -n 10 python benchmarks/bench_grid.py --batch-size 8   # CPU with shape-bucketed batches of 8
    python benchmarks/bench_grid.py --device cuda --images 512 --batch-size 32 --short-side 600 \
        --long-side 1000 --encoder clip_res50x4
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

# A COCO-like mix (most COCO images are 640x480 landscape, then portrait, then other sizes).
COCO_SIZES = [(480, 640)] * 6 + [(640, 480)] * 2 + [(427, 640), (500, 375)]


def make_images(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        h, w = COCO_SIZES[i % len(COCO_SIZES)]
        yy, xx = np.mgrid[0:h, 0:w] / 40.0
        f = rng.uniform(0.5, 3, size=3)
        img = 127.5 + 120 * np.sin(f[None, None, :] * (xx[..., None] + 0.7 * yy[..., None]) + np.arange(3))
        path = folder / f"COCO_bench_{i:012d}.jpg"
        Image.fromarray(img.astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def baseline(encoder, paths: list[Path], rule, device: torch.device, out: Path) -> float:
    """One image per fp32 forward, no overlap; returns images/s."""
    import h5py
    from PIL import Image

    from vln_clip.features.grid import resize_image

    start = time.perf_counter()
    with h5py.File(out, "w") as h5:
        for path in paths:
            with Image.open(path) as img:
                x = torch.from_numpy(resize_image(img, rule).copy()).permute(2, 0, 1)[None].to(device)
            with torch.no_grad():
                g = encoder(x, grid=True, pooled=False)["grid"][0].permute(1, 2, 0).float().cpu().numpy()
            h5.create_dataset(path.stem, data=g.astype(np.float16))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(paths) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="clip_res50")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, help="default: extract_grid's (8 on GPU, 1 on CPU)")
    ap.add_argument("--short-side", type=int, default=384, help="384/640 (pre-training) keeps the CPU run short")
    ap.add_argument("--long-side", type=int, default=640)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on the shared machine)")
    ap.add_argument("--repeats", type=int, default=2, help="baseline/ours pairs, alternated")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from vln_clip.encoders import get_spec, load_encoder
    from vln_clip.features.grid import GridConfig, ResolutionRule, extract_grid
    from vln_clip.features.store import FeatureStore

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rule = ResolutionRule(args.short_side, args.long_side or None, get_spec(args.encoder).stride)
    encoder = load_encoder(args.encoder, random_weights=True, device=device)
    plain = copy.deepcopy(encoder)  # the baseline's own copy: extract_grid makes its model channels-last
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_images(root / "images", args.images)
        from vln_clip.features.grid import image_size, plan_batches

        from vln_clip.features.grid import DEFAULT_GPU_BATCH

        bs = args.batch_size or (DEFAULT_GPU_BATCH if device.type == "cuda" else 1)
        batches = plan_batches({p.stem: image_size(p) for p in paths}, rule, bs)
        shapes = sorted({s for s, _ in batches})
        with torch.no_grad():  # warm-up: first-call allocations are not part of either figure
            for model in (encoder, plain):
                model(torch.zeros(1, 3, *shapes[0], dtype=torch.uint8, device=device), pooled=False)
        runs = []
        for rep in range(args.repeats):  # alternated, so load drifts hit both sides alike
            (root / "ours.h5").unlink(missing_ok=True)
            t0 = time.perf_counter()
            base = baseline(plain, paths, rule, device, root / "baseline.h5")
            t1 = time.perf_counter()
            cfg = GridConfig(encoder=args.encoder, images=root / "images", out=root / "ours.h5", rule=rule,
                             random_weights=True, batch_size=args.batch_size, device=args.device,
                             workers=args.workers, progress=False)
            extract_grid(cfg, encoder=encoder)
            t2 = time.perf_counter()
            runs.append({"baseline_img_s": round(base, 3), "ours_img_s": round(args.images / (t2 - t1), 3),
                         "ratio": round(args.images / (t2 - t1) / base, 3), "baseline_wall_s": round(t1 - t0, 1),
                         "ours_wall_s": round(t2 - t1, 1)})
        import h5py

        worst = 0.0
        with FeatureStore(root / "ours.h5") as store, h5py.File(root / "baseline.h5", "r") as ref:
            for key in store.keys():
                a, b = store.get_item(key), ref[key][()].astype(np.float32)
                worst = max(worst, float(np.abs(a - b).max() / (np.abs(b).max() + 1e-9)))
    base = float(np.mean([r["baseline_img_s"] for r in runs]))
    ours = float(np.mean([r["ours_img_s"] for r in runs]))
    res = {
        "encoder": args.encoder, "device": args.device, "images": args.images, "batch_size": bs,
        "rule": f"{args.short_side}/{args.long_side}", "input_shapes": [f"{h}x{w}" for h, w in shapes],
        "batches": [len(ks) for _, ks in batches],
        "torch_threads": args.threads, "workers": args.workers,
        "baseline_img_s": round(base, 3), "ours_img_s": round(ours, 3), "speedup": round(ours / base, 3),
        "runs": runs,
        "max_rel_diff": worst, "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
