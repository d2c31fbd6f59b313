"""`vln-clip train`: train follower, speaker or back-translation agents."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .common import add_encoder_argument, add_parser, friendly_os_errors, nonnegative_int, positive_int

EXAMPLES = [
    "vln-clip train --dataset rxr --encoder clip_res50x4 --agent follower --languages multi --out runs/rxr",
    "vln-clip train --dataset r2r --encoder clip_res50 --agent follower --out runs/r2r",
    "vln-clip train --dataset synthetic --data-dir data/synthetic --encoder clip_res50 --iters 1500 --out runs/syn",
    "vln-clip train --dataset synthetic --data-dir data/synthetic --no-vision --out runs/syn_blind",
    "vln-clip train --dataset synthetic --data-dir data/synthetic --agent speaker --out runs/syn_speaker",
    "vln-clip train --dataset synthetic --data-dir data/synthetic --agent bt --aug-paths aug_paths.json "
    "--speaker-checkpoint runs/syn_speaker/best.pt --follower-checkpoint runs/syn/best.pt --out runs/syn_bt",
    "vln-clip train --out runs/r2r --resume   # continue runs/r2r/last.pt",
]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(
        sub, "train", "train follower, speaker or back-translation agents (EnvDrop, CLIP-ViL settings)", EXAMPLES,
        description="Train an EnvDrop follower (IL + A2C), a speaker, or a follower with back-translation. "
                    "Checkpoints go to OUT/last.pt (every --save-every iterations and on Ctrl-C) and OUT/best.pt "
                    "(best val-unseen SR for R2R/synthetic, nDTW for RxR, BLEU for the speaker); TensorBoard logs "
                    "to OUT/tb; learning curves to OUT/curves.png.")
    p.add_argument("--dataset", choices=("r2r", "rxr", "synthetic"), default="r2r",
                   help="preset and split files (synthetic = a `vln-clip data synth` world, R2R layout)")
    add_encoder_argument(p, help="feature encoder: registry name (default clip_res50, clip_res50x4 for rxr; picks "
                                 "DATA/features/<encoder>.h5) or an encoder checkpoint ENC.pt; "
                                 "--encoder-checkpoint is the same option")
    p.add_argument("--agent", choices=("follower", "speaker", "bt"), default=None,
                   help="what to train (default follower; with --resume: what the checkpoint holds)")
    p.add_argument("--languages", "--language", choices=("en", "hi", "te", "multi"), default=None, dest="language",
                   help="RxR languages (default multi)")
    p.add_argument("--data-dir", default=None, help="data root with connectivity/, r2r/ or rxr/, features/ "
                   "(default $VLN_CLIP_DATA or ./data)")
    p.add_argument("--iters", type=nonnegative_int, default=None, help="total iterations (preset: 80k r2r, 200k rxr, 1.5k synthetic)")
    p.add_argument("--out", required=True, help="run directory for checkpoints, logs and curves")
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--log-every", type=positive_int, default=None)
    p.add_argument("--eval-every", type=positive_int, default=None)
    p.add_argument("--save-every", type=positive_int, default=None)
    p.add_argument("--limit", "--eval-max-episodes", type=positive_int, default=None, dest="eval_max_episodes",
                   metavar="N", help="validate on the first N instructions of each split")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CKPT",
                   help="continue OUT/last.pt (or CKPT) with its model, optimizer, RNG states and iteration")
    p.add_argument("--features", default=None, help="explicit feature store (.h5) instead of DATA/features/<encoder>.h5")
    p.add_argument("--no-vision", action="store_true", help="vision-free follower: angle features only")
    p.add_argument("--no-rl", action="store_true",
                   help="imitation only (teacher forcing, EnvDrop's feedback=teacher): no A2C rollout")
    p.add_argument("--hidden-dim", type=positive_int, default=None, help="LSTM hidden size (EnvDrop: 512)")
    p.add_argument("--max-actions", type=positive_int, default=None, help="actions per episode (EnvDrop: 35)")
    p.add_argument("--device", default=None, help="cpu (default), cuda, cuda:1 ...")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="capture each training rollout's decoder steps as CUDA graphs (GPU only)")
    p.add_argument("--threads", "--train-threads", type=positive_int, default=None, dest="threads",
                   help="torch CPU threads (1 is fastest on a busy 2-core box)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--aug-paths", default=None, help="bt: augmented paths from `vln-clip data aug-paths`")
    p.add_argument("--speaker-checkpoint", default=None, help="bt: the trained speaker (its best.pt)")
    p.add_argument("--follower-checkpoint", default=None, help="bt: start from this follower (its best.pt)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=friendly_os_errors(_run))


def _run(args: argparse.Namespace) -> int:
    from vln_clip.agents.config import TrainConfig
    from vln_clip.agents.trainer import train
    from vln_clip.paths import data_dir

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from . import train_checks

    if args.resume:
        cfg = _resumed_config(args)
    else:
        train_checks.check_real_data(args.dataset, args.data_dir)
        encoder = train_checks.store_encoder(args.features, args.encoder) if args.features else args.encoder
        encoder = encoder or ("clip_res50x4" if args.dataset == "rxr" else "clip_res50")
        if not args.features and not args.no_vision:
            from vln_clip.encoders import get_spec

            get_spec(encoder)  # unknown names stop here with the list of valid ones
        cfg = TrainConfig.preset(
            args.dataset, agent=args.agent or "follower", encoder=encoder, language=args.language,
            data_dir=str(data_dir(args.data_dir)), out_dir=args.out, iters=args.iters, batch_size=args.batch_size,
            log_every=args.log_every, eval_every=args.eval_every, save_every=args.save_every,
            eval_max_episodes=args.eval_max_episodes, features=args.features, no_vision=args.no_vision or None,
            device=args.device, seed=args.seed, aug_paths=args.aug_paths, speaker_checkpoint=args.speaker_checkpoint,
            follower_checkpoint=args.follower_checkpoint, cuda_graphs=args.cuda_graphs or None,
            use_rl=False if args.no_rl else None, hidden_dim=args.hidden_dim, max_actions=args.max_actions)
        if cfg.features is None and not cfg.no_vision:
            _check_encoder_dim(cfg)
    result = train(cfg, resume=args.resume, progress=not args.no_progress)  # a bar on a TTY, plain lines otherwise
    summary = {
        "iterations": result.iterations, "interrupted": result.interrupted,
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "last_checkpoint": str(result.last_checkpoint), "best_score": result.best_score,
        "val_unseen": result.metrics.get("val_unseen", {}), "val_seen": result.metrics.get("val_seen", {}),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"checkpoints: {summary['last_checkpoint']}" + (f", {summary['best_checkpoint']}" if result.best_checkpoint else ""))
        vu = summary["val_unseen"]
        if vu:
            print("val_unseen: " + "  ".join(_metric_text(k, v) for k, v in vu.items() if isinstance(v, (int, float))))
    return 130 if result.interrupted else 0


def _metric_text(key: str, value: float) -> str:
    """``episodes=120`` (a count), ``success=0.3417`` (a rate or a distance)."""
    from vln_clip.eval.metrics import COUNT_KEYS

    return f"{key}={int(value)}" if key in COUNT_KEYS else f"{key}={value:.4f}"


def _resumed_config(args: argparse.Namespace) -> "object":
    """The checkpoint's own config, changed only by the options given on this command line."""
    from pathlib import Path

    from vln_clip.agents.checkpoint import load_checkpoint
    from vln_clip.agents.config import TrainConfig

    from .train_checks import check_resume

    path = Path(args.out) / "last.pt" if args.resume is True else Path(args.resume)
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    cfg.out_dir = args.out
    for name, value in (("iters", args.iters), ("log_every", args.log_every), ("eval_every", args.eval_every),
                        ("save_every", args.save_every), ("device", args.device), ("features", args.features),
                        ("data_dir", args.data_dir)):
        if value is not None:
            setattr(cfg, name, value)
    for note in check_resume(path, ckpt, cfg, args.agent):
        print(note, file=sys.stderr)
    return cfg


def _check_encoder_dim(cfg: "object") -> None:
    """A store named after a registry encoder must have that encoder's pooled width."""
    from vln_clip.agents.trainer import resolve_paths
    from vln_clip.encoders import get_spec
    from vln_clip.features.store import FeatureStore

    paths = resolve_paths(cfg)  # type: ignore[arg-type]
    if paths.features is not None and os.path.exists(paths.features):
        spec = get_spec(cfg.encoder)  # type: ignore[attr-defined]
        with FeatureStore(paths.features) as store:
            store.check_dim(spec.pooled_dim, cfg.encoder)  # type: ignore[attr-defined]
