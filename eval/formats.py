"""Prediction and leaderboard-submission file formats: the only place that knows them.

R2R leaderboard (EvalAI), per REFERENCE.md and the R2R task README: a JSON list with one
object per test instruction::

    [{"instr_id": "<path_id>_<k>", "trajectory": [[viewpoint, heading, elevation], ...]}, ...]

starting at the start viewpoint and moving only along graph edges (repeated viewpoints are
turns in place). vln-clip writes and reads this format for every R2R/R4R split.

RxR challenge (Test-Standard, https://ai.google.com/research/rxr/competition): **no primary
definition of the submission file could be found with the search tools available when this
was written** (the competition page's submission instructions were not retrievable; the
dataset README, https://github.com/google-research-datasets/RxR, only links to it). What is
known: the RxR data are gzipped JSON lines keyed by an integer ``instruction_id``; the
README's follower annotations store an agent's route as ``{"instruction_id": int, "path":
[viewpoint, ...]}``; and the RxR issue tracker (google-research-datasets/RxR#13) refers to
leaderboard uploads as "test JSONL" files. vln-clip therefore writes, for RxR, JSON lines
(gzip-compressed when the name ends in ``.gz``) of::

    {"instruction_id": <int>, "path": [viewpoint, viewpoint, ...]}

one line per instruction, consecutive duplicate viewpoints removed (turning in place is not
a panoramic step). Check the competition page before submitting and, if it differs, change
:func:`to_rxr_rows` / :func:`write_rxr` here only.

Readers accept either layout in either container (a JSON list or JSON lines), so scoring
works on whatever a model wrote. An R2R ``trajectory`` step must be exactly ``[viewpoint,
heading, elevation]`` with finite numbers (the EvalAI evaluator unpacks three values per
step; a bare viewpoint or a ``NaN`` would pass locally and fail after the upload); the RxR
``path`` carries viewpoints only, read with heading and elevation 0.0.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from vln_clip.errors import DataError
from vln_clip.io import write_json, write_jsonl

FORMATS = ("r2r", "rxr")


@dataclass(frozen=True)
class Prediction:
    """One instruction's trajectory: (viewpoint, heading, elevation) per recorded state."""

    instr_id: str
    trajectory: tuple[tuple[str, float, float], ...]

    @property
    def path(self) -> list[str]:
        """Viewpoints only, as the metrics use them."""
        return [step[0] for step in self.trajectory]

    @staticmethod
    def from_path(instr_id: str, path: Sequence[str]) -> "Prediction":
        return Prediction(str(instr_id), tuple((str(v), 0.0, 0.0) for v in path))


def paths_of(predictions: Iterable[Prediction]) -> dict[str, list[str]]:
    """``instr_id -> [viewpoint, ...]``, the input of :func:`vln_clip.eval.metrics.score_paths`."""
    return {p.instr_id: p.path for p in predictions}


# ----------------------------------------------------------------------------------------
# Reading


LAYOUTS = ("a JSON list of {\"instr_id\", \"trajectory\"} objects (R2R) or JSON lines of "
           "{\"instruction_id\", \"path\"} objects (RxR)")


def _reject_constant(name: str) -> float:
    """``json`` reads NaN/Infinity by default; no leaderboard accepts them."""
    raise ValueError(f"{name} is not a JSON number")


