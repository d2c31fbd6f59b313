"""``vln-clip features``: encoders, the 36 discretized views, CLIP feature extraction (panoramas, and
grid / pooled features of any image folder), TSV conversion."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_encoder_argument, add_parser


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "features", "views and CLIP feature extraction",
                   ["vln-clip features encoders",
                    "vln-clip features views --skybox-dir v1/scans --connectivity connectivity "
                    "--scan 17DRP5sb8fy --viewpoint 10c252c90fa24ef3b698c6f54d984c5c --out views/",
                    "vln-clip features extract --encoder clip_res50x4 --source skybox --skybox-dir v1/scans "
                    "--connectivity connectivity --out data/features/clip_res50x4.h5",
                    "torchrun --nproc-per-node 4 -m vln_clip.cli.main features extract --encoder clip_res50x4 "
                    "--skybox-dir v1/scans --connectivity connectivity --out data/features/clip_res50x4.h5",
                    "vln-clip features convert --tsv CLIP-ResNet-50x4-views.tsv --out clip_res50x4.h5 "
                    "--encoder clip_res50x4"])
    fsub = p.add_subparsers(dest="features_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 1)[1])

    e = add_parser(fsub, "encoders", "list the encoder registry (dims, input sizes, weight files)",
                   ["vln-clip features encoders", "vln-clip features encoders --json"])
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=_encoders)

    v = add_parser(fsub, "views", "write the 36 discretized views of one panorama as PNGs (00.png..35.png)",
                   ["vln-clip features views --skybox-dir v1/scans --connectivity connectivity --scan S "
                    "--viewpoint V --out views/",
                    "vln-clip features views --skybox-dir v1/scans --scan S --viewpoint V --out views/ "
                    "--width 320 --height 240"],
                   description="Render the 36 views MatterSim's discretized mode sees (view i: heading "
                               "(i mod 12)*30 deg, elevation (i//12-1)*30 deg) and write them as <i>.png. The "
                               "panorama's pose rotation comes from --connectivity; without it the "
                               "canonical orientation (skybox face 1 at heading 0) is assumed.")
    v.add_argument("--skybox-dir", required=True, type=Path,
                   help="folder holding <scan>/matterport_skybox_images (Matterport's v1/scans layout)")
    v.add_argument("--scan", required=True)
    v.add_argument("--viewpoint", required=True)
    v.add_argument("--out", required=True, type=Path, help="output folder")
    v.add_argument("--connectivity", type=Path, help="connectivity folder (pose rotation of the panorama; "
                                                      "default $MATTERPORT_CONNECTIVITY)")
    v.add_argument("--source", choices=("skybox", "equirect", "mattersim"), default="skybox")
    _view_args(v)
    v.set_defaults(func=_views)

    x = add_parser(fsub, "extract", "extract per-view features of every panorama into an HDF5 store",
                   ["vln-clip features extract --encoder clip_res50x4 --source skybox --skybox-dir v1/scans "
                    "--connectivity connectivity --out data/features/clip_res50x4.h5",
                    "vln-clip features extract --encoder clip_res50 --skybox-dir v1/scans --connectivity "
                    "connectivity --out f.h5 --random-weights --scans 17DRP5sb8fy",
                    "torchrun --nproc-per-node 8 -m vln_clip.cli.main features extract --encoder clip_res50x4 "
                    "--skybox-dir v1/scans --connectivity connectivity --out clip_res50x4.h5 --bgr"],
                   description="Batched, mixed-precision, resumable extraction: re-running after a kill "
                               "continues where it stopped; under torchrun every rank takes a slice and "
                               "rank 0 builds the store at the end.")
    add_encoder_argument(x, required=True)
    x.add_argument("--source", choices=("skybox", "equirect", "mattersim"), default="skybox")
    x.add_argument("--skybox-dir", type=Path, help="folder holding <scan>/matterport_skybox_images "
                                                    "(and <scan>/equirect_images for --source equirect)")
    x.add_argument("--connectivity", required=True, type=Path, help="Matterport connectivity folder")
    x.add_argument("--out", required=True, type=Path, help="output .h5 feature store")
    w = x.add_mutually_exclusive_group()
    w.add_argument("--weights", help="checkpoint file or open_clip tag (default: the encoder's "
                                     "default tag from the local cache)")
    w.add_argument("--random-weights", action="store_true",
                   help="untrained encoder, on purpose (recorded as weights='random')")
    x.add_argument("--batch-panoramas", type=int, default=8, help="panoramas per forward pass (36 images each)")
    x.add_argument("--image-size", type=int, help="encoder input size (default: the encoder's native size)")
    x.add_argument("--bgr", action="store_true",
                   help="feed BGR views, reproducing the channel order of the published CLIP-ViL features")
    x.add_argument("--render", choices=("full", "crop"), default="full",
                   help="full: 640x480 views then CLIP resize+center crop; crop: render the kept window "
                        "directly at the input size (faster, slightly different resampling)")
    x.add_argument("--face-size", type=int, default=512,
                   help="reduce larger skybox faces to this size first (512 = what MatterSim reads; 0 keeps them)")
    x.add_argument("--scans", nargs="+", help="only these scans")
    x.add_argument("--limit", type=int, help="only the first N panoramas")
    x.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the rank's GPU if any)")
    x.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto = bf16 (fp16 without bf16 support) on GPU, fp32 on CPU")
    x.add_argument("--workers", type=int, help="image decoding worker processes")
    x.add_argument("--l2-normalize", action="store_true", help="store L2-normalized features")
    x.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    x.add_argument("--no-progress", action="store_true")
    _view_args(x)
    x.set_defaults(func=_extract)

    g = add_parser(fsub, "grid", "grid (or pooled) features of a folder of images, keyed by file stem",
                   ["vln-clip features grid --encoder clip_res50 --images coco/train2014 --out "
                    "data/features/grid_clip_res50_train2014.h5",
                    "vln-clip features grid --encoder clip_res50x4 --images coco/val2014 --out grid_val.h5 "
                    "--preset pretrain   # shorter side 384, longer at most 640",
                    "vln-clip features grid --encoder clip_vit_b32 --images synth_vl/images --out g.h5 "
                    "--random-weights --device cpu",
                    "vln-clip features grid --encoder clip_res50 --images coco/val2014 --out pooled.h5 --pooled",
                    "torchrun --nproc-per-node 8 -m vln_clip.cli.main features grid --encoder clip_res50x4 "
                    "--images coco/train2014 --out grid_train.h5"],
                   description="CLIP-ResNet layer4 maps before the attention pool (RN50/RN101 2048 channels, "
                               "RN50x4 2560), CLIP-ViT final-layer patch tokens in grid order, or "
                               "ImageNet-ResNet-152 C5, one entry per image keyed by its file stem, "
                               "[H', W', C] (ResNets) or [N, C] (ViT) float16. Resolution as in the paper: "
                               "shorter side 600, longer at most 1000 (VQA, captioning; Jiang et al.), "
                               "384/640 for pre-training; aspect ratio kept, both sides snapped down to a "
                               "multiple of 32. Images of one input shape are batched together; finished "
                               "batches are journaled, so re-running after a kill resumes; under torchrun "
                               "every rank takes a slice and rank 0 builds the store. --pooled stores the "
                               "[D] embedding instead (default: CLIP's centre crop at the encoder's input "
                               "size). On CPU the expected time is printed after the first batch.")
    add_encoder_argument(g, required=True)
    g.add_argument("--images", required=True, type=Path, help="folder holding the .jpg/.jpeg/.png images "
                                                               "(keys are file stems)")
    g.add_argument("--out", required=True, type=Path, help="output .h5 feature store")
    gw = g.add_mutually_exclusive_group()
    gw.add_argument("--weights", help="checkpoint file or open_clip tag (default: the encoder's default tag "
                                      "from the local cache)")
    gw.add_argument("--random-weights", action="store_true",
                    help="untrained encoder, on purpose (recorded as weights='random')")
    g.add_argument("--pooled", action="store_true", help="store the pooled [D] embedding per image instead of a grid")
    g.add_argument("--short-side", type=int, help="shorter side in pixels (default 600; --pooled: the "
                                                  "encoder's input size with a centre crop)")
    g.add_argument("--long-side", type=int, help="longer side at most this (default 1000; 0 = no limit)")
    g.add_argument("--preset", help="the paper's resolutions by name: vqa / captioning = 600/1000, "
                                    "pretrain = 384/640")
    g.add_argument("--crop", action=argparse.BooleanOptionalAction, default=None,
                   help="centre-crop to a --short-side square (CLIP's preprocessing; default: on with "
                        "--pooled, off for grids)")
    g.add_argument("--batch-size", type=int, help="images per forward pass (default 8 on GPU, 1 on CPU, "
                                                  "where batching was measured slower)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the rank's GPU if any)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto = bf16 (fp16 without bf16 support) on GPU, fp32 on CPU")
    g.add_argument("--workers", type=int, help="image decoding worker processes")
    g.add_argument("--limit", type=int, help="only the first N images (by key)")
    g.add_argument("--l2-normalize", action="store_true", help="--pooled: store L2-normalized embeddings")
    g.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    g.add_argument("--no-progress", action="store_true")
    g.set_defaults(func=_grid)

    m = add_parser(fsub, "merge", "build a store from an unfinished/sharded run's journal and shard files",
                   ["vln-clip features merge --out clip_res50x4.h5",
                    "vln-clip features merge --out all.h5 --inputs part0.h5 part1.h5"])
    m.add_argument("--out", required=True, type=Path)
    m.add_argument("--inputs", nargs="*", type=Path, default=[], help="more stores or journal folders")
    m.set_defaults(func=_merge)

    i = add_parser(fsub, "info", "show a feature store's size and attributes (encoder, weights, bgr ...)",
                   ["vln-clip features info data/features/clip_res50x4.h5",
                    "vln-clip features info clip_res50x4.h5 --json"])
    i.add_argument("store", type=Path)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_info)

    c = add_parser(fsub, "convert", "convert an EnvDrop/CLIP-ViL feature TSV into an HDF5 store",
                   ["vln-clip features convert --tsv ResNet-152-imagenet.tsv --out imagenet_res152.h5 "
                    "--encoder imagenet_res152",
                    "vln-clip features convert --tsv CLIP-ResNet-50x4-views.tsv --out clip_res50x4.h5 "
                    "--encoder clip_res50x4 --bgr"])
    c.add_argument("--tsv", required=True, type=Path)
    c.add_argument("--out", required=True, type=Path)
    add_encoder_argument(c, help="check the dimension against this encoder (registry name or ENC.pt) and record "
                                 "it; --encoder-checkpoint is the same option")
    c.add_argument("--bgr", action="store_true", help="record that the features were computed on BGR "
                                                      "views (true for the published CLIP-ViL files)")
    c.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    c.set_defaults(func=_convert)

    q = add_parser(fsub, "pca", "reduce a store to its principal components, fitted on the training scans",
                   ["vln-clip features pca --features data/features/clip_vit_b32.h5 --fit-split "
                    "data/r2r/R2R_train.json --dim 64 --out data/features/clip_vit_b32_pca64.h5",
                    "vln-clip features pca --features f.h5 --fit-scans 17DRP5sb8fy,1LXtFkjw3qL --dim 128 "
                    "--out f_pca128.h5 --no-whiten"],
                   description="Fits PCA (whitened by default) on every view of the scans of --fit-split "
                               "(or --fit-scans) only, so nothing of val/test leaks into the projection, "
                               "and projects every viewpoint of the store. The new store keeps the "
                               "encoder name and records the projection in pca_* attributes. Use it "
                               "with `vln-clip train --features OUT.h5`.")
    q.add_argument("--features", required=True, type=Path, help="source feature store (.h5)")
    q.add_argument("--out", required=True, type=Path)
    q.add_argument("--dim", type=int, default=64, help="components to keep (default 64)")
    fit = q.add_mutually_exclusive_group(required=True)
    fit.add_argument("--fit-split", type=Path, help="R2R/RxR split file whose scans fit the projection "
                                                   "(the training split)")
    fit.add_argument("--fit-scans", help="comma-separated scan ids that fit the projection")
    q.add_argument("--no-whiten", action="store_true", help="keep the components' variances")
    q.set_defaults(func=_pca)


def _view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=int, default=640, help="view width (default 640)")
    p.add_argument("--height", type=int, default=480, help="view height (default 480)")
    p.add_argument("--vfov", type=float, default=60.0, help="vertical field of view in degrees (default 60)")


def _encoders(args: argparse.Namespace) -> int:
    from vln_clip.encoders import describe, encoder_names

    rows = [describe(n) for n in encoder_names()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'name':<16} {'paper':<15} {'input':>5} {'pooled':>6} {'grid C':>6} {'grid':>5}  weights file")
    for r in rows:
        print(f"{r['name']:<16} {r['paper']:<15} {r['input']:>5} {r['pooled_dim']:>6} {r['grid_channels']:>6} "
              f"{r['native_grid']:>5}  {r['weights_file']}")
    return 0


def _views(args: argparse.Namespace) -> int:
    import os
    import sys

    from vln_clip.errors import DataError
    from vln_clip.features.views import (CANONICAL_ROTATION, ViewSpec, panorama_views, read_pano_rotations,
                                         write_view_pngs)

    rotation = CANONICAL_ROTATION
    if not args.connectivity and os.environ.get("MATTERPORT_CONNECTIVITY"):
        args.connectivity = Path(os.environ["MATTERPORT_CONNECTIVITY"])
    if not args.connectivity:
        print("note: no --connectivity (or $MATTERPORT_CONNECTIVITY): assuming the canonical panorama "
              "orientation (skybox face 1 at heading 0); real Matterport panoramas need their pose",
              file=sys.stderr)
    else:
        rotations = read_pano_rotations(args.connectivity, args.scan)
        if args.viewpoint not in rotations:
            raise DataError(f"{args.connectivity}/{args.scan}_connectivity.json: no viewpoint {args.viewpoint}")
        rotation = rotations[args.viewpoint]
    spec = ViewSpec(args.width, args.height, args.vfov)
    views = panorama_views(args.source, args.scan, args.viewpoint, rotation, spec, args.skybox_dir,
                           args.connectivity)
    paths = write_view_pngs(views, args.out)
    print(f"wrote {len(paths)} views ({spec.width}x{spec.height}, VFOV {spec.vfov_deg:g}) to {args.out}/"
          f"00.png .. 35.png (view i: heading (i%12)*30, elevation (i//12-1)*30 degrees)")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from vln_clip.features.extract import ExtractConfig, run_extraction
    from vln_clip.features.store import FeatureStore
    from vln_clip.features.views import ViewSpec

    cfg = ExtractConfig(
        encoder=args.encoder, skybox_dir=args.skybox_dir, connectivity_dir=args.connectivity, out=args.out,
        source=args.source, weights=args.weights, random_weights=args.random_weights,
        batch_panoramas=args.batch_panoramas, image_size=args.image_size,
        view=ViewSpec(args.width, args.height, args.vfov), bgr=args.bgr, render=args.render,
        face_size=args.face_size or None, scans=args.scans, limit=args.limit, device=args.device,
        precision=args.precision, workers=args.workers, l2_normalize=args.l2_normalize, dtype=args.dtype,
        progress=not args.no_progress)
    out = run_extraction(cfg)
    if out.exists():
        with FeatureStore(out) as store:
            print(f"{out}: {len(store)} viewpoints x 36 views x {store.dim} ({store.encoder}, "
                  f"weights {store.weights})")
    return 0


def _grid(args: argparse.Namespace) -> int:
    from vln_clip.encoders import get_spec
    from vln_clip.errors import DataError
    from vln_clip.features.grid import RESOLUTION_PRESETS, GridConfig, ResolutionRule, default_rule, extract_grid
    from vln_clip.features.store import FeatureStore

    for flag, value in (("--short-side", args.short_side), ("--long-side", args.long_side)):
        if value is not None and value < 0 or (flag == "--short-side" and value == 0):
            raise DataError(f"{flag} {value}: must be a positive number of pixels"
                            + (" (--long-side 0 means no cap)" if flag == "--long-side" else ""))
    rule = default_rule(args.encoder, args.pooled)
    crop = rule.crop if args.crop is None else args.crop
    if args.preset:
        if args.preset not in RESOLUTION_PRESETS:
            raise DataError(f"--preset {args.preset!r}: choose one of {', '.join(sorted(RESOLUTION_PRESETS))}")
        if args.short_side or args.long_side is not None:
            raise DataError("pass either --preset or --short-side/--long-side, not both")
        short, long = RESOLUTION_PRESETS[args.preset]
        rule = ResolutionRule(short, long, rule.stride, crop=bool(args.crop))
    elif args.short_side or args.long_side is not None or crop != rule.crop:
        long = rule.long_side if args.long_side is None else (args.long_side or None)
        rule = ResolutionRule(args.short_side or rule.short_side, long, get_spec(args.encoder).stride, crop=crop)
    cfg = GridConfig(encoder=args.encoder, images=args.images, out=args.out, rule=rule, weights=args.weights,
                     random_weights=args.random_weights, pooled=args.pooled, l2_normalize=args.l2_normalize,
                     batch_size=args.batch_size, limit=args.limit, device=args.device, precision=args.precision,
                     workers=args.workers, dtype=args.dtype, progress=not args.no_progress)
    out = extract_grid(cfg)
    with FeatureStore(out) as store:
        what = f"[{store.dim}] embeddings" if store.kind == "pooled" else f"{store.grid_layout} grids x {store.dim}"
        print(f"{out}: {len(store)} images, {what} ({store.encoder}, weights {store.weights}, "
              f"short side {store.attrs['short_side']}, long side {store.attrs['long_side'] or 'unlimited'})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from vln_clip.features.store import FeatureStore, journal_dir

    with FeatureStore(args.store) as store:
        if store.kind == "pano":
            info = {"path": str(args.store), "viewpoints": len(store),
                    "scans": len({k.split("_", 1)[0] for k in store.keys()})}
        else:
            info = {"path": str(args.store), "images": len(store)}
        info.update({"kind": store.kind, "dim": store.dim,
                     **{k: v for k, v in store.attrs.items() if k not in ("dim", "kind")}})
    pending = journal_dir(args.store)
    if pending.exists():
        info["unfinished_journal"] = str(pending)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        for k, v in info.items():
            print(f"{k:<20} {v}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from vln_clip.features.extract import merge

    n = merge(args.out, args.inputs)
    print(f"{args.out}: {n} viewpoints")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from vln_clip.features.tsv import convert_tsv

    n = convert_tsv(args.tsv, args.out, encoder=args.encoder, dtype=args.dtype, bgr=args.bgr or None)
    print(f"{args.out}: {n} viewpoints converted from {args.tsv}")
    return 0


def _pca(args: argparse.Namespace) -> int:
    from vln_clip.episodes import read_episodes
    from vln_clip.features.pca import write_pca_store

    if args.fit_split is not None:
        scans = sorted({e.scan for e in read_episodes(args.fit_split)})
    else:
        scans = [s.strip() for s in args.fit_scans.split(",") if s.strip()]
    proj = write_pca_store(args.features, args.out, scans, args.dim, whiten=not args.no_whiten)
    print(f"{args.out}: {args.dim} components of {args.features} fitted on {len(scans)} scans "
          f"({proj.fitted_views} views), {100 * proj.explained:.1f}% of the variance")
    return 0
