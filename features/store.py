"""The one feature store: HDF5, one dataset per key, for panoramas and for any keyed images.

Three kinds of store share this one implementation (``kind`` attribute):

- ``pano``: one ``[36, D]`` dataset per ``<scan>_<viewpoint>`` (the VLN per-view features;
  stores written before kinds existed have no ``kind`` attribute and are read as ``pano``).
- ``pooled``: one ``[D]`` embedding per image, keyed by the image file stem
  (``COCO_train2014_000000000009``): nearest-neighbour caption baselines, linear probes.
- ``grid``: one feature map per image whose shape follows the image's aspect ratio:
  ``[H', W', C]`` for ResNets (``grid_layout = "hwc"``) or ``[N, C]`` ViT patch tokens in
  row-major order (``grid_layout = "nc"``, the ``(H', W')`` grid in the dataset attribute
  ``grid_hw``). Every grid dataset also records ``image_hw`` (the file's size) and
  ``input_hw`` (what the encoder saw).

Float16 by default (half the disk and memory of the TSV files, no measurable loss for CLIP
features). Store attributes record the kind, the encoder, where its weights came from
(``random`` is recorded as such), the resolution rule and the preprocessing, so that a run
refuses features made another way (:meth:`FeatureStore.require`). Reads are lazy per key;
``table()`` packs a whole split into one array for the batched environments, ``get_many()``
pads a batch of grids into one array plus a mask for the V&L models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from vln_clip.errors import DataError

FORMAT_VERSION = 1  # the layout (one dataset per key, attributes) is the same for every kind
NUM_VIEWS = 36
KINDS = ("pano", "pooled", "grid")
GRID_LAYOUTS = ("hwc", "nc")
# Per-item metadata of image stores: journal arrays of these names become dataset attributes.
ITEM_ATTRS = ("grid_hw", "image_hw", "input_hw")


def feature_key(scan: str, viewpoint: str) -> str:
    return f"{scan}_{viewpoint}"


def check_key(key: str, where: str | os.PathLike[str] = "feature store") -> str:
    """A key must be usable as an HDF5 name: an image file stem or ``<scan>_<viewpoint>``."""
    if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
        raise DataError(f"{where}: {key!r} is not a valid feature key (an image file stem or "
                        "<scan>_<viewpoint>: non-empty, no '/', not starting with '.'); rename the file")
    return key


def _extract_hint(kind: str, a: Mapping[str, Any]) -> str:
    """The command that makes a store with attributes ``a`` (shown when a store is refused)."""
    enc = a.get("encoder", "ENCODER")
    weights = str(a.get("weights") or "")
    tag, _, where = weights.partition(":")
    if weights == "random":
        wflag = " --random-weights"
    elif weights and tag not in ("unknown", "tsv"):
        wflag = f" --weights {where if tag == 'file' else tag}"
    else:
        wflag = ""
    if kind == "pano":
        return f"`vln-clip features extract --encoder {enc} --skybox-dir DIR --connectivity DIR --out NEW.h5{wflag}`"
    sides = ""
    if a.get("short_side") is not None:
        sides += f" --short-side {a['short_side']}"
    if a.get("long_side") not in (None, 0):
        sides += f" --long-side {a['long_side']}"
    pooled = " --pooled" if kind == "pooled" else ""
    return f"`vln-clip features grid --encoder {enc} --images DIR --out NEW.h5{sides}{wflag}{pooled}`"


def _same(recorded: Any, expected: Any) -> bool:
    if isinstance(expected, (list, tuple, dict)):
        if isinstance(recorded, str):
            try:
                recorded = json.loads(recorded)
            except json.JSONDecodeError:
                return False
        return json.dumps(recorded, sort_keys=True) == json.dumps(
            json.loads(json.dumps(expected)), sort_keys=True)
    if isinstance(expected, bool):
        return str(recorded) == str(expected)
    if isinstance(expected, (int, float)) and not isinstance(recorded, str):
        return recorded is not None and float(recorded) == float(expected)
    return str(recorded) == str(expected)


def weights_match(recorded: str, expected: str) -> bool:
    """``expected`` names the recorded weights: the same label, its tag (``openai`` for
    ``openai:/path``), its file (``/path`` for ``file:/path``), or ``random``."""
    if recorded == expected:
        return True
    tag, _, where = recorded.partition(":")
    if tag == expected:
        return True
    if tag == "file" and where:
        try:
            return Path(where).resolve() == Path(expected).resolve()
        except OSError:
            return False
    return False


@dataclass
class ItemBatch:
    """Several keys of one store in one array (:meth:`FeatureStore.get_many`).

    ``features``: ``[B, L, C]`` for grids (cells in row-major order, zero padded to the
    longest item), ``[B, 36, D]`` for panoramas, ``[B, D]`` for pooled stores.
    ``mask``: ``[B, L]`` bool, True for real cells (None for pooled stores).
    ``shapes``: ``[B, 2]`` grid ``(H', W')`` per item (None unless grid), for 2-D positions.
    """

    keys: list[str]
    features: np.ndarray
    mask: np.ndarray | None
    shapes: np.ndarray | None


class FeatureStore:
    """Read access to a feature file. h5py reads are lazy.

    The HDF5 handle is reopened in a forked or unpickled process (DataLoader workers), since
    an h5py handle must not be shared across ``fork``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: feature store not found; create it with "
                            "`vln-clip features extract ... --out FILE.h5` (panoramas) or "
                            "`vln-clip features grid ... --out FILE.h5` (images)")
        self._file: Any = None
        self._pid = -1
        h5 = self._h5
        self.attrs: dict[str, Any] = {k: _plain(v) for k, v in h5.attrs.items()}
        kind = str(self.attrs.get("kind", "pano"))
        if kind not in KINDS:
            raise DataError(f"{self.path}: unknown store kind {kind!r} (expected one of {', '.join(KINDS)}); "
                            "the file was written by a newer vln-clip or is not a feature store")
        version = int(self.attrs.get("version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise DataError(f"{self.path}: format version {version}, this vln-clip reads up to "
                            f"{FORMAT_VERSION}; upgrade vln-clip or re-extract the store")
        keys = list(h5.keys())
        if "dim" in self.attrs:
            self.dim = int(self.attrs["dim"])
        elif keys:
            self.dim = int(h5[keys[0]].shape[-1])
        else:
            self.dim = 0
        self._cache: dict[str, np.ndarray] = {}

    @property
    def _h5(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            import h5py

            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(f"{self.path}: not a readable HDF5 feature store ({exc}); "
                                "delete it and re-run the extraction") from exc
            self._pid = os.getpid()
            self._cache = {}
        return self._file

    def __getstate__(self) -> dict[str, Any]:  # spawn-started workers reopen the file
        return {**self.__dict__, "_file": None, "_pid": -1, "_cache": {}}

    @property
    def kind(self) -> str:
        """``pano``, ``pooled`` or ``grid`` (see the module docstring)."""
        return str(self.attrs.get("kind", "pano"))

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

    @property
    def grid_layout(self) -> str | None:
        """``hwc`` (ResNet maps) or ``nc`` (ViT patches) for grid stores, else None."""
        return str(self.attrs.get("grid_layout", "hwc")) if self.kind == "grid" else None

    def require(self, *, kind: str | None = None, encoder: str | None = None, weights: str | None = None,
                short_side: int | None = None, long_side: int | None = None, dim: int | None = None,
                **attrs: Any) -> "FeatureStore":
        """Refuse a store made another way than the caller expects; returns the store.

        Every given value is compared with the recorded one (``weights`` also accepts the
        tag or file of the recorded label, see :func:`weights_match`; other keyword
        arguments are compared with attributes of the same name, e.g. ``crop="none"`` or
        ``preprocessing={...}``). A mismatch is a :class:`DataError` naming the file, the
        attribute, the recorded and the expected value, and the command that re-extracts it.
        """
        expected: dict[str, Any] = {k: v for k, v in dict(kind=kind, encoder=encoder, short_side=short_side,
                                                            long_side=long_side, **attrs).items() if v is not None}
        want = {**self.attrs, **expected, **({"weights": weights} if weights is not None else {})}
        hint = _extract_hint(kind or self.kind, want)
        recorded_all = {**self.attrs, "kind": self.kind}
        for name, value in expected.items():
            recorded = recorded_all.get(name)
            if recorded is None or not _same(recorded, value):
                raise DataError(f"{self.path}: {name} is {recorded!r} but {value!r} is expected; "
                                f"re-extract the features with {hint}")
        if weights is not None and not weights_match(self.weights, str(weights)):
            raise DataError(f"{self.path}: weights is {self.weights!r} but {weights!r} is expected; "
                            f"re-extract the features with {hint}")
        if dim is not None and self.dim != dim:
            raise DataError(f"{self.path}: dim is {self.dim} but {dim} is expected; re-extract the "
                            f"features with {hint}")
        return self

    def packed(self, keys: Iterable[str] | None = None, mmap: bool = True) -> tuple[np.ndarray, dict[str, int]]:
        """All features as one ``[N, 36, D]`` (pooled: ``[N, D]``) array plus ``key -> row``,
        shared between processes.

        The array is written once to the cache folder as a ``.npy`` keyed by this file's size,
        mtime and the key list, then memory-mapped: every process (DataLoader workers, several
        training runs) reads the same pages from the OS cache instead of holding its own copy.
        """
        import hashlib

        from vln_clip.paths import cache_dir

        if self.kind == "grid":
            raise DataError(f"{self.path}: a grid store has one shape per image and cannot be packed "
                            "into one array; read batches with get_many(keys)")
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
            item = (NUM_VIEWS, self.dim) if self.kind == "pano" else (self.dim,)
            with atomic_path(path) as tmp:
                arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(keys), *item))
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

    def _dataset(self, key: str) -> Any:
        try:
            return self._h5[key]
        except KeyError:
            what = "scans" if self.kind == "pano" else "images"
            raise DataError(f"{self.path}: no features for {key}; the store was made for other {what} "
                            "or is incomplete (re-run extraction: it resumes)") from None

    def get(self, scan: str, viewpoint: str, cache: bool = True) -> np.ndarray:
        """The ``[36, D]`` float32 features of one viewpoint (panorama stores).

        Cached after the first read (environments revisit viewpoints); one pass over a whole
        store (conversion, PCA) passes ``cache=False`` so that memory does not grow with it.
        """
        if self.kind != "pano":
            raise DataError(f"{self.path}: a {self.kind} store of images, not panoramas; read it with "
                            "get_item(image_key) or use a store made by `vln-clip features extract`")
        key = feature_key(scan, viewpoint)
        arr = self._cache.get(key)
        if arr is None:
            arr = np.asarray(self._dataset(key)[()], dtype=np.float32)
            if cache:
                self._cache[key] = arr
        return arr

    def get_item(self, key: str, dtype: Any = np.float32) -> np.ndarray:
        """The stored array of one key as ``dtype``: ``[36, D]`` (pano), ``[D]`` (pooled),
        ``[H', W', C]`` or ``[N, C]`` (grid, see :attr:`grid_layout`). Not cached."""
        return np.asarray(self._dataset(key)[()], dtype=dtype)

    def grid_shape(self, key: str) -> tuple[int, int]:
        """The ``(H', W')`` grid of one key (read from metadata, not the features)."""
        if self.kind != "grid":
            raise DataError(f"{self.path}: a {self.kind} store has no grids; extract one with "
                            "`vln-clip features grid` (without --pooled)")
        d = self._dataset(key)
        if "grid_hw" in d.attrs:
            h, w = (int(v) for v in d.attrs["grid_hw"])
            return h, w
        return int(d.shape[0]), int(d.shape[1])

    def item_attrs(self, key: str) -> dict[str, Any]:
        """Per-item metadata (grid stores: ``grid_hw``, ``image_hw``, ``input_hw``)."""
        return {k: tuple(int(x) for x in v) if isinstance(v, np.ndarray) else _plain(v)
                for k, v in self._dataset(key).attrs.items()}

    def get_many(self, keys: Iterable[str], dtype: Any = np.float32) -> ItemBatch:
        """Read ``keys`` into one array (see :class:`ItemBatch`), decoding straight into it.

        Grids are flattened row-major to ``L = H' * W'`` cells and zero padded to the longest
        item, with ``mask`` marking the real cells: the input a VQA / captioning transformer
        takes. HDF5 converts float16 to ``dtype`` while reading (no intermediate copies).
        """
        keys = list(keys)
        sets = [self._dataset(k) for k in keys]
        if self.kind == "pooled":
            out = np.empty((len(keys), self.dim), dtype=dtype)
            for i, d in enumerate(sets):
                d.read_direct(out[i])
            return ItemBatch(keys, out, None, None)
        if self.kind == "pano":
            out = np.empty((len(keys), NUM_VIEWS, self.dim), dtype=dtype)
            for i, d in enumerate(sets):
                d.read_direct(out[i])
            return ItemBatch(keys, out, np.ones((len(keys), NUM_VIEWS), dtype=bool), None)
        lengths = [int(np.prod(d.shape[:-1])) for d in sets]
        longest = max(lengths, default=0)
        out = np.zeros((len(keys), longest, self.dim), dtype=dtype)
        mask = np.zeros((len(keys), longest), dtype=bool)
        shapes = np.zeros((len(keys), 2), dtype=np.int64)
        for i, (k, d, n) in enumerate(zip(keys, sets, lengths)):
            if n:
                d.read_direct(out[i, :n].reshape(d.shape))
            mask[i, :n] = True
            shapes[i] = self.grid_shape(k)
        return ItemBatch(keys, out, mask, shapes)

    def table(self, keys: Iterable[str]) -> np.ndarray:
        """Stack the features of ``keys`` into one ``[N, 36, D]`` (pooled: ``[N, D]``) float32 array."""
        keys = list(keys)
        if self.kind != "pano":
            return self.get_many(keys).features
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
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _item_shape_error(kind: str, layout: str, dim: int, shape: tuple[int, ...]) -> str | None:
    """Why an array of ``shape`` cannot be one item of a ``kind`` store (None if it can)."""
    if kind == "pano":
        return None if shape == (NUM_VIEWS, dim) else f"expected [{NUM_VIEWS}, {dim}] (36 views)"
    if kind == "pooled":
        return None if shape == (dim,) else f"expected [{dim}] (one pooled embedding)"
    want = 3 if layout == "hwc" else 2
    if len(shape) != want or shape[-1] != dim:
        return f"expected {'[H, W, ' if layout == 'hwc' else '[N, '}{dim}] (a {layout} grid)"
    return None


