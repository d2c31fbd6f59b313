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

    @property
    def bgr(self) -> bool:
        """Whether the encoder saw channel-swapped (BGR) views, like the published CLIP-ViL files."""
        return str(self.attrs.get("bgr", "False")) == "True"

    def packed(self, keys: Iterable[str] | None = None, mmap: bool = True) -> tuple[np.ndarray, dict[str, int]]:
        """All features as one ``[N, 36, D]`` array plus ``key -> row``, shared between processes.

        The array is written once to the cache folder as a ``.npy`` keyed by this file's size,
        mtime and the key list, then memory-mapped: every process (DataLoader workers, several
        training runs) reads the same pages from the OS cache instead of holding its own copy.
        """
        import hashlib

        from vln_clip.paths import cache_dir

        keys = sorted(self.keys()) if keys is None else list(keys)
        st = self.path.stat()
        digest = hashlib.sha1(f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{'|'.join(keys)}"
                              .encode()).hexdigest()[:20]
        path = cache_dir() / "features" / f"{self.path.stem}-{digest}.npy"
        index = {k: i for i, k in enumerate(keys)}
        if not mmap:
            return self.table(keys), index
        if not path.exists():
            from vln_clip.io import atomic_path

            dtype = np.float16 if str(self.attrs.get("dtype", "float16")) == "float16" else np.float32
            with atomic_path(path) as tmp:
                arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(keys), NUM_VIEWS, self.dim))
                for i, key in enumerate(keys):
                    if key not in self._h5:
                        raise DataError(f"{self.path}: no features for {key}; the store is incomplete "
                                        "(re-run extraction: it resumes)")
                    arr[i] = self._h5[key][()]
                arr.flush()
                del arr
        return np.load(path, mmap_mode="r"), index

    def keys(self) -> list[str]:
        return list(self._h5.keys())

    def __len__(self) -> int:
        return len(self._h5)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._h5

    def get(self, scan: str, viewpoint: str, cache: bool = True) -> np.ndarray:
        """The ``[36, D]`` float32 features of one viewpoint.

        Cached after the first read (environments revisit viewpoints); one pass over a whole
        store (conversion, PCA) passes ``cache=False`` so that memory does not grow with it.
        """
        key = feature_key(scan, viewpoint)
        arr = self._cache.get(key)
        if arr is None:
            if key not in self._h5:
                raise DataError(f"{self.path}: no features for {key}; the store was made for other "
                                "scans or is incomplete (re-run extraction: it resumes)")
            arr = np.asarray(self._h5[key][()], dtype=np.float32)
            if cache:
                self._cache[key] = arr
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
                 dtype: str = "float16", flush_every: int = 1) -> None:
        import h5py

        self.path = Path(path)
        self.flush_every = flush_every  # 0: flush only on close (bulk conversion into a temp file)
        self._unflushed = 0
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
        self._unflushed += 1
        if self.flush_every and self._unflushed >= self.flush_every:
            self._h5.flush()
            self._unflushed = 0

    def copy_from(self, store: "FeatureStore", skip: set[str] | None = None) -> int:
        """Copy every dataset of ``store`` not in ``skip`` (HDF5-level copy, no decode)."""
        n = 0
        for key in store.keys():
            if skip and key in skip or key in self._h5:
                continue
            store._h5.copy(store._h5[key], self._h5, name=key)
            n += 1
        return n

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
            yield key, store.get(scan, vp, cache=False)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------
# Crash-safe journal of finished viewpoints, and merging

JOURNAL_META = "meta.json"


