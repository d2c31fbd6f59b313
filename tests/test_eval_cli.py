"""`vln-clip eval` / `vln-clip submit` end to end, the baseline agents and the report."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import line_world, write_connectivity, write_r2r

from vln_clip.cli.main import main
from vln_clip.episodes import read_r2r
from vln_clip.agents.baselines import run_baseline
from vln_clip.eval.formats import paths_of, predictions_from_dicts
from vln_clip.eval.metrics import SUMMARY_KEYS, score_paths
from vln_clip.graph import GraphStore


@pytest.fixture()
def world(tmp_path: Path) -> dict:
    """Two scans: a 6-node line (2 m spacing) and a 3x3 grid (3 m spacing); an R2R split on them."""
    conn = tmp_path / "connectivity"
    v = line_world(conn, "lineScan", n=6, spacing=2.0)
    pts = [(3.0 * (k % 3), 3.0 * (k // 3), 1.5) for k in range(9)]
    edges = [(k, k + 1) for k in range(9) if k % 3 != 2] + [(k, k + 3) for k in range(6)]
    g = write_connectivity(conn, "gridScan", pts, edges)
    split = write_r2r(tmp_path / "R2R_val_unseen.json", [
        {"path_id": 1, "scan": "lineScan", "path": v[:4], "heading": 0.0, "distance": 6.0,
         "instructions": ["walk straight ahead three steps", "go forward to the end of the hall and stop"]},
        {"path_id": 2, "scan": "gridScan", "path": [g[0], g[1], g[2], g[5], g[8]], "heading": 1.57,
         "distance": 12.0, "instructions": ["turn right, go to the corner, then left to the far corner"]},
        {"path_id": 3, "scan": "lineScan", "path": v[5:1:-1], "heading": 3.14, "distance": 6.0,
         "instructions": ["head back down the hall"]},
    ])
    return {"conn": conn, "split": split, "v": v, "g": g, "root": tmp_path}


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _preds(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_eval_json_keys_and_values(world, capsys):
    v, g = world["v"], world["g"]
    preds = _preds(world["root"] / "p.json", [
        {"instr_id": "1_0", "trajectory": [[x, 0.0, 0.0] for x in v[:4]]},
        {"instr_id": "1_1", "trajectory": [[v[0], 0.0, 0.0]]},
        {"instr_id": "2_0", "trajectory": [[x, 0.0, 0.0] for x in (g[0], g[3], g[6], g[7], g[8])]},
        {"instr_id": "3_0", "trajectory": [[v[5], 0.0, 0.0], [v[4], 0.0, 0.0], [v[4], 0.5, 0.0]]},
    ])
    rc, out, _ = _run(capsys, ["eval", str(preds), "--split-file", str(world["split"]),
                               "--connectivity", str(world["conn"]), "--json"])
    assert rc == 0
    s = json.loads(out)
    assert list(s) == list(SUMMARY_KEYS)  # exactly these keys, no by_language for R2R
    assert s["episodes"] == 4
    # 1_0 perfect; 1_1 stays (NE 6); 2_0 reaches the goal another way (NE 0, SPL 1); 3_0 NE 4.
    assert s["success"] == 0.5
    assert s["nav_error"] == pytest.approx((0 + 6 + 0 + 4) / 4)
    assert s["spl"] == pytest.approx(0.5)


def test_eval_human_table(world, capsys):
    v, g = world["v"], world["g"]
    rows = [{"instr_id": i, "trajectory": [[s, 0, 0]]} for i, s in
            (("1_0", v[0]), ("1_1", v[0]), ("2_0", g[0]), ("3_0", v[5]))]
    rc, out, _ = _run(capsys, ["eval", str(_preds(world["root"] / "p.json", rows)), "--split-file",
                               str(world["split"]), "--connectivity", str(world["conn"])])
    assert rc == 0
    assert "SPL" in out and "nDTW" in out and "0.0%" in out


def test_eval_rejects_invalid_predictions(world, capsys):
    v, g = world["v"], world["g"]
    rows = [{"instr_id": "1_0", "trajectory": [[v[0], 0, 0], [v[2], 0, 0]]},  # jumps over v1
            {"instr_id": "1_1", "trajectory": [[v[0], 0, 0]]},
            {"instr_id": "2_0", "trajectory": [[g[0], 0, 0]]}]  # 3_0 missing
    rc, out, err = _run(capsys, ["eval", str(_preds(world["root"] / "p.json", rows)), "--split-file",
                                 str(world["split"]), "--connectivity", str(world["conn"]), "--json"])
    assert rc == 2 and out == ""
    assert "instr_id 1_0: step 1 moves" in err and "not adjacent" in err
    assert "instr_id 3_0: missing" in err
    bad = world["root"] / "bad.json"
    bad.write_text('[{"instr_id": "1_0", "trajectory": [')
    rc, _, err = _run(capsys, ["eval", str(bad), "--split-file", str(world["split"]),
                               "--connectivity", str(world["conn"])])
    assert rc == 2 and "malformed JSON" in err and "Traceback" not in err


def test_rxr_predictions_by_language(world, capsys):
    v = world["v"]
    split = world["root"] / "rxr_val_unseen_guide.jsonl.gz"
    langs = {21: "en-US", 22: "hi-IN", 23: "te-IN"}
    with gzip.open(split, "wt") as fh:
        for iid, lang in langs.items():
            fh.write(json.dumps({"instruction_id": iid, "path_id": 9, "scan": "lineScan", "path": v[:4],
                                 "heading": 0.0, "instruction": "chalo aage", "language": lang}) + "\n")
    preds = world["root"] / "rxr.jsonl"
    preds.write_text("".join(json.dumps({"instruction_id": iid, "path": v[:4] if iid != 23 else v[:1]}) + "\n"
                             for iid in langs))
    rc, out, _ = _run(capsys, ["eval", str(preds), "--split-file", str(split), "--connectivity",
                               str(world["conn"]), "--json"])
    assert rc == 0
    s = json.loads(out)
    assert list(s) == list(SUMMARY_KEYS) + ["by_language"]
    assert s["by_language"]["en"]["success"] == 1.0 and s["by_language"]["te"]["success"] == 0.0
    assert s["by_language"]["te"]["nav_error"] == 6.0
    rc, out, _ = _run(capsys, ["eval", str(preds), "--split-file", str(split), "--connectivity",
                               str(world["conn"]), "--json", "--languages", "te"])
    assert rc == 0
    s = json.loads(out)
    assert s["episodes"] == 1 and list(s["by_language"]) == ["te"] and s["success"] == 0.0


def test_report_csv_and_plots(world, capsys):
    v, g = world["v"], world["g"]
    rows = [{"instr_id": "1_0", "trajectory": [[x, 0, 0] for x in v[:4]]},
            {"instr_id": "1_1", "trajectory": [[v[0], 0, 0]]},
            {"instr_id": "2_0", "trajectory": [[x, 0, 0] for x in (g[0], g[1], g[2], g[5], g[8])]},
            {"instr_id": "3_0", "trajectory": [[v[5], 0, 0]]}]
    report = world["root"] / "report"
    rc, _, _ = _run(capsys, ["eval", str(_preds(world["root"] / "p.json", rows)), "--split-file",
                             str(world["split"]), "--connectivity", str(world["conn"]), "--json",
                             "--report", str(report)])
    assert rc == 0
    with open(report / "episodes.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["instr_id"] for r in table] == ["1_0", "1_1", "2_0", "3_0"]
    by_id = {r["instr_id"]: r for r in table}
    assert float(by_id["2_0"]["reference_length"]) == 12.0 and float(by_id["2_0"]["success"]) == 1.0
    assert int(by_id["1_1"]["instruction_words"]) == 10 and float(by_id["1_1"]["nav_error"]) == 6.0
    bins = json.loads((report / "bins.json").read_text())
    # reference lengths: 6, 6, 12, 6 -> the 12 m path (a success) sits in the last bin alone.
    assert bins["path_length_m"][-1]["count"] == 1 and bins["path_length_m"][-1]["success"] == 1.0
    assert sum(b["count"] for b in bins["path_length_m"]) == 4
    assert sum(b["count"] * b["success"] for b in bins["instruction_words"]) == pytest.approx(2.0)
    from PIL import Image

    for name in ("success_vs_path_length.png", "success_vs_instruction_length.png"):
        with Image.open(report / name) as im:
            assert im.format == "PNG" and im.size[0] > 300
            # the success bars are drawn in blue (#3b7dd8): some pixels must have that colour.
            px = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
            assert (np.abs(px - [0x3B, 0x7D, 0xD8]).sum(1) < 10).sum() > 50


def test_baselines_through_env(world, capsys):
    split, conn = world["split"], world["conn"]
    graphs = GraphStore(conn)
    eps = read_r2r(split)
    results = {}
    for name in ("shortest", "stop", "random"):
        rows = run_baseline(name, split, conn, seed=3)
        results[name] = score_paths(paths_of(predictions_from_dicts(rows)), eps, graphs).summary()
        if name == "random":
            assert rows == run_baseline(name, split, conn, seed=3)  # seeded
            assert all(len(r["trajectory"]) <= 6 for r in rows)  # start + at most 5 moves
    assert results["shortest"]["success"] == results["shortest"]["spl"] == 1.0
    assert results["stop"]["success"] == 0.0 and results["stop"]["trajectory_length"] == 0.0
    out = world["root"] / "shortest.json"
    rc, stdout, _ = _run(capsys, ["eval", "--agent", "shortest", "--split-file", str(split), "--connectivity",
                                  str(conn), "--json", "--out", str(out)])
    assert rc == 0 and json.loads(stdout)["spl"] == 1.0
    assert {r["instr_id"] for r in json.loads(out.read_text())} == {"1_0", "1_1", "2_0", "3_0"}


def test_split_name_resolution_and_checkpoint_error(world, capsys, monkeypatch):
    data = world["root"] / "data"
    (data / "r2r").mkdir(parents=True)
    (data / "r2r" / "R2R_val_unseen.json").write_text(world["split"].read_text())
    monkeypatch.setenv("VLN_CLIP_DATA", str(data))
    rc, out, _ = _run(capsys, ["eval", "--agent", "stop", "--split", "val_unseen", "--connectivity",
                               str(world["conn"]), "--json"])
    assert rc == 0 and json.loads(out)["episodes"] == 4
    rc, _, err = _run(capsys, ["eval", "--agent", "stop", "--split", "val_seen", "--connectivity",
                               str(world["conn"])])
    assert rc == 2 and "R2R_val_seen.json" in err
    if importlib.util.find_spec("vln_clip.agents.inference") is None:
        rc, _, err = _run(capsys, ["eval", "--checkpoint", "x.pt", "--split", "val_unseen", "--connectivity",
                                   str(world["conn"])])
        assert rc == 2 and "vln_clip.agents.inference" in err


def test_submit_check_and_export(world, capsys):
    v, g = world["v"], world["g"]
    test_split = write_r2r(world["root"] / "R2R_test.json", [
        {"path_id": 7, "scan": "lineScan", "path": [v[1]], "heading": 0.0, "instructions": ["a b", "c d"]},
        {"path_id": 8, "scan": "gridScan", "path": [g[4]], "heading": 0.0, "instructions": ["e f"]}])
    rows = [{"instr_id": "8_0", "trajectory": [[g[4], 0, 0], [g[5], 0, 0]]},
            {"instr_id": "7_0", "trajectory": [[v[1], 0, 0]]},
            {"instr_id": "7_1", "trajectory": [[v[1], 0, 0], [v[2], 0.5, 0]]}]
    preds = _preds(world["root"] / "p.json", rows)
    common = ["--split-file", str(test_split), "--connectivity", str(world["conn"])]
    rc, out, _ = _run(capsys, ["submit", "--check", str(preds)] + common)
    assert rc == 0 and "valid" in out
    rc, _, _ = _run(capsys, ["eval", str(preds)] + common)
    assert rc == 2  # no goals: cannot be scored
    out_file = world["root"] / "sub" / "r2r_test.json"
    rc, _, _ = _run(capsys, ["submit", "--predictions", str(preds), "--out", str(out_file)] + common)
    assert rc == 0
    written = json.loads(out_file.read_text())
    assert [r["instr_id"] for r in written] == ["7_0", "7_1", "8_0"]  # split order
    assert written[1]["trajectory"] == [[v[1], 0.0, 0.0], [v[2], 0.5, 0.0]]
    rc, _, err = _run(capsys, ["submit", "--predictions", str(preds), "--out", str(world["root"] / "x.jsonl"),
                               "--format", "rxr"] + common)
    assert rc == 2 and "not an RxR instruction_id" in err and not (world["root"] / "x.jsonl").exists()


# ----------------------------------------------------------------------------------------
# Real data


def test_real_shortest_baseline(shared_connectivity, shared_r2r_train):
    eps = read_r2r(shared_r2r_train)[:300]
    rows = run_baseline("shortest", eps, shared_connectivity)
    s = score_paths(paths_of(predictions_from_dicts(rows)), eps, GraphStore(shared_connectivity)).summary()
    assert s["episodes"] == 300 and s["success"] == 1.0 and s["spl"] == 1.0


def test_real_submit_check_r2r_test(shared_connectivity, shared_r2r_test, tmp_path, capsys):
    items = json.loads(Path(shared_r2r_test).read_text())
    rows = [{"instr_id": f"{it['path_id']}_{k}", "trajectory": [[it["path"][0], it["heading"], 0.0]]}
            for it in items for k in range(len(it["instructions"]))]
    assert len(rows) == 4173
    common = ["--split-file", str(shared_r2r_test), "--connectivity", str(shared_connectivity)]
    rc, out, _ = _run(capsys, ["submit", "--check", str(_preds(tmp_path / "stop.json", rows))] + common)
    assert rc == 0 and "4173 trajectories" in out
    dropped = rows.pop(1234)["instr_id"]
    rc, _, err = _run(capsys, ["submit", "--check", str(_preds(tmp_path / "short.json", rows))] + common)
    assert rc == 2 and f"instr_id {dropped}: missing" in err and "1 problem" in err


def test_checkpoint_eval_and_submit(tmp_path, capsys):
    """An (untrained) follower checkpoint through `eval --checkpoint` and `submit --checkpoint`."""
    pytest.importorskip("vln_clip.agents.inference")
    from agents_world import make_plus_world

    from vln_clip.agents.checkpoint import save_checkpoint
    from vln_clip.agents.config import TrainConfig
    from vln_clip.agents.inference import predict_trajectories
    from vln_clip.agents.trainer import Run

    world = make_plus_world(tmp_path / "plus")
    cfg = TrainConfig.preset("synthetic", encoder="test_enc", batch_size=16, hidden_dim=32, embed_dim=16,
                             angle_embed_dim=16, min_word_count=1, data_dir=str(world), out_dir=str(tmp_path / "o"))
    ckpt = save_checkpoint(tmp_path / "f.pt", Run(cfg).state())
    feats = world / "features" / "test_enc.h5"
    common = ["--split", "val_unseen", "--data-dir", str(world), "--connectivity", str(world / "connectivity"),
              "--features", str(feats)]
    rc, out, _ = _run(capsys, ["eval", "--checkpoint", str(ckpt), "--json"] + common)
    assert rc == 0
    split = world / "r2r" / "R2R_val_unseen.json"
    rows = predict_trajectories(ckpt, split, world / "connectivity", feats)
    direct = score_paths(paths_of(predictions_from_dicts(rows)), read_r2r(split), GraphStore(world / "connectivity"))
    assert json.loads(out) == pytest.approx(direct.summary())
    sub = tmp_path / "sub.json"
    rc, _, _ = _run(capsys, ["submit", "--checkpoint", str(ckpt), "--out", str(sub)] + common)
    assert rc == 0 and [r["instr_id"] for r in json.loads(sub.read_text())] == [e.instr_id for e in read_r2r(split)]
