"""Paired comparison of two fine-tuned models on the same questions, with a bootstrap interval.

Both runs score every evaluation question (``RUN/{split}_scores.json``: ``{question id:
score}``, VQA accuracy in [0, 1] or 0/1 correctness); the difference of the means is reported
with a percentile bootstrap interval that resamples *questions* (the same resample for both
runs: the pairing removes the between-question variance that two independent intervals
would carry). Several pairs (one per seed) are pooled: each (seed, question) is one paired
item, so the interval is over questions given these seeds, not over seeds.
"""

from __future__ import annotations

from pathlib import Path

from vln_clip.errors import DataError
from vln_clip.eval.paired import PairedResult, paired_bootstrap
from vln_clip.io import read_json

__all__ = ["PairedResult", "compare_runs", "paired_bootstrap", "read_scores"]


def read_scores(path: str | Path) -> dict[str, float]:
    data = read_json(path, "per-question scores file")
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise DataError(f"{path}: expected {{question id: score}} as written by vln-clip finetune "
                        "(RUN/<split>_scores.json)")
    return {str(k): float(v) for k, v in data.items()}


def compare_runs(runs: list[Path], split: str = "val", resamples: int = 10000) -> PairedResult:
    """``runs`` = A1 B1 [A2 B2 ...]: A vs B on ``split``, pooled over the pairs (e.g. seeds).

    Question ids are prefixed by the pair's index, so a question of seed 1 pairs with the same
    question of seed 1 only; every pair must score the same questions (``paired_bootstrap``).
    """
    if not runs or len(runs) % 2:
        raise DataError(f"--compare takes pairs of runs (A1 B1 [A2 B2 ...]), got {len(runs)}: add the missing run")
    a: dict[str, float] = {}
    b: dict[str, float] = {}
    for i in range(0, len(runs), 2):
        for into, run in ((a, runs[i]), (b, runs[i + 1])):
            into.update({f"{i // 2}:{k}": v for k, v in read_scores(Path(run) / f"{split}_scores.json").items()})
    return paired_bootstrap(a, b, resamples=resamples)
