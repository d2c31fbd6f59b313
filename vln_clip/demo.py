"""The whole navigation pipeline on a synthetic world, as one resumable library call.

:func:`run_demo` (what `vln-clip demo` calls) runs these stages, each recorded in
``OUT/stages.json`` with its inputs and duration, so a second call with the same
:class:`DemoConfig` reuses what is finished and resumes what is not:

1. ``world``: a synthetic Matterport-format world (:func:`vln_clip.synth.generate_world`).
2. ``features``: CLIP features of every panorama (:func:`vln_clip.features.extract.extract_features`),
   pretrained weights when the machine has them, otherwise random weights -- said plainly on
   screen, in ``OUT/demo.json`` and in the store's attributes.
3. ``pca``: the features reduced to their first principal components, fitted on the training
   houses only (:func:`vln_clip.features.pca.write_pca_store`). Why: docs/training.md found
   that a follower trained for hundreds, not tens of thousands, of iterations reads 64
   whitened components much sooner than 512 raw channels.
4. ``train`` and ``train_no_vision``: imitation-learning followers (EnvDrop's teacher forcing,
   batch 32, hidden 256: the setting docs/training.md found to learn on a CPU budget) with and
   without visual features, trained side by side in two processes when the machine has two
   cores (:func:`vln_clip.agents.trainer.train`).
5. ``eval``: every agent on val_unseen with the one metrics module, against the random and
   shortest-path baselines run through the environment (:mod:`vln_clip.agents.baselines`), and
   the follower against the vision-free follower *paired* on the same instructions with a
   bootstrap interval over paths (:mod:`vln_clip.eval.paired`).
6. ``submit``: the follower's test-split trajectories in the R2R leaderboard format, validated.
7. ``rollout``: one val_unseen episode played by the follower, pictured (PNG, GIF, views, HTML).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from vln_clip.io import read_json, write_json

@dataclass
class DemoConfig:
    """Options of one demo run; the defaults are the setting docs/demo.md measures."""

    out: Path = Path("runs/demo")
    houses: int = 20  # 14 train houses, 3 val_unseen, 3 test (one unseen house made SR too noisy to compare)
    seed: int = 0
    encoder: str = "clip_vit_b32"
    iters: int = 1500
    face_size: int = 64  # skybox face side in pixels (synthetic rendering)
    image_size: int | None = 32  # encoder input side (ViT-B/32: one patch per view); None = native size
    pca_dim: int = 64  # 0 = train on the raw encoder features
    batch_size: int = 32
    hidden_dim: int = 256
    use_rl: bool = False  # imitation only: A2C needs far more iterations than a demo has
    max_actions: int = 15  # synthetic R2R paths have at most 6 edges; EnvDrop's 35 only slows the demo
    threads: int = 1  # torch threads per training process (see _threads)
    parallel: bool = True  # train the two followers in two processes when there are 2+ cores
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
PCA_KEYS = FEATURE_KEYS + ("pca_dim",)
TRAIN_KEYS = PCA_KEYS + ("iters", "batch_size", "hidden_dim", "use_rl", "max_actions")


class StageLog:
    """``OUT/stages.json``: which stages finished, with which inputs, in how many seconds."""

    def __init__(self, path: Path) -> None:
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
        entry = {"key": key, "seconds": round(seconds, 2), "files": files or {}, **extra}
        self.data[name] = entry
        write_json(self.path, self.data, indent=1)
        return entry


def _metrics(summary: dict[str, Any]) -> dict[str, float]:
    from vln_clip.eval.metrics import COUNT_KEYS, SUMMARY_KEYS

    return {k: (int(summary[k]) if k in COUNT_KEYS else round(float(summary[k]), 4)) for k in SUMMARY_KEYS
            if k in summary}


def _resumable(run_dir: Path, key: str, iters: int, echo: Callable[[str], None]) -> Path | None:
    """``run_dir/last.pt`` when it continues the same run (same model, data and batch, no more
    iterations than asked); otherwise the old folder is set aside and training starts afresh."""
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


def _train_follower(tcfg: Any, resume: Path | None, threads: int, progress: bool) -> dict[str, Any]:
    """One follower run (a top-level function, so that a spawned worker process can run it)."""
    from vln_clip.agents.trainer import train

    with _threads(threads):
        res = train(tcfg, resume=resume, progress=progress)
    if res.interrupted:
        raise KeyboardInterrupt
    return {"checkpoint": str(res.best_checkpoint or res.last_checkpoint), "iterations": res.iterations,
            "curves": str(res.curve_png) if res.curve_png else None}


def _parallel_ok(cfg: DemoConfig, jobs: int) -> bool:
    return cfg.parallel and jobs > 1 and (os.cpu_count() or 1) >= 2


def compare_followers(episodes: list[Any], graphs: Any, paths_a: dict[str, list[str]],
                      paths_b: dict[str, list[str]], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Follower A against follower B on the same instructions: SR/SPL/nDTW differences (x100).

    The interval resamples *paths*, not instructions: the instructions of one path share its
    start and goal, so they are not independent. Each path's score is the mean over its
    instructions (every path has the same number, so the mean over paths is the mean over
    instructions). ``only_a``/``only_b`` count the instructions only one of them succeeds on.
    """
    from vln_clip.eval.metrics import score_paths
    from vln_clip.eval.paired import paired_bootstrap

    res_a, res_b = score_paths(paths_a, episodes, graphs), score_paths(paths_b, episodes, graphs)
    out: dict[str, Any] = {"instructions": len(episodes), "paths": len({e.path_id for e in episodes}),
                           "resamples": resamples, "unit": "percentage points, A - B; 95% bootstrap over paths"}
    for key in ("success", "spl", "ndtw"):
        per_path: list[dict[str, list[float]]] = [{}, {}]
        for side, res in enumerate((res_a, res_b)):
            for ep, value in zip(res.episodes, res.column(key)):
                per_path[side].setdefault(ep.instr_id.rsplit("_", 1)[0], []).append(float(value))
        a = {p: sum(v) / len(v) for p, v in per_path[0].items()}
        b = {p: sum(v) / len(v) for p, v in per_path[1].items()}
        r = paired_bootstrap(a, b, resamples=resamples, seed=seed)
        out[key] = {"a": round(r.mean_a, 2), "b": round(r.mean_b, 2), "a_minus_b": round(r.diff, 2),
                    "ci95": [round(r.ci_low, 2), round(r.ci_high, 2)]}
    sa = {e.instr_id: s > 0.5 for e, s in zip(res_a.episodes, res_a.column("success"))}
    sb = {e.instr_id: s > 0.5 for e, s in zip(res_b.episodes, res_b.column("success"))}
    out["only_a_succeeds"] = sum(1 for k in sa if sa[k] and not sb[k])
    out["only_b_succeeds"] = sum(1 for k in sa if sb[k] and not sa[k])
    return out


