"""vln_clip.eval.jobs: the load -> validate -> score / export sequence, called without argv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import line_split, write_r2r

from vln_clip.errors import DataError
from vln_clip.eval.jobs import EvalConfig, SplitSource, SubmitConfig, TrajectorySource, evaluate, submit


@pytest.fixture()
def world(tmp_path: Path) -> dict:
    conn, v, val = line_split(tmp_path)
    test = write_r2r(tmp_path / "R2R_test.json", [
        {"path_id": 7, "scan": "lineScan", "path": [v[1]], "heading": 0.0, "instructions": ["a b", "c d"]}])
    return {"conn": str(conn), "val": str(val), "test": str(test), "v": v, "root": tmp_path}


def _split(world: dict, key: str = "val") -> SplitSource:
    return SplitSource(split_file=world[key], connectivity=world["conn"])


def test_evaluate_an_agent_and_a_predictions_file(world: dict) -> None:
    out = world["root"] / "shortest.json"
    done = evaluate(EvalConfig(_split(world), TrajectorySource(agent="shortest"), out=str(out),
                               report=str(world["root"] / "report")))
    assert done.summary["episodes"] == 3 and done.summary["success"] == 1.0 and done.summary["spl"] == 1.0
    assert done.source == "shortest agent" and done.split.name == "R2R_val_unseen.json"
    assert set(done.report_files) >= {"csv", "summary"} and all(Path(f).exists() for f in done.report_files.values())
    # the written predictions score the same through the file source
    again = evaluate(EvalConfig(_split(world), TrajectorySource(predictions=str(out))))
    assert again.summary == done.summary
    v = world["v"]
    one = world["root"] / "one.json"
    one.write_text(json.dumps([{"instr_id": "1_0", "trajectory": [[x, 0.0, 0.0] for x in v[:4]]}]))
    with pytest.raises(DataError, match="missing"):
        evaluate(EvalConfig(_split(world), TrajectorySource(predictions=str(one))))
    partial = evaluate(EvalConfig(_split(world), TrajectorySource(predictions=str(one)), allow_missing=True))
    assert partial.summary["episodes"] == 1 and partial.summary["success"] == 1.0
    assert evaluate(EvalConfig(_split(world), TrajectorySource(agent="stop"), limit=2)).summary["episodes"] == 2


def test_evaluate_refuses_bad_requests_before_decoding(world: dict) -> None:
    with pytest.raises(DataError, match="exactly one"):
        evaluate(EvalConfig(_split(world), TrajectorySource(agent="stop", predictions="p.json")))
    with pytest.raises(DataError, match="exactly one"):
        evaluate(EvalConfig(_split(world)))
    with pytest.raises(DataError, match="no goals"):
        evaluate(EvalConfig(_split(world, "test"), TrajectorySource(agent="stop")))
    with pytest.raises(DataError, match="--limit"):
        evaluate(EvalConfig(_split(world), TrajectorySource(checkpoint="x.pt"), limit=3))
    with pytest.raises(DataError, match="no split"):
        evaluate(EvalConfig(SplitSource(connectivity=world["conn"]), TrajectorySource(agent="stop")))


def test_submit_checks_and_exports_in_split_order(world: dict) -> None:
    v = world["v"]
    preds = world["root"] / "p.json"
    preds.write_text(json.dumps([{"instr_id": "7_1", "trajectory": [[v[1], 0, 0], [v[2], 0.5, 0]]},
                                 {"instr_id": "7_0", "trajectory": [[v[1], 0, 0]]}]))
    checked = submit(SubmitConfig(_split(world, "test"), TrajectorySource(predictions=str(preds)), check=True))
    assert checked.out is None and checked.episodes == 2 and len(checked.predictions) == 2
    out = world["root"] / "sub" / "r2r_test.json"
    done = submit(SubmitConfig(_split(world, "test"), TrajectorySource(predictions=str(preds)), out=str(out)))
    assert done.out == out and done.format == "r2r"
    assert [r["instr_id"] for r in json.loads(out.read_text())] == ["7_0", "7_1"]
    rand = submit(SubmitConfig(_split(world, "test"), TrajectorySource(agent="random", seed=1),
                               out=str(world["root"] / "random.json")))
    assert len(rand.predictions) == 2 and rand.source == "random agent"
    with pytest.raises(DataError, match="--out"):
        submit(SubmitConfig(_split(world, "test"), TrajectorySource(predictions=str(preds))))
    with pytest.raises(DataError, match="needs goals"):
        submit(SubmitConfig(_split(world, "test"), TrajectorySource(agent="shortest"), out=str(out)))
    with pytest.raises(DataError, match="predictions file"):
        submit(SubmitConfig(_split(world, "test"), TrajectorySource(agent="random"), check=True))
