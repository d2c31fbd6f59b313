"""A complete task on the training core, small enough to read in one go (and to test with).

Regression of a fixed random "teacher" network ``y = tanh(x A) b + noise`` by a two-part
student: a ``backbone`` (linear + tanh + dropout) trained with SGD and momentum, and a
``head`` (linear) trained with AdamW under warm-up + cosine decay, the same split of
optimizers CLIP-ViL uses for the CLIP backbone and the transformer. It is the worked
example of docs/training-core.md and the model of the DDP equivalence test::

    python -m vln_clip.train.example --out runs/toy --iters 200
    python -m vln_clip.train.example --out runs/toy --iters 400 --resume     # continue
    torchrun --nproc_per_node 2 -m vln_clip.train.example --out runs/toy_ddp --iters 200

Under torchrun each rank takes its share of every global ``--batch-size`` batch, so the two
commands above train the same model (up to float summation order).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import distributed
from .config import LoopConfig, OptimizerConfig
from .loop import DataOrder, Task, TaskContext, fit


@dataclass
class ToyConfig:
    """Data and model sizes of the toy regression; two optimizer configs."""

    n_train: int = 256
    n_val: int = 128
    in_dim: int = 8
    hidden: int = 16
    batch_size: int = 32  # global batch (all ranks together)
    dropout: float = 0.0
    noise: float = 0.05
    data_seed: int = 1234
    backbone_optim: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig("sgd", lr=0.05, momentum=0.9, grad_clip=5.0))
    head_optim: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig("adamw", lr=0.01, weight_decay=0.01, schedule="cosine",
                                                warmup_steps=5))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ToyConfig":
        values = dict(data)
        for key in ("backbone_optim", "head_optim"):
            if isinstance(values.get(key), dict):
                values[key] = OptimizerConfig.from_dict(values[key])
        return cls(**values)


def toy_data(cfg: ToyConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train/val inputs and targets, the same on every rank and run (own generator)."""
    g = torch.Generator().manual_seed(cfg.data_seed)
    a = torch.randn(cfg.in_dim, cfg.hidden, generator=g) / cfg.in_dim ** 0.5
    b = torch.randn(cfg.hidden, 1, generator=g)
    x = torch.randn(cfg.n_train + cfg.n_val, cfg.in_dim, generator=g)
    y = torch.tanh(x @ a) @ b + cfg.noise * torch.randn(len(x), 1, generator=g)
    return x[: cfg.n_train], y[: cfg.n_train], x[cfg.n_train:], y[cfg.n_train:]


class ToyRegression(Task):
    """The toy task: models ``backbone`` + ``head``, optimizers of the same names."""

    kind = "toy-regression"

    def __init__(self, config: ToyConfig | None = None) -> None:
        self.config = config or ToyConfig()

    def setup(self, ctx: TaskContext) -> None:
        c = self.config
        self.device = ctx.device
        x, y, vx, vy = toy_data(c)
        self.x, self.y = x.to(ctx.device), y.to(ctx.device)
        self.vx, self.vy = vx.to(ctx.device), vy.to(ctx.device)
        # the model is built after the loop seeded the RNGs: same seed, same initial weights
        self.backbone = nn.Sequential(nn.Linear(c.in_dim, c.hidden), nn.Tanh(), nn.Dropout(c.dropout)).to(ctx.device)
        self.head = nn.Linear(c.hidden, 1).to(ctx.device)
        self.train_order = DataOrder(c.n_train, c.batch_size, seed=c.data_seed)

    def models(self) -> dict[str, nn.Module]:
        return {"backbone": self.backbone, "head": self.head}

    def optimizers(self) -> dict[str, tuple[Any, OptimizerConfig]]:
        return {"backbone": (self.backbone.parameters(), self.config.backbone_optim),
                "head": (self.head.parameters(), self.config.head_optim)}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        idx = self.train_order.next().to(self.device)
        pred = self.module("head")(self.module("backbone")(self.x[idx]))
        return {"loss": F.mse_loss(pred, self.y[idx])}

    def evaluate(self) -> dict[str, float]:
        pred = self.head(self.backbone(self.vx))
        return {"val/mse": float(F.mse_loss(pred, self.vy))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Toy regression on the vln_clip training core (docs/training-core.md).")
    p.add_argument("--out", required=True)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (all ranks together)")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--progress", default="auto", choices=("auto", "bar", "plain", "off"))
    args = p.parse_args(argv)
    task = ToyRegression(ToyConfig(batch_size=args.batch_size, dropout=args.dropout))
    loop = LoopConfig(out_dir=args.out, iters=args.iters, eval_every=args.eval_every, save_every=args.save_every,
                      log_every=args.log_every, seed=args.seed, device=args.device, best_metric="val/mse",
                      best_mode="min", resume=args.resume or None, progress=args.progress)
    try:
        result = fit(task, loop)
    finally:
        distributed.shutdown()
    if task.train_order.rank == 0:
        print(json.dumps({"step": result.step, "metrics": result.metrics, "best_score": result.best_score,
                          "interrupted": result.interrupted}))
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
