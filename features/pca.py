"""Reduce a feature store to its principal components, fitted on the training scans only.

Why: pooled CLIP features share a large constant component and spread the information that
tells rooms apart over hundreds of correlated channels. A follower trained for thousands,
not tens of thousands, of iterations (the synthetic world on a CPU) learns to read 64
whitened components much sooner than 512 raw channels; on the synthetic world the
vision-free follower is otherwise ahead at these budgets (docs/training.md). The projection
is fitted on the *training* scans so that nothing of val/test leaks into the features, and it
is recorded in the new store's attributes (``pca_*``), keeping the source encoder's name so
that ``vln-clip train --encoder <name> --features <pca store>`` still checks it.

The covariance is accumulated viewpoint by viewpoint in float64 (``D x D``), so memory does
not grow with the number of panoramas (61 R2R training scans x 36 views fit anywhere).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from vln_clip.errors import DataError

from .store import FeatureStore, FeatureWriter


@dataclass
class PCAProjection:
    """``y = (x - mean) @ components.T * scale``: ``components`` [k, D] rows are unit eigenvectors."""

    mean: np.ndarray  # [D]
    components: np.ndarray  # [k, D]
    scale: np.ndarray  # [k]: 1/sqrt(eigenvalue) when whitened, else ones
    explained: float  # fraction of the total variance the k components keep
    fitted_views: int

    def apply(self, feats: np.ndarray) -> np.ndarray:
        return ((feats.astype(np.float64) - self.mean) @ self.components.T * self.scale).astype(np.float32)


def fit_pca(store: FeatureStore, scans: Iterable[str], dim: int, whiten: bool = True) -> PCAProjection:
    """Principal components of every view of every viewpoint of ``scans`` in ``store``."""
    scans = set(scans)
    keys = [k for k in store.keys() if k.split("_", 1)[0] in scans]
    if not keys:
        raise DataError(f"{store.path}: no viewpoint of the fitting scans ({', '.join(sorted(scans)[:5])}...) "
                        "is in the store; pass the training split of the data the store was made for")
    if not 1 <= dim <= store.dim:
        raise DataError(f"--dim {dim}: must be between 1 and the store's dimension {store.dim}")
    total = np.zeros(store.dim)
    outer = np.zeros((store.dim, store.dim))
    n = 0
    for key in keys:
        x = store.get(*key.split("_", 1), cache=False).astype(np.float64)
        total += x.sum(0)
        outer += x.T @ x
        n += len(x)
    mean = total / n
    cov = outer / n - np.outer(mean, mean)
    vals, vecs = np.linalg.eigh(cov)  # ascending
    order = np.argsort(vals)[::-1]
    vals, vecs = np.clip(vals[order], 0.0, None), vecs[:, order]
    kept = vals[:dim]
    scale = 1.0 / np.sqrt(kept + 1e-6 * max(float(vals[0]), 1e-12)) if whiten else np.ones(dim)
    explained = float(kept.sum() / max(vals.sum(), 1e-12))
    return PCAProjection(mean, vecs[:, :dim].T.copy(), scale, explained, n)


def write_pca_store(src: str | os.PathLike[str], out: str | os.PathLike[str], fit_scans: Iterable[str],
                    dim: int = 64, whiten: bool = True) -> PCAProjection:
    """Project every viewpoint of ``src`` and write the result to ``out`` (atomically, float32)."""
    src, out = Path(src), Path(out)
    if src.resolve() == out.resolve():
        raise DataError(f"{out}: the output would overwrite the input store; choose another --out")
    fit_scans = sorted(set(fit_scans))
    with FeatureStore(src) as store:
        proj = fit_pca(store, fit_scans, dim, whiten)
        attrs = {k: v for k, v in store.attrs.items() if k not in ("dim", "dtype")}
        attrs.update(pca_source=str(src), pca_dim=dim, pca_whiten=str(whiten), pca_explained=proj.explained,
                     pca_fit_scans=",".join(fit_scans), pca_fitted_views=proj.fitted_views,
                     pca_source_dim=store.dim)
        tmp = out.with_name(out.name + ".partial")
        tmp.unlink(missing_ok=True)
        with FeatureWriter(tmp, dim, attrs, dtype="float32", flush_every=0) as writer:
            for key in store.keys():
                scan, vp = key.split("_", 1)
                writer.write(scan, vp, proj.apply(store.get(scan, vp, cache=False)))
    os.replace(tmp, out)  # a killed run leaves only the .partial file, never a short store
    return proj
