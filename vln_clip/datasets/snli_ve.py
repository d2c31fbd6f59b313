"""SNLI-VE visual entailment (``snli_ve_{train,dev,test}.jsonl``, Xie et al. 2019).

One JSON object per line: ``Flickr30K_ID`` (the image, ``<id>.jpg`` in Flickr30k), ``sentence1``
(the SNLI caption premise), ``sentence2`` (the hypothesis), ``gold_label`` (entailment |
neutral | contradiction), ``pairID`` and SNLI's other fields (``captionID``, parses,
``annotator_labels``), which are kept in ``extra`` and written back. The image key is
``Flickr30K_ID``; the task premise is the image, ``sentence1`` is informational.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vln_clip.errors import DataError
from vln_clip.io import read_jsonl, write_jsonl

from .common import Entry, PathLike, extras

LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
_KNOWN = ("Flickr30K_ID", "sentence1", "sentence2", "gold_label", "pairID")


@dataclass
class SNLIVEItem:
    pair_id: str
    image_key: str
    hypothesis: str
    gold_label: str
    premise: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label_index(self) -> int:
        return LABELS.index(self.gold_label)


def read_snli_ve(path: PathLike) -> list[SNLIVEItem]:
    """An SNLI-VE JSON-lines file, checked, in file order."""
    path = Path(path)
    rows = read_jsonl(path, "SNLI-VE JSON-lines file")
    fix = f"fix the line or re-download {path.name} (github.com/necla-ml/SNLI-VE)"
    items = []
    seen: dict[str, int] = {}
    for lineno, row in enumerate(rows, 1):
        entry = Entry(path, f"line {lineno}", fix)
        pair_id = entry.field(row, "pairID", str)
        entry.where = f"line {lineno} (pairID {pair_id})"
        if pair_id in seen:
            raise entry.error(f"pairID {pair_id!r} repeats line {seen[pair_id]}", "each pair must appear once")
        seen[pair_id] = lineno
        image = entry.field(row, "Flickr30K_ID", (str, int))
        label = entry.one_of(entry.field(row, "gold_label", str), "gold_label", LABELS)
        items.append(SNLIVEItem(pair_id, str(image), entry.field(row, "sentence2", str), label,
                                entry.field(row, "sentence1", str, optional=True), extras(row, _KNOWN)))
    if not items:
        raise DataError(f"{path}: no SNLI-VE pairs; is this the right file?")
    return items


def write_snli_ve(path: PathLike, items: Sequence[SNLIVEItem]) -> None:
    """Write SNLI-VE JSON lines atomically."""
    rows = []
    for item in items:
        if item.gold_label not in LABELS:
            raise ValueError(f"pair {item.pair_id}: gold_label {item.gold_label!r} is not one of {LABELS}")
        row: dict[str, Any] = {"Flickr30K_ID": item.image_key}
        if item.premise is not None:
            row["sentence1"] = item.premise
        row.update({"sentence2": item.hypothesis, "gold_label": item.gold_label, "pairID": item.pair_id})
        row.update(item.extra)
        rows.append(row)
    write_jsonl(path, rows)
