"""The demo end to end on a reduced world (tiny faces and images, a few iterations).

The first run goes through the library (:func:`vln_clip.demo.run_demo`, no argv), the second
through `vln-clip demo`, which must reuse every stage and print the same summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vln_clip.cli.main import main
from vln_clip.demo import DemoConfig, comparison_line, run_demo

# 3 houses is the minimum (train, val_unseen, test); both followers are trained (side by side
# in two processes on a 2-core machine) so that the paired comparison is exercised too.
REDUCED = dict(houses=3, iters=3, batch_size=8, hidden_dim=16, max_actions=8, face_size=16, image_size=32,
               pca_dim=8, paths_per_house=6, progress=False)
REDUCED_ARGV = ["--houses", "3", "--iters", "3", "--batch-size", "8", "--hidden-dim", "16", "--max-actions", "8",
                "--face-size", "16", "--image-size", "32", "--pca-dim", "8", "--paths-per-house", "6",
                "--no-progress"]


@pytest.mark.slow
def test_reduced_demo_end_to_end_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    lines: list[str] = []
    summary = run_demo(DemoConfig(out=out, **REDUCED), echo=lines.append)
    agents = summary["agents"]
    assert set(agents) == {"follower", "follower_no_vision", "random", "shortest"}
    for m in agents.values():
        for key in ("success", "spl", "ndtw"):
            assert 0.0 <= m[key] <= 1.0
        assert isinstance(m["episodes"], int)  # a count, not 120.0
    assert agents["shortest"]["success"] == 1.0 and agents["shortest"]["spl"] == pytest.approx(1.0)
    episodes = agents["shortest"]["episodes"]
    assert all(m["episodes"] == episodes > 0 for m in agents.values())
    # the paired comparison agrees with the two followers' own scores
    cmp = summary["comparison"]
    assert cmp["instructions"] == episodes
    assert cmp["success"]["a"] == pytest.approx(100 * agents["follower"]["success"], abs=0.01)
    assert cmp["success"]["b"] == pytest.approx(100 * agents["follower_no_vision"]["success"], abs=0.01)
    lo, hi = cmp["success"]["ci95"]
    assert lo <= cmp["success"]["a_minus_b"] <= hi
    assert "95% CI" in comparison_line(cmp)
    # random weights are said plainly, on screen and in the metadata
    assert any("RANDOM weights" in ln for ln in lines)
    meta = json.loads((out / "demo.json").read_text())
    assert meta["weights"] == "random" and meta["agents"] == agents
    # the features the followers read are the PCA store fitted on the training houses
    assert meta["files"]["features"].endswith("clip_vit_b32_pca8.h5")
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

    # the command line reuses every stage and prints the same summary
    rc = main(["demo", "--out", str(out), *REDUCED_ARGV])
    text = capsys.readouterr().out
    assert rc == 0
    assert text.count("reused from") == 8  # world, features, pca, train, train_no_vision, eval, submit, rollout
    assert "vision vs vision-free (paired" in text
    assert json.loads([ln for ln in text.splitlines() if ln.strip()][-1]) == agents
