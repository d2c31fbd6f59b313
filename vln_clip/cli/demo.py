"""`vln-clip demo`: the whole pipeline on a synthetic world (:func:`vln_clip.demo.run_demo`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vln_clip.demo import DemoConfig

from .common import add_parser, friendly_os_errors, nonnegative_int, positive_int

EXAMPLES = [
    "vln-clip demo --out runs/demo",
    "vln-clip demo --out runs/demo --houses 40 --iters 3000 --image-size 112     # bigger, slower",
    "vln-clip demo --out runs/demo --encoder clip_res50 --no-vision-free",
    "vln-clip demo --out runs/demo        # again: finished stages are reused",
]

def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "demo", "the whole pipeline on a synthetic world", EXAMPLES, description=(
        "Synthesize a world, extract CLIP features (random weights unless real ones are on this machine: "
        "said plainly), train a follower (and a vision-free control), evaluate on val_unseen against the "
        "random and shortest-path baselines, export a test submission in the R2R leaderboard format and "
        "draw one rollout. The defaults took 6 min 39 s on 2 idle CPU cores (measured, docs/demo.md). Re-running "
        "with the same --out reuses finished stages. The last line printed is a JSON object with the "
        "val_unseen metrics of each agent."))
    d = DemoConfig()
    p.add_argument("--out", default=str(d.out), help=f"output folder (default {d.out})")
    p.add_argument("--houses", type=positive_int, default=d.houses, help=f"synthetic houses, at least 3 (default {d.houses})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the world and the training run")
    p.add_argument("--encoder", default=d.encoder, help=f"encoder from the registry (default {d.encoder}, "
                   "the fastest on CPU)")
    p.add_argument("--iters", type=positive_int, default=d.iters, help=f"follower training iterations (default {d.iters})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"training batch (default {d.batch_size})")
    p.add_argument("--max-actions", type=positive_int, default=d.max_actions,
                   help=f"actions per episode in training and evaluation (default {d.max_actions})")
    p.add_argument("--threads", "--train-threads", type=nonnegative_int, default=d.threads, dest="threads",
                   help=f"torch threads per training process (default {d.threads}; 0 = torch's default)")
    p.add_argument("--pca-dim", type=nonnegative_int, default=d.pca_dim,
                   help=f"principal components of the features (default {d.pca_dim}; 0 = raw features)")
    p.add_argument("--hidden-dim", type=positive_int, default=d.hidden_dim,
                   help=f"follower LSTM size (default {d.hidden_dim})")
    p.add_argument("--rl", action="store_true", help="also train with A2C rollouts (default: imitation only)")
    p.add_argument("--sequential", action="store_true",
                   help="train the two followers one after the other (default: side by side on 2+ cores)")
    p.add_argument("--face-size", type=positive_int, default=d.face_size, help=f"skybox face pixels (default {d.face_size})")
    p.add_argument("--image-size", type=nonnegative_int, default=d.image_size,
                   help=f"encoder input pixels (default {d.image_size}; 0 = the encoder's native size)")
    p.add_argument("--paths-per-house", type=positive_int, default=d.paths_per_house,
                   help=f"R2R paths generated per house (default {d.paths_per_house})")
    p.add_argument("--weights", help="encoder weights (checkpoint path or open_clip tag); default: found locally, "
                   "else random")
    p.add_argument("--no-vision-free", action="store_true", help="skip the vision-free control follower")
    p.add_argument("--no-rollout", action="store_true", help="skip the pictured rollout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=friendly_os_errors(run))


def run(args: argparse.Namespace) -> int:
    from vln_clip.demo import comparison_line, run_demo

    cfg = DemoConfig(out=Path(args.out), houses=args.houses, seed=args.seed, encoder=args.encoder, iters=args.iters,
                     batch_size=args.batch_size, hidden_dim=args.hidden_dim, use_rl=args.rl,
                     max_actions=args.max_actions, face_size=args.face_size, threads=args.threads,
                     image_size=args.image_size or None, pca_dim=args.pca_dim, weights=args.weights,
                     paths_per_house=args.paths_per_house, vision_free=not args.no_vision_free,
                     rollout=not args.no_rollout, progress=not args.no_progress, parallel=not args.sequential)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    def echo(line: str) -> None:
        print(line, flush=True)

    summary = run_demo(cfg, echo)
    agents = summary["agents"]
    echo("")
    echo(f"val_unseen ({next(iter(agents.values())).get('episodes', '?')} instructions)   success    spl   ndtw")
    for name, m in agents.items():
        echo(f"  {name:<20} {m['success']:>9.3f} {m['spl']:>6.3f} {m['ndtw']:>6.3f}")
    echo(comparison_line(summary.get("comparison")))
    files = summary["files"]
    echo(f"submission: {files['submission']}")
    if files["rollout"]:
        echo(f"rollout report: {files['rollout'].get('report_html')}")
    echo(f"everything: {Path(cfg.out) / 'demo.json'}")
    sys.stderr.flush()
    print(json.dumps(agents), flush=True)
    return 0