def run_demo(cfg: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every stage; returns ``{"agents": {...}, "comparison": {...}, ...}`` (also OUT/demo.json)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = StageLog(out / "stages.json")
    t_all = time.perf_counter()

    def stage(name: str, key: str, fn: Callable[[], tuple[dict, dict]]) -> dict[str, Any]:
        done = log.finished(name, key)
        if done is not None:
            echo(f"[{name}] reused from {log.path} (took {done['seconds']:.1f} s when it ran)")
            return done
        echo(f"[{name}] running ...")
        t0, c0 = time.perf_counter(), _cpu_seconds()
        files, extra = fn()
        dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
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
    raw_feats = world_dir / "features" / f"{cfg.encoder}.h5"

    def make_features() -> tuple[dict, dict]:
        from vln_clip.features.extract import extract_features

        extract_features(cfg.encoder, world_dir / "scans", conn, raw_feats, random_weights=random_weights,
                         weights=weights, image_size=cfg.image_size, face_size=None, render="crop",
                         device=cfg.device, progress=cfg.progress)
        return {"features": str(raw_feats)}, {"random_weights": random_weights}

    stage("features", cfg.key(*FEATURE_KEYS) + ("-random" if random_weights else "-pretrained"), make_features)

    # 3. PCA on the training houses ------------------------------------------------------
    feats = raw_feats
    if cfg.pca_dim:
        feats = world_dir / "features" / f"{cfg.encoder}_pca{cfg.pca_dim}.h5"

        def make_pca() -> tuple[dict, dict]:
            from vln_clip.features.pca import write_pca_store

            proj = write_pca_store(raw_feats, feats, world["splits"]["train"], dim=cfg.pca_dim)
            return {"features": str(feats)}, {"explained_variance": round(float(proj.explained), 4)}

        stage("pca", cfg.key(*PCA_KEYS) + ("-random" if random_weights else "-pretrained"), make_pca)

    # 4. two followers, side by side -------------------------------------------------------
    from vln_clip.agents.config import TrainConfig

    def train_config(no_vision: bool) -> tuple[Any, Path]:
        run_dir = out / ("train_no_vision" if no_vision else "train")
        every = max(50, cfg.iters // 4)
        tcfg = TrainConfig.preset("synthetic", encoder=cfg.encoder, data_dir=str(world_dir), out_dir=str(run_dir),
                                  features=None if no_vision else str(feats), no_vision=no_vision,
                                  iters=cfg.iters, batch_size=cfg.batch_size, hidden_dim=cfg.hidden_dim,
                                  use_rl=cfg.use_rl, max_actions=cfg.max_actions, eval_every=every,
                                  save_every=every, log_every=max(10, every // 5), seed=cfg.seed, device=cfg.device)
        return tcfg, run_dir

    names = {"train": False, "train_no_vision": True} if cfg.vision_free else {"train": False}
    key = cfg.key(*TRAIN_KEYS)
    todo = [n for n in names if log.finished(n, key) is None]
    for n in names:
        if n not in todo:
            echo(f"[{n}] reused from {log.path}")
    if todo:
        parallel = _parallel_ok(cfg, len(todo))
        echo(f"[{', '.join(todo)}] running{' side by side in ' + str(len(todo)) + ' processes' if parallel else ''} ...")
        jobs = []
        for n in todo:
            tcfg, run_dir = train_config(names[n])
            resume = _resumable(run_dir, key, cfg.iters, echo)
            jobs.append((n, tcfg, resume))
        t0, c0 = time.perf_counter(), _cpu_seconds()
        results: dict[str, dict[str, Any]] = {}
        if parallel:
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(len(jobs), mp_context=ctx) as pool:
                futures = {n: pool.submit(_train_follower, tcfg, resume, cfg.threads, False)
                           for n, tcfg, resume in jobs}
                for n, fut in futures.items():
                    results[n] = fut.result()
        else:
            for n, tcfg, resume in jobs:
                results[n] = _train_follower(tcfg, resume, cfg.threads, cfg.progress)
        dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        echo(f"[{', '.join(todo)}] done in {dt:.1f} s ({cpu:.1f} CPU s)")
        for n in todo:
            r = results[n]
            log.record(n, key, dt, {"checkpoint": r["checkpoint"], "curves": r["curves"]}, cpu_seconds=round(cpu, 2),
                       iterations=r["iterations"], parallel=parallel)
    agents_ckpt = {"follower": Path(log.data["train"]["files"]["checkpoint"])}
    if cfg.vision_free:
        agents_ckpt["follower_no_vision"] = Path(log.data["train_no_vision"]["files"]["checkpoint"])

    # 5. evaluation on val_unseen, and the paired vision vs vision-free comparison ----------
    def make_eval() -> tuple[dict, dict]:
        from vln_clip.agents.inference import predict_trajectories
        from vln_clip.episodes import read_episodes
        from vln_clip.agents.baselines import run_baseline
        from vln_clip.eval.formats import paths_of, predictions_from_dicts, write_r2r
        from vln_clip.eval.metrics import score_paths
        from vln_clip.graph import GraphStore

        graphs = GraphStore(conn)
        episodes = read_episodes(split_file["val_unseen"])
        results: dict[str, dict[str, float]] = {}
        paths: dict[str, dict[str, list[str]]] = {}
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
            paths[name] = paths_of(preds)
            results[name] = _metrics(score_paths(paths[name], episodes, graphs).summary(by_language=False))
        comparison = None
        if "follower_no_vision" in paths:
            comparison = compare_followers(episodes, graphs, paths["follower"], paths["follower_no_vision"],
                                           seed=cfg.seed)
            comparison["a"], comparison["b"] = "follower", "follower_no_vision"
        return files, {"metrics": results, "comparison": comparison}

    evaluation = stage("eval", cfg.key(*TRAIN_KEYS, "vision_free"), make_eval)

    # 6. test-split submission ------------------------------------------------------------
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

    # 7. one rollout, pictured -------------------------------------------------------------
    rollout_files: dict[str, Any] = {}
    if cfg.rollout:
        def make_rollout() -> tuple[dict, dict]:
            from rich.console import Console

            from vln_clip.rollout import open_rollout
            from vln_clip.viz.pictures import ViewRenderer, write_rollout_files
            from vln_clip.viz.terminal import play

            setup = open_rollout(split_file["val_unseen"], conn, None, str(agents_ckpt["follower"]), str(feats),
                                 helper="agent", max_steps=cfg.max_actions)
            buf = io.StringIO()
            result = play(setup.player, setup.actor, Console(file=buf, width=100, color_system=None),
                          interactive=False)
            rdir = out / "rollout"
            files = write_rollout_files(result, setup.graph, rdir, ViewRenderer(world_dir / "scans", conn),
                                        notes=[weights_note])
            (rdir / "transcript.txt").write_text(buf.getvalue(), encoding="utf-8")
            return ({k: v for k, v in files.as_dict().items() if v},
                    {"instr_id": result.episode.instr_id, "metrics": _metrics(result.metrics),
                     "moves": result.moves})

        rollout_files = stage("rollout", cfg.key(*TRAIN_KEYS), make_rollout)

    summary = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "weights": "random" if random_weights else (weights or "pretrained (default tag)"),
        "weights_note": weights_note,
        "agents": evaluation["metrics"],
        "comparison": evaluation.get("comparison"),
        "stage_seconds": {k: v.get("seconds") for k, v in log.data.items()},
        "stage_cpu_seconds": {k: v.get("cpu_seconds") for k, v in log.data.items()},
        "this_run_seconds": round(time.perf_counter() - t_all, 2),
        "files": {
            "features": str(feats),
            "checkpoints": {k: str(v) for k, v in agents_ckpt.items()},
            "curves": {k: log.data[k]["files"].get("curves") for k in names},
            "predictions": evaluation.get("files", {}),
            "submission": submission["files"]["submission"],
            "rollout": rollout_files.get("files", {}),
        },
    }
    write_json(out / "demo.json", summary, indent=1)
    return summary


def comparison_line(comparison: dict[str, Any] | None) -> str:
    """One sentence: the paired SR difference of the two followers with its interval."""
    if not comparison:
        return "vision vs vision-free: not run (no vision-free follower)"
    s = comparison["success"]
    lo, hi = s["ci95"]
    verdict = ("vision helps" if lo > 0 else "vision hurts" if hi < 0 else "no significant difference")
    return (f"vision vs vision-free (paired, {comparison['instructions']} instructions, {comparison['paths']} paths): "
            f"SR {s['a']:.1f} vs {s['b']:.1f}, difference {s['a_minus_b']:+.1f} points, 95% CI "
            f"[{lo:+.1f}, {hi:+.1f}]: {verdict}")
