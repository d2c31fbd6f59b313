"""The controls of docs/pretraining.md, rounds 5 and 6.

``python benchmarks/pretraining_controls.py captions-only SRC DST``: a copy of the V&L world
SRC whose LXMERT files keep only the captions (the QA sources and their labels removed), for
pre-training on captions alone. Everything else of SRC is linked, not copied.

``python benchmarks/pretraining_controls.py zero-update CKPT OUT``: a pre-training checkpoint
whose model is replaced by the same configuration's model at initialisation (0 updates; the
cell statistics calibrated as a fresh run calibrates them). Fine-tuning from it goes through
the checkpoint-loading path of a pre-trained model but gets no pre-training.

``python benchmarks/pretraining_controls.py train-fit RUN...``: for fine-tuning runs scored on
their training split too (``--eval-splits val,train``), the accuracy on the questions they
trained on (the seeded ``--max-train-examples`` subset, rebuilt from ``finetune.json``) and on
the other training questions, next to val: does a model underfit or overfit?
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from vln_clip.datasets.lxmert import LXMERTItem, read_lxmert, write_lxmert
from vln_clip.io import read_json
from vln_clip.pretraining.data import load_task
from vln_clip.pretraining.tasks import FinetuneConfig, PretrainConfig, PretrainTask, subsample
from vln_clip.train.checkpoint import seed_everything
from vln_clip.train.loop import TaskContext


def captions_only(src: Path, dst: Path) -> None:
    if not (src / "lxmert").is_dir():
        raise SystemExit(f"{src}: no lxmert/ folder; pass a world made by vln-clip data synth-vl")
    (dst / "lxmert").mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name != "lxmert" and not (dst / entry.name).exists():
            os.symlink(entry.resolve(), dst / entry.name)
    for path in sorted((src / "lxmert").glob("*.json")):
        items = [LXMERTItem(it.image_key, {s: v for s, v in it.sentences.items() if s not in it.labels}, {}, it.extra)
                 for it in read_lxmert(path)]
        write_lxmert(dst / "lxmert" / path.name, items)
        print(f"{dst / 'lxmert' / path.name}: {sum(len(v) for it in items for v in it.sentences.values())} captions")


def zero_update(ckpt_path: Path, out: Path, seed: int = 0) -> None:
    if not ckpt_path.is_file():
        raise SystemExit(f"{ckpt_path}: no such checkpoint; pass RUN/best.pt of vln-clip pretrain")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cfg = PretrainConfig.from_dict(ckpt["config"])
    with tempfile.TemporaryDirectory() as tmp:  # the run's own vocabulary, so the embedding rows match
        vocab = Path(tmp) / "vocab.txt"
        vocab.write_text("\n".join(ckpt["extra"]["vocab"]) + "\n", encoding="utf-8")
        task = PretrainTask(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab=str(vocab))))
        seed_everything(seed)  # as vln-clip pretrain seeds before building the model
        task.setup(TaskContext(device=torch.device("cpu"), out_dir=Path(tmp), resuming=False))
    fresh = task.model.state_dict()
    if set(fresh) != set(ckpt["models"]["model"]):
        raise SystemExit(f"{ckpt_path}: its model does not match its own configuration")
    ckpt["models"]["model"] = fresh
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(out.suffix + ".tmp")
    torch.save(ckpt, tmp_out)
    os.replace(tmp_out, out)
    print(f"{out}: the model of {ckpt_path} at 0 updates")


def train_fit(runs: list[Path]) -> None:
    for run in runs:
        paths = [run / "finetune.json", run / "train_scores.json", run / "val_scores.json"]
        if not all(p.is_file() for p in paths):
            raise SystemExit(f"{run}: needs finetune.json, train_scores.json and val_scores.json; rerun its "
                             "vln-clip finetune command with --resume --eval-splits val,train (on a copy)")
        cfg = FinetuneConfig.from_dict(read_json(paths[0])["config"])
        data = load_task(cfg.data, cfg.task, (), cfg.train_split, cfg.min_answer_count)
        trained = {str(ex.qid) for ex in subsample(data.train, cfg.max_train_examples, cfg.seed)}
        scores, val = read_json(paths[1]), read_json(paths[2])
        seen = [v for k, v in scores.items() if k in trained]
        other = [v for k, v in scores.items() if k not in trained]

        def pct(xs: list[float]) -> str:
            return f"{100 * sum(xs) / len(xs):.2f} (n={len(xs)})" if xs else "-"

        print(f"{run}: trained-on {pct(seen)}  other train {pct(other)}  val {pct(list(val.values()))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("captions-only", help="a copy of a V&L world with caption-only LXMERT files")
    c.add_argument("src", type=Path)
    c.add_argument("dst", type=Path)
    z = sub.add_parser("zero-update", help="a pre-training checkpoint with its model at initialisation")
    z.add_argument("ckpt", type=Path)
    z.add_argument("out", type=Path)
    z.add_argument("--seed", type=int, default=0, help="seed of the initial draw (vln-clip pretrain's default: 0)")
    f = sub.add_parser("train-fit", help="accuracy on the trained-on questions, the other train questions and val")
    f.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cmd == "captions-only":
        captions_only(args.src, args.dst)
    elif args.cmd == "train-fit":
        train_fit(args.runs)
    else:
        zero_update(args.ckpt, args.out, args.seed)


if __name__ == "__main__":
    main()
