"""End-to-end feature extraction throughput vs the reference-script baseline, side by side.

Baseline (how the reference feature scripts work): for each panorama, decode its skybox,
produce the 36 views one by one at 640x480 (here with the same renderer, one view per call,
standing in for MatterSim's per-view render), run CLIP's PIL preprocessing on each image
(resize 224 bicubic, center crop, to-tensor, normalize), one forward pass of 36 images in
fp32, write. Ours: :func:`vln_clip.features.extract.run_extraction` (batched panoramas,
decoding in DataLoader workers, views rendered in one ``grid_sample``, autocast on GPU).
Also reported: the encoder alone on random tensors at the same batch size (the ceiling).

Both use the same encoder instance, the same panoramas and the same process. Panoramas are
synthetic 512-pixel skybox strips (MatterSim's ``_skybox_small.jpg`` size) so JPEG decoding
costs what it costs on the real data.

    python benchmarks/bench_extract.py                       # CPU: clip_res50, 4 panoramas
    python benchmarks/bench_extract.py --encoder clip_res50x4 --panoramas 64 --batch-panoramas 16
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def make_world(root: Path, n: int, face_size: int) -> tuple[Path, Path, list[str]]:
    from helpers import write_connectivity

    from vln_clip.features.views import CANONICAL_ROTATION, skybox_from_function, write_skybox

    conn, sky = root / "connectivity", root / "scans"
    ids = write_connectivity(conn, "benchScan", [(float(i), 0.0, 1.5) for i in range(n)],
                             [(i, i + 1) for i in range(n - 1)])
    data = json.loads((conn / "benchScan_connectivity.json").read_text())
    rng = np.random.default_rng(0)
    for k, item in enumerate(data):
        a = rng.uniform(0, 2 * math.pi)
        rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        rot = rz @ CANONICAL_ROTATION
        pose = np.eye(4)
        pose[:3, :3] = rot
        pose[:3, 3] = item["pose"][3], item["pose"][7], item["pose"][11]
        item["pose"] = pose.reshape(-1).tolist()
        freq = rng.uniform(3, 9, size=3)

        def colour(d: np.ndarray, f: np.ndarray = freq) -> np.ndarray:  # textured, so JPEGs are realistic
            return 127.5 + 120 * np.sin(f[None, None, None, :] * d + np.arange(3))

        write_skybox(sky / "benchScan" / "matterport_skybox_images", ids[k],
                     skybox_from_function(colour, face_size, rot), strip=True, quality=90)
    (conn / "benchScan_connectivity.json").write_text(json.dumps(data))
    return conn, sky, ids


def baseline(encoder, conn: Path, sky: Path, ids: list[str], device: torch.device) -> float:
    """Reference-script style: one panorama (36 images) per fp32 forward, no overlap. Returns img/s."""
    from PIL import Image

    from vln_clip.features.views import (ViewSpec, faces_to_strip, load_skybox, read_pano_rotations,
                                         render_skybox, view_rays)
    from vln_clip.geometry import view_angles

    spec = ViewSpec()
    rots = read_pano_rotations(conn, "benchScan")
    size = encoder.input_size
    mean = torch.tensor(encoder.spec.mean).view(3, 1, 1)
    std = torch.tensor(encoder.spec.std).view(3, 1, 1)
    rays = [view_rays([view_angles(i)[0]], [view_angles(i)[1]], spec) for i in range(36)]
    start = time.perf_counter()
    for vp in ids:
        faces = torch.from_numpy(load_skybox(sky, "benchScan", vp)).permute(0, 3, 1, 2)[None]
        strip = faces_to_strip(faces)
        rot = torch.tensor(rots[vp], dtype=torch.float32)[None]
        images = []
        for ix in range(36):  # one simulator frame per view
            frame = render_skybox(strip, rot, rays[ix])[0, 0].permute(1, 2, 0).numpy()
            img = Image.fromarray(frame)
            w, h = img.size
            img = img.resize((int(size * w / h), size), Image.BICUBIC)
            left = int(round((img.size[0] - size) / 2.0))
            img = img.crop((left, 0, left + size, size))
            t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
            images.append((t - mean) / std)
        with torch.no_grad():
            feats = encoder(torch.stack(images).to(device), normalized=True, grid=False)["pooled"]
        feats.cpu().numpy()
    return 36 * len(ids) / (time.perf_counter() - start)


def encoder_alone(encoder, batch: int, device: torch.device, precision: str, repeats: int) -> float:
    from vln_clip.features.extract import autocast_context

    x = torch.rand(batch, 3, encoder.input_size, encoder.input_size, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), autocast_context(device, precision):
        encoder(x, normalized=True, grid=False)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            encoder(x, normalized=True, grid=False)["pooled"].float().cpu()
    return batch * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="clip_res50")
    ap.add_argument("--panoramas", type=int, default=4)
    ap.add_argument("--batch-panoramas", type=int, default=2)
    ap.add_argument("--face-size", type=int, default=512)
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--weights", default=None, help="checkpoint (default: random weights; speed is the same)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from vln_clip.encoders import load_encoder
    from vln_clip.features.extract import ExtractConfig, pick_device, run_extraction

    device = pick_device(args.device)
    torch.manual_seed(0)
    encoder = load_encoder(args.encoder, weights=args.weights, random_weights=args.weights is None, device=device)
    if device.type == "cuda":
        encoder.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    res: dict = {"encoder": args.encoder, "device": str(device), "panoramas": args.panoramas,
                 "batch_panoramas": args.batch_panoramas, "threads": torch.get_num_threads(),
                 "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        conn, sky, ids = make_world(Path(tmp), args.panoramas, args.face_size)
        res["world_s"] = round(time.perf_counter() - t0, 2)
        if not args.skip_baseline:
            res["baseline_img_s"] = baseline(encoder, conn, sky, ids, device)
        for render in ("full", "crop"):
            cfg = ExtractConfig(encoder=args.encoder, skybox_dir=sky, connectivity_dir=conn,
                                out=Path(tmp) / f"{render}.h5", random_weights=args.weights is None,
                                weights=args.weights, batch_panoramas=args.batch_panoramas, render=render,
                                device=str(device), precision=args.precision, workers=args.workers,
                                progress=False)
            start = time.perf_counter()
            run_extraction(cfg, encoder=encoder)
            res[f"ours_{render}_img_s"] = 36 * args.panoramas / (time.perf_counter() - start)
        res["encoder_alone_img_s"] = encoder_alone(encoder, 36 * args.batch_panoramas, device, args.precision,
                                                   repeats=max(1, args.panoramas // args.batch_panoramas))
    if "baseline_img_s" in res:
        res["speedup_full"] = res["ours_full_img_s"] / res["baseline_img_s"]
        res["speedup_crop"] = res["ours_crop_img_s"] / res["baseline_img_s"]
    res["full_vs_encoder_alone"] = res["ours_full_img_s"] / res["encoder_alone_img_s"]
    res = {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}
    print(json.dumps(res, indent=1))
    print(f"\n| {args.encoder} on {device} | images/s |\n|---|---|")
    if "baseline_img_s" in res:
        print(f"| baseline (1 panorama/forward, fp32, no overlap) | {res['baseline_img_s']:.1f} |")
    print(f"| vln-clip extract, render full | {res['ours_full_img_s']:.1f} |")
    print(f"| vln-clip extract, render crop | {res['ours_crop_img_s']:.1f} |")
    print(f"| encoder alone | {res['encoder_alone_img_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
