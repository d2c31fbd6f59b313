"""The one feature store: HDF5, one ``[36, D]`` dataset per ``<scan>_<viewpoint>``.

Float16 by default (half the disk and memory of the TSV files, no measurable loss for
pooled CLIP features). Attributes record the encoder, where its weights came from
(``random`` is recorded as such), the image size and the format version, so that a run can
refuse features made by another encoder. Reads are lazy per key; ``table()`` packs a whole
split into one array (or torch tensor) for the batched environments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from vln_clip.errors import DataError

FORMAT_VERSION = 1
NUM_VIEWS = 36


def feature_key(scan: str, viewpoint: str) -> str:
    return f"{scan}_{viewpoint}"


class FeatureStore:
    """Read access to a feature file. Open once per process; h5py reads are lazy."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: feature store not found; create it with "
                            "`vln-clip features extract ... --out FILE.h5`")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 feature store ({exc}); "
                            "delete it and re-run the extraction") from exc
        self.attrs: dict[str, Any] = {k: _plain(v) for k, v in self._h5.attrs.items()}
        keys = list(self._h5.keys())
        if "dim" in self.attrs:
            self.dim = int(self.attrs["dim"])
        elif keys:
            self.dim = int(self._h5[keys[0]].shape[-1])
        else:
            self.dim = 0
        self._cache: dict[str, np.ndarray] = {}

    @property
    def encoder(self) -> str:
        return str(self.attrs.get("encoder", "unknown"))

    @property
    def weights(self) -> str:
        return str(self.attrs.get("weights", "unknown"))

    def keys(self) -> list[str]:
        return list(self._h5.keys())

    def __len__(self) -> int:
        return len(self._h5)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._h5

    def get(self, scan: str, viewpoint: str) -> np.ndarray:
        """The ``[36, D]`` float32 features of one viewpoint (cached after the first read)."""
        key = feature_key(scan, viewpoint)
        arr = self._cache.get(key)
        if arr is None:
            if key not in self._h5:
                raise DataError(f"{self.path}: no features for {key}; the store was made for other "
                                "scans or is incomplete (re-run extraction: it resumes)")
            arr = self._cache[key] = np.asarray(self._h5[key][()], dtype=np.float32)
        return arr

    def table(self, keys: Iterable[str]) -> np.ndarray:
        """Stack the features of ``keys`` into one ``[N, 36, D]`` float32 array."""
        keys = list(keys)
        out = np.zeros((len(keys), NUM_VIEWS, self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            scan, vp = key.split("_", 1)
            out[i] = self.get(scan, vp)
        return out

    def check_dim(self, expected: int, encoder: str) -> None:
        if self.dim != expected:
            raise DataError(f"{self.path}: features have dimension {self.dim} but encoder {encoder} "
                            f"produces {expected}; extract features for {encoder} or pick the matching encoder")

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class FeatureWriter:
    """Append viewpoints to a store; existing keys are kept, so an interrupted run resumes.

    Each viewpoint is written and flushed as a whole; HDF5 datasets appear only when complete
    (they are written to a temporary name and renamed inside the file).
    """

    def __init__(self, path: str | os.PathLike[str], dim: int, attrs: Mapping[str, Any],
                 dtype: str = "float16") -> None:
        import h5py

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._h5 = h5py.File(self.path, "a")
        self.dtype = dtype
        existing = dict(self._h5.attrs)
        if "dim" in existing and int(existing["dim"]) != dim:
            raise DataError(f"{self.path}: existing store has dimension {existing['dim']}, new features "
                            f"have {dim}; use another --out file")
        for k, v in {**attrs, "dim": dim, "version": FORMAT_VERSION, "dtype": dtype}.items():
            self._h5.attrs[k] = v
        for name in [k for k in self._h5.keys() if k.startswith(".tmp")]:
            del self._h5[name]  # leftovers of a killed run

    def __contains__(self, key: str) -> bool:
        return key in self._h5

    def done_keys(self) -> set[str]:
        return {k for k in self._h5.keys() if not k.startswith(".tmp")}

    def write(self, scan: str, viewpoint: str, feats: np.ndarray) -> None:
        key = feature_key(scan, viewpoint)
        if feats.shape[0] != NUM_VIEWS:
            raise ValueError(f"{key}: expected {NUM_VIEWS} views, got {feats.shape[0]}")
        tmp = f".tmp_{key}"
        if tmp in self._h5:
            del self._h5[tmp]
        self._h5.create_dataset(tmp, data=np.asarray(feats, dtype=self.dtype))
        if key in self._h5:
            del self._h5[key]
        self._h5.move(tmp, key)
        self._h5.flush()

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "FeatureWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def iter_store(path: str | os.PathLike[str]) -> Iterator[tuple[str, np.ndarray]]:
    with FeatureStore(path) as store:
        for key in store.keys():
            scan, vp = key.split("_", 1)
            yield key, store.get(scan, vp)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
