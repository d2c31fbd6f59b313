"""Paired comparison of two fine-tuned models on the same questions, with a bootstrap interval.

Both runs score every evaluation question (``RUN/{split}_scores.json``: ``{question id:
score}``, VQA accuracy in [0, 1] or 0/1 correctness); the difference of the means is reported
with a percentile bootstrap interval that resamples *questions* (the same resample for both
runs: the pairing removes the between-question variance that two independent intervals
would carry).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from vln_clip.errors import DataError
from vln_clip.io import read_json


@dataclass
class PairedResult:
    n: int
    mean_a: float  # percent
    mean_b: float
    diff: float  # a - b, percentage points
    ci_low: float
    ci_high: float
    level: float
    resamples: int
    wins_a: int  # questions where a scores higher
    wins_b: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(a: Mapping[str, float], b: Mapping[str, float], resamples: int = 10_000, level: float = 0.95,
                     seed: int = 0) -> PairedResult:
    """Mean(a) - mean(b) over the questions both score, with a ``level`` percentile interval."""
    common = sorted(set(a) & set(b))
    if not common or len(common) != len(a) or len(common) != len(b):
        raise DataError(f"the two runs score different questions ({len(a)} and {len(b)}, {len(common)} shared); "
                        "compare runs evaluated on the same split")
    x = np.array([a[k] for k in common], dtype=np.float64) * 100.0
    y = np.array([b[k] for k in common], dtype=np.float64) * 100.0
    d = x - y
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # chunks keep memory flat for large question sets
        n = min(1000, resamples - start)
        means[start:start + n] = d[rng.integers(0, len(d), size=(n, len(d)))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedResult(len(d), float(x.mean()), float(y.mean()), float(d.mean()), float(lo), float(hi), level,
                        resamples, int((d > 0).sum()), int((d < 0).sum()))


def read_scores(path: str | Path) -> dict[str, float]:
    data = read_json(path, "per-question scores file")
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise DataError(f"{path}: expected {{question id: score}} as written by vln-clip finetune "
                        "(RUN/<split>_scores.json)")
    return {str(k): float(v) for k, v in data.items()}
