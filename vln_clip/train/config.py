"""Run configs of the training core: one optimizer (with its own schedule), one loop.

Both are plain dataclasses so that a checkpoint can hold them as dicts (``to_dict``) and a
run can be rebuilt from the checkpoint alone (``from_dict`` ignores unknown keys, so a newer
checkpoint still opens). Task-specific settings (model sizes, loss weights, data paths) live
in the task's own config, not here: the loop knows nothing about VLN, VQA or captioning.

A run may hold several optimizers, each over its own parameters and with its own schedule:
CLIP-ViL fine-tunes the CLIP backbone with SGD while the transformer on top trains with
AdamW, so the two need separate learning rates, warm-ups and decays.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

OPTIMIZERS = ("sgd", "adamw", "adam", "rmsprop")
SCHEDULES = ("constant", "linear", "cosine", "step")
BEST_MODES = ("max", "min")
PROGRESS_MODES = ("auto", "bar", "plain", "off")

_C = TypeVar("_C")


def _from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in data.items() if k in names}
    for key in ("betas", "milestones", "report_keys"):
        if key in values and isinstance(values[key], list):
            values[key] = tuple(values[key])
    return cls(**values)


@dataclass
class OptimizerConfig:
    """One optimizer over one set of parameters, with its learning-rate schedule.

    ``name``: sgd | adamw | adam | rmsprop (the torch.optim classes; RMSprop uses ``alpha``
    as its smoothing constant, SGD and RMSprop use ``momentum``, Adam/AdamW ``betas``).
    ``grad_clip``: clip the global L2 norm of *this optimizer's* gradients before its step
    (None or 0 = no clipping).

    Schedule: the learning rate at update ``s`` (0-based) is ``lr * factor(s)`` with

    * hold (all schedules): ``factor = 0`` while ``s < hold_steps`` (parameters that wait, e.g.
      a pretrained backbone held fixed until the randomly initialised layers above it have
      trained for a while; the optimizer still runs, at learning rate 0);
    * warm-up (all schedules): ``factor = (s + 1) / warmup_steps`` while ``s < warmup_steps``;
    * ``constant``: 1 afterwards;
    * ``linear``: ``(T - s) / (T - warmup_steps)``, reaching 0 at ``T = total_steps``;
    * ``cosine``: ``0.5 (1 + cos(pi p))`` with ``p = (s - warmup_steps) / (T - warmup_steps)``;
    * ``step``: ``gamma ** k``, ``k`` = number of ``milestones`` (absolute update counts) <= ``s``.

    ``total_steps`` None means the run's total number of updates (``LoopConfig.iters`` or
    epochs x batches per epoch), which is what one usually wants.
    """

    name: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.0
    alpha: float = 0.99
    grad_clip: float | None = None
    schedule: str = "constant"
    warmup_steps: int = 0
    hold_steps: int = 0
    total_steps: int | None = None
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer name must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.hold_steps < 0:
            raise ValueError("lr must be > 0, weight_decay, warmup_steps and hold_steps >= 0")
        if self.total_steps is not None and self.total_steps < 1:
            raise ValueError("total_steps must be >= 1 (or None for the run's length)")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")

    def factor(self, step: int, total_steps: int) -> float:
        """The schedule's multiplier of ``lr`` at update ``step`` (see the class docstring)."""
        total = self.total_steps or total_steps
        if step < self.hold_steps:
            return 0.0
        w = self.warmup_steps
        if step < w:
            return (step + 1) / w
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "step":
            return self.gamma ** sum(1 for m in self.milestones if m <= step)
        span = max(total - w, 1)
        progress = min(max((step - w) / span, 0.0), 1.0)
        if self.schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OptimizerConfig":
        return _from_dict(cls, data)


@dataclass
class LoopConfig:
    """How :func:`vln_clip.train.fit` runs a task: length, cadence, output, selection.

    Length: ``iters`` updates in total (counting resumed ones), or ``epochs`` passes over the
    task's training data order (``Task.steps_per_epoch()`` updates each); exactly one is set.
    ``eval_every`` / ``log_every`` / ``save_every`` count updates (0 = only at the end); the
    last update always logs and saves, and evaluates unless ``eval_at_end`` is False.

    Output under ``out_dir``: ``last.pt`` (every ``save_every`` updates, at the end and on
    Ctrl-C), ``best.pt`` (when ``best_metric`` of ``Task.evaluate()`` improves in
    ``best_mode``), ``tb/`` (TensorBoard) and ``curves.png``.

    ``seed``: seeds Python ``random``, NumPy and torch (plus the rank under torchrun) before
    ``Task.setup``; None leaves the RNGs as they are (a task that seeds itself when built).
    ``bf16``: autocast the training step to bfloat16 on CUDA (no effect on CPU).
    ``resume``: True = ``out_dir/last.pt``, or a checkpoint path; None/False = a fresh run.
    ``progress``: auto (a bar on a terminal, a plain line per ``log_every`` otherwise) |
    bar | plain | off. ``report_keys``: the losses/metrics shown in progress lines and drawn
    in curves.png (empty = all). ``eval_at_end``: evaluate after the last update even when
    ``eval_every`` does not divide ``iters``. Under torchrun: ``ddp_find_unused_parameters`` is
    passed to DDP (set it when some parameters get no gradient in a step) and
    ``dist_timeout_s`` bounds collectives and the final barrier.
    """

    out_dir: str = "runs/run"
    iters: int | None = None
    epochs: int | None = None
    eval_every: int = 1000
    log_every: int = 100
    save_every: int = 1000
    seed: int | None = 0
    device: str = "cpu"
    best_metric: str | None = None
    best_mode: str = "max"
    bf16: bool = True
    resume: str | bool | None = None
    progress: str = "auto"
    report_keys: tuple[str, ...] = ()
    eval_at_end: bool = True
    ddp_find_unused_parameters: bool = False
    dist_timeout_s: float = 1800.0

    def validate(self) -> None:
        if (self.iters is None) == (self.epochs is None):
            raise ValueError("set exactly one of LoopConfig.iters and LoopConfig.epochs")
        if (self.iters is not None and self.iters < 0) or (self.epochs is not None and self.epochs < 0):
            raise ValueError("iters / epochs must be >= 0")
        if min(self.eval_every, self.log_every, self.save_every) < 0:
            raise ValueError("eval_every, log_every and save_every must be >= 0 (0 = only at the end)")
        if self.best_mode not in BEST_MODES:
            raise ValueError(f"best_mode must be one of {BEST_MODES}, got {self.best_mode!r}")
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}, got {self.progress!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoopConfig":
        return _from_dict(cls, data)
