"""The LXMERT pre-training mix (``mscoco_{train,minival,nominival}.json``, ``vgnococo.json``).

A JSON list, one entry per image: ``{"img_id": "COCO_train2014_000000000009", "sentf":
{source: [sentence, ...]}, "labelf": {source: [{answer: score}, ...]}}``. Caption sources
(``mscoco``, ``vg``) have sentences only; QA sources (``vqa``, ``gqa``, ``visual7w``) have their
questions in ``sentf[source]`` and, aligned with them, one ``{answer: score}`` label per
question in ``labelf[source]``. The image key is ``img_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from vln_clip.io import write_json

from .common import Entry, PathLike, extras, load_json, top_object


@dataclass
class LXMERTItem:
    image_key: str
    sentences: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def captions(self) -> Iterator[tuple[str, str]]:
        """``(source, sentence)`` of the caption sources (those without labels)."""
        for source, sents in self.sentences.items():
            if source not in self.labels:
                for s in sents:
                    yield source, s

    def questions(self) -> Iterator[tuple[str, str, dict[str, float]]]:
        """``(source, question, {answer: score})`` of the QA sources."""
        for source, labels in self.labels.items():
            for q, label in zip(self.sentences[source], labels):
                yield source, q, label


def read_lxmert(path: PathLike) -> list[LXMERTItem]:
    """An LXMERT pre-training file, checked (QA labels aligned with their questions)."""
    path = Path(path)
    data = top_object(load_json(path, "LXMERT pre-training file"), path, "LXMERT pre-training file", kind=list)
    fix = f"fix the entry or re-download {path.name} (github.com/airsplay/lxmert)"
    items = []
    seen: dict[str, int] = {}
    for i, row in enumerate(data):
        entry = Entry(path, f"[{i}]", fix)
        key = entry.field(row, "img_id", str)
        entry.where = f"[{i}] (img_id {key})"
        if key in seen:
            raise entry.error(f"img_id {key!r} repeats entry [{seen[key]}]", "merge the two entries")
        seen[key] = i
        sentf = entry.field(row, "sentf", dict)
        sentences: dict[str, list[str]] = {}
        for source in sentf:
            sentences[source] = entry.str_list(sentf, source)  # type: ignore[assignment]
        labelf = entry.field(row, "labelf", dict, optional=True, default={})
        labels: dict[str, list[dict[str, float]]] = {}
        for source, lab in labelf.items():
            if source not in sentences:
                raise entry.error(f"labelf has source {source!r} with no questions in sentf",
                                  "add the questions or drop the labels")
            if not isinstance(lab, list) or len(lab) != len(sentences[source]):
                n = len(lab) if isinstance(lab, list) else type(lab).__name__
                raise entry.error(f"labelf[{source!r}] has {n} labels for {len(sentences[source])} questions",
                                  "give one {answer: score} object per question")
            checked = []
            for j, answer_scores in enumerate(lab):
                sub = Entry(path, f"{entry.where}: labelf[{source!r}][{j}]", fix)
                if not isinstance(answer_scores, dict):
                    raise sub.error("must be an object {answer: score}")
                for ans in answer_scores:
                    sub.field(answer_scores, ans, float)
                checked.append({a: float(s) for a, s in answer_scores.items()})
            labels[source] = checked
        items.append(LXMERTItem(key, sentences, labels, extras(row, ("img_id", "sentf", "labelf"))))
    return items


def write_lxmert(path: PathLike, items: Sequence[LXMERTItem]) -> None:
    """Write an LXMERT pre-training file atomically."""
    rows = []
    for item in items:
        for source, lab in item.labels.items():
            if len(lab) != len(item.sentences.get(source, [])):
                raise ValueError(f"{item.image_key}: labels of {source!r} do not align with its questions")
        row: dict[str, Any] = {"img_id": item.image_key,
                               "labelf": {s: [dict(x) for x in lab] for s, lab in item.labels.items()},
                               "sentf": {s: list(v) for s, v in item.sentences.items()}}
        row.update(item.extra)
        rows.append(row)
    write_json(path, rows)
