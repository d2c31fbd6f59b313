"""Checks a leaderboard would reject, run before any scoring or export.

The official R2R evaluator asserts that every instruction is answered, that trajectories start
at the episode's start and that every move follows an edge; a submission that fails one of
these is rejected only after the upload. These checks give the same verdict locally, with a
message per problem naming the ``instr_id``, so the fix is obvious. Repeated viewpoints are
legal (turning in place records the same viewpoint again).

Every problem found is reported (the first :data:`MAX_REPORTED` in full), not just the first.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from vln_clip.episodes import Episode
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore

from .formats import Prediction

MAX_REPORTED = 20


def find_problems(predictions: Sequence[Prediction], episodes: Iterable[Episode], graphs: GraphStore,
                  require_all: bool = True) -> list[str]:
    """All problems of ``predictions`` against the split, one human-readable line each."""
    episodes = list(episodes)
    known = {ep.instr_id: ep for ep in episodes}
    problems: list[str] = []
    counts = Counter(p.instr_id for p in predictions)
    for instr_id, n in counts.items():
        if n > 1:
            problems.append(f"instr_id {instr_id}: duplicated ({n} entries); keep one trajectory per instruction")
    checked: set[str] = set()
    for pred in predictions:
        if pred.instr_id in checked:
            continue
        checked.add(pred.instr_id)
        ep = known.get(pred.instr_id)
        if ep is None:
            problems.append(f"instr_id {pred.instr_id}: unknown instr_id (not in the split file); "
                            "predictions must come from the same split")
            continue
        problems.extend(_trajectory_problems(pred, ep, graphs))
    if require_all:
        for ep in episodes:
            if ep.instr_id not in counts:
                problems.append(f"instr_id {ep.instr_id}: missing (the split has it, the predictions do not); "
                                "every instruction needs a trajectory")
    return problems


def _trajectory_problems(pred: Prediction, ep: Episode, graphs: GraphStore) -> list[str]:
    where = f"instr_id {pred.instr_id}"
    path = pred.path
    if not path:
        return [f"{where}: empty trajectory; it must start at the start viewpoint {ep.start}"]
    if ep.scan not in graphs:
        return [f"{where}: scan {ep.scan} has no connectivity file in {graphs.root}"]
    graph = graphs[ep.scan]
    out: list[str] = []
    unknown = [v for v in path if v not in graph]
    if unknown:
        out.append(f"{where}: unknown viewpoint {unknown[0]!r} (not an included viewpoint of scan {ep.scan})")
        return out
    if path[0] != ep.start:
        out.append(f"{where}: trajectory starts at {path[0]}, not at the episode's start {ep.start}")
    for t, (a, b) in enumerate(zip(path, path[1:]), 1):
        if a != b and not graph.has_edge(a, b):
            out.append(f"{where}: step {t} moves {a} -> {b}, which are not adjacent in scan {ep.scan}; "
                       "moves must follow navigation-graph edges")
            break
    return out


def validate_predictions(predictions: Sequence[Prediction], episodes: Iterable[Episode], graphs: GraphStore,
                         source: str = "predictions", require_all: bool = True) -> None:
    """Raise :class:`DataError` listing every problem; return quietly when the file is valid."""
    problems = find_problems(predictions, episodes, graphs, require_all)
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise DataError(f"{source}: {len(problems)} problem(s) in the predictions:\n  "
                        + "\n  ".join(shown) + more)
