"""The controls of docs/pretraining.md, round 5.

``python benchmarks/pretraining_controls.py captions-only SRC DST``: a copy of the V&L world
SRC whose LXMERT files keep only the captions (the QA sources and their labels removed), for
pre-training on captions alone. Everything else of SRC is linked, not copied.

``python benchmarks/pretraining_controls.py zero-update CKPT OUT``: a pre-training checkpoint
whose model is replaced by the same configuration's model at initialisation (0 updates; the
cell statistics calibrated as a fresh run calibrates them). Fine-tuning from it goes through
the checkpoint-loading path of a pre-trained model but gets no pre-training.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import torch

from vln_clip.datasets.lxmert import LXMERTItem, read_lxmert, write_lxmert
from vln_clip.pretraining.tasks import PretrainConfig, PretrainTask
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
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cmd == "captions-only":
        captions_only(args.src, args.dst)
    else:
        zero_update(args.ckpt, args.out, args.seed)


if __name__ == "__main__":
    main()
