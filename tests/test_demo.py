"""`vln-clip demo` end to end on a reduced world (tiny faces and images, a few iterations)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vln_clip.cli.main import main

# 3 houses is the minimum (train, val_unseen, test); the vision-free control is skipped to stay
# well under two minutes (it is the same training call with no_vision=True).
REDUCED = ["--houses", "3", "--iters", "3", "--batch-size", "8", "--max-actions", "8", "--face-size", "16",
           "--image-size", "32", "--paths-per-house", "6", "--no-vision-free", "--no-progress"]


@pytest.mark.slow
def test_reduced_demo_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), *REDUCED])
    text = capsys.readouterr().out
    assert rc == 0
    lines = [ln for ln in text.splitlines() if ln.strip()]
    agents = json.loads(lines[-1])  # the last line is the JSON summary
    assert set(agents) == {"follower", "random", "shortest"}
    for m in agents.values():
        for key in ("success", "spl", "ndtw"):
            assert 0.0 <= m[key] <= 1.0
    assert agents["shortest"]["success"] == 1.0 and agents["shortest"]["spl"] == pytest.approx(1.0)
    episodes = agents["shortest"]["episodes"]
    assert all(m["episodes"] == episodes > 0 for m in agents.values())
    # random weights are said plainly, on screen and in the metadata
    assert "RANDOM weights" in text
    meta = json.loads((out / "demo.json").read_text())
    assert meta["weights"] == "random" and meta["agents"] == agents
    # the submission covers every test instruction in the R2R leaderboard format
    test_split = json.loads((out / "world" / "r2r" / "R2R_test.json").read_text())
    want = {f"{p['path_id']}_{k}" for p in test_split for k in range(len(p["instructions"]))}
    sub = json.loads(Path(meta["files"]["submission"]).read_text())
    assert {r["instr_id"] for r in sub} == want
    start = {str(p["path_id"]): p["path"][0] for p in test_split}
    assert all(r["trajectory"][0][0] == start[r["instr_id"].rsplit("_", 1)[0]] for r in sub)
    # the pictured rollout exists and its HTML embeds the map
    report = Path(meta["files"]["rollout"]["report_html"]).read_text()
    assert "data:image/png;base64," in report and "data:image/gif;base64," in report
    assert (out / "rollout" / "views.png").exists()  # synthetic skyboxes give the view strip

    # a second run reuses every stage and prints the same summary
    rc = main(["demo", "--out", str(out), *REDUCED])
    text2 = capsys.readouterr().out
    assert rc == 0
    assert text2.count("reused from") == 6  # world, features, train, eval, submit, rollout
    assert json.loads([ln for ln in text2.splitlines() if ln.strip()][-1]) == agents
