"""The task-agnostic training core shared by navigation, VQA, captioning and pre-training.

A task subclasses :class:`Task` (models, optimizers, one training step, evaluation) and
calls :func:`fit` with a :class:`LoopConfig`; the loop does optimizers and schedules
(:class:`OptimizerConfig`, several per run), checkpoints with bit-exact resume, best-by-
validation selection, TensorBoard, progress, SIGINT-safe saves, curves and DDP under
torchrun. See docs/training-core.md and :mod:`vln_clip.train.example`.
"""

from .checkpoint import FORMAT, fork_rng, load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from .config import LoopConfig, OptimizerConfig
from .loop import DataOrder, FitResult, Task, TaskContext, Trainer, axis_scale, build_optimizer, fit, plot_curves

__all__ = [
    "FORMAT", "DataOrder", "FitResult", "LoopConfig", "OptimizerConfig", "Task", "TaskContext", "Trainer",
    "axis_scale", "build_optimizer", "fit", "fork_rng", "load_checkpoint", "plot_curves", "rng_state",
    "save_checkpoint", "seed_everything", "set_rng_state",
]
