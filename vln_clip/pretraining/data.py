"""Examples of the pre-training mix and of the three fine-tuning tasks, from the dataset readers.

Everything here is a flat list of small dataclasses: one example = one (image, sentence) pair
with its target. Files are read with :mod:`vln_clip.datasets` (which owns the formats and
their error messages); this module only decides what an example is for CLIP-ViL_p:

- pre-training (:func:`pretrain_examples`): every caption and every question of the LXMERT
  mix is one example (LXMERT's unit); questions carry their ``{answer: score}`` label for the
  QA objective, captions carry none. The QA answer table is the answers of the *training*
  labels seen at least ``min_count`` times (:func:`qa_answer_vocab`).
- fine-tuning (:func:`task_examples`): VQA (soft scores over the answer vocabulary built on
  train), SNLI-VE (the hypothesis as text, the image as premise; 3 classes), GQA (one class
  per training answer).

Paths follow the synthetic V&L layout (docs/vl-data.md), which mirrors the real datasets'
file names, so ``--data DIR`` works for both.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vln_clip.datasets.gqa import TYPE_KEYS as GQA_TYPE_KEYS
from vln_clip.datasets.gqa import read_gqa
from vln_clip.datasets.lxmert import read_lxmert
from vln_clip.datasets.snli_ve import LABELS as SNLI_LABELS
from vln_clip.datasets.snli_ve import read_snli_ve
from vln_clip.datasets.vqa import AnswerVocab, read_vqa
from vln_clip.errors import DataError
from vln_clip.synth.vl_language import COLOUR_NAMES, HYPOTHESIS_TYPE

TASKS = ("vqa", "snli-ve", "gqa")


@dataclass
class PretrainExample:
    image_key: str
    sentence: str
    source: str
    label: dict[str, float] | None = None  # QA sources only


@dataclass
class TaskExample:
    """One fine-tuning example. ``target``: soft scores ``{class: score}`` (VQA) or one class."""

    qid: str
    image_key: str
    text: str
    target: dict[int, float] | int | None
    answers: list[str] = field(default_factory=list)  # VQA's ten answers (the official accuracy)
    answer: str | None = None  # GQA's / SNLI-VE's gold string


def lxmert_path(data: str | Path, split: str) -> Path:
    return Path(data) / "lxmert" / f"mscoco_{split}.json"


def image_dir(data: str | Path) -> Path:
    return Path(data) / "images"


def pretrain_examples(paths: Sequence[str | Path], exclude_keys: set[str] | None = None) -> list[PretrainExample]:
    """All captions and questions of the LXMERT files, minus images in ``exclude_keys``."""
    out: list[PretrainExample] = []
    for path in paths:
        for item in read_lxmert(path):
            if exclude_keys and item.image_key in exclude_keys:
                continue
            for source, sentence in item.captions():
                out.append(PretrainExample(item.image_key, sentence, source))
            for source, question, label in item.questions():
                out.append(PretrainExample(item.image_key, question, source, dict(label)))
    if not out:
        raise DataError(f"{', '.join(map(str, paths))}: no captions or questions (after excluding evaluation "
                        "images); check the LXMERT files")
    return out


def qa_answer_vocab(examples: Sequence[PretrainExample], min_count: int = 1) -> AnswerVocab:
    """The answers of the QA labels (score > 0), at least ``min_count`` times, most frequent first."""
    counts: Counter[str] = Counter()
    for ex in examples:
        if ex.label:
            counts.update(a for a, s in ex.label.items() if s > 0)
    kept = sorted(((n, a) for a, n in counts.items() if n >= min_count), key=lambda t: (-t[0], t[1]))
    return AnswerVocab([a for _, a in kept], [n for n, _ in kept], min_count)


def qa_targets(label: dict[str, float] | None, vocab: AnswerVocab) -> dict[int, float]:
    """A QA label as ``{answer index: score}`` (answers outside the table dropped)."""
    out: dict[int, float] = {}
    for answer, score in (label or {}).items():
        idx = vocab.index(answer)
        if idx is not None:
            out[idx] = max(out.get(idx, 0.0), float(score))
    return out


# ---------------------------------------------------------------------------------------
# Fine-tuning tasks


def task_files(data: str | Path, task: str, split: str) -> list[Path]:
    data = Path(data)
    if task == "vqa":
        return [data / "vqa" / f"v2_OpenEnded_mscoco_{split}_questions.json",
                data / "vqa" / f"v2_mscoco_{split}_annotations.json"]
    if task == "gqa":
        return [data / "gqa" / f"{split}_balanced_questions.json"]
    if task == "snli-ve":
        return [data / "snli_ve" / f"snli_ve_{split}.jsonl"]
    raise DataError(f"unknown fine-tuning task {task!r}; choose one of {', '.join(TASKS)}")


#: The ``colour`` grouping: every task's items split by whether they turn on colour (the
#: question, hypothesis or reference answer names one of these words, or asks for a colour).
COLOUR = "colour"
COLOUR_WORDS = frozenset({w for names in COLOUR_NAMES.values() for w in names}
                         | {"color", "colour", "colors", "colours"})
TYPE_FIELDS: dict[str, tuple[str, ...]] = {"vqa": ("answer_type", "question_type", COLOUR),
                                           "gqa": (*GQA_TYPE_KEYS, COLOUR),  # structural, semantic, detailed
                                           "snli-ve": ("gold_label", HYPOTHESIS_TYPE, COLOUR)}  # first = the default


def colour_type(*texts: str | None) -> str:
    """``colour`` when any of ``texts`` names a colour (:data:`COLOUR_WORDS`), else ``no colour``."""
    words = {w for t in texts if t for w in "".join(c if c.isalpha() else " " for c in t.lower()).split()}
    return "colour" if words & COLOUR_WORDS else "no colour"


def question_types(data: str | Path, task: str, split: str, field_name: str | None = None) -> dict[str, str]:
    """Each question's type, keyed as in ``RUN/<split>_scores.json``, for per-type comparisons.

    ``field_name`` (default the first of ``TYPE_FIELDS[task]``): VQA's ``answer_type`` (yes/no,
    number, other) or ``question_type`` ("what color", ...); GQA's ``types`` entry,
    ``structural`` (verify, query, choose, logical, compare: the breakdown of GQA's own
    evaluation script), ``detailed`` (existAttr, relS, ...) or ``semantic``; SNLI-VE's gold label
    or, in worlds made by ``vln-clip data synth-vl``, ``hypothesis_type`` (the template: object,
    relation, colour, ...; real SNLI-VE has none); and for every task ``colour``
    (:func:`colour_type`: does the item turn on a colour word).
    Several fields joined by commas cross them: ``colour,gold_label`` gives types such as
    ``colour / neutral``, to see which part of a group a difference comes from.
    """
    if task not in TYPE_FIELDS:
        raise DataError(f"unknown fine-tuning task {task!r}; choose one of {', '.join(TASKS)}")
    if field_name and "," in field_name:
        names = [name.strip() for name in field_name.split(",")]
        if not all(names):
            raise DataError(f"--by-type {field_name!r}: an empty field; name each, e.g. colour,gold_label")
        crossed = [question_types(data, task, split, name) for name in names]
        return {qid: " / ".join(types[qid] for types in crossed) for qid in crossed[0]}
    name = field_name or TYPE_FIELDS[task][0]
    if name not in TYPE_FIELDS[task]:
        raise DataError(f"{task} questions have no type field {name!r}; choose one of {', '.join(TYPE_FIELDS[task])}")
    data = Path(data)
    if task == "vqa":
        q, a = task_files(data, task, split)
        if not a.exists():
            raise DataError(f"{a}: no such file; answer and question types come from the annotations, so "
                            "compare by type on a split that has them (--split val)")
        if name == COLOUR:
            return {str(it.question_id): colour_type(it.question, it.multiple_choice_answer) for it in read_vqa(q, a)}
        return {str(it.question_id): str(getattr(it, name)) for it in read_vqa(q, a)}
    if task == "gqa":
        path = task_files(data, task, split)[0]
        items = read_gqa(path)
        if name == COLOUR:
            return {it.question_id: colour_type(it.question, it.answer) for it in items}
        untyped = [it.question_id for it in items if name not in it.types]
        if untyped:
            raise DataError(f"{path}: question {untyped[0]!r} (and {len(untyped) - 1} more) has no "
                            f"'types'.'{name}'; compare without --by-type")
        return {it.question_id: it.types[name] for it in items}
    path = task_files(data, task, split)[0]
    items = read_snli_ve(path)
    if name == COLOUR:
        return {it.pair_id: colour_type(it.hypothesis) for it in items}
    if name == HYPOTHESIS_TYPE:
        untyped = [it.pair_id for it in items if not isinstance(it.extra.get(name), str)]
        if untyped:
            raise DataError(f"{path}: pair {untyped[0]!r} (and {len(untyped) - 1} more) has no '{name}'; "
                            "only worlds made by vln-clip data synth-vl (generator 1.1 or later) carry it: "
                            "regenerate the world, or compare by gold_label or colour")
        return {it.pair_id: it.extra[name] for it in items}
    return {it.pair_id: it.gold_label for it in items}


@dataclass
class TaskData:
    """A fine-tuning task's examples and its label space (class index -> answer string)."""

    task: str
    train: list[TaskExample]
    evals: dict[str, list[TaskExample]]
    classes: list[str]


