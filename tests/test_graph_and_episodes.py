"""NavGraph tables, episode readers and their errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import line_world, write_connectivity, write_r2r
from vln_clip.episodes import base_language, read_episodes, read_rxr, validate_episodes
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore, graph_stats, load_graph
from vln_clip.io import write_jsonl


def test_line_graph_distances_and_next_hop(tmp_path: Path) -> None:
    ids = line_world(tmp_path, n=5, spacing=2.0)
    g = GraphStore(tmp_path)["lineScan"]
    assert g.distance(ids[0], ids[4]) == pytest.approx(8.0)
    assert g.next_step(ids[0], ids[4]) == ids[1]
    assert g.next_step(ids[4], ids[0]) == ids[3]
    assert g.next_step(ids[2], ids[2]) == ids[2]
    assert g.shortest_path(ids[1], ids[4]) == ids[1:5]
    assert g.path_length([ids[0], ids[1], ids[1], ids[2]]) == pytest.approx(4.0)
    assert g.num_edges == 4


def test_excluded_viewpoints_and_shortcut(tmp_path: Path) -> None:
    # square 0-1-2-3 with a diagonal 0-2 through an excluded viewpoint 4 at the centre
    pts = [(0, 0, 0), (3, 0, 0), (3, 4, 0), (0, 4, 0), (1.5, 2, 0)]
    write_connectivity(tmp_path, "sq", pts, [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (4, 2)], excluded=[4])
    g = load_graph(tmp_path / "sq_connectivity.json", use_cache=False)
    assert len(g) == 4 and "sqvp4" not in g
    assert g.distance("sqvp0", "sqvp2") == pytest.approx(7.0)  # 3 + 4, not the 5 m diagonal
    assert g.num_edges == 4


def test_disconnected_is_infinite(tmp_path: Path) -> None:
    write_connectivity(tmp_path, "two", [(0, 0, 0), (1, 0, 0), (9, 9, 0)], [(0, 1)])
    g = GraphStore(tmp_path)["two"]
    assert math.isinf(g.distance("twovp0", "twovp2"))
    with pytest.raises(DataError, match="not reachable"):
        g.shortest_path("twovp0", "twovp2")


def test_cache_round_trip_gives_identical_tables(tmp_path: Path) -> None:
    line_world(tmp_path, n=4)
    a = load_graph(tmp_path / "lineScan_connectivity.json")
    b = load_graph(tmp_path / "lineScan_connectivity.json")  # second load reads the cache
    np.testing.assert_array_equal(a.distances, b.distances)
    np.testing.assert_array_equal(a.next_hop, b.next_hop)
    assert a.viewpoints == b.viewpoints


def test_malformed_connectivity_names_file(tmp_path: Path) -> None:
    (tmp_path / "bad_connectivity.json").write_text("[{\"image_id\": ")
    with pytest.raises(DataError, match="bad_connectivity.json: malformed JSON"):
        GraphStore(tmp_path)["bad"]
    with pytest.raises(DataError, match="unknown scan 'nope'"):
        GraphStore(tmp_path)["nope"]


def test_real_graph_counts(shared_connectivity: Path) -> None:
    assert graph_stats(GraphStore(shared_connectivity)) == {
        "scans": 90, "viewpoints": 10567, "edges": 21468, "mean_degree": pytest.approx(4.0632, abs=1e-3)}


def test_cli_stats_json(shared_connectivity: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vln_clip.cli.main import main

    assert main(["data", "stats", "--connectivity", str(shared_connectivity), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["scans"], out["viewpoints"], out["edges"]) == (90, 10567, 21468)


def test_real_r2r_train_paths_are_graph_paths(shared_connectivity: Path, shared_r2r_train: Path) -> None:
    eps = read_episodes(shared_r2r_train)
    assert len(eps) == 14039
    assert eps[0].instr_id.endswith("_0")
    validate_episodes(eps, GraphStore(shared_connectivity), "R2R_train")


def test_real_r2r_test_has_no_goal(shared_r2r_test: Path) -> None:
    eps = read_episodes(shared_r2r_test)
    assert len(eps) == 4173
    assert all(e.goal is None and len(e.path) == 1 for e in eps)


def _r2r_item(path: list[str], **kw: object) -> dict:
    item = {"path_id": 7, "scan": "lineScan", "path": path, "heading": 0.0,
            "instructions": ["go forward", "walk ahead"], "distance": 1.0}
    item.update(kw)
    return item


def test_r2r_reader_and_validation_errors(tmp_path: Path) -> None:
    ids = line_world(tmp_path / "conn", n=4)
    store = GraphStore(tmp_path / "conn")
    ok = read_episodes(write_r2r(tmp_path / "ok.json", [_r2r_item(ids[:3])]))
    assert [e.instr_id for e in ok] == ["7_0", "7_1"]
    validate_episodes(ok, store)

    jump = read_episodes(write_r2r(tmp_path / "jump.json", [_r2r_item([ids[0], ids[2]])]))
    with pytest.raises(DataError, match=r"instr_id 7_0: step .* is not an edge"):
        validate_episodes(jump, store)
    ghost = read_episodes(write_r2r(tmp_path / "ghost.json", [_r2r_item([ids[0], "nowhere"])]))
    with pytest.raises(DataError, match="'nowhere'.*not an included viewpoint"):
        validate_episodes(ghost, store)
    scan = read_episodes(write_r2r(tmp_path / "scan.json", [_r2r_item(ids[:2], scan="zzz")]))
    with pytest.raises(DataError, match="unknown scan 'zzz'"):
        validate_episodes(scan, store)
    with pytest.raises(DataError, match=r"empty.json: entry 0 .*instruction 1 has an empty instruction"):
        read_episodes(write_r2r(tmp_path / "empty.json", [_r2r_item(ids[:2], instructions=["a", "  "])]))
    (tmp_path / "broken.json").write_text("[{]")
    with pytest.raises(DataError, match="broken.json: malformed JSON at line 1"):
        read_episodes(tmp_path / "broken.json")


def test_rxr_reader_languages(tmp_path: Path) -> None:
    rows = [
        {"instruction_id": 1, "path_id": 3, "scan": "s", "path": ["a", "b"], "heading": 1.0,
         "instruction": "walk", "language": "en-IN"},
        {"instruction_id": 2, "path_id": 3, "scan": "s", "path": ["a", "b"], "heading": 1.0,
         "instruction": "चलो", "language": "hi-IN"},
        {"instruction_id": 5, "path_id": 3, "scan": "s", "path": ["a", "b"], "heading": 1.0,
         "instruction": "walk on", "language": "en-US"},
    ]
    write_jsonl(tmp_path / "rxr_val_unseen_guide.jsonl.gz", rows)
    all_eps = read_episodes(tmp_path / "rxr_val_unseen_guide.jsonl.gz")
    assert [e.language for e in all_eps] == ["en", "hi", "en"]
    en = read_rxr(tmp_path / "rxr_val_unseen_guide.jsonl.gz", ["en"])
    assert [e.instr_id for e in en] == ["1", "5"]
    assert base_language("te-IN") == "te"


def test_feature_extraction_reads_connectivity_through_the_graph_reader(tmp_path: Path) -> None:
    """One parser of <scan>_connectivity.json: the extraction task list is the graph's included
    viewpoints, and a malformed file gets read_connectivity's error there too."""
    from vln_clip.features.extract import list_tasks  # torch and the encoders: only this test needs them

    ids = write_connectivity(tmp_path, "sq", [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)],
                             [(0, 1), (1, 2), (2, 3)], excluded=[2])
    line_world(tmp_path, n=3)
    tasks = list_tasks(tmp_path)
    store = GraphStore(tmp_path)
    assert [(t.scan, t.viewpoint) for t in tasks] == [(s, v) for s in store.scans for v in store[s].viewpoints]
    assert ids[2] not in {t.viewpoint for t in tasks} and np.allclose(tasks[0].rotation, np.eye(3))
    path = tmp_path / "sq_connectivity.json"
    data = json.loads(path.read_text())
    del data[1]["unobstructed"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="entry 1 has no 'unobstructed' field"):
        list_tasks(tmp_path, ["sq"])