class FeatureWriter:
    """Append items to a store; existing keys are kept, so an interrupted run resumes.

    Each item is written and flushed as a whole; HDF5 datasets appear only when complete
    (they are written to a temporary name and renamed inside the file). ``attrs["kind"]``
    (default ``pano``) decides which item shapes are accepted.
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
        existing = {k: _plain(v) for k, v in self._h5.attrs.items()}
        self.kind = str(attrs.get("kind", existing.get("kind", "pano")))
        self.layout = str(attrs.get("grid_layout", existing.get("grid_layout", "hwc")))
        if self.kind not in KINDS:
            raise ValueError(f"store kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "grid" and self.layout not in GRID_LAYOUTS:
            raise ValueError(f"grid_layout must be one of {GRID_LAYOUTS}, got {self.layout!r}")
        if "dim" in existing and int(existing["dim"]) != dim:
            raise DataError(f"{self.path}: existing store has dimension {existing['dim']}, new features "
                            f"have {dim}; use another --out file")
        if len(self._h5) and str(existing.get("kind", "pano")) != self.kind:
            raise DataError(f"{self.path}: existing store holds {existing.get('kind', 'pano')} features, "
                            f"new ones are {self.kind}; use another --out file")
        self.dim = dim
        base = {"kind": self.kind, **({"grid_layout": self.layout} if self.kind == "grid" else {})}
        for k, v in {**attrs, **base, "dim": dim, "version": FORMAT_VERSION, "dtype": dtype}.items():
            self._h5.attrs[k] = v
        for name in [k for k in self._h5.keys() if k.startswith(".tmp")]:
            del self._h5[name]  # leftovers of a killed run

    def __contains__(self, key: str) -> bool:
        return key in self._h5

    def done_keys(self) -> set[str]:
        return {k for k in self._h5.keys() if not k.startswith(".tmp")}

    def write(self, scan: str, viewpoint: str, feats: np.ndarray) -> None:
        """One panorama's ``[36, D]`` views."""
        self.write_item(feature_key(scan, viewpoint), feats)

    def write_item(self, key: str, feats: np.ndarray, attrs: Mapping[str, Any] | None = None) -> None:
        """One item (shape as the store's kind demands) with optional per-item attributes."""
        check_key(key, self.path)
        feats = np.asarray(feats)
        problem = _item_shape_error(self.kind, self.layout, self.dim, tuple(feats.shape))
        if problem:
            raise ValueError(f"{key}: {problem}, got {list(feats.shape)}")
        attrs = dict(attrs or {})
        if self.kind == "grid":
            hw = attrs.get("grid_hw", feats.shape[:2] if self.layout == "hwc" else None)
            if hw is None or (self.layout == "nc" and int(hw[0]) * int(hw[1]) != feats.shape[0]) or (
                    self.layout == "hwc" and tuple(int(v) for v in hw) != feats.shape[:2]):
                raise ValueError(f"{key}: grid_hw {hw} does not match features of shape {list(feats.shape)}")
            attrs["grid_hw"] = hw
        tmp = f".tmp_{key}"
        if tmp in self._h5:
            del self._h5[tmp]
        d = self._h5.create_dataset(tmp, data=feats.astype(self.dtype, copy=False))
        for k, v in attrs.items():
            d.attrs[k] = np.asarray(v, dtype=np.int64) if k in ITEM_ATTRS else v
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


