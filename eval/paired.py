"""Paired comparisons with bootstrap confidence intervals: one home for every "A beats B" claim.

Two systems scored on the same items (questions, images, instructions) are compared by the
mean of their per-item differences, with a percentile bootstrap interval that resamples
*items*, the same resample for both systems: the pairing removes the between-item variance
two independent intervals would carry, which is what makes small differences visible.
Scores in [0, 1] (accuracy, success, CIDEr-D / 10...) are reported x100 (percentage points).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from vln_clip.errors import DataError


@dataclass
class PairedResult:
    n: int
    mean_a: float  # x100
    mean_b: float
    diff: float  # a - b, x100
    ci_low: float
    ci_high: float
    level: float
    resamples: int
    wins_a: int  # items where a scores higher
    wins_b: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resampled_means(d: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # chunks keep memory flat for large item sets
        n = min(1000, resamples - start)
        means[start:start + n] = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    return means


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], resamples: int = 10_000, level: float = 0.95,
                     seed: int = 0) -> PairedResult:
    """Mean(a) - mean(b) over the items both score, with a ``level`` percentile interval."""
    common = sorted(set(a) & set(b))
    if not common or len(common) != len(a) or len(common) != len(b):
        raise DataError(f"the two runs score different items ({len(a)} and {len(b)}, {len(common)} shared); "
                        "compare runs evaluated on the same split")
    x = np.array([a[k] for k in common], dtype=np.float64) * 100.0
    y = np.array([b[k] for k in common], dtype=np.float64) * 100.0
    d = x - y
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(_resampled_means(d, resamples, seed), [alpha, 1.0 - alpha])
    return PairedResult(len(d), float(x.mean()), float(y.mean()), float(d.mean()), float(lo), float(hi), level,
                        resamples, int((d > 0).sum()), int((d < 0).sum()))


def mean_interval(values: Sequence[float], resamples: int = 10_000, level: float = 0.95,
                  seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of one system's mean score (x100)."""
    v = np.asarray(values, dtype=np.float64) * 100.0
    if len(v) == 0:
        raise DataError("no scored items: nothing to put an interval on")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(_resampled_means(v, resamples, seed), [alpha, 1.0 - alpha])
    return float(lo), float(hi)
