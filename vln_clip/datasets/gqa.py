"""GQA balanced questions (``{split}_balanced_questions.json``, Hudson & Manning 2019).

Layout: ``{question_id: {"imageId", "question", "answer", "fullAnswer", "isBalanced",
"types": {"structural", "semantic", "detailed"}, "semantic": [{"operation", "argument",
"dependencies"}], "semanticStr", "groups": {"global", "local"}, "entailed", "equivalent",
"annotations"}}``. The test / challenge files have no ``answer`` / ``fullAnswer``. Question ids
are strings. The image key is ``imageId`` (the image file is ``<imageId>.jpg``). Fields not
modelled are kept in ``extra`` and written back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vln_clip.io import write_json

from .common import Entry, PathLike, extras, load_json, top_object

TYPE_KEYS: tuple[str, ...] = ("structural", "semantic", "detailed")
_KNOWN = ("imageId", "question", "answer", "fullAnswer", "isBalanced", "types", "semantic", "semanticStr")


@dataclass
class GQAStep:
    """One step of a question's functional program (``dependencies`` index earlier steps)."""

    operation: str
    argument: str
    dependencies: list[int] = field(default_factory=list)


@dataclass
class GQAItem:
    question_id: str
    image_key: str
    question: str
    answer: str | None = None
    full_answer: str | None = None
    is_balanced: bool | None = None
    types: dict[str, str] = field(default_factory=dict)
    semantic: list[GQAStep] = field(default_factory=list)
    semantic_str: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image_id(self) -> str:
        return self.image_key


def read_gqa(path: PathLike) -> list[GQAItem]:
    """A GQA questions file, checked, in file order."""
    path = Path(path)
    data = load_json(path, "GQA questions file")
    top_object(data, path, "GQA questions file", kind=dict)
    fix = f"fix the entry or re-download {path.name} (cs.stanford.edu/people/dorarad/gqa)"
    items = []
    for qid, q in data.items():
        entry = Entry(path, f"question {qid!r}", fix)
        image = entry.field(q, "imageId", str)
        types = entry.field(q, "types", dict, optional=True, default={})
        for key, value in types.items():
            if not isinstance(value, str):
                raise entry.error(f"field 'types'.{key} must be a string, got {type(value).__name__}")
        steps = []
        for j, s in enumerate(entry.field(q, "semantic", list, optional=True, default=[])):
            sub = Entry(path, f"question {qid!r}: semantic[{j}]", fix)
            deps = sub.field(s, "dependencies", list, optional=True, default=[])
            for d in deps:
                if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < j:
                    raise sub.error(f"dependency {d!r} is not the index of an earlier step (0..{j - 1})",
                                    "fix the program's dependencies")
            steps.append(GQAStep(sub.field(s, "operation", str), sub.field(s, "argument", str), list(deps)))
        items.append(GQAItem(
            question_id=qid, image_key=image, question=entry.field(q, "question", str),
            answer=entry.field(q, "answer", str, optional=True),
            full_answer=entry.field(q, "fullAnswer", str, optional=True),
            is_balanced=entry.field(q, "isBalanced", bool, optional=True),
            types=dict(types), semantic=steps, semantic_str=entry.field(q, "semanticStr", str, optional=True),
            extra=extras(q, _KNOWN)))
    return items


def write_gqa(path: PathLike, items: Sequence[GQAItem]) -> None:
    """Write a GQA questions file atomically (keys in the order of ``items``)."""
    out: dict[str, Any] = {}
    for item in items:
        if item.question_id in out:
            raise ValueError(f"question id {item.question_id!r} appears twice")
        row: dict[str, Any] = {"imageId": item.image_key, "question": item.question}
        if item.answer is not None:
            row["answer"] = item.answer
        if item.full_answer is not None:
            row["fullAnswer"] = item.full_answer
        if item.is_balanced is not None:
            row["isBalanced"] = item.is_balanced
        row["types"] = dict(item.types)
        row["semantic"] = [{"operation": s.operation, "argument": s.argument, "dependencies": list(s.dependencies)}
                           for s in item.semantic]
        if item.semantic_str is not None:
            row["semanticStr"] = item.semantic_str
        row.update(item.extra)
        out[item.question_id] = row
    write_json(path, out)
