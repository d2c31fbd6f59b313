"""`vln-clip demo`: the whole pipeline on a synthetic world, in minutes on a laptop CPU.

Stages (each recorded in ``OUT/stages.json`` with its inputs and duration, so re-running with
the same ``--out`` and options reuses what is finished and resumes what is not):

1. ``world``: a synthetic Matterport-format world (:func:`vln_clip.synth.generate_world`).
2. ``features``: CLIP features of every panorama (:func:`vln_clip.features.extract.extract_features`),
   with pretrained weights when the machine has them, otherwise random weights -- said plainly
   on screen, in ``OUT/demo.json`` and in the feature store's attributes.
3. ``train``: an EnvDrop follower (IL + A2C) on the world's train split
   (:func:`vln_clip.agents.trainer.train`); ``train_no_vision``: the same follower without
   visual features, the control that shows what vision adds.
4. ``eval``: every agent on val_unseen with the one metrics module, against the random and
   shortest-path baselines run through the environment (:mod:`vln_clip.eval.baselines`).
5. ``submit``: the follower's test-split trajectories in the R2R leaderboard format, validated.
6. ``rollout``: one val_unseen episode played by the follower, pictured (PNG, GIF, views, HTML).

The last line printed is a JSON object with the val_unseen metrics of each agent.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .common import add_parser, nonnegative_int, positive_int

EXAMPLES = [
    "vln-clip demo --out runs/demo",
    "vln-clip demo --out runs/demo --iters 200                  # the run in docs/demo.md",
    "vln-clip demo --out runs/demo --houses 6 --iters 1000      # bigger, slower",
    "vln-clip demo --out runs/demo --encoder clip_res50 --no-vision-free",
    "vln-clip demo --out runs/demo        # again: finished stages are reused",
]


@dataclass
class DemoConfig:
    """Options of one demo run; defaults fit in 10 minutes on 2 CPU cores (see docs/demo.md)."""

    out: Path = Path("runs/demo")
    houses: int = 5  # 3 train houses, 1 val_unseen, 1 test
    seed: int = 0
    encoder: str = "clip_vit_b32"
    iters: int = 120
    face_size: int = 64  # skybox face side in pixels (synthetic rendering)
    image_size: int | None = 112  # encoder input side; None = the encoder's native size
    batch_size: int = 16
    max_actions: int = 15  # synthetic R2R paths have at most 6 edges; EnvDrop's 35 only slows the demo
    train_threads: int = 1  # torch threads while training (see _threads)
    vision_free: bool = True  # also train the vision-free control follower
    rollout: bool = True
    device: str = "cpu"
    progress: bool = True
    weights: str | None = None  # explicit encoder weights (path or open_clip tag); None = find or random
    paths_per_house: int = 40  # R2R paths generated per house (train houses feed training)

    def key(self, *names: str) -> str:
        values = {n: getattr(self, n) for n in names}
        return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


WORLD_KEYS = ("houses", "seed", "face_size", "paths_per_house")
FEATURE_KEYS = WORLD_KEYS + ("encoder", "image_size", "weights")
TRAIN_KEYS = FEATURE_KEYS + ("iters", "batch_size", "max_actions")


class StageLog:
    """``OUT/stages.json``: which stages finished, with which inputs, in how many seconds."""

    def __init__(self, path: Path) -> None:
        from vln_clip.io import read_json

        self.path = path
        self.data: dict[str, Any] = read_json(path, "demo stage log") if path.exists() else {}

    def finished(self, name: str, key: str) -> dict[str, Any] | None:
        entry = self.data.get(name)
        if not entry or entry.get("key") != key:
            return None
        for f in entry.get("files", {}).values():
            if f and not Path(f).exists():
                return None
        return entry

    def record(self, name: str, key: str, seconds: float, files: dict[str, str | None] | None = None,
               **extra: Any) -> dict[str, Any]:
        from vln_clip.io import write_json

        entry = {"key": key, "seconds": round(seconds, 2), "files": files or {}, **extra}
        self.data[name] = entry
        write_json(self.path, self.data, indent=1)
        return entry


def _metrics(summary: dict[str, Any]) -> dict[str, float]:
    keep = ("success", "spl", "ndtw", "sdtw", "cls", "nav_error", "oracle_success", "trajectory_length", "episodes")
    return {k: (round(float(summary[k]), 4) if k != "episodes" else int(summary[k])) for k in keep if k in summary}


def _resumable(run_dir: Path, key: str, iters: int, echo: Callable[[str], None]) -> Path | None:
    """``run_dir/last.pt`` when it continues the same run (same model, data and batch, no more
    iterations than asked); otherwise the old folder is set aside and training starts afresh."""
    from vln_clip.io import read_json, write_json

    marker = run_dir / "demo_run.json"
    last = run_dir / "last.pt"
    if last.exists():
        old = read_json(marker, "demo run marker") if marker.exists() else {}
        if old.get("key") == key and int(old.get("iters", 0)) <= iters:
            write_json(marker, {"key": key, "iters": iters})
            echo(f"  continuing {last}")
            return last
        stale = run_dir.with_name(f"{run_dir.name}.stale-{int(time.time())}")
        run_dir.rename(stale)
        echo(f"  {run_dir} was trained with other options: moved it to {stale}, training afresh")
    write_json(marker, {"key": key, "iters": iters})
    return None


class _threads:
    """Run a block with ``n`` torch threads, then restore the previous count.

    The follower's batch-16 LSTM steps are too small to split well: measured here, one thread
    costs 0.94 CPU s per iteration, while two threads on a busy 2-core machine burned about
    8.6 CPU s per iteration spinning on each other. ``n <= 0`` leaves torch's default.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.old = 0

    def __enter__(self) -> None:
        import torch

        self.old = torch.get_num_threads()
        if self.n > 0:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        import torch

        torch.set_num_threads(self.old)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (data-loader workers): a load-independent cost."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def encoder_weights(encoder: str, weights: str | None) -> tuple[str | None, bool, str]:
    """(weights argument, random?, a sentence for the user) for ``encoder`` on this machine."""
    from vln_clip.encoders import get_spec, resolve_weights
    from vln_clip.errors import MissingResourceError

    spec = get_spec(encoder)
    try:
        path, label = resolve_weights(spec, weights, False)
    except MissingResourceError:
        if weights is not None:
            raise
        return None, True, (f"CLIP weights: none found for {encoder} on this machine, so the encoder runs with "
                            "RANDOM weights. The features are random projections of the images, not CLIP "
                            "features; the numbers below show the pipeline, not CLIP's quality. Put the "
                            "checkpoint where `vln-clip features extract --help` says to use real weights.")
    return weights, False, f"CLIP weights: pretrained {encoder} ({label}{', ' + str(path) if path else ''})"


