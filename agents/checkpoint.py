"""VLN agent checkpoints: the training core's format, plus the converter of the old one.

Follower, speaker and back-translation runs are :class:`vln_clip.train.Trainer` checkpoints
(format ``vln-clip-train-1``, see :mod:`vln_clip.train.checkpoint`) of kind ``follower`` or
``speaker``. The agent's own entries are ``config`` (the :class:`~vln_clip.agents.config.TrainConfig`
dict) and ``extra``: ``vocab`` (the word list) and ``feature_dim`` (0 = vision-free).

Files of the previous format ``vln-clip-agent-1`` (written before the training core existed)
still load: :func:`upgrade_agent_checkpoint` maps them onto the new layout in memory (same
weights, optimizer state, RNG streams and data order, so they also resume), and
:func:`convert_checkpoint` rewrites such a file in the new format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vln_clip.train.checkpoint import FORMAT, load_checkpoint as load_train_checkpoint, save_checkpoint

LEGACY_FORMAT = "vln-clip-agent-1"
KINDS = ("follower", "speaker")

__all__ = ["FORMAT", "KINDS", "LEGACY_FORMAT", "convert_checkpoint", "load_checkpoint", "save_checkpoint",
           "upgrade_agent_checkpoint"]


def upgrade_agent_checkpoint(old: dict[str, Any]) -> dict[str, Any]:
    """A ``vln-clip-agent-1`` checkpoint in the ``vln-clip-train-1`` layout (nothing is lost).

    Old keys -> new: ``iteration`` -> ``step``; ``optimizer`` -> ``optimizers[follower|speaker]``;
    ``vocab``/``feature_dim`` -> ``extra``; ``order_rng``/``order``/``cursor`` (and
    ``aug_order``/``aug_cursor``, same generator) -> ``data_orders``; ``metrics``
    ``{split: {k: v}}`` -> ``{"split/k": v}``; history entries' ``iteration`` -> ``step``. The
    old runs had constant learning rates, so the missing scheduler state is rebuilt from ``step``.
    """
    kind = old["kind"]
    opt_name = "speaker" if kind == "speaker" else "follower"
    orders: dict[str, Any] = {
        "train_order": {"generator": old["order_rng"], "order": old["order"], "cursor": int(old["cursor"]), "epoch": 0}}
    if old.get("aug_order") is not None:
        orders["aug_order"] = {"generator": old["order_rng"], "order": old["aug_order"],
                               "cursor": int(old.get("aug_cursor", 0)), "epoch": 0}
    history = [{("step" if k == "iteration" else k): v for k, v in h.items()} for h in old.get("history", [])]
    metrics = {f"{split}/{k}": float(v) for split, mm in (old.get("metrics") or {}).items()
               for k, v in mm.items() if isinstance(v, (int, float))}
    return {
        "format": FORMAT, "kind": kind, "config": old["config"], "loop": {}, "optim": {},
        "models": old["models"], "optimizers": {opt_name: old["optimizer"]}, "schedulers": {},
        "step": int(old["iteration"]), "best_score": old.get("best_score"), "history": history,
        "metrics": metrics, "rng": old["rng"], "data_orders": orders,
        "extra": {"vocab": list(old["vocab"]), "feature_dim": int(old["feature_dim"])},
        "converted_from": LEGACY_FORMAT,
    }


CONVERTERS = {LEGACY_FORMAT: upgrade_agent_checkpoint}


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a follower/speaker checkpoint (either format), or explain what is wrong."""
    return load_train_checkpoint(path, map_location, kind=KINDS, legacy=CONVERTERS)


def convert_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Rewrite a ``vln-clip-agent-1`` file (or any agent checkpoint) in the current format."""
    return save_checkpoint(dst, load_checkpoint(src))
