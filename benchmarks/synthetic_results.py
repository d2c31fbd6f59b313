"""The training evidence of docs/training.md on a synthetic world, one subcommand per step.

Each step is a normal ``vln-clip`` / Python API call, so every number can be reproduced alone
(and the single-run steps can run side by side, one per core):

* ``oracle``   : write *oracle scene features*: for each of the 36 views of a viewpoint, a
  multi-hot vector of what the scene description (``DIR/scenes/<scan>.json``) says is there:
  the viewpoint's room type, and the types, colours and room types of the objects visible in
  that view. No pixels, no CLIP: an upper bound of what a perfect encoder could tell.
* ``probe``    : linear probe, candidate view feature -> room type behind the candidate.
* ``follower`` : train and validate one follower (``--features none``: vision-free; ``--agent
  speaker``: the speaker); resumes ``OUT/last.pt``, so ``--iters`` can be raised later.
* ``compare``  : paired val_unseen comparison of two checkpoints with a path-level bootstrap.
* ``bt``       : back-translation from a follower checkpoint against plain training from it.
* ``runs``     : the whole chain in one process (untrained, speaker, vision-free, follower, BT,
  continued), for small worlds.

    W=data/synthetic
    python benchmarks/synthetic_results.py oracle --world $W
    python benchmarks/synthetic_results.py follower --world $W --features none --out runs/nv --no-rl
    python benchmarks/synthetic_results.py follower --world $W --features $W/features/clip_vit_b32_pca64.h5 --out runs/pca --no-rl
    python benchmarks/synthetic_results.py compare --world $W --a runs/nv/last.pt --b runs/pca/last.pt \
        --b-features $W/features/clip_vit_b32_pca64.h5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def oracle_scene_features(world: Path, out: Path) -> Path:
    """Write the oracle scene feature store (see module docstring) for every viewpoint."""
    from vln_clip.features.store import FeatureWriter
    from vln_clip.synth.world import FURNITURE, PALETTE, ROOM_TYPES

    types, colours, rooms = sorted(FURNITURE), sorted(PALETTE), list(ROOM_TYPES)
    off_t, off_c, off_r = len(rooms), len(rooms) + len(types), len(rooms) + len(types) + len(colours)
    dim = off_r + len(rooms)
    with FeatureWriter(out, dim, {"encoder": "oracle_scene", "weights": "scene description (no pixels)"},
                       dtype="float32") as w:
        for path in sorted((world / "scenes").glob("*.json")):
            scene = json.loads(path.read_text())
            objects = {o["id"]: o for o in scene["objects"]}
            for vp in scene["viewpoints"]:
                feats = np.zeros((36, dim), dtype=np.float32)
                feats[:, rooms.index(vp["room_type"])] = 1.0
                for v, visible in enumerate(vp["views"]):
                    for oid in visible:
                        o = objects[oid]
                        feats[v, off_t + types.index(o["type"])] = 1.0
                        feats[v, off_c + colours.index(o["colour"])] = 1.0
                        feats[v, off_r + rooms.index(o["room_type"])] = 1.0
                w.write(scene["scan"], vp["id"], feats)
    return out


def runs(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from vln_clip.agents.aug_paths import write_aug_paths
    from vln_clip.agents.config import TrainConfig
    from vln_clip.agents.trainer import Run, train

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    common = dict(data_dir=args.world, batch_size=args.batch, hidden_dim=args.hidden, eval_every=args.eval_every,
                  save_every=args.eval_every, log_every=10, max_actions=args.max_actions)
    feats = dict(features=args.features, encoder=Path(args.features).stem)
    results: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items() if k != "func"}}
    t0 = time.time()

    def row(name: str, metrics: dict[str, float]) -> None:
        results[name] = {k: round(float(metrics[k]), 4) for k in ("success", "spl", "ndtw") if k in metrics}
        if "bleu" in metrics:
            results[name]["bleu"] = round(float(metrics["bleu"]), 4)
        results[name]["minutes"] = round((time.time() - t0) / 60, 1)
        print(json.dumps({name: results[name]}), flush=True)

    def cfg(name: str, **kw: Any) -> TrainConfig:
        return TrainConfig.preset("synthetic", out_dir=str(out / name), **{**common, **kw})

    row("untrained", Run(cfg("untrained", iters=0, **feats)).evaluate("val_unseen"))
    sp = train(cfg("speaker", agent="speaker", iters=args.speaker_iters, **feats), progress=False)
    row("speaker", sp.metrics["val_unseen"])
    blind = train(cfg("follower_no_vision", iters=args.iters, no_vision=True), progress=False)
    row("follower_no_vision", blind.metrics["val_unseen"])
    fo = train(cfg("follower", iters=args.iters, **feats), progress=False)
    row("follower", fo.metrics["val_unseen"])
    aug = out / "aug_paths.json"
    write_aug_paths(Path(args.world) / "connectivity", Path(args.world) / "r2r" / "R2R_train.json", aug,
                    per_scan=args.per_scan, seed=0)
    bt = train(cfg("bt", agent="bt", iters=args.bt_iters, aug_paths=str(aug), speaker_checkpoint=str(sp.best_checkpoint),
                   follower_checkpoint=str(fo.best_checkpoint), **feats), progress=False)
    row("follower_bt", bt.metrics["val_unseen"])
    results["follower_bt"]["best_val_unseen_success"] = bt.best_score
    more = train(cfg("follower", iters=args.iters + args.bt_iters, **feats), resume=True, progress=False)
    row("follower_continued", more.metrics["val_unseen"])
    results["follower_continued"]["best_val_unseen_success"] = more.best_score
    results["follower"]["best_val_unseen_success"] = fo.best_score
    results["follower_no_vision"]["best_val_unseen_success"] = blind.best_score
    return results


def one_follower(args: argparse.Namespace) -> dict[str, Any]:
    """One follower (``--features none``: the vision-free one) or, with ``--agent speaker``, the speaker."""
    import torch

    from vln_clip.agents.config import TrainConfig
    from vln_clip.agents.trainer import train

    torch.set_num_threads(args.threads)
    blind = args.features == "none"
    cfg = TrainConfig.preset("synthetic", data_dir=args.world, out_dir=args.out, batch_size=args.batch,
                             hidden_dim=args.hidden, eval_every=args.eval_every, save_every=args.eval_every,
                             log_every=20, max_actions=args.max_actions, iters=args.iters, agent=args.agent,
                             features=None if blind else args.features, no_vision=blind, seed=args.seed,
                             encoder="clip_vit_b32" if blind else Path(args.features).stem,
                             use_rl=not args.no_rl)
    res = train(cfg, progress=False, resume=(Path(args.out) / "last.pt").exists())
    keys = ("bleu",) if args.agent == "speaker" else ("success", "spl", "ndtw")
    out = {k: round(float(res.metrics["val_unseen"][k]), 4) for k in keys}
    out["best_val_unseen"] = res.best_score
    return out


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Linear probe: does the feature of a candidate's view tell the room type of that candidate?

    For every navigation edge of the world, the feature of the view EnvDrop attaches the
    neighbour to (the panorama tables of ``vln_clip.envs.panorama``) is labelled with the room
    type of the neighbour (``DIR/scenes``). A softmax regression on standardized features is
    fitted on the training houses and scored on the val_unseen + test houses. This separates
    "the features do not carry the information" from "the follower does not learn to use it".
    """
    import torch

    from vln_clip.envs.panorama import scan_panorama
    from vln_clip.features.store import FeatureStore
    from vln_clip.graph import GraphStore

    world = Path(args.world)
    splits = json.loads((world / "world.json").read_text())["splits"]
    graphs = GraphStore(world / "connectivity")
    store = FeatureStore(args.features)

    def data(scans: list[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
        xs, ys, change = [], [], []
        for scan in scans:
            scene = json.loads((world / "scenes" / f"{scan}.json").read_text())
            room = {v["id"]: v["room_type"] for v in scene["viewpoints"]}
            g = graphs[scan]
            pano = scan_panorama(g)
            for i, vp in enumerate(g.viewpoints):
                feats = store.get(scan, vp)
                for k in range(int(pano.num_candidates[i])):
                    xs.append(feats[pano.view[i, k]])
                    ys.append(room[g.viewpoints[pano.neighbour[i, k]]])
                    change.append(ys[-1] != room[vp])
        return np.array(xs, dtype=np.float64), ys, np.array(change)

    xtr, ytr, _ = data(splits["train"])
    xte, yte, change = data(splits["val_unseen"] + splits["test"])
    classes = sorted(set(ytr) | set(yte))
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    torch.manual_seed(0)
    a, b = torch.tensor((xtr - mu) / sd), torch.tensor((xte - mu) / sd)
    ya = torch.tensor([classes.index(y) for y in ytr])
    yb = torch.tensor([classes.index(y) for y in yte])
    lin = torch.nn.Linear(a.shape[1], len(classes)).double()
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(a), ya) + 1e-3 * (lin.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc = lambda x, y: round(float((lin(x).argmax(1) == y).double().mean()), 3)  # noqa: E731
        vals, counts = np.unique(ytr, return_counts=True)
        majority = round(float(np.mean(np.array(yte) == vals[counts.argmax()])), 3)
        moves = torch.tensor(change)
        return {"features": str(args.features), "edges_train": len(ytr), "edges_unseen": len(yte),
                "classes": len(classes), "train_accuracy": acc(a, ya), "unseen_accuracy": acc(b, yb),
                "unseen_accuracy_into_another_room": acc(b[moves], yb[moves]),
                "edges_unseen_into_another_room": int(moves.sum()), "unseen_majority_class": majority}


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Paired comparison of two followers on the same val_unseen instructions.

    Both checkpoints decode every instruction greedily; the SR/SPL/nDTW differences get a 95%
    bootstrap interval that resamples *paths* (the three instructions of a path share a start and
    a goal, so they are not independent), and the instructions are split by who succeeded.
    """
    from vln_clip.agents.inference import predict_trajectories
    from vln_clip.episodes import read_episodes
    from vln_clip.eval.metrics import score_paths
    from vln_clip.graph import GraphStore

    world = Path(args.world)
    split = world / "r2r" / "R2R_val_unseen.json"
    episodes = read_episodes(split)
    graphs = GraphStore(world / "connectivity")
    cols = {}
    for name, ckpt, feats in (("a", args.a, args.a_features), ("b", args.b, args.b_features)):
        preds = predict_trajectories(ckpt, split, world / "connectivity", features=None if feats == "none" else feats)
        res = score_paths({p["instr_id"]: [t[0] for t in p["trajectory"]] for p in preds}, episodes, graphs)
        order = {e.instr_id: i for i, e in enumerate(res.episodes)}
        idx = [order[e.instr_id] for e in episodes]
        cols[name] = {k: res.column(k)[idx] for k in ("success", "spl", "ndtw")}
    paths = np.array([e.instr_id.rsplit("_", 1)[0] for e in episodes])
    groups = [np.flatnonzero(paths == p) for p in np.unique(paths)]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"a": args.a, "b": args.b, "instructions": len(episodes), "paths": len(groups)}
    for k in ("success", "spl", "ndtw"):
        d = cols["b"][k] - cols["a"][k]
        boots = [np.concatenate([d[groups[g]] for g in rng.integers(len(groups), size=len(groups))]).mean()
                 for _ in range(args.bootstrap)]
        out[k] = {"a": round(float(cols["a"][k].mean()), 4), "b": round(float(cols["b"][k].mean()), 4),
                  "b_minus_a": round(float(d.mean()), 4),
                  "ci95": [round(float(np.percentile(boots, 2.5)), 4), round(float(np.percentile(boots, 97.5)), 4)]}
    sa, sb = cols["a"]["success"] > 0.5, cols["b"]["success"] > 0.5
    out["only_a_succeeds"], out["only_b_succeeds"] = int((sa & ~sb).sum()), int((sb & ~sa).sum())
    return out


def back_translation(args: argparse.Namespace) -> dict[str, Any]:
    """BT from a follower's best checkpoint vs plain training from that same checkpoint, same iterations."""
    import shutil

    import torch

    from vln_clip.agents.aug_paths import write_aug_paths
    from vln_clip.agents.checkpoint import load_checkpoint
    from vln_clip.agents.config import TrainConfig
    from vln_clip.agents.trainer import train

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    aug = out / "aug_paths.json"
    if not aug.exists():
        write_aug_paths(Path(args.world) / "connectivity", Path(args.world) / "r2r" / "R2R_train.json", aug,
                        per_scan=args.per_scan, seed=0)
    common = dict(data_dir=args.world, batch_size=args.batch, hidden_dim=args.hidden, eval_every=args.eval_every,
                  save_every=args.eval_every, log_every=20, max_actions=args.max_actions, features=args.features,
                  encoder=Path(args.features).stem)
    start = Path(args.follower_checkpoint)
    start_cfg = load_checkpoint(start)["config"]
    if start_cfg["use_rl"] == args.no_rl:
        raise SystemExit(f"{start}: trained {'with' if start_cfg['use_rl'] else 'without'} A2C; pass "
                         f"{'no --no-rl' if start_cfg['use_rl'] else '--no-rl'} so both arms train like it")
    results: dict[str, Any] = {"start_iteration": int(load_checkpoint(start)["step"])}
    bt = train(TrainConfig.preset("synthetic", out_dir=str(out / "bt"), agent="bt", iters=args.iters,
                                  aug_paths=str(aug), speaker_checkpoint=args.speaker_checkpoint,
                                  follower_checkpoint=str(start), use_rl=not args.no_rl, **common),
               progress=False, resume=(out / "bt" / "last.pt").exists())
    results["follower_bt"] = {k: round(float(bt.metrics["val_unseen"][k]), 4) for k in ("success", "spl", "ndtw")}
    results["follower_bt"]["best_val_unseen"] = bt.best_score
    plain = out / "continued"
    plain.mkdir(exist_ok=True)
    if not (plain / "last.pt").exists():
        shutil.copyfile(start, plain / "last.pt")
    more = train(TrainConfig.preset("synthetic", out_dir=str(plain),
                                    iters=results["start_iteration"] + args.iters, **common),
                 progress=False, resume=True)
    results["follower_continued"] = {k: round(float(more.metrics["val_unseen"][k]), 4)
                                     for k in ("success", "spl", "ndtw")}
    results["follower_continued"]["best_val_unseen"] = more.best_score
    return results


def _training_options(p: argparse.ArgumentParser, iters: int, max_actions: int, eval_every: int) -> None:
    """Where a run goes and its CPU-sized schedule (shared by ``runs``, ``follower`` and ``bt``)."""
    p.add_argument("--out", required=True)
    p.add_argument("--iters", type=int, default=iters)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--max-actions", type=int, default=max_actions)
    p.add_argument("--eval-every", type=int, default=eval_every)
    p.add_argument("--threads", type=int, default=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("oracle", help="write DIR/features/oracle_scene.h5")
    o.add_argument("--world", required=True)
    r = sub.add_parser("runs", help="train and evaluate every agent")
    r.add_argument("--world", required=True)
    r.add_argument("--features", required=True)
    _training_options(r, iters=300, max_actions=35, eval_every=50)
    r.add_argument("--bt-iters", type=int, default=150)
    r.add_argument("--speaker-iters", type=int, default=300)
    r.add_argument("--per-scan", type=int, default=200)
    f = sub.add_parser("follower", help="train and evaluate one follower (or --agent speaker); resumes OUT/last.pt")
    f.add_argument("--world", required=True)
    f.add_argument("--features", required=True, help="feature store, or 'none' for the vision-free follower")
    f.add_argument("--agent", default="follower", choices=("follower", "speaker"))
    _training_options(f, iters=1200, max_actions=15, eval_every=100)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-rl", action="store_true", help="imitation only (no A2C rollout)")
    pr = sub.add_parser("probe", help="linear probe: candidate view feature -> room type of the candidate")
    pr.add_argument("--world", required=True)
    pr.add_argument("--features", required=True)
    c = sub.add_parser("compare", help="paired val_unseen comparison of two followers with a path bootstrap")
    c.add_argument("--world", required=True)
    c.add_argument("--a", required=True, help="checkpoint A (e.g. the vision-free follower)")
    c.add_argument("--a-features", default="none")
    c.add_argument("--b", required=True, help="checkpoint B")
    c.add_argument("--b-features", default="none")
    c.add_argument("--bootstrap", type=int, default=2000)
    b = sub.add_parser("bt", help="back-translation from a follower checkpoint vs plain training from it")
    b.add_argument("--world", required=True)
    b.add_argument("--features", required=True)
    b.add_argument("--follower-checkpoint", required=True)
    b.add_argument("--speaker-checkpoint", required=True)
    _training_options(b, iters=300, max_actions=15, eval_every=100)
    b.add_argument("--per-scan", type=int, default=200)
    b.add_argument("--no-rl", action="store_true", help="imitation only, for a follower trained with --no-rl")
    args = p.parse_args(argv)
    if args.cmd == "oracle":
        world = Path(args.world)
        print(oracle_scene_features(world, world / "features" / "oracle_scene.h5"))
        return 0
    jobs = {"compare": compare, "probe": probe, "bt": back_translation, "follower": one_follower, "runs": runs}
    print(json.dumps(jobs[args.cmd](args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
