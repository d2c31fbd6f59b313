"""Checks of `vln-clip train`'s options against the data, run before any training starts.

Each of these mistakes used to be found late or not at all: a resumed speaker run trained
silently while the user asked for a follower, a store of another encoder was recorded under
the encoder's name, a store of another width ended in a tensor size mismatch, real-data
training without data suggested generating a synthetic world into the real-data folder.
Every check raises a :class:`~vln_clip.errors.DataError` (or ``MissingResourceError``) naming
the file, the field and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vln_clip.errors import DataError, MissingResourceError
from vln_clip.paths import REAL_DATA_HELP, data_dir, feature_store_path, split_candidates

REAL_DATASETS = ("r2r", "rxr")


def check_real_data(dataset: str, root: str | os.PathLike[str] | None) -> None:
    """R2R/RxR training needs the downloaded splits; say where the README explains it."""
    if dataset not in REAL_DATASETS:
        return
    missing = [s for s in ("train", "val_unseen") if not any(c.exists() for c in split_candidates(root, dataset, s))]
    if missing:
        looked = split_candidates(root, dataset, missing[0])[0]
        raise MissingResourceError(
            f"{looked}: no {dataset.upper()} {missing[0]} split under the data directory {data_dir(root)}. "
            f"Download the {dataset.upper()} data as {REAL_DATA_HELP} describes and pass --data-dir (or set "
            "$VLN_CLIP_DATA) to that folder. To try training without real data, use a synthetic world in a "
            "folder of its own: `vln-clip data synth --out data/synthetic` then "
            "`vln-clip train --dataset synthetic --data-dir data/synthetic ...`")


def store_encoder(features: str | os.PathLike[str], encoder: str | None) -> str | None:
    """The encoder to record for ``--features`` (its own), refusing one that contradicts ``--encoder``.

    A PCA-reduced store keeps its source encoder's name, so ``--encoder clip_vit_b32`` with a
    ``clip_vit_b32`` PCA store is accepted; a store that records no encoder keeps ``encoder``.
    """
    from vln_clip.features.store import FeatureStore

    path = Path(features)
    if not path.exists():
        raise DataError(f"--features {path}: no such feature store; check the path")
    with FeatureStore(path) as store:
        recorded = str(store.attrs.get("encoder") or "") or None
    if encoder and recorded and encoder != recorded:
        raise DataError(f"--features {path} holds {recorded} features but --encoder is {encoder}; drop --encoder "
                        f"(the store's encoder is recorded) or pass the {encoder} store")
    return recorded or encoder


def checkpoint_feature_dim(ckpt: dict[str, Any]) -> int | None:
    """The visual feature width a checkpoint was trained with (None when it does not say)."""
    extra = ckpt.get("extra") or {}
    value = extra.get("feature_dim", ckpt.get("feature_dim"))
    return None if value is None else int(value)


def check_resume(path: Path, ckpt: dict[str, Any], cfg: Any, agent: str | None) -> list[str]:
    """A resumed run continues what the checkpoint holds; returns notes to print.

    ``agent`` is ``--agent`` as given (None when not given): asking for a follower while the
    checkpoint holds a speaker run is an error, and when ``--agent`` is not given the note
    says which agent continues. The feature store the resumed run will read must have the
    checkpoint's width and, when it records one, its encoder.
    """
    notes: list[str] = []
    if agent is not None and agent != cfg.agent:
        raise DataError(f"{path}: holds a {cfg.agent} run but --agent {agent} was given; resume it without "
                        f"--agent (or with --agent {cfg.agent}), or start the {agent} run in another --out")
    if agent is None and cfg.agent != "follower":
        notes.append(f"resuming the {cfg.agent} run of {path}")
    width = checkpoint_feature_dim(ckpt)
    if width and not cfg.no_vision:
        store_path = Path(cfg.features) if cfg.features else feature_store_path(cfg.data_dir, cfg.encoder)
        if store_path.exists():
            from vln_clip.features.store import check_model_store  # h5py only when resuming

            check_model_store(store_path, width, cfg.encoder, str(path), cfg.features)
    return notes
