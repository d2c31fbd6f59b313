"""Episode readers for R2R, R4R and RxR files.

All three become the same :class:`Episode`, one per instruction, so the environments,
trainers and evaluator never look at the file format again.

* R2R / R4R JSON: a list of paths with ``path_id``, ``scan``, ``path``, ``heading`` and
  ``instructions``; instruction ``k`` of a path has ``instr_id = "<path_id>_<k>"``. Test
  splits carry only the start viewpoint (``path`` of length one): no goal.
* RxR guide files (``.jsonl`` / ``.jsonl.gz``): one instruction per line with
  ``instruction_id``, ``path_id``, ``scan``, ``path``, ``heading``, ``instruction`` and
  ``language`` (en-IN, en-US, hi-IN, te-IN). ``instr_id`` is the instruction_id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import DataError
from .graph import GraphStore
from .io import read_json, read_jsonl

LANGUAGES = ("en", "hi", "te")


@dataclass(frozen=True)
class Episode:
    """One instruction to follow from a start viewpoint (and, outside test splits, to a goal)."""

    instr_id: str
    path_id: str
    scan: str
    path: tuple[str, ...]
    heading: float
    instruction: str
    language: str = "en"
    dataset: str = "r2r"
    has_goal: bool = True

    @property
    def start(self) -> str:
        return self.path[0]

    @property
    def goal(self) -> str | None:
        return self.path[-1] if self.has_goal else None


def base_language(code: str) -> str:
    """``en-IN`` and ``en-US`` count as ``en``; ``hi-IN`` as ``hi``."""
    return code.split("-")[0].lower() if code else "en"


def _require(item: dict[str, Any], keys: Sequence[str], path: Path, where: str) -> None:
    for key in keys:
        if key not in item:
            raise DataError(f"{path}: {where} has no {key!r} field; expected fields {', '.join(keys)}")


def _check_instruction(text: Any, path: Path, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}: {where} has an empty instruction; remove the entry or fill in its text")
    return text


def read_r2r(path: str | os.PathLike[str], dataset: str = "r2r") -> list[Episode]:
    """Read an R2R (or R4R-style) JSON split into one :class:`Episode` per instruction."""
    path = Path(path)
    data = read_json(path, f"{dataset.upper()} split")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of paths (R2R format)")
    episodes: list[Episode] = []
    first_entry: dict[str, int] = {}
    for n, item in enumerate(data):
        where = f"entry {n} (path_id {item.get('path_id', '?')})" if isinstance(item, dict) else f"entry {n}"
        if not isinstance(item, dict):
            raise DataError(f"{path}: {where} is not an object")
        _require(item, ("path_id", "scan", "path", "heading", "instructions"), path, where)
        pid = str(item["path_id"])
        if pid in first_entry:  # instr_ids "<path_id>_<k>" would collide: the later entry would win
            raise DataError(f"{path}: {where} repeats the path_id of entry {first_entry[pid]}; path_ids must be "
                            "unique (instr_ids are <path_id>_<k>): renumber or remove one of them")
        first_entry[pid] = n
        vps = item["path"]
        if not isinstance(vps, list) or not vps:
            raise DataError(f"{path}: {where} has an empty 'path'; it needs at least the start viewpoint")
        instructions = item["instructions"]
        if not isinstance(instructions, list) or not instructions:
            raise DataError(f"{path}: {where} has no instructions")
        for k, text in enumerate(instructions):
            _check_instruction(text, path, f"{where}, instruction {k}")
            episodes.append(Episode(
                instr_id=f"{item['path_id']}_{k}", path_id=str(item["path_id"]), scan=str(item["scan"]),
                path=tuple(str(v) for v in vps), heading=float(item["heading"]), instruction=text,
                language="en", dataset=dataset, has_goal=len(vps) > 1,
            ))
    return episodes


def read_rxr(path: str | os.PathLike[str], languages: Iterable[str] | None = None) -> list[Episode]:
    """Read an RxR guide file; ``languages`` filters by base language (en/hi/te)."""
    path = Path(path)
    wanted = {base_language(lang) for lang in languages} if languages else None
    episodes: list[Episode] = []
    for n, item in enumerate(read_jsonl(path, "RxR guide file"), 1):
        where = f"line {n} (instruction_id {item.get('instruction_id', '?')})"
        _require(item, ("instruction_id", "path_id", "scan", "path", "heading", "instruction", "language"), path, where)
        lang = base_language(str(item["language"]))
        if wanted is not None and lang not in wanted:
            continue
        _check_instruction(item["instruction"], path, where)
        vps = item["path"]
        if not isinstance(vps, list) or not vps:
            raise DataError(f"{path}: {where} has an empty 'path'")
        episodes.append(Episode(
            instr_id=str(item["instruction_id"]), path_id=str(item["path_id"]), scan=str(item["scan"]),
            path=tuple(str(v) for v in vps), heading=float(item["heading"]), instruction=item["instruction"],
            language=lang, dataset="rxr", has_goal=len(vps) > 1,
        ))
    return episodes


def file_format(path: str | os.PathLike[str]) -> str:
    """``"rxr"`` for a ``.jsonl``/``.jsonl.gz`` file (RxR's layout), else ``"r2r"``: how splits
    are read and how predictions and submissions are written by default."""
    return "rxr" if Path(path).name.lower().endswith((".jsonl", ".jsonl.gz")) else "r2r"


def read_episodes(path: str | os.PathLike[str], languages: Iterable[str] | None = None) -> list[Episode]:
    """Read any supported split file, choosing the reader by its name."""
    name = Path(path).name.lower()
    if file_format(path) == "rxr":
        return read_rxr(path, languages)
    dataset = "r4r" if "r4r" in name else "r2r"
    return read_r2r(path, dataset)


def validate_episodes(episodes: Sequence[Episode], graphs: GraphStore, source: str = "") -> None:
    """Check scans, viewpoints and path steps against the graphs; raise on the first problem."""
    seen: set[str] = set()
    for ep in episodes:
        where = f"{source}: instr_id {ep.instr_id}" if source else f"instr_id {ep.instr_id}"
        if ep.instr_id in seen:
            raise DataError(f"{where} appears twice; instruction ids must be unique")
        seen.add(ep.instr_id)
        if ep.scan not in graphs:
            raise DataError(f"{where}: unknown scan {ep.scan!r} (no {ep.scan}_connectivity.json in "
                            f"{graphs.root}); use the connectivity directory of the same dataset")
        graph = graphs[ep.scan]
        for vp in ep.path:
            graph.idx(vp, where)
        graph.check_path(list(ep.path), where)


def by_instr_id(episodes: Iterable[Episode]) -> dict[str, Episode]:
    return {ep.instr_id: ep for ep in episodes}
