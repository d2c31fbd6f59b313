"""Does image-text matching leave chance from scratch? The init probe of docs/pretraining.md.

``python benchmarks/pretraining_init_probe.py --data DIR --encoder-checkpoint ENC.pt
--vocab VOCAB --weight-init bert`` (and again with ``fan_in``) trains the ``--preset cpu``
transformer on ITM alone (captions of the LXMERT mix only, no masking, frozen backbone, AdamW
at a constant ``--lr``, batch 16) and prints, every ``--eval-every`` updates, the training ITM
loss and the matching accuracy on the captions of the held-out images (a fixed generator: the
same mismatches at every evaluation). One JSON line per evaluation.

It isolates the transformer's start: same data, same backbone, same seed; only the weight
initialisation differs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from vln_clip.pretraining.backbone import BackboneConfig
from vln_clip.pretraining.run import pretrain_config
from vln_clip.pretraining.tasks import PretrainTask
from vln_clip.train.loop import TaskContext


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="synthetic V&L folder (lxmert/, images/)")
    ap.add_argument("--encoder-checkpoint", required=True, help="backbone: ENC.pt of `vln-clip encoders pretrain`")
    ap.add_argument("--vocab", required=True, help="WordPiece vocab.txt (e.g. a pre-training run's)")
    ap.add_argument("--weight-init", choices=("bert", "fan_in"), required=True)
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = dict(backbone=BackboneConfig(encoder_checkpoint=args.encoder_checkpoint), vocab=args.vocab,
                 weight_init=args.weight_init, cache_images=True, threads=args.threads)
    cfg = pretrain_config("cpu", model=model, data=args.data, freeze_backbone=True, mask_prob=0.0, seed=args.seed,
                          eval_examples=10**9)  # every held-out caption
    task = PretrainTask(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        task.setup(TaskContext(device=torch.device("cpu"), out_dir=Path(tmp), resuming=False))
    m = task.model
    train = [ex for ex in task.train if ex.source == "mscoco"]
    val = [ex for ex in task.val if ex.source == "mscoco"]
    keys, vkeys = [ex.image_key for ex in train], [ex.image_key for ex in val]
    opt = torch.optim.AdamW(m.transformer_parameters(), lr=args.lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed)

    def val_accuracy() -> float:
        m.eval()
        fixed, right = torch.Generator().manual_seed(4321), 0.0
        with torch.no_grad():
            for s in range(0, len(val), 32):
                idx = list(range(s, min(s + 32, len(val))))
                logs = task.batch_losses([val[i] for i in idx], idx, val, vkeys, fixed, False, m)
                right += float(logs["itm_acc"]) * len(idx)
        m.train()
        return right / len(val)

    m.train()
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(train), (16,), generator=gen).tolist()
        logs = task.batch_losses([train[i] for i in idx], idx, train, keys, gen, False, m)
        opt.zero_grad()
        logs["loss"].backward()
        opt.step()
        if step % args.eval_every == 0:
            print(json.dumps({"weight_init": args.weight_init, "step": step,
                              "train_itm_loss": round(float(logs["itm_loss"]), 4),
                              "val_itm_acc": round(val_accuracy(), 4), "val_captions": len(val)}), flush=True)


if __name__ == "__main__":
    main()
