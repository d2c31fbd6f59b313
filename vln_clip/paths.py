"""Where data, caches and the shared real data live."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Cache for derived tables (graph distances, vocabularies): ``$VLN_CLIP_CACHE`` or ~/.cache/vln_clip."""
    root = os.environ.get("VLN_CLIP_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "vln_clip"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data root: an explicit path, else ``$VLN_CLIP_DATA``, else ./data."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("VLN_CLIP_DATA")
    return Path(env) if env else Path("data")


# ----------------------------------------------------------------------------------------
# The data layout under a data root: the one resolver every command uses.
#
#   DATA/connectivity/ (a `vln-clip data synth` world)  or  DATA/matterport/connectivity/ (real data)
#   DATA/r2r/R2R_<split>.json,  DATA/rxr/rxr_<split>_guide.jsonl[.gz],  DATA/features/<encoder>.h5
#   DATA/scans/<scan>/matterport_skybox_images/  (skyboxes, for feature extraction)

#: Where README.md explains how to download and place the real data.
REAL_DATA_HELP = "README.md, section \"Getting the real data\""

CONNECTIVITY_SUBDIRS = ("connectivity", "matterport/connectivity")


def connectivity_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The connectivity folder under a data root: ``connectivity/`` else ``matterport/connectivity/``.

    Returns the first that exists, else the first candidate (so the caller's error names it).
    """
    base = data_dir(root)
    for sub in CONNECTIVITY_SUBDIRS:
        if (base / sub).is_dir():
            return base / sub
    return base / CONNECTIVITY_SUBDIRS[0]


def split_candidates(root: str | os.PathLike[str] | None, dataset: str, split: str) -> list[Path]:
    """Where a split named ``split`` of ``dataset`` (r2r, r4r, rxr, synthetic) may lie, in order."""
    base = data_dir(root)
    if dataset == "rxr":
        return [base / "rxr" / f"rxr_{split}_guide.jsonl.gz", base / "rxr" / f"rxr_{split}_guide.jsonl"]
    if dataset == "r4r":
        return [base / "r4r" / f"R4R_{split}.json"]
    return [base / "r2r" / f"R2R_{split}.json"]


def find_split(root: str | os.PathLike[str] | None, dataset: str, split: str) -> Path | None:
    """The first existing :func:`split_candidates` entry, or None."""
    return next((c for c in split_candidates(root, dataset, split) if c.exists()), None)


def skybox_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of ``<scan>/matterport_skybox_images/`` under a data root."""
    return data_dir(root) / "scans"


def feature_store_path(root: str | os.PathLike[str] | None, encoder: str) -> Path:
    """The default feature store of ``encoder`` under a data root."""
    return data_dir(root) / "features" / f"{encoder}.h5"
