"""Checkpoints: one ``torch.save`` file holding everything a run needs to continue exactly.

Contents: ``format``, ``kind`` (follower / speaker), the :class:`TrainConfig` as a dict, the
vocabulary (its word list), the feature dimension, model and optimizer state dicts, the
iteration count, the best validation score so far, the metric history, and the random
states (Python, NumPy, torch CPU, CUDA when present, and the run's own data-order
generator). Files are written atomically (temporary name + rename), so an interrupted save
never corrupts the previous checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vln_clip.errors import DataError
from vln_clip.io import atomic_path

FORMAT = "vln-clip-agent-1"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus the format tag) to ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, or explain what is wrong."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: checkpoint not found; train one with `vln-clip train ... --out DIR` "
                        "(checkpoints are DIR/last.pt and DIR/best.pt)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for truncated/foreign files
        raise DataError(f"{path}: not a readable checkpoint ({exc}); re-train or pick another file") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path}: not a vln-clip agent checkpoint (format {FORMAT} expected)")
    return ckpt
