"""Result and leaderboard-submission files of the V&L tasks: read, validate, write.

* VQA (EvalAI, and the official evaluator's ``loadRes``): ``[{"question_id": int, "answer": str}]``.
* COCO captions (coco-caption / EvalAI): ``[{"image_id": int, "caption": str}]``.
* GQA (EvalAI): ``[{"questionId": str, "prediction": str}]``.

The readers refuse what a leaderboard would refuse, or silently mis-score: not a list, an entry
that is not an object, a missing or mistyped field, an id given twice (the official VQA
evaluator silently keeps the last), and, when the expected ids are given, a missing or an
unknown id. Every message names the file and the offending entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from vln_clip.errors import DataError
from vln_clip.io import write_json

from .common import Entry, PathLike, load_json, top_object


def _read_pairs(path: PathLike, what: str, id_field: str, id_kind: type, value_field: str,
                expected: Iterable[Any] | None, fix: str) -> dict[Any, str]:
    path = Path(path)
    rows = top_object(load_json(path, what), path, what, kind=list)
    out: dict[Any, str] = {}
    first: dict[Any, int] = {}
    for i, row in enumerate(rows):
        entry = Entry(path, f"entry [{i}]", fix)
        key = entry.field(row, id_field, id_kind)
        entry.where = f"entry [{i}] ({id_field} {key!r})"
        value = entry.field(row, value_field, str)
        if key in out:
            raise entry.error(f"{id_field} {key!r} was already given by entry [{first[key]}]",
                              "give every id exactly once")
        out[key] = value
        first[key] = i
    if expected is not None:
        expected = list(expected)
        wanted = set(expected)
        unknown = [k for k in out if k not in wanted]
        if unknown:
            raise DataError(f"{path}: entry [{first[unknown[0]]}] ({id_field} {unknown[0]!r}) is not in the "
                            f"evaluated set ({len(unknown)} such entries); predict for the right split")
        missing = [k for k in expected if k not in out]
        if missing:
            shown = ", ".join(repr(k) for k in missing[:5])
            raise DataError(f"{path}: {len(missing)} of {len(wanted)} {id_field}s have no entry (first: {shown}); "
                            f"every one must be answered once")
    return out


def read_vqa_results(path: PathLike, question_ids: Iterable[int] | None = None) -> dict[int, str]:
    """``{question_id: answer}`` from a VQA results / EvalAI submission file, validated.

    With ``question_ids``, every one must be answered once and no other may appear (the official
    ``loadRes`` asserts the same set).
    """
    return _read_pairs(path, "VQA results file", "question_id", int, "answer", question_ids,
                       'write [{"question_id": int, "answer": str}, ...] with one entry per question')


def write_vqa_results(path: PathLike, answers: Mapping[int, str]) -> None:
    """Write an EvalAI VQA submission atomically (entries in the mapping's order)."""
    rows = []
    for qid, answer in answers.items():
        if isinstance(qid, bool) or not isinstance(qid, int) or not isinstance(answer, str):
            raise ValueError(f"question_id {qid!r}: answers need int ids and str answers")
        rows.append({"question_id": qid, "answer": answer})
    write_json(path, rows)


def read_caption_results(path: PathLike, image_ids: Iterable[int] | None = None) -> dict[int, str]:
    """``{image_id: caption}`` from a COCO caption results file, validated (one caption per image)."""
    return _read_pairs(path, "caption results file", "image_id", int, "caption", image_ids,
                       'write [{"image_id": int, "caption": str}, ...] with one entry per image')


def write_caption_results(path: PathLike, captions: Mapping[int, str]) -> None:
    """Write a COCO caption results file atomically."""
    rows = []
    for image_id, caption in captions.items():
        if isinstance(image_id, bool) or not isinstance(image_id, int) or not isinstance(caption, str):
            raise ValueError(f"image_id {image_id!r}: captions need int ids and str captions")
        rows.append({"image_id": image_id, "caption": caption})
    write_json(path, rows)


def read_gqa_predictions(path: PathLike, question_ids: Iterable[str] | None = None) -> dict[str, str]:
    """``{questionId: prediction}`` from a GQA submission file, validated."""
    return _read_pairs(path, "GQA submission file", "questionId", str, "prediction", question_ids,
                       'write [{"questionId": str, "prediction": str}, ...] with one entry per question')


def write_gqa_predictions(path: PathLike, predictions: Mapping[str, str]) -> None:
    """Write a GQA submission atomically."""
    rows = []
    for qid, pred in predictions.items():
        if not isinstance(qid, str) or not isinstance(pred, str):
            raise ValueError(f"questionId {qid!r}: GQA predictions need str ids and str predictions")
        rows.append({"questionId": qid, "prediction": pred})
    write_json(path, rows)
