"""The official VQA accuracy (GT-Vision-Lab/VQA ``vqaEval.py``), vectorised over questions.

Per question (rules and quirks in :mod:`vln_clip.eval.vqa_rules`): clean the ten answers and
the prediction; only if the cleaned answers are not all identical, normalise all eleven strings
(punctuation, then number words / articles / contractions); score the mean over the ten
leave-one-out subsets of ``min(1, matches / 3)``. Aggregates are percentages over questions,
overall, per answer type and per question type, summed left to right in the annotation
file's order as the official loop does, and **not rounded** (the official print rounds to 2
decimals).

Speed: a string is normalised once however often it occurs (a dictionary of unique strings),
each string becomes an integer id, and matching, the leave-one-out mean (a look-up table over
the 1,024 match patterns, filled with the official arithmetic) and the sums are numpy.
:func:`vqa_accuracy_reference` is the same rules as a plain per-question loop;
``benchmarks/bench_vqa_eval.py`` times both and the tests check they agree bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from vln_clip.datasets.common import PathLike
from vln_clip.datasets.results import read_vqa_results
from vln_clip.datasets.vqa import ANSWER_TYPES, VQAItem, read_vqa

from .vqa_rules import (N_ANSWERS, clean, leave_one_out_score, leave_one_out_scores, normalize_answer,
                        process_digit_article, process_punctuation)

__all__ = ["normalize_answer", "vqa_accuracy", "vqa_accuracy_reference", "summarize", "score_items",
           "evaluate_vqa", "VQAScores", "ANSWER_TYPES"]


def vqa_accuracy(answers: Sequence[Sequence[str]], predictions: Sequence[str]) -> np.ndarray:
    """Official per-question accuracies in [0, 1] (float64 ``[N]``), vectorised.

    ``answers[i]`` are question i's ten ground-truth answers as in the annotation file.
    """
    n = len(predictions)
    if len(answers) != n:
        raise ValueError(f"{len(answers)} answer lists for {n} predictions")
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    flat = [a for row in answers for a in row]
    if len(flat) != n * N_ANSWERS:
        bad = next(i for i, row in enumerate(answers) if len(row) != N_ANSWERS)
        raise ValueError(f"question {bad}: {len(answers[bad])} answers, the official accuracy needs {N_ANSWERS}")
    # Raw strings -> integer codes through a dict of the distinct strings (C-speed map calls).
    everything = flat + list(predictions)
    raw_index = {s: i for i, s in enumerate(dict.fromkeys(everything))}
    codes = np.fromiter(map(raw_index.__getitem__, everything), dtype=np.int64, count=len(everything))
    # Every distinct raw string is cleaned once; equal strings after cleaning share an id.
    ids: dict[str, int] = {}
    clean_of = np.array([ids.setdefault(clean(s), len(ids)) for s in raw_index], dtype=np.int64)
    gt = clean_of[codes[: n * N_ANSWERS]].reshape(n, N_ANSWERS)
    pred = clean_of[codes[n * N_ANSWERS:]]
    # Only questions whose cleaned answers differ get their strings normalised.
    differ = (gt != gt[:, :1]).any(axis=1)
    needed = np.zeros(len(ids), dtype=bool)
    needed[gt[differ].ravel()] = True
    needed[pred[differ]] = True
    strings = list(ids)  # id -> cleaned string
    norm_of = np.arange(len(strings), dtype=np.int64)
    for i in np.flatnonzero(needed).tolist():
        norm_of[i] = ids.setdefault(normalize_answer(strings[i]), len(ids))
    gt = np.where(differ[:, None], norm_of[gt], gt)
    pred = np.where(differ, norm_of[pred], pred)
    return leave_one_out_scores(gt == pred[:, None])


def vqa_accuracy_reference(answers: Sequence[Sequence[str]], predictions: Sequence[str]) -> np.ndarray:
    """The same rules as a plain per-question Python loop (the reading of the official code).

    Kept as the cross-check of :func:`vqa_accuracy` and the baseline of its benchmark.
    """
    out = np.empty(len(predictions), dtype=np.float64)
    for i, (row, p) in enumerate(zip(answers, predictions)):
        gts = [clean(a) for a in row]
        res = clean(p)
        if len(set(gts)) > 1:
            gts = [process_digit_article(process_punctuation(a)) for a in gts]
            res = process_digit_article(process_punctuation(res))
        out[i] = leave_one_out_score([a == res for a in gts])
    return out


def _sequential_mean_percent(values: np.ndarray) -> float:
    # 100 * float(sum(list)) / len(list), summed left to right: np.cumsum is sequential
    # (np.sum is pairwise and would differ in the last bits).
    return 100 * float(np.cumsum(values)[-1]) / len(values)


@dataclass
class VQAScores:
    """Per-question accuracies with their types; :meth:`as_dict` is the report."""

    question_ids: list[int]
    accuracy: np.ndarray  # [N] in [0, 1]
    question_types: list[str]
    answer_types: list[str]

    def as_dict(self) -> dict:
        return summarize(self.accuracy, self.question_types, self.answer_types)


def summarize(accuracy: np.ndarray, question_types: Sequence[str], answer_types: Sequence[str]) -> dict:
    """``{"overall", "per_answer_type", "per_question_type", "n_questions"}``, percentages, unrounded.

    ``per_answer_type`` always has ``yes/no``, ``number`` and ``other`` (None when a type has no
    question), then any other type in order of appearance; ``per_question_type`` follows order of
    appearance.
    """
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if len(accuracy) == 0:
        raise ValueError("no questions to summarise")

    def by(types: Sequence[str]) -> dict[str, float]:
        # Group by type without a Python loop over questions; a stable sort keeps each group in
        # question order, so its sum runs in the official order.
        if len(types) != len(accuracy):
            raise ValueError(f"{len(types)} types for {len(accuracy)} questions")
        index = {t: i for i, t in enumerate(dict.fromkeys(types))}
        codes = np.fromiter(map(index.__getitem__, types), dtype=np.int64, count=len(types))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(index) + 1))
        return {t: _sequential_mean_percent(accuracy[order[bounds[i]:bounds[i + 1]]]) for t, i in index.items()}

    per_answer = by(answer_types)
    ordered: dict[str, float | None] = {t: per_answer.pop(t, None) for t in ANSWER_TYPES}
    ordered.update(per_answer)
    return {"overall": _sequential_mean_percent(accuracy), "per_answer_type": ordered,
            "per_question_type": by(question_types), "n_questions": int(len(accuracy))}


def score_items(items: Sequence[VQAItem], predictions: Mapping[int, str]) -> VQAScores:
    """Score predictions (``{question_id: answer}``, one per item) against annotated items, in item order."""
    missing = [it.question_id for it in items if it.question_id not in predictions]
    if missing:
        raise ValueError(f"{len(missing)} questions have no prediction (first: {missing[0]})")
    unannotated = [it.question_id for it in items if not it.annotated]
    if unannotated:
        raise ValueError(f"{len(unannotated)} questions have no annotation (first: {unannotated[0]}); "
                         f"read them with their annotations file")
    acc = vqa_accuracy([it.answers for it in items], [predictions[it.question_id] for it in items])
    return VQAScores([it.question_id for it in items], acc, [it.question_type or "" for it in items],
                     [it.answer_type or "" for it in items])


def evaluate_vqa(questions_path: PathLike, annotations_path: PathLike, preds_path: PathLike) -> dict:
    """The official evaluation of a results file: ``overall``, ``per_answer_type``, ``per_question_type``.

    The results must answer every annotated question exactly once (``DataError`` naming the
    entry otherwise). Percentages, unrounded; questions in the annotation file's order.
    """
    items = read_vqa(questions_path, annotations_path)
    preds = read_vqa_results(preds_path, [it.question_id for it in items])
    return score_items(items, preds).as_dict()
