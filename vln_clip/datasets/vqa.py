"""VQA v2 questions + annotations, the answer vocabulary and soft target scores.

File formats (visualqa.org, the GT-Vision-Lab/VQA API):

* questions ``v2_OpenEnded_mscoco_<subtype>_questions.json``: ``{"info", "license", "task_type",
  "data_type", "data_subtype", "questions": [{"image_id", "question", "question_id"}]}``;
* annotations ``v2_mscoco_<subtype>_annotations.json``: ``{"info", "license", "data_subtype",
  "annotations": [{"question_id", "image_id", "question_type", "answer_type",
  "multiple_choice_answer", "answers": [{"answer", "answer_confidence", "answer_id"}] x 10}]}``;
* images ``COCO_<subtype>_<image_id:012d>.jpg``; the image key is that stem (the test-dev
  questions, subtype ``test-dev2015``, use the ``test2015`` images).

The answer vocabulary follows the BUTD preprocessing that gives the 3,129 answers everyone
uses (hengyuan-hu/bottom-up-attention-vqa ``tools/compute_softscore.py``): normalise each
question's ``multiple_choice_answer`` with the official evaluator's processing
(:func:`vln_clip.eval.vqa_accuracy.normalize_answer`), count the *questions* per normalised
answer over train + val, keep those with at least ``min_count`` (9). Soft scores:

* ``"mmf"`` (MMF ``VQAAnswerProcessor.compute_answers_scores``): each candidate answer gets the
  official leave-one-out accuracy it would score as a prediction;
* ``"butd"``: 0.3 per matching annotator, capped at 1 (0 / 0.3 / 0.6 / 0.9 / 1.0).

Both give the same numbers for the same match counts (the leave-one-out mean of k matches is
0.3 k capped at 1) up to the last floating-point bit. Both normalise the ten answers before
matching. (BUTD's script counts the raw answers against normalised labels, so an annotator's
``"Two"`` never counts for ``"2"`` there; that is a bug of the script, not kept here.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np

from vln_clip.errors import DataError
from vln_clip.eval.vqa_rules import N_ANSWERS, leave_one_out_score, normalize_answer
from vln_clip.io import write_json

from .common import Entry, PathLike, load_json, top_object

ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")
CONFIDENCES: tuple[str, ...] = ("yes", "maybe", "no")
SOFT_SCORE_METHODS: tuple[str, ...] = ("mmf", "butd")
#: Question subtypes whose images live under another subtype's file names.
IMAGE_SUBTYPE = {"test-dev2015": "test2015"}

SoftScoreMethod = Literal["mmf", "butd"]


def coco_image_key(data_subtype: str, image_id: int) -> str:
    """``COCO_<subtype>_<image_id:012d>``: the file stem of a VQA image (and its feature key)."""
    return f"COCO_{IMAGE_SUBTYPE.get(data_subtype, data_subtype)}_{int(image_id):012d}"


@dataclass
class VQAItem:
    """One question with its annotation (annotation fields are None / empty for test questions)."""

    question_id: int
    image_id: int
    image_key: str
    question: str
    question_type: str | None = None
    answer_type: str | None = None
    answers: list[str] = field(default_factory=list)
    multiple_choice_answer: str | None = None
    answer_confidences: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.answers and not self.answer_confidences:
            # The files always carry a confidence; "yes" is what a writer without one records.
            self.answer_confidences = ["yes"] * len(self.answers)

    @property
    def annotated(self) -> bool:
        return bool(self.answers)


def _questions_fix(path: Path) -> str:
    return f"fix the entry or re-download {path.name} from visualqa.org"


def read_vqa(questions_path: PathLike, annotations_path: PathLike | None = None) -> list[VQAItem]:
    """Questions (and, when given, their annotations), checked, as :class:`VQAItem` s.

    Order: the annotation file's order when annotations are given (the official evaluator
    iterates it), else the question file's. Every question must have exactly one annotation
    and vice versa.
    """
    questions_path = Path(questions_path)
    data = load_json(questions_path, "VQA questions file")
    questions = top_object(data, questions_path, "VQA questions file", "questions")
    subtype = data.get("data_subtype")
    if not isinstance(subtype, str) or not subtype:
        raise DataError(f"{questions_path}: top-level 'data_subtype' (e.g. \"train2014\") is missing or not a "
                        f"string; it names the images (COCO_<data_subtype>_<image_id>.jpg): add it")
    fix = _questions_fix(questions_path)
    items: dict[int, VQAItem] = {}
    for i, q in enumerate(questions):
        entry = Entry(questions_path, f"questions[{i}]", fix)
        qid = entry.field(q, "question_id", int)
        entry.where = f"questions[{i}] (question_id {qid})"
        image_id = entry.field(q, "image_id", int)
        text = entry.field(q, "question", str)
        if qid in items:
            raise entry.error(f"question_id {qid} appears twice", "each question must appear once: remove the duplicate")
        items[qid] = VQAItem(qid, image_id, coco_image_key(subtype, image_id), text)
    if annotations_path is None:
        return list(items.values())

    annotations_path = Path(annotations_path)
    adata = load_json(annotations_path, "VQA annotations file")
    annotations = top_object(adata, annotations_path, "VQA annotations file", "annotations")
    afix = f"fix the entry or re-download {annotations_path.name} from visualqa.org"
    ordered: list[VQAItem] = []
    seen: set[int] = set()
    for i, a in enumerate(annotations):
        entry = Entry(annotations_path, f"annotations[{i}]", afix)
        qid = entry.field(a, "question_id", int)
        entry.where = f"annotations[{i}] (question_id {qid})"
        if qid in seen:
            raise entry.error(f"question_id {qid} is annotated twice", "remove the duplicate annotation")
        seen.add(qid)
        item = items.get(qid)
        if item is None:
            raise entry.error(f"question_id {qid} has no question in {questions_path}",
                              "use the questions and annotations of the same split")
        image_id = entry.field(a, "image_id", int)
        if image_id != item.image_id:
            raise entry.error(f"image_id {image_id} differs from the question's image_id {item.image_id} "
                              f"in {questions_path}", "use the questions and annotations of the same split")
        item.question_type = entry.field(a, "question_type", str)
        item.answer_type = entry.one_of(entry.field(a, "answer_type", str), "answer_type", ANSWER_TYPES)
        item.multiple_choice_answer = entry.field(a, "multiple_choice_answer", str)
        answers = entry.field(a, "answers", list)
        if len(answers) != N_ANSWERS:
            raise entry.error(f"has {len(answers)} answers; VQA v2 has exactly {N_ANSWERS} per question",
                              "fix the entry or re-download the annotations")
        if _plain_answers(answers):
            texts = [ans["answer"] for ans in answers]
            confidences = [ans.get("answer_confidence", "yes") for ans in answers]
        else:
            texts, confidences = _checked_answers(answers, annotations_path, entry.where, afix)
        item.answers = texts
        item.answer_confidences = confidences
        ordered.append(item)
    missing = [qid for qid in items if qid not in seen]
    if missing:
        raise DataError(f"{annotations_path}: {len(missing)} question(s) of {questions_path} have no annotation "
                        f"(first: question_id {missing[0]}); use the questions and annotations of the same split")
    return ordered


_CONFIDENCE_SET = frozenset(CONFIDENCES)


def _plain_answers(answers: list) -> bool:
    """True when the answer records are well formed (the fast path of :func:`read_vqa`)."""
    if not all(type(a) is dict and type(a.get("answer")) is str
               and type(c := a.get("answer_confidence", "yes")) is str and c in _CONFIDENCE_SET for a in answers):
        return False
    ids = [a.get("answer_id", j + 1) for j, a in enumerate(answers)]
    return all(type(i) is int for i in ids) and len(set(ids)) == len(ids)


def _checked_answers(answers: list, path: Path, where: str, fix: str) -> tuple[list[str], list[str]]:
    """The answer records checked one by one; raises the DataError naming the bad one."""
    texts, confidences, answer_ids = [], [], set()
    for j, ans in enumerate(answers):
        sub = Entry(path, f"{where}: answers[{j}]", fix)
        texts.append(sub.field(ans, "answer", str))
        confidences.append(sub.one_of(sub.field(ans, "answer_confidence", str, optional=True, default="yes"),
                                      "answer_confidence", CONFIDENCES))
        answer_id = sub.field(ans, "answer_id", int, optional=True, default=j + 1)
        if answer_id in answer_ids:
            # The official evaluator leaves out every answer record equal to the current one;
            # repeated records would silently change its leave-one-out subsets.
            raise sub.error(f"answer_id {answer_id} repeats within the question",
                            "give the ten answers distinct answer_id 1..10")
        answer_ids.add(answer_id)
    return texts, confidences


def write_vqa(questions_path: PathLike, annotations_path: PathLike | None, items: Sequence[VQAItem], *,
              data_subtype: str, data_type: str = "mscoco", task_type: str = "Open-Ended",
              info: dict[str, Any] | None = None, license: dict[str, Any] | None = None) -> None:
    """Write the questions (and annotations, unless ``annotations_path`` is None) atomically.

    ``data_subtype`` names the images: every item's ``image_key`` must be
    ``coco_image_key(data_subtype, image_id)`` (checked, so a reader gets the keys back).
    """
    info = info if info is not None else {"description": "written by vln-clip"}
    license = license if license is not None else {"name": "unknown"}
    questions = []
    annotations = []
    seen: set[int] = set()
    for item in items:
        if item.question_id in seen:
            raise ValueError(f"question_id {item.question_id} appears twice")
        seen.add(item.question_id)
        expected = coco_image_key(data_subtype, item.image_id)
        if item.image_key != expected:
            raise ValueError(f"question {item.question_id}: image_key {item.image_key!r} is not {expected!r} "
                             f"(data_subtype {data_subtype!r})")
        questions.append({"image_id": item.image_id, "question": item.question, "question_id": item.question_id})
        if annotations_path is None:
            continue
        if len(item.answers) != N_ANSWERS or item.answer_type not in ANSWER_TYPES \
                or item.question_type is None or item.multiple_choice_answer is None:
            raise ValueError(f"question {item.question_id}: needs {N_ANSWERS} answers, question_type, an answer_type "
                             f"in {ANSWER_TYPES} and multiple_choice_answer to be written as an annotation")
        confidences = item.answer_confidences or ["yes"] * N_ANSWERS
        annotations.append({
            "question_type": item.question_type,
            "multiple_choice_answer": item.multiple_choice_answer,
            "answers": [{"answer": a, "answer_confidence": c, "answer_id": j + 1}
                        for j, (a, c) in enumerate(zip(item.answers, confidences))],
            "image_id": item.image_id,
            "answer_type": item.answer_type,
            "question_id": item.question_id,
        })
    write_json(questions_path, {"info": info, "task_type": task_type, "data_type": data_type,
                                "license": license, "data_subtype": data_subtype, "questions": questions})
    if annotations_path is not None:
        write_json(annotations_path, {"info": info, "license": license, "data_subtype": data_subtype,
                                      "annotations": annotations})


# ----------------------------------------------------------------------------------------
# Answer vocabulary and soft scores

VOCAB_FORMAT = "vln-clip answer vocabulary"


@dataclass
class AnswerVocab:
    """Normalised answers (index = classifier output), with how many questions had each.

    ``counts`` is None for a vocabulary loaded from a plain list (MMF's ``answers_vqa.txt``).
    """

    answers: list[str]
    counts: list[int] | None = None
    min_count: int | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index = {}
        for i, a in enumerate(self.answers):
            if a in self._index:
                raise ValueError(f"answer {a!r} appears twice in the vocabulary (indices {self._index[a]} and {i})")
            self._index[a] = i
        if self.counts is not None and len(self.counts) != len(self.answers):
            raise ValueError("counts and answers differ in length")

    @classmethod
    def build(cls, items: Iterable[VQAItem], min_count: int = 9) -> "AnswerVocab":
        """Answers that are the (normalised) ``multiple_choice_answer`` of >= ``min_count`` questions.

        Pass train + val items for the usual 3,129-answer VQA v2 vocabulary (min_count 9).
        Order: most frequent first, ties alphabetically (deterministic).
        """
        questions_per_answer: dict[str, set[int]] = {}
        annotated = 0
        for item in items:
            if item.multiple_choice_answer is None:
                continue
            annotated += 1
            questions_per_answer.setdefault(normalize_answer(item.multiple_choice_answer), set()).add(item.question_id)
        if annotated == 0:
            raise DataError("no annotated questions to build an answer vocabulary from; read the questions "
                            "together with their annotations (read_vqa(questions, annotations))")
        kept = sorted(((len(q), a) for a, q in questions_per_answer.items() if len(q) >= min_count),
                      key=lambda t: (-t[0], t[1]))
        return cls([a for _, a in kept], [n for n, _ in kept], min_count)

    def __len__(self) -> int:
        return len(self.answers)

    def __contains__(self, answer: str) -> bool:
        return normalize_answer(answer) in self._index

    def index(self, answer: str) -> int | None:
        """Index of an answer after the official normalisation (None when out of vocabulary)."""
        return self._index.get(normalize_answer(answer))

    def soft_scores(self, answers: Sequence[str], method: SoftScoreMethod = "mmf") -> dict[int, float]:
        """``{vocab index: target score}`` for a question's annotator answers (out-of-vocabulary dropped)."""
        normalized = [normalize_answer(a) for a in answers]
        counts = Counter(normalized)
        scores: dict[int, float] = {}
        for answer, k in counts.items():
            idx = self._index.get(answer)
            if idx is None:
                continue
            if method == "mmf":
                scores[idx] = leave_one_out_score([a == answer for a in normalized])
            elif method == "butd":
                scores[idx] = _BUTD_SCORES[min(k, len(_BUTD_SCORES) - 1)]
            else:
                raise ValueError(f"soft score method {method!r} is not one of {SOFT_SCORE_METHODS}")
        return scores

    def targets(self, items: Sequence[VQAItem], method: SoftScoreMethod = "mmf") -> np.ndarray:
        """Dense ``[len(items), len(vocab)]`` float32 soft-score targets (for the BCE loss)."""
        out = np.zeros((len(items), len(self)), dtype=np.float32)
        for row, item in enumerate(items):
            for idx, score in self.soft_scores(item.answers, method).items():
                out[row, idx] = score
        return out

    def save(self, path: PathLike) -> None:
        """JSON: the answers in index order, their question counts and the rule that made them."""
        write_json(path, {"format": VOCAB_FORMAT, "version": 1, "min_count": self.min_count,
                          "normalization": "GT-Vision-Lab/VQA vqaEval.py punctuation + digit/article processing",
                          "answers": self.answers, "counts": self.counts}, indent=1)

    @classmethod
    def load(cls, path: PathLike) -> "AnswerVocab":
        """A vocabulary saved by :meth:`save`, or a text file with one answer per line (MMF's
        ``answers_vqa.txt``; answers are normalised on loading)."""
        path = Path(path)
        if path.suffix == ".txt":
            if not path.exists():
                raise DataError(f"{path}: no such answer vocabulary; check the path")
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            answers = list(dict.fromkeys(normalize_answer(a) for a in lines))
            return cls(answers)
        data = load_json(path, "answer vocabulary")
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise DataError(f"{path}: not a vln-clip answer vocabulary (no \"format\": \"{VOCAB_FORMAT}\"); "
                            f"build one with AnswerVocab.build(...).save(path), or pass a .txt list")
        entry = Entry(path, "vocabulary", "rebuild the vocabulary")
        answers = entry.str_list(data, "answers")
        counts = entry.field(data, "counts", list, optional=True)
        try:
            return cls(answers, counts, data.get("min_count"))
        except ValueError as exc:
            raise entry.error(str(exc)) from exc


_BUTD_SCORES = (0.0, 0.3, 0.6, 0.9, 1.0)


def answer_histogram(items: Iterable[VQAItem]) -> Counter[str]:
    """Questions per normalised ``multiple_choice_answer`` (statistics, priors)."""
    return Counter(normalize_answer(i.multiple_choice_answer) for i in items if i.multiple_choice_answer is not None)