def check_model_store(path: str | os.PathLike[str], dim: int, encoder: str | None, model: str,
                      configured: str | os.PathLike[str] | None = None) -> None:
    """The store at ``path`` fits a model trained on ``dim``-d ``encoder`` features (``model``
    names the checkpoint in the error); raises :class:`DataError` naming the store and the fix.

    The same width is not enough (RN101 and ViT-B/32 are both 512-d): when the store records
    its encoder it must be the model's, unless the model was trained on a store of that name
    (``configured``: a study's encoder checkpoint records its stem).
    """
    with FeatureStore(path) as store:
        if int(store.dim) != dim:
            raise DataError(f"{path}: features have dimension {store.dim} but {model} was trained on {dim}-d "
                            f"{encoder} features; pass --features with the store it was trained with")
        recorded = str(store.attrs.get("encoder") or "")
        if recorded and encoder and recorded != encoder and Path(configured or "").stem != recorded:
            raise DataError(f"{path}: holds {recorded} features but {model} was trained on {encoder} "
                            f"features; pass --features with the {encoder} store it was trained with")


def iter_store(path: str | os.PathLike[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Every ``(key, float32 array)`` of a store, one at a time (nothing is cached)."""
    with FeatureStore(path) as store:
        for key in store.keys():
            yield key, store.get_item(key)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------
# Crash-safe journal of finished items, and merging

JOURNAL_META = "meta.json"
# Settings that must agree between a journal's parts (and the stores merged with them).
JOURNAL_FIELDS = ("kind", "encoder", "weights", "dim", "image_size", "bgr", "source", "short_side",
                  "long_side", "crop", "preprocessing", "grid_layout", "l2_normalized")
MERGE_FIELDS = ("kind", "encoder", "weights", "bgr", "short_side", "long_side", "crop", "preprocessing",
                "grid_layout")


def journal_dir(out: str | os.PathLike[str]) -> Path:
    """Where an extraction into ``out`` keeps its finished batches until the store is built."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


class FeatureJournal:
    """Finished items of a running extraction, one atomically renamed ``.npz`` per batch.

    A kill (even SIGKILL mid-write) loses at most the batch in flight: a part file either
    exists whole or not at all, so nothing finished is redone or corrupted. Several ranks
    may append to the same folder (distinct file names). :func:`build_store` turns the
    journal (plus any existing store) into the final HDF5 file in one atomic rename.
    Panoramas (``kind`` pano, the default), pooled embeddings and grids all go through it;
    a grid batch is one shape bucket, so its items share one array.
    """

    def __init__(self, folder: str | os.PathLike[str], dim: int, attrs: Mapping[str, Any],
                 rank: int = 0) -> None:
        import uuid

        from vln_clip.io import atomic_path

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self.attrs = {**{k: _plain(v) for k, v in attrs.items()}, "dim": dim}
        self.kind = str(self.attrs.get("kind", "pano"))
        self.layout = str(self.attrs.get("grid_layout", "hwc"))
        meta = self.folder / JOURNAL_META
        if meta.exists() and any(self.folder.glob("part-*.npz")):  # settings matter only with parts
            old = json.loads(meta.read_text())
            for field in JOURNAL_FIELDS:
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

    def append(self, keys: list[str], feats: np.ndarray, extra: Mapping[str, np.ndarray] | None = None) -> Path:
        """Journal one batch: ``feats[i]`` is the item of ``keys[i]``; ``extra`` holds per-item
        metadata arrays ``[B, ...]`` (``grid_hw``, ``image_hw``, ``input_hw``)."""
        from vln_clip.io import atomic_path

        feats = np.asarray(feats)
        problem = None if feats.shape[:1] == (len(keys),) else "one item per key"
        problem = problem or _item_shape_error(self.kind, self.layout, self.dim, tuple(feats.shape[1:]))
        if problem:
            raise ValueError(f"journal batch of {len(keys)} {self.kind} items: {problem}, got {list(feats.shape)}")
        extra = {k: np.asarray(v, dtype=np.int64) for k, v in (extra or {}).items()}
        for k, v in extra.items():
            if k not in ITEM_ATTRS or v.shape[:1] != (len(keys),):
                raise ValueError(f"journal extra {k!r}: expected one of {ITEM_ATTRS} with {len(keys)} rows")
        path = self.folder / f"{self._prefix}-{self._count:06d}.npz"
        self._count += 1
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=np.array(keys), feats=feats.astype(np.float16 if
                         self.attrs.get("dtype", "float16") == "float16" else np.float32), **extra)
        return path


def read_part_keys(path: Path) -> list[str]:
    """The keys of one journal part (without loading its features)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return [str(k) for k in z["keys"]]
    except Exception as exc:
        raise DataError(f"{path}: unreadable journal part ({exc}); delete this file and re-run "
                        "(its items are extracted again)") from exc


def _read_part(path: Path) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            extra = {k: z[k] for k in ITEM_ATTRS if k in z.files}
            return [str(k) for k in z["keys"]], z["feats"], extra
    except Exception as exc:  # a part is renamed into place whole, so this is outside damage
        raise DataError(f"{path}: unreadable journal part ({exc}); delete this file and re-run "
                        "(its items are extracted again)") from exc


def build_store(out: str | os.PathLike[str], sources: Iterable[str | os.PathLike[str]],
                attrs: Mapping[str, Any] | None = None, dtype: str = "float16",
                remove_sources: bool = False) -> int:
    """Merge an existing ``out`` store, HDF5 shards and journal folders into ``out`` atomically.

    Keys already present win (finished items are never replaced). All inputs must agree on
    kind, dimension, encoder and settings. Returns the number of items in the result.
    """
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
        a = {"kind": "pano", **a}
        for field in MERGE_FIELDS:
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
                        keys, feats, extra = _read_part(part)
                        for i, (key, f) in enumerate(zip(keys, feats)):
                            if key not in writer:
                                writer.write_item(key, f, {k: v[i] for k, v in extra.items()})
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
