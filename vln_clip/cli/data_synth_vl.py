"""`vln-clip data synth-vl`: images, questions, captions and hypotheses from a synthetic world."""

from __future__ import annotations

import argparse
import json

from .common import add_parser, positive_int


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(
        sub, "synth-vl",
        "render perspective images of a synthetic world's houses and write VQA v2, COCO captions + "
        "Karpathy split, GQA, SNLI-VE and the LXMERT pre-training mix for them (split by house)",
        ["vln-clip data synth --out /tmp/w && vln-clip data synth-vl --world /tmp/w --out /tmp/vl",
         "vln-clip data synth-vl --world /tmp/w --out /tmp/vl --images-per-house 60 --seed 1",
         "vln-clip data synth-vl --world /tmp/w --out /tmp/vl --sizes 320x240,240x320 --contact-sheet sheet.png",
         "vln-clip data synth-vl --world /tmp/w --out /tmp/vl --stats --json"],
        description=(
            "Render perspective images (several sizes and aspect ratios) from the skyboxes of a world made by "
            "`vln-clip data synth`, describe what each shows from the exact geometry (room, objects, colours, "
            "counts, left/right), and write DIR/images, DIR/scenes.json, DIR/vqa, DIR/coco, DIR/gqa, "
            "DIR/snli_ve, DIR/lxmert and DIR/vl_world.json (see docs/vl-data.md). The world's train houses give "
            "the train images, val_unseen gives val and test gives test. Deterministic for a seed; rerunning "
            "with the same options returns at once (use --force to regenerate)."))
    p.add_argument("--world", required=True, help="a world folder made by `vln-clip data synth` (with images)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--images-per-house", type=positive_int, default=40, dest="images_per_house",
                   help="images per house (default 40)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated WIDTHxHEIGHT image sizes drawn per image (default "
                        "320x240,480x360,448x252,288x288,240x320,160x120: 4:3, 16:9, 1:1, portrait)")
    p.add_argument("--fov", type=float, default=75.0, help="field of view across the longer side, degrees (default 75)")
    p.add_argument("--vqa-per-image", type=positive_int, default=8, dest="vqa_per_image",
                   help="VQA questions per image (default 8)")
    p.add_argument("--gqa-per-image", type=positive_int, default=5, dest="gqa_per_image",
                   help="GQA questions per image (default 5)")
    p.add_argument("--snli-per-image", type=positive_int, default=6, dest="snli_per_image",
                   help="SNLI-VE hypotheses per image (default 6, two per label)")
    p.add_argument("--visual7w-per-image", type=int, default=0, dest="visual7w_per_image",
                   help="pre-training-only questions per train/val image, in the LXMERT mix only (source visual7w, "
                        "as LXMERT's Visual Genome QA; half VQA-, half GQA-style); default 0")
    p.add_argument("--jpeg-quality", type=int, default=90, dest="jpeg_quality", help="JPEG quality (default 90)")
    p.add_argument("--contact-sheet", default=None, dest="contact_sheet", metavar="PNG",
                   help="also write a PNG of some val images with their questions, answers and captions")
    p.add_argument("--stats", action="store_true",
                   help="print statistics: questions per type, answers, the question-type prior's VQA accuracy")
    p.add_argument("--probe", action="store_true",
                   help="also train two small MLPs (question only; question + 16x16 thumbnail) on train and print "
                        "their VQA accuracy on val: is the VQA learnable from pixels? (about a minute of CPU)")
    p.add_argument("--force", action="store_true", help="regenerate even when DIR/vl_world.json matches")
    p.add_argument("--json", action="store_true", help="print the summary (and --stats) as one JSON object")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import os
    import time

    # One image at a time: more torch threads only contend (the pixels are the same either way).
    # Set before the library (and with it torch) is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from vln_clip.io import read_json
    from vln_clip.synth.vl import DEFAULT_SIZES, VLConfig, generate_vl_world, parse_sizes, vl_statistics

    cfg = VLConfig(seed=args.seed, images_per_house=args.images_per_house,
                   sizes=parse_sizes(args.sizes) if args.sizes else DEFAULT_SIZES, fov_deg=args.fov,
                   vqa_per_image=args.vqa_per_image, gqa_per_image=args.gqa_per_image,
                   snli_per_image=args.snli_per_image, jpeg_quality=args.jpeg_quality,
                   visual7w_per_image=args.visual7w_per_image)
    t0 = time.perf_counter()
    paths = generate_vl_world(args.world, args.out, cfg, force=args.force, progress=not args.json)
    elapsed = time.perf_counter() - t0
    summary = read_json(paths.vl_world, "synthetic V&L world summary")
    sheet = None
    if args.contact_sheet:
        from vln_clip.synth.vl_sheet import contact_sheet

        sheet = str(contact_sheet(paths.root, args.contact_sheet))
    stats = vl_statistics(paths.root) if args.stats else None
    probed = None
    if args.probe:
        from vln_clip.synth.vl_probe import probe

        probed = probe(paths.root)
    if args.json:
        out = {"out": str(paths.root), "seconds": round(elapsed, 2), "cached": not paths.timings,
               "counts": summary["counts"], "splits": summary["splits"]}
        if sheet:
            out["contact_sheet"] = sheet
        if stats:
            out["stats"] = stats
        if probed:
            out["probe"] = probed
        print(json.dumps(out))
        return 0
    counts = summary["counts"]
    state = "found (cached)" if not paths.timings else f"generated in {elapsed:.1f} s"
    print(f"synthetic V&L world {state}: {paths.root}")
    for split in ("train", "val", "test"):
        print(f"  {split:<5}  {counts['houses'][split]:>3} houses  {counts['images'][split]:>5} images  "
              f"{counts['vqa_questions'][split]:>6} VQA  {counts['captions'][split]:>6} captions  "
              f"{counts['gqa_questions'][split]:>6} GQA  {counts['snli_ve_pairs'][split]:>6} SNLI-VE")
    if sheet:
        print(f"  contact sheet {sheet}")
    if stats:
        prior = stats["vqa"]["prior"]
        print(f"  VQA prior (majority answer per question type, {prior['from']} -> {prior['on']}): "
              f"{prior['accuracy']:.2f}%  (yes/no {prior['per_answer_type'].get('yes/no', 0):.2f}, "
              f"number {prior['per_answer_type'].get('number', 0):.2f}, other {prior['per_answer_type'].get('other', 0):.2f})")
        for split, s in stats["vqa"].items():
            if split in ("train", "val", "test"):
                print(f"  {split:<5}  question types: " + ", ".join(f"{k} {v}" for k, v in s["question_types"].items()))
    if probed:
        print(f"  probe (VQA accuracy on val, {probed['epochs']} epochs): question only "
              f"{probed['question_only']['accuracy']:.2f}%, question + {probed['thumbnail']} thumbnail "
              f"{probed['question_and_image']['accuracy']:.2f}%")
    return 0
