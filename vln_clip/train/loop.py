"""The training loop: a :class:`Task` says what one update is; :func:`fit` does the rest.

A task (VLN follower, speaker, VQA, captioning, pre-training) supplies

* ``models()``: the modules whose weights are the run's result (saved in checkpoints,
  DDP-wrapped under torchrun, switched to ``train()`` before each step and ``eval()``
  before ``evaluate``);
* ``optimizers()``: ``{name: (parameters, OptimizerConfig)}``, one entry per optimizer,
  each over its own parameters (a parameter in two optimizers is refused) with its own
  schedule and gradient clipping;
* ``train_step(step)``: one forward pass on the next batch, returning ``{"loss": tensor,
  ...other logged tensors}``; the loop zeroes gradients, autocasts (bf16 on CUDA), calls
  ``loss.backward()``, clips, steps every optimizer and scheduler;
* ``evaluate()``: ``{metric: float}`` on validation data (run with the training random
  streams forked, so evaluating never changes what training draws);
* optionally ``setup(ctx)`` (build data and models once the device/rank are known),
  ``extra_state()`` / ``load_extra_state()`` (vocabularies, ...), ``config_dict()``.

Batches come from a :class:`DataOrder` (an epoch-wise permutation from a seeded
``torch.Generator``, sharded by rank): its position is saved in checkpoints, so a resumed
run sees exactly the batches the uninterrupted run would have seen. Under DDP, call the
models through :meth:`Task.module` (the DDP wrapper) in ``train_step``.

:class:`Trainer` holds the run state (optimizers, schedulers, step, best score, history)
and does single updates; :func:`fit` runs the full loop with checkpoints, TensorBoard,
progress, SIGINT-safe saves and ``curves.png``. See docs/training-core.md.
"""

from __future__ import annotations

import dataclasses
import abc
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

import torch

from vln_clip.errors import DataError
from vln_clip.io import atomic_path

from . import distributed
from .checkpoint import Converter, fork_rng, load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .config import LoopConfig, OptimizerConfig

ParamSpec = Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]


# ------------------------------------------------------------------------------------------
# Data order


