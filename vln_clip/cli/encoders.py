"""``vln-clip encoders``: pre-train the study's own visual encoders and measure their quality."""

from __future__ import annotations

import argparse
import json

from .common import add_parser, positive_int


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "encoders", "pre-train visual encoders (contrastive or classification) and judge them",
                   ["vln-clip encoders pretrain --objective contrastive --data data/synthetic-vl --out enc/contrastive.pt",
                    "vln-clip encoders pretrain --objective classification --data data/synthetic-vl --out enc/cls.pt",
                    "vln-clip encoders quality --encoder-checkpoint enc/contrastive.pt --data data/synthetic-vl --json"])
    esub = p.add_subparsers(dest="encoders_command", metavar="ENCODERS_COMMAND")
    t = add_parser(esub, "pretrain", "train a small open_clip encoder on the synthetic V&L world",
                   ["vln-clip encoders pretrain --objective contrastive --data data/synthetic-vl --out enc/contrastive.pt",
                    "vln-clip encoders pretrain --objective classification --arch vit-tiny --data data/synthetic-vl "
                    "--out enc/cls_vit.pt --iters 600",
                    "vln-clip encoders pretrain --objective contrastive --data data/synthetic-vl --out enc/c.pt --resume"],
                   description="Contrastive: CLIP's symmetric InfoNCE over (image, caption) pairs with open_clip's "
                               "model, tokenizer and loss. Classification: the same visual tower trained on the room "
                               "type and object classes of each image (never its captions). Same images, batch and "
                               "updates for both, so the arms are comparable. Writes ENC.pt (loads wherever "
                               "--encoder-checkpoint or --encoder is taken) and prints its quality as JSON.")
    t.add_argument("--objective", choices=("contrastive", "classification"), required=True)
    t.add_argument("--data", required=True, help="a synthetic V&L world (vln-clip data synth-vl --out DIR)")
    t.add_argument("--out", required=True, help="encoder checkpoint to write (ENC.pt); the run folder is ENC.run/")
    t.add_argument("--arch", default="rn-tiny", help="rn-tiny (open_clip ModifiedResNet) or vit-tiny (default rn-tiny)")
    t.add_argument("--image-size", type=positive_int, default=128)
    t.add_argument("--batch-size", type=positive_int, default=64)
    t.add_argument("--iters", type=positive_int, default=1500, help="updates (default 1500)")
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--eval-every", type=positive_int, default=250)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    t.add_argument("--device", default="cpu")
    t.add_argument("--resume", action="store_true", help="continue ENC.run/last.pt")
    t.add_argument("--limit", type=positive_int, default=None, help="use only the first N training images")
    t.add_argument("--grayscale", action="store_true",
                   help="train and validate on luminance only (an encoder from a domain without colour); "
                        "the quality report is measured on the colour images")
    t.set_defaults(func=_pretrain)
    r = add_parser(esub, "init", "the random-initialisation arm as an encoder checkpoint (same architecture)",
                   ["vln-clip encoders init --arch rn-tiny --out enc/random.pt"])
    r.add_argument("--arch", default="rn-tiny")
    r.add_argument("--image-size", type=positive_int, default=128)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    r.set_defaults(func=_init)
    q = add_parser(esub, "quality", "an encoder's own quality: linear probe, zero-shot rooms, held-out labels",
                   ["vln-clip encoders quality --encoder-checkpoint enc/contrastive.pt --data data/synthetic-vl",
                    "vln-clip encoders quality --random --data data/synthetic-vl --json"])
    who = q.add_mutually_exclusive_group(required=True)
    who.add_argument("--encoder-checkpoint", help="ENC.pt from `vln-clip encoders pretrain`")
    who.add_argument("--random", action="store_true", help="the random-initialisation arm (same architecture)")
    q.add_argument("--data", required=True)
    q.add_argument("--arch", default="rn-tiny", help="architecture of the random arm")
    q.add_argument("--image-size", type=positive_int, default=None,
                   help="input size of the random arm (default 128); a checkpoint brings its own")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_quality)
    p.set_defaults(func=lambda a: p.print_help() or 1)


def _pretrain(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from vln_clip.study.encoder_pretrain import EncoderPretrainConfig, pretrain_encoder
    from vln_clip.train import LoopConfig, OptimizerConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = EncoderPretrainConfig(data=args.data, objective=args.objective, arch=args.arch, image_size=args.image_size,
                                batch_size=args.batch_size, limit=args.limit, grayscale=args.grayscale)
    cfg.optim = OptimizerConfig(**{**cfg.optim.to_dict(), "lr": args.lr})
    out = Path(args.out)
    loop = LoopConfig(out_dir=str(out.with_suffix(".run")), iters=args.iters, eval_every=args.eval_every,
                      save_every=args.eval_every, log_every=max(1, args.eval_every // 5), seed=args.seed,
                      device=args.device, resume=True if args.resume else None)
    report = pretrain_encoder(cfg, loop, out)
    print(json.dumps(report))
    return 0


def _init(args: argparse.Namespace) -> int:
    from vln_clip.study.encoder_pretrain import random_encoder

    print(json.dumps({"out": str(random_encoder(args.arch, args.image_size, args.out, args.seed)),
                      "objective": "random", "arch": args.arch}))
    return 0


def _quality(args: argparse.Namespace) -> int:
    from vln_clip.study.encoder_pretrain import encoder_quality

    report = encoder_quality("random" if args.random else args.encoder_checkpoint, args.data, args.image_size,
                             random_arch=args.arch)
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:22s} {v:.4f}" if isinstance(v, float) else f"{k:22s} {v}")
    return 0
