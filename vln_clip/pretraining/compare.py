"""Paired comparison of two fine-tuned models on the same questions, with a bootstrap interval.

Both runs score every evaluation question (``RUN/{split}_scores.json``: ``{question id:
score}``, VQA accuracy in [0, 1] or 0/1 correctness); the difference of the means is reported
with a percentile bootstrap interval that resamples *questions* (the same resample for both
runs: the pairing removes the between-question variance that two independent intervals
would carry). Several pairs (one per seed) are pooled: each (seed, question) is one paired
item, so the interval is over questions given these seeds, not over seeds.

``by_type`` splits the same items by question type (:func:`~vln_clip.pretraining.data.question_types`,
read from the data the runs were fine-tuned on, ``RUN/finetune.json``): where an overall
difference comes from, or why there is none, as GQA's own evaluation reports by structural type.
"""

from __future__ import annotations

from pathlib import Path

from vln_clip.errors import DataError
from vln_clip.eval.paired import PairedResult, paired_bootstrap
from vln_clip.io import read_json

from .data import question_types

__all__ = ["PairedResult", "compare_by_type", "compare_runs", "paired_bootstrap", "read_scores"]


def read_scores(path: str | Path) -> dict[str, float]:
    data = read_json(path, "per-question scores file")
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise DataError(f"{path}: expected {{question id: score}} as written by vln-clip finetune "
                        "(RUN/<split>_scores.json)")
    return {str(k): float(v) for k, v in data.items()}


def _pooled(runs: list[Path], split: str) -> tuple[dict[str, float], dict[str, float]]:
    """The A and B scores of every pair, question ids prefixed by the pair's index (``i:qid``)."""
    if not runs or len(runs) % 2:
        raise DataError(f"--compare takes pairs of runs (A1 B1 [A2 B2 ...]), got {len(runs)}: add the missing run")
    a: dict[str, float] = {}
    b: dict[str, float] = {}
    for i in range(0, len(runs), 2):
        for into, run in ((a, runs[i]), (b, runs[i + 1])):
            into.update({f"{i // 2}:{k}": v for k, v in read_scores(Path(run) / f"{split}_scores.json").items()})
    return a, b


def compare_runs(runs: list[Path], split: str = "val", resamples: int = 10000) -> PairedResult:
    """``runs`` = A1 B1 [A2 B2 ...]: A vs B on ``split``, pooled over the pairs (e.g. seeds).

    Question ids are prefixed by the pair's index, so a question of seed 1 pairs with the same
    question of seed 1 only; every pair must score the same questions (``paired_bootstrap``).
    """
    return paired_bootstrap(*_pooled(runs, split), resamples=resamples)


def _run_task(run: Path) -> tuple[str, str]:
    """(task, data directory) of a finished fine-tuning run."""
    path = Path(run) / "finetune.json"
    summary = read_json(path, "fine-tuning summary")
    task, data = summary.get("task"), (summary.get("config") or {}).get("data")
    if not isinstance(task, str) or not isinstance(data, str):
        raise DataError(f"{path}: no 'task' and 'config'.'data'; it is written when vln-clip finetune "
                        "finishes, so finish (--resume) the run first")
    return task, data


def compare_by_type(runs: list[Path], split: str = "val", resamples: int = 10000,
                    field_name: str | None = None) -> dict[str, PairedResult]:
    """:func:`compare_runs` within each question type (``field_name``: see
    :func:`~vln_clip.pretraining.data.question_types`), types in order of their first question.

    Every run of a comparison must be fine-tuned on the same task; each pair's types are read
    from its A run's data (the B run's scores must cover the same questions, as for the overall
    comparison)."""
    a, b = _pooled(runs, split)
    info = [_run_task(r) for r in runs]
    tasks = {task for task, _ in info}
    if len(tasks) != 1:
        raise DataError(f"--by-type compares runs of one task, got {', '.join(sorted(tasks))}")
    # per pair: (A run, its data, its task, {question id: type})
    typed = [(run, data, task, question_types(data, task, split, field_name))
             for run, (task, data) in zip(runs[0::2], info[0::2])]
    groups: dict[str, list[str]] = {}
    for key in a:
        pair, qid = key.split(":", 1)
        run, data, task, types = typed[int(pair)]
        if qid not in types:
            raise DataError(f"{run}: question {qid!r} is not in {data}'s {task} {split} split; "
                            "compare by type against the data the run was fine-tuned on")
        groups.setdefault(types[qid], []).append(key)
    return {t: paired_bootstrap({k: a[k] for k in keys}, {k: b[k] for k in keys}, resamples=resamples)
            for t, keys in groups.items()}