class DataOrder:
    """Which training rows each update uses: resumable, seeded, sharded by rank.

    Each epoch is a fresh ``torch.randperm(n)`` drawn from ``generator``; batches are
    consecutive slices of ``batch_size`` rows; a tail shorter than a batch is dropped (the next
    epoch starts), so every batch has the same size. Under torchrun every rank draws the same
    permutation (same seed) and keeps rows ``rank, rank + W, ...`` of each global batch, so
    ``batch_size`` is the *global* batch and must be divisible by the world size.

    ``generator`` may be shared between orders (VLN's real and augmented batches draw from
    one stream); otherwise each order owns ``torch.Generator().manual_seed(seed)``. The state
    (generator, permutation, cursor, epoch) goes into checkpoints via :meth:`state_dict`.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, generator: torch.Generator | None = None,
                 rank: int | None = None, world_size: int | None = None) -> None:
        if n < 1:
            raise DataError("DataOrder: the training set is empty; check the training split")
        info = distributed.current()
        self.rank = info.rank if rank is None else rank
        self.world_size = info.world_size if world_size is None else world_size
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.n = n
        self.batch_size = min(batch_size, n)
        if self.batch_size % self.world_size:
            raise ValueError(f"global batch size {self.batch_size} is not divisible by the world size "
                             f"{self.world_size}; pick a multiple so every rank gets the same share")
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.cursor = 0
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def next_global(self) -> torch.Tensor:
        """The next global batch (all ranks' rows), as CPU long indices."""
        if self.cursor + self.batch_size > len(self.order):
            self.order = torch.randperm(self.n, generator=self.generator)
            self.cursor = 0
            self.epoch += 1
        idx = self.order[self.cursor: self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx

    def next(self) -> torch.Tensor:
        """This rank's rows of the next global batch (CPU long indices, no device sync)."""
        idx = self.next_global()
        return idx[self.rank:: self.world_size] if self.world_size > 1 else idx

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "cursor": self.cursor,
                "epoch": self.epoch, "n": self.n, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("n", self.n)) != self.n:
            raise DataError(f"checkpoint data order covers {state['n']} training rows, this run has {self.n}; "
                            "resume with the same training data")
        self.generator.set_state(state["generator"])
        self.order = state["order"].clone()
        self.cursor = int(state["cursor"])
        self.epoch = int(state.get("epoch", 0))


# ------------------------------------------------------------------------------------------
# Task


@dataclass
class TaskContext:
    """What :meth:`Task.setup` learns from the loop: device, rank, output folder, resume."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    out_dir: Path = Path(".")
    resuming: bool = False


class Task(abc.ABC):
    """Base class of what :func:`fit` drives. Subclass it and override the methods below.

    Required: :meth:`models`, :meth:`optimizers`, :meth:`train_step`. Usually also
    :meth:`evaluate` (for best-checkpoint selection) and ``kind``. Data orders
    (:class:`DataOrder` attributes) are found and checkpointed automatically.
    """

    kind: str = "task"
    #: tasks whose models are not called through ``forward`` (VLN's ``encode``/``step``)
    #: cannot use DDP; they set this False and fit refuses to run them under torchrun.
    supports_distributed: bool = True
    #: converters from older checkpoint formats (``{format tag: function}``), used on resume
    checkpoint_converters: dict[str, Converter] = {}
    _train_modules: dict[str, torch.nn.Module] | None = None

    def setup(self, ctx: TaskContext) -> None:
        """Build data and models here when they depend on the device or rank (optional)."""

    @abc.abstractmethod
    def models(self) -> dict[str, torch.nn.Module]:
        """The modules whose weights are the run's result."""

    @abc.abstractmethod
    def optimizers(self) -> dict[str, tuple[ParamSpec, OptimizerConfig]]:
        """``{name: (parameters, OptimizerConfig)}``, one entry per optimizer."""

    @abc.abstractmethod
    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One forward pass on the next batch; must return ``{"loss": scalar tensor, ...}``."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (flat ``{name: float}``; names like ``val/accuracy``)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Task data the checkpoint must hold besides the models (vocabularies, sizes)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`, called when resuming."""

    def config_dict(self) -> dict[str, Any]:
        """The task's own config, saved as the checkpoint's ``config`` (a dataclass ``config``
        attribute is converted automatically)."""
        cfg = getattr(self, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            return cfg.to_dict()
        if cfg is not None and dataclasses.is_dataclass(cfg):
            return dataclasses.asdict(cfg)  # type: ignore[arg-type]
        return {}

    def data_orders(self) -> dict[str, DataOrder]:
        """The :class:`DataOrder` objects to checkpoint (default: every such attribute)."""
        return {k: v for k, v in vars(self).items() if isinstance(v, DataOrder)}

    def steps_per_epoch(self) -> int:
        """Updates per epoch (for ``LoopConfig.epochs``): the first data order's batches."""
        orders = list(self.data_orders().values())
        if not orders:
            raise ValueError(f"{type(self).__name__}: LoopConfig.epochs needs a DataOrder attribute "
                             "or a steps_per_epoch() method")
        return orders[0].batches_per_epoch

    def bind_modules(self, modules: dict[str, torch.nn.Module]) -> None:
        """Called by the loop with the modules to use in ``train_step`` (DDP wrappers or not)."""
        self._train_modules = modules

    def module(self, name: str) -> torch.nn.Module:
        """The module to call in ``train_step``: the DDP wrapper under torchrun, else the model."""
        if self._train_modules is not None and name in self._train_modules:
            return self._train_modules[name]
        return self.models()[name]


# ------------------------------------------------------------------------------------------
# Trainer: optimizers, schedulers and one update


def build_optimizer(params: ParamSpec, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The torch.optim optimizer named by ``cfg`` over ``params``."""
    cfg.validate()
    p = list(params)
    if cfg.name == "sgd":
        return torch.optim.SGD(p, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(p, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(p, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(p, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, weight_decay=cfg.weight_decay,
                               momentum=cfg.momentum)


class ScheduleFactor:
    """``OptimizerConfig.factor`` as the picklable callable ``LambdaLR`` wants."""

    def __init__(self, cfg: OptimizerConfig, total_steps: int) -> None:
        self.cfg = cfg
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        return self.cfg.factor(step, self.total_steps)


def _optimizer_params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


class Trainer:
    """One run's state around a task: optimizers, schedulers, step, best score, history.

    ``update()`` performs one training update; ``state_dict()`` / ``load_state_dict()`` are
    the checkpoint (see :mod:`vln_clip.train.checkpoint`); :meth:`fit` runs the loop.
    Construction seeds the RNGs (``LoopConfig.seed``), joins a torchrun job if launched by
    one, calls ``task.setup``, builds the optimizers and wraps the models in DDP.
    """

    def __init__(self, task: Task, cfg: LoopConfig) -> None:
        cfg.validate()
        self.task = task
        self.cfg = cfg
        self.dist, self.device = distributed.init_from_env(cfg.device, cfg.dist_timeout_s)
        if self.dist.distributed and not task.supports_distributed:
            raise DataError(f"{type(task).__name__} does not support torchrun (its models are not called "
                            "through forward); run it as one process")
        self.out_dir = Path(cfg.out_dir)
        if cfg.seed is not None:
            seed_everything(cfg.seed + self.dist.rank)
        task.setup(TaskContext(self.device, self.dist.rank, self.dist.world_size, self.out_dir, bool(cfg.resume)))
        self.total_steps = cfg.iters if cfg.iters is not None else int(cfg.epochs or 0) * task.steps_per_epoch()
        self.optim_cfgs: dict[str, OptimizerConfig] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        owner: dict[int, str] = {}
        for name, (params, ocfg) in task.optimizers().items():
            opt = build_optimizer(params, ocfg)
            for p in _optimizer_params(opt):
                if id(p) in owner:
                    raise ValueError(f"a parameter is in optimizers {owner[id(p)]!r} and {name!r}; "
                                     "give every parameter to exactly one optimizer")
                owner[id(p)] = name
            self.optim_cfgs[name] = ocfg
            self.optimizers[name] = opt
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(opt, ScheduleFactor(ocfg, max(self.total_steps, 1)))
        if not self.optimizers:
            raise ValueError(f"{type(task).__name__}.optimizers() returned no optimizer")
        self.modules = distributed.wrap_models(task.models(), self.device, cfg.ddp_find_unused_parameters)
        task.bind_modules(self.modules)
        self.step = 0
        self.best_score: float | None = None
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, float] = {}
        self.autocast = cfg.bf16 and self.device.type == "cuda"

    # -- one update ------------------------------------------------------------------------
    def lrs(self) -> dict[str, float]:
        return {f"lr/{n}": float(o.param_groups[0]["lr"]) for n, o in self.optimizers.items()}

    def update(self) -> dict[str, float]:
        """One update: zero grads, ``task.train_step``, backward, clip, optimizer + scheduler steps."""
        for m in self.task.models().values():
            m.train()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            logs = self.task.train_step(self.step)
        if "loss" not in logs:
            raise ValueError(f"{type(self.task).__name__}.train_step must return a dict with 'loss'")
        logs["loss"].backward()
        for name, opt in self.optimizers.items():
            clip = self.optim_cfgs[name].grad_clip
            if clip:
                torch.nn.utils.clip_grad_norm_(_optimizer_params(opt), clip)
            opt.step()
            self.schedulers[name].step()
        self.step += 1
        return {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in logs.items()}

    def evaluate(self) -> dict[str, float]:
        """``task.evaluate()`` in eval mode with the RNG streams forked; averaged over ranks."""
        for m in self.task.models().values():
            m.eval()
        with fork_rng(self.device), torch.no_grad():
            metrics = self.task.evaluate()
        metrics = distributed.all_reduce_mean({k: float(v) for k, v in metrics.items()})
        self.metrics = metrics
        return metrics

    def improved(self, metrics: dict[str, float]) -> bool:
        """Whether ``metrics`` beats the best score so far (and record it if so)."""
        key = self.cfg.best_metric
        if key is None:
            return False
        if key not in metrics:
            raise DataError(f"best_metric {key!r} is not among the evaluate() metrics ({', '.join(sorted(metrics))})")
        score = float(metrics[key])
        better = (self.best_score is None or (score > self.best_score if self.cfg.best_mode == "max"
                                              else score < self.best_score))
        if better:
            self.best_score = score
        return better

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The checkpoint payload (collective under torchrun: every rank must call it)."""
        rngs = distributed.gather_objects(rng_state())
        out = {
            "kind": self.task.kind,
            "config": self.task.config_dict(),
            "loop": self.cfg.to_dict(),
            "optim": {n: c.to_dict() for n, c in self.optim_cfgs.items()},
            "models": {k: v.state_dict() for k, v in self.task.models().items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "step": self.step,
            "best_score": self.best_score,
            "history": list(self.history),
            "metrics": dict(self.metrics),
            "rng": rngs[0],
            "data_orders": {k: v.state_dict() for k, v in self.task.data_orders().items()},
            "extra": self.task.extra_state(),
        }
        if self.dist.distributed:
            out["rng_ranks"] = rngs
        return out

    def save(self, path: Path, **more: Any) -> Path:
        """Write the checkpoint on rank 0 (all ranks take part in gathering RNG states)."""
        payload = self.state_dict()
        if self.dist.is_main:
            save_checkpoint(path, {**payload, **more})
        return path

    def load_state_dict(self, ckpt: dict[str, Any], source: str = "checkpoint") -> None:
        """Continue from ``ckpt``: models, optimizers, schedulers, step, RNG, data orders."""
        if ckpt.get("kind") != self.task.kind:
            raise DataError(f"{source}: a {ckpt.get('kind')!r} checkpoint cannot resume a {self.task.kind!r} run")
        models = self.task.models()
        missing = set(models) - set(ckpt["models"])
        if missing:
            raise DataError(f"{source}: no weights for model(s) {sorted(missing)}; resume a checkpoint of this setup")
        for k, mod in models.items():
            mod.load_state_dict(ckpt["models"][k])
        for k, opt in self.optimizers.items():
            if k not in ckpt["optimizers"]:
                raise DataError(f"{source}: no state for optimizer {k!r} (has {sorted(ckpt['optimizers'])})")
            opt.load_state_dict(ckpt["optimizers"][k])
        self.step = int(ckpt["step"])
        for k, sched in self.schedulers.items():
            state = ckpt.get("schedulers", {}).get(k)
            if state is not None:
                sched.load_state_dict(state)
            else:  # a converted checkpoint of an older format: position the schedule at ``step``
                sched.last_epoch = self.step
                for g, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
                    g["lr"] = base * fn(self.step)
                sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]  # what get_last_lr() reports
        self.best_score = ckpt.get("best_score")
        self.history = list(ckpt.get("history", []))
        self.metrics = dict(ckpt.get("metrics", {}))
        orders = self.task.data_orders()
        for k, order in orders.items():
            if k in ckpt.get("data_orders", {}):
                order.load_state_dict(ckpt["data_orders"][k])
        self.task.load_extra_state(ckpt.get("extra", {}))
        ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
        if len(ranks) != self.dist.world_size:
            raise DataError(f"{source}: saved by {len(ranks)} process(es), resumed with {self.dist.world_size}; "
                            "resume with the same torchrun --nproc_per_node x --nnodes (every rank continues "
                            "its own random streams)")
        set_rng_state(ranks[self.dist.rank])

    # -- the loop --------------------------------------------------------------------------
    def fit(self, stream: TextIO | None = None, stop_after: int | None = None,
            on_eval: Callable[["Trainer", dict[str, float]], None] | None = None) -> "FitResult":
        """Run to ``total_steps`` (see :func:`fit`)."""
        return _run_loop(self, stream, stop_after, on_eval)


@dataclass
class FitResult:
    """What a finished (or interrupted) run produced."""

    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    step: int
    metrics: dict[str, float] = field(default_factory=dict)  # the latest evaluation
    best_score: float | None = None
    interrupted: bool = False
    curves: Path | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def fit(task: Task, cfg: LoopConfig, stream: TextIO | None = None, stop_after: int | None = None) -> FitResult:
    """Train ``task`` for ``cfg.iters`` updates (or ``cfg.epochs``), counting resumed ones.

    Writes ``OUT/last.pt`` every ``save_every`` updates, at the end and on SIGINT/SIGTERM
    (the current update finishes first, then the loop saves and returns with
    ``interrupted=True``; a second Ctrl-C aborts at once); ``OUT/best.pt`` whenever
    ``best_metric`` improves; TensorBoard scalars in ``OUT/tb``; ``OUT/curves.png``.
    ``cfg.resume`` continues ``OUT/last.pt`` (True) or a given checkpoint bit for bit.
    ``stream``: where progress goes (default stderr). ``stop_after``: return after that
    many updates of this call, saving ``last.pt`` (tests of interruption).
    """
    trainer = Trainer(task, cfg)
    return trainer.fit(stream, stop_after)


# ------------------------------------------------------------------------------------------
# Progress, signals, curves


class _Interrupt:
    """SIGINT/SIGTERM become a flag checked between updates, so checkpoints stay consistent."""

    def __init__(self) -> None:
        self.hit = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Interrupt":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
                pass
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A tqdm bar on a terminal; otherwise one plain line per log step (logs, CI, nohup).

    Plain lines look like ``step 120/1000 (12%) 3.41 it/s eta 4:18 loss=0.231``.
    """

    def __init__(self, mode: str, total: int, initial: int, stream: TextIO, desc: str, enabled: bool) -> None:
        self.stream = stream
        if mode == "auto":
            mode = "bar" if getattr(stream, "isatty", lambda: False)() else "plain"
        self.mode = mode if enabled else "off"
        self.total, self.start, self.t0 = total, initial, time.perf_counter()
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=stream, unit="it", desc=desc, dynamic_ncols=True)

    def rate(self, step: int) -> float:
        return (step - self.start) / max(time.perf_counter() - self.t0, 1e-9)

    def update(self, step: int, shown: dict[str, float] | None) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if shown:
                self.bar.set_postfix({k: _fmt(v) for k, v in shown.items()}, refresh=False)
        elif self.mode == "plain" and shown is not None:
            rate = self.rate(step)
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            pct = 100.0 * step / max(self.total, 1)
            parts = " ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
            eta_s = _duration(eta) if math.isfinite(eta) else "?"
            print(f"step {step}/{self.total} ({pct:.0f}%) {rate:.3g} it/s eta {eta_s} {parts}".rstrip(),
                  file=self.stream, flush=True)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.mode != "off":
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def axis_scale(values: list[float]) -> str:
    """How a curve's y axis is drawn: ``linear``, ``log`` or ``clip-first``.

    A positive series spanning more than two orders of magnitude (max/min > 100) gets a
    log axis, unless only its first point is that far out (a loss starting high): then the
    axis is linear and clipped to the other points, so the shape of training stays visible.
    """
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2 or min(finite) <= 0:
        return "linear"
    if max(finite) / min(finite) <= 100:
        return "linear"
    rest = finite[1:]
    if len(rest) >= 2 and max(rest) / min(rest) <= 100 and not min(rest) <= finite[0] <= max(rest):
        return "clip-first"
    return "log"


def plot_curves(history: list[dict[str, Any]], path: Path, keys: Iterable[str] = ()) -> dict[str, str] | None:
    """One panel per logged quantity (vs update) as a PNG, written atomically.

    ``keys``: the quantities to draw (empty = every numeric key in ``history``). Returns
    ``{key: axis scale}`` (see :func:`axis_scale`), or None when there is nothing to draw.
    """
    wanted = list(keys)
    series: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        for k, v in h.items():
            if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if wanted and k not in wanted:
                continue
            series.setdefault(k, []).append((int(h["step"]), float(v)))
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in wanted if k in series] if wanted else sorted(series)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    scales: dict[str, str] = {}
    for ax, name in zip(axes.flat, names):
        xs = [p[0] for p in series[name]]
        ys = [p[1] for p in series[name]]
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3)
        scale = axis_scale(ys)
        scales[name] = scale
        if scale == "log":
            ax.set_yscale("log")
        elif scale == "clip-first":
            lo, hi = min(ys[1:]), max(ys[1:])
            pad = 0.05 * (hi - lo or abs(hi) or 1.0)
            ax.set_ylim(lo - pad, hi + pad)
            ax.annotate(f"first point {_fmt(ys[0])} off scale", xy=(0.02, 0.95), xycoords="axes fraction",
                        fontsize=7, va="top")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("update", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return scales


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def _run_loop(tr: Trainer, stream: TextIO | None, stop_after: int | None,
              on_eval: Callable[[Trainer, dict[str, float]], None] | None) -> FitResult:
    cfg, task = tr.cfg, tr.task
    out = tr.out_dir
    main = tr.dist.is_main
    if main:
        out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if cfg.resume:
        rpath = last_path if cfg.resume is True else Path(cfg.resume)
        ckpt = load_checkpoint(rpath, "cpu", legacy=task.checkpoint_converters)
        tr.load_state_dict(ckpt, str(rpath))
    total = tr.total_steps
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    stream = stream if stream is not None else sys.stderr
    prog = Progress(cfg.progress, total, tr.step, stream, task.kind, enabled=main)
    keys = tuple(cfg.report_keys)
    interrupted = False
    done_here = 0
    t0 = time.perf_counter()

    def shown(values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if (k in keys if keys else k.endswith("loss"))}

    def do_eval() -> None:
        metrics = tr.evaluate()
        tr.history.append({"step": tr.step, **metrics})
        if writer is not None:
            for k, v in metrics.items():
                writer.add_scalar(k, v, tr.step)
        best = tr.improved(metrics)
        if on_eval is not None:
            on_eval(tr, metrics)
        if best:
            tr.save(best_path)
        report = {k: v for k, v in metrics.items() if not keys or k in keys}
        prog.write(f"step {tr.step}: " + "  ".join(f"{k}={_fmt(v)}" for k, v in report.items()))

    try:
        with _Interrupt() as sig:
            while tr.step < total:
                logs = tr.update()
                done_here += 1
                step = tr.step
                log_now = _due(step, cfg.log_every, total)
                if log_now:
                    logs = distributed.all_reduce_mean(logs)
                    entry = {**logs, **tr.lrs()}
                    tr.history.append({"step": step, **entry})
                    if writer is not None:
                        for k, v in entry.items():
                            writer.add_scalar(k if "/" in k else f"train/{k}", v, step)
                        writer.add_scalar("train/steps_per_s", done_here / max(time.perf_counter() - t0, 1e-9), step)
                prog.update(step, shown(logs) if log_now else None)
                if (cfg.eval_every > 0 and step % cfg.eval_every == 0) or (step == total and cfg.eval_at_end):
                    do_eval()
                stop = distributed.any_rank(sig.hit)
                if _due(step, cfg.save_every, total) or stop or (stop_after is not None and done_here >= stop_after):
                    tr.save(last_path)
                if stop:
                    prog.write(f"interrupted: saved {last_path} at step {step}; continue with --resume")
                    interrupted = True
                    break
                if stop_after is not None and done_here >= stop_after:
                    break
        if done_here == 0 and not interrupted and cfg.eval_at_end and not tr.metrics:
            do_eval()  # nothing left to train (iters=0, or a finished run resumed): still report metrics
        if distributed.any_rank(main and not last_path.exists()):
            tr.save(last_path)
    finally:
        prog.close()
        if writer is not None:
            writer.flush()
            writer.close()
    curves = None
    if main and tr.history:
        scales = plot_curves(tr.history, out / "curves.png", keys)
        curves = out / "curves.png" if scales is not None else None
    distributed.barrier(cfg.dist_timeout_s)
    return FitResult(out, last_path, best_path if best_path.exists() else None, tr.step, dict(tr.metrics),
                     tr.best_score, interrupted, curves, list(tr.history))
