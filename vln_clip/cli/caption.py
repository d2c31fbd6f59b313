"""``vln-clip caption``: train, evaluate and predict image captions."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_parser


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "caption", "image captioning over grid features",
                   ["vln-clip caption train --data synth_vl/ --features grid.h5 --out runs/cap_xe",
                    "vln-clip caption train --data synth_vl/ --features grid.h5 --scst-from runs/cap_xe/best.pt "
                    "--out runs/cap_scst",
                    "vln-clip caption predict --checkpoint runs/cap_scst/best.pt --features grid.h5 --data synth_vl/ "
                    "--images-from val --out preds_val.json --beam 5",
                    "vln-clip caption eval --captions synth_vl/coco/captions_val.json --preds preds_val.json --json"])
    csub = p.add_subparsers(dest="caption_command", metavar="CAPTION_COMMAND")
    p.set_defaults(func=lambda a: p.print_help() or 1)

    t = add_parser(csub, "train", "train the Transformer captioner: cross-entropy, or SCST from a checkpoint",
                   ["vln-clip caption train --data synth_vl/ --features grid.h5 --out runs/cap_xe --iters 3000",
                    "vln-clip caption train --data synth_vl/ --features grid.h5 --scst-from runs/cap_xe/best.pt "
                    "--out runs/cap_scst --iters 1000 --lr 2e-5",
                    "vln-clip caption train ... --out runs/cap_xe --resume   # continue after a kill"])
    t.add_argument("--data", required=True, help="folder with coco/dataset_coco.json (or the Karpathy file)")
    t.add_argument("--features", required=True, metavar="H5", help="grid feature store of the images")
    t.add_argument("--out", required=True, metavar="RUN", help="run folder (last.pt, best.pt, tb/, curves.png)")
    t.add_argument("--scst-from", metavar="CKPT", help="stage 2: self-critical training from this XE checkpoint")
    t.add_argument("--preset", choices=("tiny", "recipe"), default="tiny",
                   help="model size: recipe = 6+6 layers, d_model 512 (self-critical.pytorch); tiny for CPU")
    t.add_argument("--iters", type=int, default=3000)
    t.add_argument("--batch-size", type=int, default=32, help="images per update (default 32)")
    t.add_argument("--lr", type=float, default=None, help="default 5e-4 (XE), 2e-5 (SCST)")
    t.add_argument("--warmup", type=int, default=0, help="linear warm-up updates")
    t.add_argument("--schedule", choices=("constant", "linear", "cosine"), default="constant")
    t.add_argument("--label-smoothing", type=float, default=0.0)
    t.add_argument("--scst-samples", type=int, default=5)
    t.add_argument("--scst-baseline", choices=("mean", "greedy"), default="mean",
                   help="mean of the other samples (new self-critical, default) or the greedy caption's reward")
    t.add_argument("--temperature", type=float, default=1.0, help="SCST sampling temperature")
    t.add_argument("--min-count", type=int, default=5, help="vocabulary: words seen this often in train")
    t.add_argument("--max-len", type=int, default=16)
    t.add_argument("--val-images", type=int, default=None, help="validate on the first N val images")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--save-every", type=int, default=500)
    t.add_argument("--log-every", type=int, default=50)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--resume", action="store_true", help="continue RUN/last.pt bit for bit")
    t.add_argument("--no-preload", action="store_true", help="read features per batch instead of into memory")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.set_defaults(func=_train)

    e = add_parser(csub, "eval", "leaderboard caption metrics (pycocoevalcap + PTB tokenizer; needs Java)",
                   ["vln-clip caption eval --captions captions_val.json --preds preds_val.json --json"])
    e.add_argument("--captions", required=True, help="COCO captions file with the references")
    e.add_argument("--preds", required=True, help="results file [{\"image_id\", \"caption\"}]")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.set_defaults(func=_eval)

    r = add_parser(csub, "predict", "captions of a split in the COCO results format (model or baseline)",
                   ["vln-clip caption predict --checkpoint runs/cap/best.pt --features grid.h5 --data synth_vl/ "
                    "--images-from val --out preds.json --beam 5",
                    "vln-clip caption predict --baseline nearest --features grid.h5 --data synth_vl/ "
                    "--images-from val --out nn.json",
                    "vln-clip caption predict --check preds.json --captions captions_val.json"])
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="CKPT", help="a `caption train` checkpoint (RUN/best.pt)")
    src.add_argument("--baseline", choices=("nearest", "constant"), help="nearest-neighbour or constant caption")
    src.add_argument("--check", metavar="PREDS", help="only validate this results file (with --captions: "
                                                       "every image once); exit 0 when valid")
    r.add_argument("--features", metavar="H5", help="grid store (or a pooled store for --baseline nearest)")
    r.add_argument("--data", help="folder with coco/dataset_coco.json (split names, baseline training captions)")
    r.add_argument("--images-from", metavar="SPLIT", help="Karpathy split (val, test) or a COCO captions file")
    r.add_argument("--captions", help="with --check: the COCO captions file whose images must all be predicted")
    r.add_argument("--out", help="results file to write")
    r.add_argument("--decoder", choices=("beam", "greedy", "sample"), default="beam")
    r.add_argument("--beam", type=int, default=5, help="beam size (default 5, as in the paper)")
    r.add_argument("--length-norm", type=float, default=0.0,
                   help="rank finished beams by logp / length**ALPHA (0 = raw sum, the default)")
    r.add_argument("--temperature", type=float, default=1.0, help="--decoder sample")
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=_predict)

    x = add_parser(csub, "examples", "picture of example images with their greedy and beam captions",
                   ["vln-clip caption examples --checkpoint runs/cap/best.pt --features grid.h5 --data synth_vl/ "
                    "--out docs/img/captions.png"])
    x.add_argument("--checkpoint", required=True)
    x.add_argument("--features", required=True)
    x.add_argument("--data", required=True, help="the V&L folder (images/ and coco/dataset_coco.json)")
    x.add_argument("--images-from", default="val")
    x.add_argument("--count", type=int, default=6)
    x.add_argument("--beam", type=int, default=5)
    x.add_argument("--out", required=True, help="PNG to write")
    x.set_defaults(func=_examples)


def _train(args: argparse.Namespace) -> int:
    from vln_clip.captioning.train import CaptionTrainConfig, train_captioner
    from vln_clip.train import LoopConfig, OptimizerConfig

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    lr = args.lr if args.lr is not None else (2e-5 if args.scst_from else 5e-4)
    cfg = CaptionTrainConfig(
        data=args.data, features=args.features, preset=args.preset, scst_from=args.scst_from,
        batch_size=args.batch_size, label_smoothing=args.label_smoothing, scst_samples=args.scst_samples,
        scst_baseline=args.scst_baseline, temperature=args.temperature, max_len=args.max_len,
        min_count=args.min_count, val_images=args.val_images, preload=not args.no_preload,
        optim=OptimizerConfig("adam", lr=lr, betas=(0.9, 0.98), grad_clip=1.0, schedule=args.schedule,
                              warmup_steps=args.warmup))
    loop = LoopConfig(out_dir=args.out, iters=args.iters, eval_every=args.eval_every, save_every=args.save_every,
                      log_every=args.log_every, seed=args.seed, device=args.device, resume=bool(args.resume),
                      best_metric="val/CIDEr", report_keys=("loss", "xe", "reward", "val/CIDEr", "val/mean_words"))
    result = train_captioner(cfg, loop)
    print(json.dumps({"out": str(result.out_dir), "step": result.step, "best_val_CIDEr": result.best_score,
                      "last": result.metrics, "interrupted": result.interrupted}))
    return 130 if result.interrupted else 0


def _eval(args: argparse.Namespace) -> int:
    from vln_clip.eval.caption_metrics import evaluate_captions

    scores = evaluate_captions(args.captions, args.preds)
    if args.json:
        print(json.dumps(scores, indent=1))
    else:
        for k, v in scores.items():
            if isinstance(v, float):
                print(f"{k:8s} {v:.4f}")
        print(f"images   {scores['n_images']}")
        for k, why in scores["skipped"].items():
            print(f"{k}: skipped ({why})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from vln_clip.datasets.coco import read_captions
    from vln_clip.datasets.results import read_caption_results, write_caption_results

    if args.check:
        ids = None
        if args.captions:
            ids = [im.image_id for im in read_captions(args.captions) if im.captions]
        preds = read_caption_results(args.check, ids)
        print(f"{args.check}: valid ({len(preds)} captions)")
        return 0
    from vln_clip.captioning.predict import baseline_captions, predict_captions, target_images
    from vln_clip.errors import DataError

    for flag in ("features", "images_from", "out"):
        if getattr(args, flag) is None:
            raise DataError(f"caption predict: --{flag.replace('_', '-')} is required with "
                            f"{'--checkpoint' if args.checkpoint else '--baseline'}")
    target = target_images(args.images_from, args.data)
    if args.checkpoint:
        caps = predict_captions(args.checkpoint, args.features, target, decoder=args.decoder, beam=args.beam,
                                length_norm=args.length_norm, temperature=args.temperature,
                                batch_size=args.batch_size, seed=args.seed)
    else:
        if args.data is None:
            raise DataError("caption predict --baseline needs --data DIR (its training captions)")
        caps = baseline_captions(args.baseline, args.data, args.features, target)
    write_caption_results(args.out, caps)
    print(f"wrote {args.out} ({len(caps)} captions)", file=sys.stderr)
    return 0


def _examples(args: argparse.Namespace) -> int:
    from vln_clip.captioning.report import example_picture

    path = example_picture(args.checkpoint, args.features, args.data, args.out, split=args.images_from,
                           count=args.count, beam=args.beam)
    print(f"wrote {path}", file=sys.stderr)
    return 0
