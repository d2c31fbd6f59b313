"""Metrics, formats and validation against values worked out by hand on tiny graphs."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import line_world, write_connectivity

from vln_clip.episodes import Episode, read_episodes, read_r2r
from vln_clip.errors import DataError
from vln_clip.eval.formats import (Prediction, paths_of, read_predictions, to_rxr_rows, write_r2r,
                                   write_rxr)
from vln_clip.eval.metrics import (SUMMARY_KEYS, batched_dtw, dedup_consecutive, dtw_table, score_episode,
                                   score_paths)
from vln_clip.eval.validation import find_problems, validate_predictions
from vln_clip.graph import GraphStore


@pytest.fixture()
def line(tmp_path: Path) -> tuple[GraphStore, list[str]]:
    """v0..v5 on a line, 2 m apart: d(vi, vj) = 2 |i - j|."""
    ids = line_world(tmp_path / "conn", "lineScan", n=6, spacing=2.0)
    return GraphStore(tmp_path / "conn"), ids


def test_perfect_path(line):
    graphs, v = line
    m = score_episode(v[:4], v[:4], graphs["lineScan"])
    assert m == pytest.approx({"trajectory_length": 6.0, "nav_error": 0.0, "oracle_error": 0.0, "success": 1.0,
                               "oracle_success": 1.0, "spl": 1.0, "steps": 3, "ndtw": 1.0, "sdtw": 1.0,
                               "cls": 1.0, "dtw": 0.0})


def test_dtw_table_by_hand(line):
    # P = [v0, v1, v1, v2] (turns in place at v1), R = [v0, v1, v2, v3]. P' = [v0, v1, v2].
    # Cost C[i][j] = d(P'_i, R_j) = 2|i - j|:
    #            v0  v1  v2  v3
    #     v0      0   2   4   6
    #     v1      2   0   2   4
    #     v2      4   2   0   2
    # DTW[i][j] = C + min(up, left, diagonal), DTW[0][0] = 0, other borders inf:
    #     row v0: 0   2   6  12
    #     row v1: 2   0   2   6
    #     row v2: 6   2   0   2      -> DTW = 2
    graphs, v = line
    g = graphs["lineScan"]
    cost = g.distances[np.ix_([g.idx(x) for x in v[:3]], [g.idx(x) for x in v[:4]])]
    expected = np.array([[0, 2, 6, 12], [2, 0, 2, 6], [6, 2, 0, 2]], dtype=float)
    assert np.array_equal(dtw_table(cost)[1:, 1:], expected)
    assert batched_dtw(cost[None], np.array([3]), np.array([4]))[0] == 2.0

    m = score_episode([v[0], v[1], v[1], v[2]], v[:4], g)
    assert m["dtw"] == 2.0
    assert m["ndtw"] == pytest.approx(math.exp(-2 / (3 * 4)))
    assert m["sdtw"] == pytest.approx(math.exp(-1 / 6))  # NE = 2 <= 3
    assert m["trajectory_length"] == 4.0 and m["steps"] == 3  # the repeat adds 0 m but is a step
    assert m["nav_error"] == 2.0 and m["success"] == 1.0
    assert m["oracle_error"] == 2.0 and m["oracle_success"] == 1.0
    assert m["spl"] == 1.0  # 1 * 6 / max(4, 6)
    # CLS by hand: R nodes v0, v1, v2 are on P (distance 0), v3 is 2 m from v2.
    pc = (3 + math.exp(-2 / 3)) / 4
    ls = pc * 6 / (pc * 6 + abs(pc * 6 - 4))  # L(R) = 6, L(P) = 4
    assert m["cls"] == pytest.approx(pc * ls)


def test_consecutive_duplicates_removed_for_ndtw(line):
    # P overshoots to v4 and turns there twice: P' = [v0..v4]; v4 aligns with v3 at cost 2.
    # Without de-duplication the three v4 rows would each cost >= 2: DTW 6 instead of 2.
    graphs, v = line
    g = graphs["lineScan"]
    path = v[:5] + [v[4], v[4]]
    assert dedup_consecutive(path) == v[:5]
    m = score_episode(path, v[:4], g)
    assert m["dtw"] == 2.0
    assert m["ndtw"] == pytest.approx(math.exp(-2 / 12))
    raw = dtw_table(g.distances[np.ix_([g.idx(x) for x in path], [g.idx(x) for x in v[:4]])])[-1, -1]
    assert raw == 6.0  # what a scorer that forgot the de-duplication would use


def test_detour_spl_cls(line):
    # R = [v0, v1, v2] (4 m); P = [v0, v1, v2, v3, v2]: TL 8, NE 0 -> SPL = 4 / 8.
    # DTW: v3 must align with some reference node, cheapest v2 at 2 m -> DTW 2, nDTW exp(-2/9).
    # CLS: every reference node is visited -> PC 1; LS = 4 / (4 + |4 - 8|) = 0.5.
    graphs, v = line
    m = score_episode([v[0], v[1], v[2], v[3], v[2]], v[:3], graphs["lineScan"])
    assert m["trajectory_length"] == 8.0
    assert m["spl"] == 0.5
    assert m["ndtw"] == pytest.approx(math.exp(-2 / 9))
    assert m["cls"] == pytest.approx(0.5)


def test_oracle_success_without_success(line):
    graphs, v = line
    m = score_episode(v, v[:4], graphs["lineScan"])  # passes the goal v3, stops at v5
    assert m["nav_error"] == 4.0 and m["success"] == 0.0 and m["spl"] == 0.0 and m["sdtw"] == 0.0
    assert m["oracle_error"] == 0.0 and m["oracle_success"] == 1.0


def test_three_metre_boundaries(tmp_path):
    # Spacing 3 m: stopping one node short leaves NE = 3.0 exactly.
    # success is strict (NE < 3) -> 0; SDTW is inclusive (<= 3, as in r4r) -> equals nDTW.
    # DTW: P' = [v0, v1, v2] vs R = [v0..v3] with cost 3|i - j| -> 3, so nDTW = exp(-3 / 12).
    v = line_world(tmp_path / "c", "threeScan", n=4, spacing=3.0)
    g = GraphStore(tmp_path / "c")["threeScan"]
    m = score_episode(v[:3], v, g)
    assert m["nav_error"] == 3.0
    assert m["success"] == 0.0 and m["oracle_success"] == 0.0 and m["spl"] == 0.0
    assert m["ndtw"] == pytest.approx(math.exp(-0.25))
    assert m["sdtw"] == pytest.approx(math.exp(-0.25))


def test_graph_distance_not_euclidean(tmp_path):
    # A(0,0) - B(0,3) - C(4,3): Euclidean |AC| = 5, but the graph route is 3 + 4 = 7.
    v = write_connectivity(tmp_path / "c", "elbow", [(0, 0, 0), (0, 3, 0), (4, 3, 0)], [(0, 1), (1, 2)])
    g = GraphStore(tmp_path / "c")["elbow"]
    m = score_episode([v[0]], v, g)
    assert m["nav_error"] == 7.0
    assert m["oracle_error"] == 7.0
    # PC = (exp(0) + exp(-3/3) + exp(-7/3)) / 3; L(P) = 0 -> LS = PC*7 / (2 * PC*7) = 0.5.
    pc = (1 + math.exp(-1) + math.exp(-7 / 3)) / 3
    assert m["cls"] == pytest.approx(pc * 0.5)


def test_batched_dtw_matches_textbook_loop():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (3, 7), (9, 2), (5, 5), (12, 4)]
    big_n, big_m = max(s[0] for s in shapes), max(s[1] for s in shapes)
    cost = rng.uniform(0, 10, size=(len(shapes), big_n, big_m))
    got = batched_dtw(cost, np.array([s[0] for s in shapes]), np.array([s[1] for s in shapes]))
    for b, (n, m) in enumerate(shapes):
        assert got[b] == dtw_table(cost[b, :n, :m])[n, m]  # exact: same arithmetic


def _episodes(v: list[str], scan: str = "lineScan") -> list[Episode]:
    return [Episode("1_0", "1", scan, tuple(v[:4]), 0.0, "walk to the end of the hall"),
            Episode("2_0", "2", scan, tuple(v[2:5]), 0.0, "go two steps")]


def test_score_paths_averages(line):
    graphs, v = line
    eps = _episodes(v)
    res = score_paths({"1_0": v[:4], "2_0": [v[2]]}, eps, graphs)
    s = res.summary()
    assert list(s) == list(SUMMARY_KEYS)
    assert s["episodes"] == 2
    assert s["success"] == 0.5  # second stops 4 m short
    assert s["nav_error"] == pytest.approx((0 + 4) / 2)
    assert s["trajectory_length"] == pytest.approx(3.0)
    assert [e.instr_id for e in res.episodes] == ["1_0", "2_0"]
    assert res.episodes[0].instruction_words == 7
    with pytest.raises(DataError, match="2_0"):
        score_paths({"1_0": v[:4]}, eps, graphs)
    assert len(score_paths({"1_0": v[:4]}, eps, graphs, require_all=False)) == 1


def _rxr_split(path: Path, v: list[str]) -> Path:
    rows = [
        {"instruction_id": 11, "path_id": 1, "scan": "lineScan", "path": v[:4], "heading": 0.0,
         "instruction": "go to the end", "language": "en-US"},
        {"instruction_id": 12, "path_id": 1, "scan": "lineScan", "path": v[:4], "heading": 0.0,
         "instruction": "aage jao", "language": "hi-IN"},
        {"instruction_id": 13, "path_id": 1, "scan": "lineScan", "path": v[:4], "heading": 0.0,
         "instruction": "mundu vellandi", "language": "te-IN"},
        {"instruction_id": 14, "path_id": 2, "scan": "lineScan", "path": v[:4], "heading": 0.0,
         "instruction": "walk ahead", "language": "en-IN"},
    ]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rxr_language_breakdown(line, tmp_path):
    graphs, v = line
    eps = read_episodes(_rxr_split(tmp_path / "rxr_val_unseen_guide.jsonl.gz", v))
    # en: 11 succeeds, 14 stops at the start (NE 6); hi succeeds; te stops one short (NE 2, success).
    paths = {"11": v[:4], "14": [v[0]], "12": v[:4], "13": v[:3]}
    s = score_paths(paths, eps, graphs).summary()
    assert set(s["by_language"]) == {"en", "hi", "te"}
    assert s["by_language"]["en"]["episodes"] == 2
    assert s["by_language"]["en"]["success"] == 0.5
    assert s["by_language"]["en"]["nav_error"] == 3.0
    assert s["by_language"]["hi"]["ndtw"] == 1.0
    assert s["by_language"]["te"]["nav_error"] == 2.0
    assert s["success"] == 0.75


# ----------------------------------------------------------------------------------------
# Formats


def test_r2r_and_rxr_round_trip(tmp_path, line):
    _, v = line
    preds = [Prediction("1_0", ((v[0], 0.5, 0.0), (v[1], 0.5, -0.5236))), Prediction("2_0", ((v[2], 1.0, 0.0),))]
    write_r2r(tmp_path / "p.json", preds)
    assert read_predictions(tmp_path / "p.json") == preds
    raw = json.loads((tmp_path / "p.json").read_text())
    assert raw[0] == {"instr_id": "1_0", "trajectory": [[v[0], 0.5, 0.0], [v[1], 0.5, -0.5236]]}

    rx = [Prediction.from_path("11", [v[0], v[0], v[1]]), Prediction.from_path("12", [v[3]])]
    write_rxr(tmp_path / "p.jsonl.gz", rx)
    with gzip.open(tmp_path / "p.jsonl.gz", "rt") as fh:
        lines = [json.loads(x) for x in fh]
    assert lines[0] == {"instruction_id": 11, "path": [v[0], v[1]]}  # turn in place dropped
    back = read_predictions(tmp_path / "p.jsonl.gz")
    assert paths_of(back) == {"11": [v[0], v[1]], "12": [v[3]]}
    with pytest.raises(DataError, match="not an RxR instruction_id"):
        to_rxr_rows([Prediction.from_path("12_0", [v[0]])])


def test_no_partial_file_on_failed_write(tmp_path):
    target = tmp_path / "sub.jsonl"
    with pytest.raises(DataError):
        write_rxr(target, [Prediction.from_path("1", ["a"]), Prediction.from_path("x_1", ["b"])])
    assert not target.exists()


def test_malformed_predictions(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instr_id": "1_0", "trajectory": [["a", 0, 0]]},')
    with pytest.raises(DataError, match="malformed JSON"):
        read_predictions(bad)
    bad.write_text('[{"trajectory": [["a", 0, 0]]}]')
    with pytest.raises(DataError, match="entry 0 has no instr_id"):
        read_predictions(bad)
    badl = tmp_path / "bad.jsonl"
    badl.write_text('{"instruction_id": 1, "path": ["a"]}\n{"instruction_id": 2, "path": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        read_predictions(badl)


# ----------------------------------------------------------------------------------------
# Validation


def test_every_validation_problem_names_the_instr_id(line):
    graphs, v = line
    eps = _episodes(v) + [Episode("3_0", "3", "lineScan", tuple(v[:2]), 0.0, "x"),
                          Episode("4_0", "4", "lineScan", tuple(v[:2]), 0.0, "x"),
                          Episode("5_0", "5", "lineScan", tuple(v[:2]), 0.0, "x"),
                          Episode("6_0", "6", "lineScan", tuple(v[:2]), 0.0, "x")]
    preds = [
        Prediction.from_path("1_0", v[:4]),
        Prediction.from_path("1_0", v[:4]),  # duplicated
        Prediction.from_path("9_9", v[:2]),  # unknown instr_id
        Prediction.from_path("3_0", [v[0], "nowhere"]),  # unknown viewpoint
        Prediction.from_path("4_0", [v[1], v[2]]),  # wrong start
        Prediction.from_path("5_0", [v[0], v[0], v[2]]),  # non-adjacent move (after a turn)
        Prediction.from_path("6_0", [v[0], v[1], v[1], v[0]]),  # valid: turning in place
    ]  # 2_0 missing
    problems = find_problems(preds, eps, graphs)
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert "instr_id 1_0: duplicated" in text
    assert "instr_id 9_9: unknown instr_id" in text
    assert "instr_id 3_0: unknown viewpoint 'nowhere'" in text
    assert f"instr_id 4_0: trajectory starts at {v[1]}, not at the episode's start {v[0]}" in text
    assert f"instr_id 5_0: step 2 moves {v[0]} -> {v[2]}, which are not adjacent" in text
    assert "instr_id 2_0: missing" in text
    assert "6_0" not in text
    with pytest.raises(DataError, match="6 problem"):
        validate_predictions(preds, eps, graphs, source="p.json")
    validate_predictions([preds[0], preds[-1], Prediction.from_path("2_0", v[2:5])], eps[:2] + eps[-1:], graphs)


def test_empty_trajectory(line):
    graphs, v = line
    eps = _episodes(v)
    problems = find_problems([Prediction("1_0", ()), Prediction.from_path("2_0", v[2:3])], eps, graphs)
    assert problems == [f"instr_id 1_0: empty trajectory; it must start at the start viewpoint {v[0]}"]


# ----------------------------------------------------------------------------------------
# Real data (skipped without ../shared)


def test_real_ground_truth_paths_score_perfectly(shared_connectivity, shared_r2r_train, tmp_path):
    graphs = GraphStore(shared_connectivity)
    eps = read_r2r(shared_r2r_train)[:600]
    preds = [Prediction.from_path(e.instr_id, e.path) for e in eps]
    validate_predictions(preds, eps, graphs)
    s = score_paths(paths_of(preds), eps, graphs).summary()
    assert s["episodes"] == 600
    assert s["success"] == s["spl"] == s["ndtw"] == s["sdtw"] == s["cls"] == 1.0
    assert 8.0 < s["trajectory_length"] < 12.0  # R2R paths average about 10 m
