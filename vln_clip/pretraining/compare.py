"""Paired comparison of two fine-tuned models on the same questions, with a bootstrap interval.

Both runs score every evaluation question (``RUN/{split}_scores.json``: ``{question id:
score}``, VQA accuracy in [0, 1] or 0/1 correctness); the difference of the means is reported
with a percentile bootstrap interval that resamples *questions* (the same resample for both
runs: the pairing removes the between-question variance that two independent intervals
would carry).
"""

from __future__ import annotations

from pathlib import Path

from vln_clip.errors import DataError
from vln_clip.eval.paired import PairedResult, paired_bootstrap
from vln_clip.io import read_json

__all__ = ["PairedResult", "paired_bootstrap", "read_scores"]


def read_scores(path: str | Path) -> dict[str, float]:
    data = read_json(path, "per-question scores file")
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise DataError(f"{path}: expected {{question id: score}} as written by vln-clip finetune "
                        "(RUN/<split>_scores.json)")
    return {str(k): float(v) for k, v in data.items()}
