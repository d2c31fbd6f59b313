"""The checkpoint format of the training core: one ``torch.save`` file per run state.

A checkpoint holds everything a run needs to continue *exactly* (``--resume`` reproduces the
parameters of an uninterrupted run bit for bit):

==================  ======================================================================
``format``          :data:`FORMAT` (``vln-clip-train-1``)
``kind``            the task's kind (``follower``, ``speaker``, ``vqa``, ...)
``config``          the task's own config as a dict (rebuilds the model without other files)
``loop``            the :class:`~vln_clip.train.config.LoopConfig` as a dict
``optim``           optimizer name -> :class:`~vln_clip.train.config.OptimizerConfig` dict
``models``          model name -> ``state_dict()``
``optimizers``      optimizer name -> ``state_dict()``
``schedulers``      optimizer name -> its LR scheduler's ``state_dict()``
``step``            updates done
``best_score``      best value of ``LoopConfig.best_metric`` so far (None before any eval)
``history``         list of ``{"step": s, key: value, ...}`` (train logs and eval metrics)
``metrics``         the latest ``Task.evaluate()`` result (flat ``{key: float}``)
``rng``             Python ``random``, NumPy, torch CPU and CUDA states of rank 0
``rng_ranks``       the same for every rank (torchrun runs only; index = rank)
``data_orders``     name -> :class:`~vln_clip.train.loop.DataOrder` state (generator, position)
``extra``           ``Task.extra_state()`` (vocabularies, feature sizes, ...)
==================  ======================================================================

Files are written atomically (temporary name + rename): a crash during a save leaves the
previous file intact. Older formats are opened through converters passed to
:func:`load_checkpoint` (``legacy={format: function}``); the converter lives with the task
that wrote the old files.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from vln_clip.errors import DataError
from vln_clip.io import atomic_path

FORMAT = "vln-clip-train-1"


def rng_state() -> dict[str, Any]:
    """Every global random stream a training step may draw from (CUDA only when present)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state` (a CUDA state is skipped on a machine without CUDA)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def fork_rng(device: str | torch.device = "cpu") -> Iterator[None]:
    """Run a block (evaluation, plotting) without moving any training random stream.

    Evaluating must not change what the next training step draws, or a resumed run (which
    evaluates at the same steps) and a run with a different ``eval_every`` would diverge.
    """
    device = torch.device(device)
    devices = [device] if device.type == "cuda" else []
    py, npst = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npst)


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus the format tag) to ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({**payload, "format": FORMAT}, tmp)
    return path


Converter = Callable[[dict[str, Any]], dict[str, Any]]


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
                    kind: str | tuple[str, ...] | None = None,
                    legacy: Mapping[str, Converter] | None = None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, or explain what is wrong.

    ``kind``: refuse a checkpoint of another task (e.g. a VQA file given to the captioner).
    ``legacy``: converters from older format tags to this one, applied in memory.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found; train one with `--out DIR` "
                        "(checkpoints are DIR/last.pt and DIR/best.pt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for truncated/foreign files
        raise DataError(f"{path}: not a readable checkpoint ({exc}); re-train or pick another file") from exc
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if legacy and fmt in legacy:
        ckpt = legacy[fmt](ckpt)
        fmt = ckpt.get("format")
    if fmt != FORMAT:
        known = ", ".join([FORMAT, *(legacy or {})])
        raise DataError(f"{path}: not a vln-clip training checkpoint (format {fmt!r}; expected {known})")
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and ckpt.get("kind") not in kinds:
        raise DataError(f"{path}: a {ckpt.get('kind')!r} checkpoint, not {' or '.join(kinds)}; "
                        "pass a checkpoint of this task")
    return ckpt