def journal_dir(out: str | os.PathLike[str]) -> Path:
    """Where an extraction into ``out`` keeps its finished batches until the store is built."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


class FeatureJournal:
    """Finished viewpoints of a running extraction, one atomically renamed ``.npz`` per batch.

    A kill (even SIGKILL mid-write) loses at most the batch in flight: a part file either
    exists whole or not at all, so nothing finished is redone or corrupted. Several ranks
    may append to the same folder (distinct file names). :func:`build_store` turns the
    journal (plus any existing store) into the final HDF5 file in one atomic rename.
    """

    def __init__(self, folder: str | os.PathLike[str], dim: int, attrs: Mapping[str, Any],
                 rank: int = 0) -> None:
        import json
        import uuid

        from vln_clip.io import atomic_path

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.attrs = {**{k: _plain(v) for k, v in attrs.items()}, "dim": dim}
        meta = self.folder / JOURNAL_META
        if meta.exists() and any(self.folder.glob("part-*.npz")):  # settings matter only with parts
            old = json.loads(meta.read_text())
            for field in ("encoder", "weights", "dim", "image_size", "bgr", "source"):
                if field in old and field in self.attrs and str(old[field]) != str(self.attrs[field]):
                    raise DataError(f"{self.folder}: unfinished extraction made with {field}={old[field]!r}, "
                                    f"this run has {field}={self.attrs[field]!r}; re-run with the same "
                                    f"settings to resume, or delete {self.folder} to start over")
        else:
            with atomic_path(meta) as tmp:
                tmp.write_text(json.dumps(self.attrs, indent=1, default=str))
        self._prefix = f"part-r{rank:03d}-{uuid.uuid4().hex[:8]}"
        self._count = 0

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.npz"))

    def done_keys(self) -> set[str]:
        done: set[str] = set()
        for part in self.parts():
            done.update(read_part_keys(part))
        return done

    def append(self, keys: list[str], feats: np.ndarray) -> Path:
        from vln_clip.io import atomic_path

        feats = np.asarray(feats)
        if feats.shape != (len(keys), NUM_VIEWS, self.dim):
            raise ValueError(f"journal batch must be [{len(keys)}, {NUM_VIEWS}, {self.dim}], got {feats.shape}")
        path = self.folder / f"{self._prefix}-{self._count:06d}.npz"
        self._count += 1
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=np.array(keys), feats=feats.astype(np.float16 if
                         self.attrs.get("dtype", "float16") == "float16" else np.float32))
        return path


def read_part_keys(path: Path) -> list[str]:
    """The viewpoint keys of one journal part (without loading its features)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return [str(k) for k in z["keys"]]
    except Exception as exc:
        raise DataError(f"{path}: unreadable journal part ({exc}); delete this file and re-run "
                        "(its viewpoints are extracted again)") from exc


def _read_part(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return [str(k) for k in z["keys"]], z["feats"]
    except Exception as exc:  # a part is renamed into place whole, so this is outside damage
        raise DataError(f"{path}: unreadable journal part ({exc}); delete this file and re-run "
                        "(its viewpoints are extracted again)") from exc


def build_store(out: str | os.PathLike[str], sources: Iterable[str | os.PathLike[str]],
                attrs: Mapping[str, Any] | None = None, dtype: str = "float16",
                remove_sources: bool = False) -> int:
    """Merge an existing ``out`` store, HDF5 shards and journal folders into ``out`` atomically.

    Keys already present win (finished viewpoints are never replaced). All inputs must agree
    on dimension and encoder. Returns the number of viewpoints in the result.
    """
    import json
    import shutil

    from vln_clip.io import atomic_path

    out = Path(out)
    inputs = [Path(s) for s in sources]
    merged_attrs: dict[str, Any] = dict(attrs or {})
    stores: list[FeatureStore] = []
    journals: list[Path] = []
    dim = None

    def _check(what: Path, a: Mapping[str, Any], d: int) -> None:
        nonlocal dim
        if dim is None:
            dim = d
        elif d != dim:
            raise DataError(f"{what}: features have dimension {d}, other inputs have {dim}; "
                            "only stores of the same encoder can be merged")
        for field in ("encoder", "weights", "bgr"):
            if field in a and field in merged_attrs and str(a[field]) != str(merged_attrs[field]):
                raise DataError(f"{what}: {field}={a[field]!r} differs from {merged_attrs[field]!r}; "
                                "refusing to mix features of different encoders/settings")
            merged_attrs.setdefault(field, a.get(field))

    try:
        for src in ([out] if out.exists() else []) + inputs:
            if src.is_dir():
                meta = src / JOURNAL_META
                a = json.loads(meta.read_text()) if meta.exists() else {}
                parts = sorted(src.glob("part-*.npz"))
                if parts:
                    d = int(a.get("dim") or _read_part(parts[0])[1].shape[-1])
                    _check(src, a, d)
                    for k, v in a.items():
                        merged_attrs.setdefault(k, v)
                journals.append(src)
            elif src.exists():
                store = FeatureStore(src)
                stores.append(store)
                if len(store):
                    _check(src, store.attrs, store.dim)
                for k, v in store.attrs.items():
                    merged_attrs.setdefault(k, v)
            else:
                raise DataError(f"{src}: no such feature store or journal folder to merge")
        if dim is None:
            dim = int(merged_attrs.get("dim", 0))
        for k in ("dim", "version", "dtype"):
            merged_attrs.pop(k, None)
        merged_attrs = {k: v for k, v in merged_attrs.items() if v is not None}
        with atomic_path(out) as tmp:
            tmp.unlink()
            with FeatureWriter(tmp, dim, merged_attrs, dtype=dtype, flush_every=0) as writer:
                for store in stores:
                    writer.copy_from(store)
                for folder in journals:
                    for part in sorted(folder.glob("part-*.npz")):
                        keys, feats = _read_part(part)
                        for key, f in zip(keys, feats):
                            if key not in writer:
                                scan, vp = key.split("_", 1)
                                writer.write(scan, vp, f)
                n = len(writer.done_keys())
    finally:
        for store in stores:
            store.close()
    if remove_sources:
        for src in inputs:
            if src.is_dir():
                shutil.rmtree(src, ignore_errors=True)
            elif src.exists() and src != out:
                src.unlink()
    return n