def _vqa_examples(items: Sequence, vocab: AnswerVocab) -> list[TaskExample]:
    return [TaskExample(str(it.question_id), it.image_key, it.question,
                        vocab.soft_scores(it.answers) if it.answers else None, list(it.answers),
                        it.multiple_choice_answer) for it in items]


def _read_vqa_split(data: Path, split: str) -> list:
    q, a = task_files(data, "vqa", split)
    return read_vqa(q, a if a.exists() else None)


def load_task(data: str | Path, task: str, eval_splits: Sequence[str] = ("val",), train_split: str = "train",
              min_count: int = 1, classes: list[str] | None = None) -> TaskData:
    """Read a task's training split and evaluation splits; ``classes`` fixes the label space
    (resuming, or evaluating a fine-tuned model), else it is built on the training split."""
    data = Path(data)
    if task == "vqa":
        train_items = _read_vqa_split(data, train_split)
        vocab = AnswerVocab(list(classes)) if classes is not None else AnswerVocab.build(train_items, min_count)
        if len(vocab) == 0:
            raise DataError(f"{task_files(data, 'vqa', train_split)[1]}: no answer is the answer of {min_count} "
                            "or more training questions; lower --min-answer-count")
        train = _vqa_examples(train_items, vocab)
        evals = {s: _vqa_examples(_read_vqa_split(data, s), vocab) for s in eval_splits}
        return TaskData(task, train, evals, list(vocab.answers))
    if task == "snli-ve":
        def read(split: str) -> list[TaskExample]:
            return [TaskExample(it.pair_id, it.image_key, it.hypothesis, it.label_index, answer=it.gold_label)
                    for it in read_snli_ve(task_files(data, task, split)[0])]

        return TaskData(task, read(train_split), {s: read(s) for s in eval_splits}, list(SNLI_LABELS))
    if task == "gqa":
        train_items = read_gqa(task_files(data, task, train_split)[0])
        if classes is None:
            counts = Counter(it.answer for it in train_items if it.answer is not None)
            classes = [a for a, n in sorted(counts.items(), key=lambda t: (-t[1], t[0])) if n >= min_count]
        index = {a: i for i, a in enumerate(classes)}

        def convert(items: Sequence) -> list[TaskExample]:
            return [TaskExample(it.question_id, it.image_key, it.question, index.get(it.answer) if it.answer else None,
                                answer=it.answer) for it in items]

        train = [ex for ex in convert(train_items) if ex.target is not None]
        evals = {s: convert(read_gqa(task_files(data, task, s)[0])) for s in eval_splits}
        return TaskData(task, train, evals, list(classes))
    raise DataError(f"unknown fine-tuning task {task!r}; choose one of {', '.join(TASKS)}")
