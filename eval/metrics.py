"""The one implementation of the VLN metrics (R2R, R4R, RxR), vectorized per scan.

Every number that vln-clip reports about a trajectory comes from :func:`score_paths`, so
training-time validation, ``vln-clip eval``, the baselines and the reports agree to the bit.

Definitions (``/work/shared/docs/REFERENCE.md``; Anderson et al. 2018 for R2R, Ilharco et al.
2019 for nDTW/SDTW, Jain et al. 2019 for CLS). ``d(a, b)`` is the shortest-path distance on the
scan's navigation graph (edge weight = 3-D Euclidean distance), read from the cached all-pairs
table :attr:`vln_clip.graph.NavGraph.distances`. ``P`` is the predicted path (viewpoints), ``R``
the reference path, ``goal = R[-1]``:

* ``trajectory_length`` TL = sum of d(P[t-1], P[t]) (repeated viewpoints, i.e. turning in
  place, add 0).
* ``nav_error`` NE = d(P[-1], goal); ``success`` = NE < 3 m, **strictly**.
* ``oracle_error`` = min over t of d(P[t], goal); ``oracle_success`` = oracle_error < 3 m.
* ``spl`` = success * d(R[0], goal) / max(TL, d(R[0], goal)).
* ``steps`` = number of trajectory entries minus one (what the official R2R evaluator calls
  ``trajectory_steps``; with a panoramic action space it is the number of moves).
* ``ndtw`` = exp(-DTW(P', R) / (3 * |R|)) where P' is P with consecutive duplicate viewpoints
  removed and DTW[0][0] = 0, DTW[i][j] = d(P'_i, R_j) + min(DTW[i-1][j], DTW[i][j-1],
  DTW[i-1][j-1]) (other border cells infinite).
* ``sdtw`` = ndtw if d(P[-1], R[-1]) <= 3 m else 0. The boundary is **inclusive**, as in the
  google-research r4r reference code; ``success`` above is strict. A path ending exactly 3 m
  from the goal therefore has success 0 but a non-zero sdtw.
* ``cls`` = PC * LS with PC = mean over u in R of exp(-min_v d(u, v) / 3) (v over P) and
  LS = PC*L(R) / (PC*L(R) + |PC*L(R) - L(P)|), L = path length (sum of consecutive distances).

Degenerate cases the published formulas leave undefined (never met on R2R/RxR, where start
and goal are >= 5 m apart): SPL is ``success`` when d(start, goal) = TL = 0; LS is 1 when
PC*L(R) = L(P) = 0.

Speed: the distance tables of the scans involved are concatenated into one flat array, so one
fancy-indexing call gathers the (padded) sub-matrices ``D[P_b, R_b]`` of every episode of every
scan; the DTW tables of the whole batch are then filled one anti-diagonal at a time (cells on
an anti-diagonal only depend on the two previous ones), so the Python loop runs
max|P| + max|R| times per batch instead of |P| x |R| times per episode. The arithmetic is that
of the textbook recurrence, so results are exact (``benchmarks/bench_metrics.py`` checks this
against a networkx + pure-Python scorer).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from vln_clip.episodes import Episode
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore, NavGraph

from vln_clip.task import SUCCESS_DISTANCE  # metres; success uses <, sdtw uses <=

#: d_th of nDTW and CLS: Ilharco et al. (2019) and the r4r reference code set it to the success
#: distance, so it is that one radius, not a second 3.0
DTW_THRESHOLD = SUCCESS_DISTANCE

#: Keys of :meth:`EvalResult.summary`, in the order they are printed.
SUMMARY_KEYS = ("episodes", "trajectory_length", "nav_error", "oracle_error", "success",
                "oracle_success", "spl", "ndtw", "sdtw", "cls")
#: Summary keys that count things (printed as integers, not rates).
COUNT_KEYS = ("episodes", "steps")
#: Summary keys that are fractions of episodes (printed as percentages).
RATE_KEYS = ("success", "oracle_success", "spl", "ndtw", "sdtw", "cls")
#: How each summary metric is labelled in tables.
LABELS = {
    "trajectory_length": "TL (m)", "nav_error": "NE (m)", "oracle_error": "oracle error (m)",
    "success": "SR", "oracle_success": "OSR", "spl": "SPL", "ndtw": "nDTW", "sdtw": "SDTW", "cls": "CLS",
}
#: Per-episode metric columns, in the order of the CSV report.
EPISODE_METRICS = ("trajectory_length", "nav_error", "oracle_error", "success", "oracle_success",
                   "spl", "steps", "ndtw", "sdtw", "cls")


@dataclass(frozen=True)
class EpisodeScore:
    """Metrics of one instruction, plus what the reports plot them against."""

    instr_id: str
    scan: str
    language: str
    trajectory_length: float
    nav_error: float
    oracle_error: float
    success: float
    oracle_success: float
    spl: float
    steps: int
    ndtw: float
    sdtw: float
    cls: float
    dtw: float
    shortest_distance: float  # d(start, goal)
    reference_length: float  # L(R), the annotated path's length
    instruction_words: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class EvalResult:
    """Episode-level scores with their averages (overall and per language)."""

    episodes: list[EpisodeScore] = field(default_factory=list)
    is_rxr: bool = False  # RxR results always carry the per-language breakdown

    def __len__(self) -> int:
        return len(self.episodes)

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(e, name) for e in self.episodes], dtype=np.float64)

    def _average(self, rows: Sequence[EpisodeScore]) -> dict[str, float | int]:
        out: dict[str, float | int] = {"episodes": len(rows)}
        for key in SUMMARY_KEYS[1:]:
            out[key] = float(np.mean([getattr(r, key) for r in rows])) if rows else 0.0
        return out

    def summary(self, by_language: bool | None = None) -> dict[str, object]:
        """Averages with exactly the keys of :data:`SUMMARY_KEYS` (rates as fractions).

        ``by_language`` adds ``{"by_language": {lang: averages}}``; by default it is added when
        any episode is not English-only R2R, i.e. for RxR.
        """
        out: dict[str, object] = dict(self._average(self.episodes))
        if by_language is None:
            by_language = any(e.language != "en" for e in self.episodes) or self.is_rxr
        if by_language:
            groups: dict[str, list[EpisodeScore]] = defaultdict(list)
            for e in self.episodes:
                groups[e.language].append(e)
            out["by_language"] = {lang: self._average(groups[lang]) for lang in sorted(groups)}
        return out


# ----------------------------------------------------------------------------------------
# Single-episode reference helpers (also used by tests and the naive benchmark)


def dedup_consecutive(path: Sequence[str]) -> list[str]:
    """Drop consecutive repeats (turning in place): [a, a, b, b, a] -> [a, b, a]."""
    out: list[str] = []
    for v in path:
        if not out or out[-1] != v:
            out.append(v)
    return out


def dtw_table(cost: np.ndarray) -> np.ndarray:
    """The full (n+1) x (m+1) DTW table of one cost matrix (textbook loop, for clarity)."""
    n, m = cost.shape
    table = np.full((n + 1, m + 1), np.inf)
    table[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            table[i, j] = cost[i - 1, j - 1] + min(table[i - 1, j], table[i, j - 1], table[i - 1, j - 1])
    return table


# ----------------------------------------------------------------------------------------
# Vectorized core


def _pad(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack index lists into a (B, L) array padded with 0, plus their lengths."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    out = np.zeros((len(rows), int(lengths.max()) if len(rows) else 0), dtype=np.int64)
    for b, r in enumerate(rows):
        out[b, : len(r)] = r
    return out, lengths


def batched_dtw(cost: np.ndarray, n: np.ndarray, m: np.ndarray) -> np.ndarray:
    """DTW[n_b, m_b] for a batch of padded cost matrices ``cost`` of shape (B, N, M).

    Fills the tables one anti-diagonal (i + j = const) at a time for the whole batch. Padding
    beyond (n_b, m_b) never influences DTW[n_b, m_b] because every cell depends only on cells
    above and to the left of it.
    """
    b, big_n, big_m = cost.shape
    table = np.full((b, big_n + 1, big_m + 1), np.inf)
    table[:, 0, 0] = 0.0
    for diag in range(2, big_n + big_m + 1):
        i = np.arange(max(1, diag - big_m), min(big_n, diag - 1) + 1)
        j = diag - i
        best = np.minimum(np.minimum(table[:, i - 1, j], table[:, i, j - 1]), table[:, i - 1, j - 1])
        table[:, i, j] = cost[:, i - 1, j - 1] + best
    return table[np.arange(b), n, m]


def _score_batch(graphs: Sequence[NavGraph], items: Sequence[tuple[Episode, Sequence[str]]],
                 chunk: int = 4096) -> list[EpisodeScore]:
    """Score ``items[b]`` on ``graphs[b]``: every metric for the whole batch at once.

    The scans' distance tables are concatenated into one flat array so that a single
    fancy-indexing call gathers ``d(P_b[i], R_b[j])`` for every episode, whatever its scan.
    """
    tables: dict[int, int] = {}  # id(graph) -> offset in the flat array
    flats: list[np.ndarray] = []
    offset = 0
    base = np.empty(len(items), dtype=np.int64)
    size = np.empty(len(items), dtype=np.int64)
    for b, g in enumerate(graphs):
        key = id(g)
        if key not in tables:
            tables[key] = offset
            flats.append(g.distances.ravel())
            offset += g.distances.size
        base[b] = tables[key]
        size[b] = len(g)
    flat = np.concatenate(flats) if flats else np.zeros(0)

    preds = [[g.idx(v, f"instr_id {ep.instr_id}") for v in path] for g, (ep, path) in zip(graphs, items)]
    refs = [[g.idx(v, f"instr_id {ep.instr_id} reference") for v in ep.path] for g, (ep, _) in zip(graphs, items)]
    out: list[EpisodeScore] = []
    for lo in range(0, len(items), chunk):
        sl = slice(lo, lo + chunk)
        out.extend(_score_chunk(flat, base[sl], size[sl], items[sl], preds[sl], refs[sl]))
    return out


def _score_chunk(flat: np.ndarray, base: np.ndarray, size: np.ndarray, items: Sequence[tuple[Episode, Sequence[str]]],
                 preds: list[list[int]], refs: list[list[int]]) -> list[EpisodeScore]:
    dedup = [[p[0]] + [b for a, b in zip(p, p[1:]) if a != b] for p in preds]
    p_idx, p_len = _pad(preds)
    r_idx, r_len = _pad(refs)
    q_idx, q_len = _pad(dedup)
    rows = np.arange(len(items))
    base2 = base[:, None]
    size2 = size[:, None]

    def d(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Distances between index arrays a and c (broadcast), each row on its own scan."""
        extra = a.ndim - 1
        bb = base.reshape((-1,) + (1,) * extra)
        ss = size.reshape((-1,) + (1,) * extra)
        return flat[bb + a * ss + c]

    def path_lengths(idx: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        if idx.shape[1] < 2:
            return np.zeros(len(idx))
        hops = flat[base2 + idx[:, :-1] * size2 + idx[:, 1:]]
        valid = np.arange(1, idx.shape[1])[None, :] < lengths[:, None]
        return np.where(valid, hops, 0.0).sum(1)

    goal = r_idx[rows, r_len - 1]
    start = r_idx[:, 0]
    last = p_idx[rows, p_len - 1]
    tl = path_lengths(p_idx, p_len)
    ref_len = path_lengths(r_idx, r_len)
    ne = d(last, goal)
    p_mask = np.arange(p_idx.shape[1])[None, :] < p_len[:, None]
    oracle = np.where(p_mask, d(p_idx, goal[:, None]), np.inf).min(1)
    success = (ne < SUCCESS_DISTANCE).astype(np.float64)
    shortest = d(start, goal)
    denom = np.maximum(tl, shortest)
    spl = np.where(denom > 0, success * shortest / np.where(denom > 0, denom, 1.0), success)

    # DTW on the de-duplicated prediction against the full reference.
    dtw = batched_dtw(d(q_idx[:, :, None], r_idx[:, None, :]), q_len, r_len)
    ndtw = np.exp(-dtw / (DTW_THRESHOLD * r_len))
    sdtw = np.where(ne <= SUCCESS_DISTANCE, ndtw, 0.0)  # d(P_last, R_last), inclusive

    # CLS: coverage of each reference node by its nearest predicted node (duplicates are harmless).
    nearest = np.where(p_mask[:, :, None], d(p_idx[:, :, None], r_idx[:, None, :]), np.inf).min(1)
    r_mask = np.arange(r_idx.shape[1])[None, :] < r_len[:, None]
    pc = np.where(r_mask, np.exp(-nearest / DTW_THRESHOLD), 0.0).sum(1) / r_len
    expected = pc * ref_len
    ls_den = expected + np.abs(expected - tl)
    ls = np.where(ls_den > 0, expected / np.where(ls_den > 0, ls_den, 1.0), 1.0)
    cls = pc * ls

    columns = zip(tl.tolist(), ne.tolist(), oracle.tolist(), success.tolist(), spl.tolist(), ndtw.tolist(),
                  sdtw.tolist(), cls.tolist(), dtw.tolist(), shortest.tolist(), ref_len.tolist(), p_len.tolist())
    return [
        EpisodeScore(ep.instr_id, ep.scan, ep.language, t, n, o, s, float(o < SUCCESS_DISTANCE), sp, pl - 1,
                     nd, sd, c, dw, sh, rl, len(ep.instruction.split()))
        for (ep, _), (t, n, o, s, sp, nd, sd, c, dw, sh, rl, pl) in zip(items, columns)
    ]


def score_paths(paths: Mapping[str, Sequence[str]], episodes: Iterable[Episode], graphs: GraphStore,
                require_all: bool = True) -> EvalResult:
    """Score predicted viewpoint paths (``instr_id -> [viewpoint, ...]``) against episodes.

    ``require_all`` (the official evaluators' behaviour) makes an episode without a prediction
    an error; otherwise only predicted episodes are scored. Test-split episodes (no goal) cannot
    be scored. Structural checks (start, adjacency) belong to :mod:`vln_clip.eval.validation`;
    here only viewpoints are looked up.
    """
    episodes = list(episodes)
    items: list[tuple[Episode, Sequence[str]]] = []
    for ep in episodes:
        path = paths.get(ep.instr_id)
        if path is None:
            if require_all:
                raise DataError(f"instr_id {ep.instr_id}: no prediction for this episode; the predictions "
                                "must cover every instruction of the split")
            continue
        if not ep.has_goal:
            raise DataError(f"instr_id {ep.instr_id}: the split has no goal for this episode (a test "
                            "split?); use `vln-clip submit --check` to validate test predictions")
        if len(path) == 0:
            raise DataError(f"instr_id {ep.instr_id}: empty trajectory; it must start at the start viewpoint")
        items.append((ep, path))
    scores = _score_batch([graphs[ep.scan] for ep, _ in items], items)
    return EvalResult(scores, is_rxr=any(ep.dataset == "rxr" for ep in episodes))


def score_episode(path: Sequence[str], reference: Sequence[str], graph: NavGraph) -> dict[str, float]:
    """Metrics of a single path against a reference path (convenience for agents and tests)."""
    if not path or not reference:
        raise DataError("score_episode needs a non-empty path and a non-empty reference path")
    ep = Episode(instr_id="0", path_id="0", scan=graph.scan, path=tuple(reference), heading=0.0,
                 instruction="-")
    s = _score_batch([graph], [(ep, list(path))])[0]
    return {k: getattr(s, k) for k in EPISODE_METRICS + ("dtw",)}
