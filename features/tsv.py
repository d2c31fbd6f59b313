"""EnvDrop / CLIP-ViL feature TSV files: read, write, and convert to the HDF5 feature store.

The published files (``ResNet-152-imagenet.tsv``, ``CLIP-ResNet-50x4-views.tsv``, ...) have
one row per viewpoint, tab-separated, no header, columns ``scanId, viewpointId, image_w,
image_h, vfov, features`` where ``features`` is base64 of ``36 x D`` little-endian float32.
Rows are megabytes long, so the csv field size limit is raised before reading.
"""

from __future__ import annotations

import base64
import csv
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from vln_clip.errors import DataError
from vln_clip.io import atomic_path

from .store import NUM_VIEWS, FeatureWriter

TSV_FIELDS = ["scanId", "viewpointId", "image_w", "image_h", "vfov", "features"]


def _raise_field_limit() -> None:
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # C long is 32-bit on some platforms
            limit //= 10


class TsvRow:
    __slots__ = ("scan", "viewpoint", "image_w", "image_h", "vfov", "features")

    def __init__(self, scan: str, viewpoint: str, image_w: int, image_h: int, vfov: float,
                 features: np.ndarray) -> None:
        self.scan, self.viewpoint = scan, viewpoint
        self.image_w, self.image_h, self.vfov = image_w, image_h, vfov
        self.features = features


def read_tsv(path: str | os.PathLike[str], dim: int | None = None) -> Iterator[TsvRow]:
    """Rows of a feature TSV with ``features`` decoded to ``[36, D]`` float32.

    ``dim`` checks D; without it D is inferred from the first row and then enforced.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: feature TSV not found")
    _raise_field_limit()
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for lineno, row in enumerate(reader, 1):
            if not row:
                continue
            if row[0] == "scanId":  # tolerate a header line
                continue
            if len(row) != len(TSV_FIELDS):
                raise DataError(f"{path}:{lineno}: expected {len(TSV_FIELDS)} tab-separated columns "
                                f"({', '.join(TSV_FIELDS)}), got {len(row)}")
            try:
                raw = base64.b64decode(row[5], validate=False)
                feats = np.frombuffer(raw, dtype="<f4")
                image_w, image_h, vfov = int(row[2]), int(row[3]), float(row[4])
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path}:{lineno} ({row[0]}_{row[1]}): malformed row ({exc})") from exc
            if feats.size == 0 or feats.size % NUM_VIEWS:
                raise DataError(f"{path}:{lineno} ({row[0]}_{row[1]}): {feats.size} feature values are not "
                                f"{NUM_VIEWS} views x D; the file is truncated or not a view-feature TSV")
            d = feats.size // NUM_VIEWS
            if dim is None:
                dim = d
            elif d != dim:
                raise DataError(f"{path}:{lineno} ({row[0]}_{row[1]}): features have dimension {d}, "
                                f"expected {dim}")
            yield TsvRow(row[0], row[1], image_w, image_h, vfov, feats.reshape(NUM_VIEWS, d).copy())


def write_tsv(path: str | os.PathLike[str], rows: Iterable[tuple[str, str, np.ndarray]],
              image_w: int = 640, image_h: int = 480, vfov: float = 60) -> int:
    """Write ``(scan, viewpoint, [36, D] features)`` rows in the EnvDrop layout (atomically)."""
    n = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            for scan, vp, feats in rows:
                arr = np.asarray(feats, dtype="<f4")
                if arr.ndim != 2 or arr.shape[0] != NUM_VIEWS:
                    raise DataError(f"{scan}_{vp}: features must be [{NUM_VIEWS}, D], got {arr.shape}")
                writer.writerow([scan, vp, image_w, image_h, vfov,
                                 base64.b64encode(arr.tobytes()).decode("ascii")])
                n += 1
    return n


def convert_tsv(tsv: str | os.PathLike[str], out: str | os.PathLike[str], encoder: str | None = None,
                dtype: str = "float16", bgr: bool | None = None) -> int:
    """Convert a feature TSV to the HDF5 store; returns the number of viewpoints.

    With ``encoder`` the feature dimension must equal that encoder's pooled dimension
    (a mismatch is a :class:`DataError` before anything is written).
    """
    from vln_clip.encoders import get_spec

    expected = get_spec(encoder).pooled_dim if encoder else None
    rows = read_tsv(tsv, dim=None)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{tsv}: no rows; nothing to convert")
    dim = first.features.shape[1]
    if expected is not None and dim != expected:
        raise DataError(f"{tsv}: features have dimension {dim} but encoder {encoder} produces {expected}; "
                        f"pick the matching --encoder or the right TSV file")
    attrs = {"encoder": encoder or "unknown", "weights": f"tsv:{Path(tsv).name}",
             "image_w": first.image_w, "image_h": first.image_h, "vfov": first.vfov,
             "source": "tsv", "bgr": "unknown" if bgr is None else str(bool(bgr))}
    n = 0
    with atomic_path(out) as tmp:
        tmp.unlink()
        with FeatureWriter(tmp, dim, attrs, dtype=dtype, flush_every=0) as writer:
            for row in _chain(first, rows):
                if row.features.shape[1] != dim:
                    raise DataError(f"{tsv}: {row.scan}_{row.viewpoint} has dimension "
                                    f"{row.features.shape[1]}, earlier rows {dim}")
                writer.write(row.scan, row.viewpoint, row.features)
                n += 1
    return n


def _chain(first: TsvRow, rest: Iterator[TsvRow]) -> Iterator[TsvRow]:
    yield first
    yield from rest