def _json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _load_rows(path: Path) -> list[Any]:
    """A JSON list or JSON lines (optionally gzipped), with errors naming file and position."""
    if not path.exists():
        raise DataError(f"{path}: predictions file not found; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass the predictions file ({LAYOUTS})")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            text = fh.read()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path}: cannot read predictions ({exc}); expected {LAYOUTS}, optionally .gz") from exc
    stripped = text.strip()
    if not stripped:
        raise DataError(f"{path}: empty predictions file; expected {LAYOUTS}")
    try:
        whole = _json(stripped)
    except ValueError as exc:
        whole, error = None, exc
    else:
        error = None
    if error is None:
        if isinstance(whole, list):
            return whole
        if isinstance(whole, dict) and ("instr_id" in whole or "instruction_id" in whole):
            return [whole]  # JSON lines with a single line
        kind = ("null" if whole is None else "a boolean" if isinstance(whole, bool) else "a string"
                if isinstance(whole, str) else "a number" if isinstance(whole, (int, float)) else "an object")
        raise DataError(f"{path}: the top level is {kind} (in JSON's terms), not a list of "
                        f"predictions; expected {LAYOUTS}")
    if stripped[0] == "[":
        exc = error
        if isinstance(exc, json.JSONDecodeError):
            raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
                            f"expected {LAYOUTS}") from exc
        raise DataError(f"{path}: {exc}; headings and elevations must be finite numbers") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(_json(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: malformed JSON line ({exc.msg}); the RxR format has one "
                            "{\"instruction_id\", \"path\"} object per line") from exc
        except ValueError as exc:
            raise DataError(f"{path}:{lineno}: {exc}; only finite numbers are valid") from exc
    return rows


def _angle(value: Any) -> float | None:
    """A finite float, or None for anything else (strings, booleans, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _parse_step(step: Any, where: str, t: int) -> tuple[str, float, float]:
    expected = "expected [viewpoint, heading, elevation] (heading and elevation in radians, finite numbers)"
    if isinstance(step, str):
        raise DataError(f"{where}: trajectory step {t} is a bare viewpoint {step!r}; {expected}, e.g. "
                        f"[{json.dumps(step)}, 0.0, 0.0]")
    if not isinstance(step, (list, tuple)) or len(step) != 3 or not isinstance(step[0], str) or not step[0]:
        raise DataError(f"{where}: trajectory step {t} is {json.dumps(step)}; {expected}")
    heading, elevation = _angle(step[1]), _angle(step[2])
    if heading is None or elevation is None:
        raise DataError(f"{where}: trajectory step {t} has heading {step[1]!r} and elevation {step[2]!r}; "
                        f"{expected}")
    return step[0], heading, elevation


def _parse_row(item: Any, path: Path, n: int) -> Prediction:
    where = f"{path}: entry {n}"
    if not isinstance(item, dict):
        raise DataError(f"{where} is {json.dumps(item)[:60]}, not a JSON object; each entry needs instr_id + "
                        "trajectory (R2R) or instruction_id + path (RxR)")
    if "instr_id" in item:
        instr_id = item["instr_id"]
    elif "instruction_id" in item:
        instr_id = item["instruction_id"]
    else:
        raise DataError(f"{where} has no instr_id (R2R) or instruction_id (RxR) field; add it")
    if not isinstance(instr_id, (str, int)) or isinstance(instr_id, bool):
        raise DataError(f"{where}: instr_id must be a string or an integer, got {instr_id!r}")
    instr_id = str(instr_id)
    where = f"{path}: instr_id {instr_id}"
    if "trajectory" in item:
        steps = item["trajectory"]
        if not isinstance(steps, list):
            raise DataError(f"{where}: 'trajectory' must be a list of [viewpoint, heading, elevation]")
        return Prediction(instr_id, tuple(_parse_step(step, where, t) for t, step in enumerate(steps)))
    if "path" in item:
        vps = item["path"]
        if not isinstance(vps, list) or not all(isinstance(v, str) and v for v in vps):
            raise DataError(f"{where}: 'path' must be a list of viewpoint ids (strings)")
        return Prediction.from_path(instr_id, vps)
    raise DataError(f"{where} has no 'trajectory' (R2R) or 'path' (RxR) field")


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """Read predictions in the R2R or the RxR format (auto-detected, duplicates kept).

    Duplicated ids are kept so that :mod:`vln_clip.eval.validation` can report them.
    """
    path = Path(path)
    rows = _load_rows(path)
    return [_parse_row(item, path, n) for n, item in enumerate(rows)]


# ----------------------------------------------------------------------------------------
# Writing


def to_r2r_rows(predictions: Iterable[Prediction]) -> list[dict[str, Any]]:
    """The EvalAI rows; a non-finite heading/elevation is refused (JSON would write ``NaN``)."""
    rows = []
    for p in predictions:
        for t, (_, h, e) in enumerate(p.trajectory):
            if not (math.isfinite(h) and math.isfinite(e)):
                raise DataError(f"instr_id {p.instr_id}: trajectory step {t} has heading {h} and elevation {e}; "
                                "only finite angles (radians) can be submitted")
        rows.append({"instr_id": p.instr_id, "trajectory": [[v, float(h), float(e)] for v, h, e in p.trajectory]})
    return rows


def to_rxr_rows(predictions: Iterable[Prediction]) -> list[dict[str, Any]]:
    rows = []
    for p in predictions:
        if not p.instr_id.isascii() or not p.instr_id.isdigit():  # int() would accept "12_0" as 120
            raise DataError(f"instr_id {p.instr_id!r} is not an RxR instruction_id (an integer); export "
                            "R2R predictions with --format r2r")
        instruction_id = int(p.instr_id)
        path: list[str] = []
        for v in p.path:
            if not path or path[-1] != v:
                path.append(v)
        rows.append({"instruction_id": instruction_id, "path": path})
    return rows


def write_r2r(path: str | os.PathLike[str], predictions: Iterable[Prediction]) -> None:
    """Atomically write the R2R leaderboard (EvalAI) JSON list."""
    write_json(path, to_r2r_rows(predictions))


def write_rxr(path: str | os.PathLike[str], predictions: Iterable[Prediction]) -> None:
    """Atomically write the RxR challenge JSON lines (gzipped for ``.gz``)."""
    write_jsonl(path, to_rxr_rows(predictions))


def write_predictions(path: str | os.PathLike[str], predictions: Iterable[Prediction], fmt: str) -> None:
    if fmt == "r2r":
        write_r2r(path, predictions)
    elif fmt == "rxr":
        write_rxr(path, predictions)
    else:
        raise DataError(f"unknown submission format {fmt!r}; choose one of {', '.join(FORMATS)}")


def predictions_from_dicts(rows: Iterable[dict[str, Any]], source: str = "predictions") -> list[Prediction]:
    """Turn in-memory R2R-format dicts (e.g. from an agent) into :class:`Prediction` objects."""
    return [_parse_row(item, Path(source), n) for n, item in enumerate(rows)]
