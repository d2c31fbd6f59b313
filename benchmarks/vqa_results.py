"""The VQA evidence of docs/vqa.md on the synthetic V&L world, one subcommand per step.

* ``oracle``: an *oracle grid store*: for each image, a grid of cells (7 along the shorter
  side) whose channels are multi-hot: the types and colours of the objects whose box covers
  the cell (from ``DIR/scenes.json``), plus the room type in every cell. No pixels, no CLIP: what
  a perfect encoder could tell the VQA models; it separates "the model cannot learn the task"
  from "the features carry too little".
* ``probe``: linear probe (softmax regression on the mean-pooled, standardised grid) of each
  store for the room type and the colour of the first object of every image (train images ->
  val images), next to the majority class: do the features carry what the questions ask?
* ``suite``: train and validate the prior, the question-only model and both models on one
  store, in one process (one torch thread), and write ``OUT/results.json`` with the official
  accuracy per answer type and the wall time of each run; ``--only`` picks runs.
* ``table``: the Markdown table of one or more ``results.json``.

    D=/tmp/vl_std/vl
    vln-clip features grid --encoder clip_res50 --random-weights --images $D/images \\
        --out runs/vqa/grid_rn50_random.h5 --short-side 224 --long-side 320
    python benchmarks/vqa_results.py oracle --data $D --out runs/vqa/grid_oracle.h5
    python benchmarks/vqa_results.py suite --data $D --features runs/vqa/grid_rn50_random.h5 --out runs/vqa/rn50
    python benchmarks/vqa_results.py table runs/vqa/rn50/results.json runs/vqa/oracle/results.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ORACLE_CELLS = 7  # cells along the shorter side (a 224-pixel short side at stride 32)
RUNS = ("prior", "question_only", "pythia", "mcan")


def oracle_grid_features(data: Path, out: Path, cells: int = ORACLE_CELLS) -> Path:
    """Write the oracle grid store of every image in ``data/scenes.json`` (see module docstring)."""
    from vln_clip.features.store import FeatureWriter
    from vln_clip.synth.world import FURNITURE, PALETTE, ROOM_TYPES

    types, colours, rooms = sorted(FURNITURE), sorted(PALETTE), list(ROOM_TYPES)
    off_c, off_r = len(types), len(types) + len(colours)
    dim = off_r + len(rooms)
    scenes = json.loads((data / "scenes.json").read_text())
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        tmp.unlink()
    with FeatureWriter(tmp, dim, {"kind": "grid", "encoder": "oracle_scene",
                                  "weights": "scene description (no pixels)"}, dtype="float32", flush_every=0) as w:
        for key, s in sorted(scenes.items()):
            width, height = int(s["width"]), int(s["height"])
            scale = cells / min(width, height)
            gh, gw = max(1, round(height * scale)), max(1, round(width * scale))
            grid = np.zeros((gh, gw, dim), dtype=np.float32)
            grid[:, :, off_r + rooms.index(s["room"]["type"])] = 1.0
            for o in s["objects"]:  # "partial" objects have no box (and the questions avoid them)
                x0, y0, x1, y1 = o["bbox"]
                r0, r1 = int(y0 * gh / height), max(int(math.ceil(y1 * gh / height)), int(y0 * gh / height) + 1)
                c0, c1 = int(x0 * gw / width), max(int(math.ceil(x1 * gw / width)), int(x0 * gw / width) + 1)
                grid[r0:r1, c0:c1, types.index(o["type"])] = 1.0
                grid[r0:r1, c0:c1, off_c + colours.index(o["colour"])] = 1.0
            w.write_item(key, grid)
    os.replace(tmp, out)
    return out


def probe(data: Path, store_path: str, steps: int = 300) -> dict[str, dict[str, float]]:
    """Val accuracy (%) of a linear probe and of the majority class, per target (see module docstring)."""
    from collections import Counter

    import torch

    from vln_clip.features.store import FeatureStore

    scenes = json.loads((data / "scenes.json").read_text())
    store = FeatureStore(store_path)
    keys = {sp: [k for k, sc in sorted(scenes.items()) if sc["split"] == sp and k in store] for sp in ("train", "val")}
    feats = {sp: torch.tensor(np.stack([store.get_item(k).reshape(-1, store.dim).mean(0) for k in ks]))
             for sp, ks in keys.items()}
    mu, sd = feats["train"].mean(0), feats["train"].std(0) + 1e-6
    targets = {"room": lambda sc: sc["room"]["type"],
               "first_object_colour": lambda sc: sc["objects"][0]["colour"] if sc["objects"] else "none"}
    out = {}
    for name, fn in targets.items():
        labels = {sp: [fn(scenes[k]) for k in ks] for sp, ks in keys.items()}
        classes = sorted(set(labels["train"]))
        y = torch.tensor([classes.index(v) for v in labels["train"]])
        x = (feats["train"] - mu) / sd
        w = torch.zeros(x.shape[1], len(classes), requires_grad=True)
        b = torch.zeros(len(classes), requires_grad=True)
        opt = torch.optim.Adam([w, b], lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ w + b, y) + 1e-3 * (w * w).sum()
            loss.backward()
            opt.step()
        pred = (((feats["val"] - mu) / sd) @ w + b).argmax(1).tolist()
        acc = float(np.mean([classes[p] == t for p, t in zip(pred, labels["val"])]))
        majority = Counter(labels["train"]).most_common(1)[0][0]
        out[name] = {"probe": 100 * acc, "majority": 100 * float(np.mean([t == majority for t in labels["val"]]))}
    return out


def _run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from vln_clip.train import LoopConfig
    from vln_clip.vqa.training import VQATrainConfig, train_prior, train_vqa

    out = Path(args.out) / name
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    common = dict(data=args.data, answer_min_count=args.answer_min_count, batch_size=args.batch_size, lr=args.lr)
    if name == "prior":
        res = train_prior(VQATrainConfig(model="prior", data=args.data), out)
        metrics, step = res.metrics, 0
    else:
        family = args.question_only_model if name == "question_only" else name
        cfg = VQATrainConfig(features=None if name == "question_only" else args.features, model=family,
                             preset=args.preset, question_only=name == "question_only",
                             feature_norm=args.feature_norm, **common)
        loop = LoopConfig(out_dir=str(out), epochs=args.epochs, eval_every=0, save_every=0, log_every=50,
                          seed=args.seed, progress="plain", resume=True if (out / "last.pt").exists() else None)
        fit = train_vqa(cfg, loop)
        # the best epoch's validation scores (best.pt), as `vln-clip vqa predict` would use
        from vln_clip.train import load_checkpoint

        metrics = load_checkpoint(fit.best_checkpoint)["metrics"] if fit.best_checkpoint else fit.metrics
        step = fit.step
    return {"run": name, "features": None if name in ("prior", "question_only") else args.features,
            "feature_norm": args.feature_norm,
            "preset": args.preset, "epochs": args.epochs, "updates": step, "metrics": metrics,
            "seconds": time.perf_counter() - t0, "load_start": load0, "load_end": os.getloadavg()[0]}


def suite(args: argparse.Namespace) -> Path:
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for name in (args.only or RUNS):
        print(f"== {name}", file=sys.stderr, flush=True)
        results[name] = _run(name, args)
        from vln_clip.io import write_json

        write_json(path, results, indent=1)
        print(json.dumps(results[name]), file=sys.stderr, flush=True)
    return path


def table(paths: list[str]) -> str:
    rows = ["| features | run | overall | yes/no | number | other | updates | wall |",
            "|---|---|---|---|---|---|---|---|"]
    for p in paths:
        for r in json.loads(Path(p).read_text()).values():
            m = r["metrics"]
            feats = Path(r["features"]).name if r["features"] else "-"
            wall = f"{r['seconds'] / 60:.1f} min (load {r['load_start']:.0f}-{r['load_end']:.0f})"
            rows.append(f"| {feats} | {r['run']} | {m['val/accuracy']:.2f} | {m.get('val/accuracy_yes_no', 0):.2f} | "
                        f"{m.get('val/accuracy_number', 0):.2f} | {m.get('val/accuracy_other', 0):.2f} | "
                        f"{r['updates']} | {wall} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("oracle", help="oracle grid store from DIR/scenes.json")
    o.add_argument("--data", required=True, type=Path)
    o.add_argument("--out", required=True, type=Path)
    o.add_argument("--cells", type=int, default=ORACLE_CELLS)
    s = sub.add_parser("suite", help="prior, question-only, Pythia and MCAN on one store")
    s.add_argument("--data", required=True)
    s.add_argument("--features", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--only", nargs="*", choices=RUNS)
    s.add_argument("--preset", default="tiny")
    s.add_argument("--question-only-model", default="mcan", choices=("mcan", "pythia"))
    s.add_argument("--epochs", type=int, default=12)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--answer-min-count", type=int, default=9)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--feature-norm", default="standardize", choices=("none", "standardize"))
    pb = sub.add_parser("probe", help="linear probe of stores for room type / object colour")
    pb.add_argument("--data", required=True, type=Path)
    pb.add_argument("stores", nargs="+")
    t = sub.add_parser("table", help="Markdown table of results.json files")
    t.add_argument("results", nargs="+")
    args = p.parse_args(argv)
    if args.cmd == "oracle":
        print(oracle_grid_features(args.data, args.out, args.cells))
    elif args.cmd == "probe":
        import torch

        torch.set_num_threads(1)
        for st in args.stores:
            print(json.dumps({"store": st, **probe(args.data, st)}))
    elif args.cmd == "suite":
        print(suite(args))
    else:
        print(table(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
