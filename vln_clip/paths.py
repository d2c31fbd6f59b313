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
