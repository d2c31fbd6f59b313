"""The inputs of an evaluation, resolved and checked before any decoding starts.

``vln-clip eval``, ``submit`` and ``rollout`` (and the demo) take the same inputs: a split
(a file, or a name under the data root), the connectivity folder and, for a trained
follower, the feature store it was trained with. They are resolved here, with the data
layout of :mod:`vln_clip.paths`, so that the three commands agree with each other and with
training; every problem is a :class:`~vln_clip.errors.DataError` that names the file, the
field and the fix, and it is raised before minutes are spent decoding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from vln_clip.agents.inference import load_policy
from vln_clip.episodes import Episode, validate_episodes
from vln_clip.errors import DataError
from vln_clip.features.store import check_model_store
from vln_clip.graph import GraphStore
from vln_clip.paths import CONNECTIVITY_SUBDIRS, connectivity_dir, data_dir, feature_store_path, split_candidates


def resolve_split(split_file: str | os.PathLike[str] | None, split: str | None, dataset: str = "r2r",
                  root: str | os.PathLike[str] | None = None) -> Path:
    """The split file named by ``split_file``, or ``split`` (a name or a file) under the data root."""
    if split_file and split:
        raise DataError("give either --split-file or --split, not both")
    if split_file:
        return Path(split_file)
    if not split:
        raise DataError("no split: pass --split-file FILE or --split NAME (e.g. --split val_unseen)")
    if Path(split).is_file():
        return Path(split)
    candidates = split_candidates(root, dataset, split)
    for c in candidates:
        if c.exists():
            return c
    raise DataError(f"split {split!r} ({dataset}) not found: looked for {', '.join(str(c) for c in candidates)}; "
                    "set --data-dir or $VLN_CLIP_DATA, or pass --split-file")


def resolve_connectivity(connectivity: str | os.PathLike[str] | None,
                         root: str | os.PathLike[str] | None = None) -> Path:
    """``connectivity`` when given, else the data root's connectivity folder (it must exist)."""
    if connectivity:
        return Path(connectivity)
    default = connectivity_dir(root)
    if not default.is_dir():
        looked = " nor ".join(str(data_dir(root) / sub) for sub in CONNECTIVITY_SUBDIRS)
        raise DataError(f"no --connectivity given and neither {looked} exists; pass --connectivity DIR "
                        "(the folder of <scan>_connectivity.json files) or --data-dir")
    return default


def check_split(episodes: Sequence[Episode], graphs: GraphStore, split: str | os.PathLike[str]) -> None:
    """The split itself is sound: known scans and viewpoints, unique ids, paths along edges.

    Run before predictions are validated, so that a problem of the split file is blamed on the
    split file and not on the predictions.
    """
    validate_episodes(episodes, graphs, source=str(split))


def follower_store(checkpoint: str | os.PathLike[str], features: str | os.PathLike[str] | None = None,
                   policy: Any = None) -> Path | None:
    """The feature store a follower checkpoint needs: ``features``, else the one it trained with.

    Returns None for a vision-free follower. The store must have the checkpoint's width and,
    when both record one, the same encoder (a PCA store keeps its source encoder's name):
    features of another encoder with the same width would be scored without complaint.
    """
    policy = policy if policy is not None else load_policy(checkpoint)
    dim = int(policy.feature_dim)
    if dim == 0:
        return None
    cfg = policy.config
    path = Path(features) if features else (Path(cfg.features) if cfg.features
                                            else feature_store_path(cfg.data_dir, cfg.encoder))
    if not path.exists():
        raise DataError(f"{checkpoint}: the follower was trained on {dim}-d {cfg.encoder} features but {path} does "
                        "not exist; pass --features FILE.h5 (the store it was trained with)")
    check_model_store(path, dim, cfg.encoder, str(checkpoint), cfg.features)
    return path