def run_demo(cfg: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every stage; returns ``{"agents": {...}, ...}`` (also written to OUT/demo.json)."""
    from vln_clip.io import write_json

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = StageLog(out / "stages.json")
    t_all = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str, key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        done = log.finished(name, key)
        if done is not None:
            echo(f"[{name}] reused from {log.path} (took {done['seconds']:.1f} s when it ran)")
            timings[name] = 0.0
            return done
        echo(f"[{name}] running ...")
        t0, c0 = time.perf_counter(), _cpu_seconds()
        files, extra = fn()
        dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        timings[name] = round(dt, 2)
        echo(f"[{name}] done in {dt:.1f} s ({cpu:.1f} CPU s)")
        return log.record(name, key, dt, files, cpu_seconds=round(cpu, 2), **extra)

    # 1. world ---------------------------------------------------------------------------
    world_dir = out / "world"

    def make_world() -> tuple[dict, dict]:
        from vln_clip.synth import generate_world

        paths = generate_world(world_dir, houses=cfg.houses, seed=cfg.seed, face_size=cfg.face_size,
                               render=True, progress=cfg.progress, paths_per_house=cfg.paths_per_house)
        return {"world_json": str(paths.world_json)}, {"splits": paths.splits}

    world = stage("world", cfg.key(*WORLD_KEYS), make_world)
    conn = world_dir / "connectivity"
    split_file = {s: world_dir / "r2r" / f"R2R_{s}.json" for s in ("train", "val_seen", "val_unseen", "test")}

    # 2. features ------------------------------------------------------------------------
    weights, random_weights, weights_note = encoder_weights(cfg.encoder, cfg.weights)
    echo(weights_note)
    feats = world_dir / "features" / f"{cfg.encoder}.h5"

    def make_features() -> tuple[dict, dict]:
        from vln_clip.features.extract import extract_features

        extract_features(cfg.encoder, world_dir / "scans", conn, feats, random_weights=random_weights,
                         weights=weights, image_size=cfg.image_size, face_size=None, render="crop",
                         device=cfg.device, progress=cfg.progress)
        return {"features": str(feats)}, {"random_weights": random_weights}

    stage("features", cfg.key(*FEATURE_KEYS) + ("-random" if random_weights else "-pretrained"), make_features)

    # 3. training ------------------------------------------------------------------------
    def make_train(no_vision: bool) -> Callable[[], tuple[dict, dict]]:
        def run() -> tuple[dict, dict]:
            from vln_clip.agents.config import TrainConfig
            from vln_clip.agents.trainer import train

            run_dir = out / ("train_no_vision" if no_vision else "train")
            every = max(50, cfg.iters // 4)
            tcfg = TrainConfig.preset("synthetic", encoder=cfg.encoder, data_dir=str(world_dir),
                                      out_dir=str(run_dir), features=None if no_vision else str(feats),
                                      no_vision=no_vision, iters=cfg.iters, batch_size=cfg.batch_size,
                                      max_actions=cfg.max_actions, eval_every=every, save_every=every,
                                      log_every=max(10, every // 5),
                                      seed=cfg.seed, device=cfg.device)
            resume = _resumable(run_dir, cfg.key(*FEATURE_KEYS, "batch_size", "max_actions"), cfg.iters, echo)
            with _threads(cfg.train_threads):
                res = train(tcfg, resume=resume, progress=cfg.progress)
            if res.interrupted:
                raise KeyboardInterrupt
            best = res.best_checkpoint or res.last_checkpoint
            return {"checkpoint": str(best)}, {"iterations": res.iterations}
        return run

    agents_ckpt = {"follower": Path(stage("train", cfg.key(*TRAIN_KEYS), make_train(False))["files"]["checkpoint"])}
    if cfg.vision_free:
        agents_ckpt["follower_no_vision"] = Path(
            stage("train_no_vision", cfg.key(*TRAIN_KEYS), make_train(True))["files"]["checkpoint"])

    # 4. evaluation on val_unseen ----------------------------------------------------------
    def make_eval() -> tuple[dict, dict]:
        from vln_clip.agents.inference import predict_trajectories
        from vln_clip.episodes import read_episodes
        from vln_clip.eval.baselines import run_baseline
        from vln_clip.eval.formats import paths_of, predictions_from_dicts, write_r2r
        from vln_clip.eval.metrics import score_paths
        from vln_clip.graph import GraphStore

        graphs = GraphStore(conn)
        episodes = read_episodes(split_file["val_unseen"])
        results: dict[str, dict[str, float]] = {}
        files: dict[str, str] = {}
        runs: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = []
        for name, ckpt in agents_ckpt.items():
            store = None if name == "follower_no_vision" else str(feats)
            runs.append((name, lambda c=ckpt, s=store: predict_trajectories(c, split_file["val_unseen"], conn,
                                                                             features=s, device=cfg.device)))
        for name in ("random", "shortest"):
            runs.append((name, lambda n=name: run_baseline(n, split_file["val_unseen"], conn, seed=cfg.seed)))
        for name, fn in runs:
            preds = predictions_from_dicts(fn(), f"{name} on val_unseen")
            path = out / "eval" / f"{name}_val_unseen.json"
            write_r2r(path, preds)
            files[name] = str(path)
            results[name] = _metrics(score_paths(paths_of(preds), episodes, graphs).summary(by_language=False))
        return files, {"metrics": results}

    evaluation = stage("eval", cfg.key(*TRAIN_KEYS, "vision_free"), make_eval)

    # 5. test-split submission ------------------------------------------------------------
    def make_submission() -> tuple[dict, dict]:
        from vln_clip.agents.inference import predict_trajectories
        from vln_clip.episodes import read_episodes
        from vln_clip.eval.formats import predictions_from_dicts, write_r2r
        from vln_clip.eval.validation import validate_predictions
        from vln_clip.graph import GraphStore

        rows = predict_trajectories(agents_ckpt["follower"], split_file["test"], conn, features=str(feats),
                                    device=cfg.device)
        preds = predictions_from_dicts(rows, "follower on test")
        validate_predictions(preds, read_episodes(split_file["test"]), GraphStore(conn), source="demo submission")
        path = out / "submission" / "R2R_test_follower.json"
        write_r2r(path, preds)
        return {"submission": str(path)}, {"trajectories": len(preds)}

    submission = stage("submit", cfg.key(*TRAIN_KEYS), make_submission)

    # 6. one rollout, pictured -------------------------------------------------------------
    rollout_files: dict[str, Any] = {}
    if cfg.rollout:
        def make_rollout() -> tuple[dict, dict]:
            from rich.console import Console

            from vln_clip.episodes import read_episodes
            from vln_clip.rollout import play
            from vln_clip.viz.pictures import ViewRenderer, write_rollout_files

            from .rollout import build_rollout

            instr_id = read_episodes(split_file["val_unseen"])[0].instr_id
            setup = build_rollout(split_file["val_unseen"], conn, instr_id, str(agents_ckpt["follower"]),
                                  str(feats), helper="agent", max_steps=cfg.max_actions)
            buf = io.StringIO()
            result = play(setup.player, setup.actor, Console(file=buf, width=100, color_system=None),
                          interactive=False)
            rdir = out / "rollout"
            notes = [weights_note]
            files = write_rollout_files(result, setup.graph, rdir, ViewRenderer(world_dir / "scans", conn),
                                        notes=notes)
            (rdir / "transcript.txt").write_text(buf.getvalue(), encoding="utf-8")
            return ({k: v for k, v in files.as_dict().items() if v},
                    {"instr_id": instr_id, "metrics": _metrics(result.metrics), "steps": len(result.steps)})

        rollout_files = stage("rollout", cfg.key(*TRAIN_KEYS), make_rollout)

    agents = evaluation["metrics"]
    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "weights": "random" if random_weights else (weights or "pretrained (default tag)"),
        "weights_note": weights_note,
        "agents": agents,
        "stage_seconds": {k: v.get("seconds") for k, v in log.data.items()},
        "stage_cpu_seconds": {k: v.get("cpu_seconds") for k, v in log.data.items()},
        "this_run_seconds": round(time.perf_counter() - t_all, 2),
        "files": {
            "features": str(feats),
            "checkpoints": {k: str(v) for k, v in agents_ckpt.items()},
            "predictions": evaluation.get("files", {}),
            "submission": submission["files"]["submission"],
            "rollout": rollout_files.get("files", {}),
        },
    }
    write_json(out / "demo.json", summary, indent=1)
    return summary


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "demo", "the whole pipeline on a synthetic world", EXAMPLES, description=(
        "Synthesize a world, extract CLIP features (random weights unless real ones are on this machine: "
        "said plainly), train a follower (and a vision-free control), evaluate on val_unseen against the "
        "random and shortest-path baselines, export a test submission in the R2R leaderboard format and "
        "draw one rollout. The defaults take about 10 minutes on 2 CPU cores (docs/demo.md). Re-running "
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
    p.add_argument("--train-threads", type=nonnegative_int, default=d.train_threads,
                   help=f"torch threads while training (default {d.train_threads}; 0 = torch's default)")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = DemoConfig(out=Path(args.out), houses=args.houses, seed=args.seed, encoder=args.encoder, iters=args.iters,
                     batch_size=args.batch_size, max_actions=args.max_actions, face_size=args.face_size,
                     train_threads=args.train_threads,
                     image_size=args.image_size or None, weights=args.weights,
                     paths_per_house=args.paths_per_house, vision_free=not args.no_vision_free,
                     rollout=not args.no_rollout, progress=not args.no_progress)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    def echo(line: str) -> None:
        print(line, flush=True)

    summary = run_demo(cfg, echo)
    agents = summary["agents"]
    echo("")
    echo(f"val_unseen ({next(iter(agents.values())).get('episodes', '?')} instructions)   success    spl   ndtw")
    for name, m in agents.items():
        echo(f"  {name:<20} {m['success']:>9.3f} {m['spl']:>6.3f} {m['ndtw']:>6.3f}")
    files = summary["files"]
    echo(f"submission: {files['submission']}")
    if files["rollout"]:
        echo(f"rollout report: {files['rollout'].get('report_html')}")
    echo(f"everything: {Path(cfg.out) / 'demo.json'}")
    sys.stderr.flush()
    print(json.dumps(agents), flush=True)
    return 0
