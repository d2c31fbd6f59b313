"""The prior baseline: the most frequent answer of each question type.

The question type is the annotation's ``question_type`` (VQA v2's 65 question prefixes such as
"what color is the", "how many", "is there a"). Test questions have no annotation, so their
type is the longest known type the question starts with (how the annotation tool assigned it),
and a question no type fits gets the most frequent answer overall. Ties go to the
alphabetically first answer, so the table is the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from vln_clip.datasets.vqa import VQAItem, answer_histogram
from vln_clip.errors import DataError

from .text import vqa_tokenize


def _top(counts: Any) -> str:
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


@dataclass
class PriorBaseline:
    """``question_type -> answer`` plus the overall most frequent answer."""

    by_type: dict[str, str]
    overall: str
    _prefixes: list[tuple[list[str], str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Longest first, so "what color is the" wins over "what color" and "what".
        self._prefixes = sorted(((vqa_tokenize(t), t) for t in self.by_type), key=lambda p: -len(p[0]))

    @classmethod
    def fit(cls, items: Sequence[VQAItem]) -> "PriorBaseline":
        annotated = [it for it in items if it.multiple_choice_answer is not None]
        if not annotated:
            raise DataError("the prior baseline needs annotated training questions; read the training "
                            "split with its annotation file")
        groups: dict[str, list[VQAItem]] = {}
        for it in annotated:
            groups.setdefault(it.question_type or "", []).append(it)
        by_type = {t: _top(answer_histogram(g)) for t, g in groups.items() if t}
        return cls(by_type, _top(answer_histogram(annotated)))

    def question_type(self, item: VQAItem) -> str | None:
        """The annotated type when known to the table, else the longest matching prefix (or None)."""
        if item.question_type in self.by_type:
            return item.question_type
        words = vqa_tokenize(item.question)
        for prefix, t in self._prefixes:
            if prefix and words[: len(prefix)] == prefix:
                return t
        return None

    def answer(self, item: VQAItem) -> str:
        t = self.question_type(item)
        return self.by_type[t] if t is not None else self.overall

    def predict(self, items: Sequence[VQAItem]) -> dict[int, str]:
        return {it.question_id: self.answer(it) for it in items}

    def to_dict(self) -> dict[str, Any]:
        return {"by_type": dict(self.by_type), "overall": self.overall}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PriorBaseline":
        return cls(dict(d["by_type"]), str(d["overall"]))
