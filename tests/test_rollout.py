"""`vln-clip rollout`: scripted interactive driving, undo, policies, and the pictures' contents."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import write_connectivity, write_r2r
from vln_clip.cli.main import main
from vln_clip.envs import NavEnv
from vln_clip.envs import topdown as td
from vln_clip.episodes import read_episodes
from vln_clip.graph import GraphStore
from vln_clip.rollout import EpisodePlayer, RandomActor, TeacherActor
from vln_clip.viz.terminal import play
from vln_clip.viz.images import read_gif_frames

SCAN = "gridScan"


def grid_world(root: Path) -> tuple[Path, Path, list[str]]:
    """3x3 grid, 2 m apart (vp = 3*row + col, x = 2*col, y = 2*row); goal at the far corner.

    The reference path goes along the bottom row then up the right column: 0 1 2 5 8.
    """
    pts = [(2.0 * (i % 3), 2.0 * (i // 3), 1.5) for i in range(9)]
    edges = [(i, i + 1) for i in range(9) if i % 3 != 2] + [(i, i + 3) for i in range(6)]
    ids = write_connectivity(root / "conn", SCAN, pts, edges)
    split = write_r2r(root / "R2R_val.json", [
        {"path_id": 7, "scan": SCAN, "path": [ids[0], ids[1], ids[2], ids[5], ids[8]], "heading": 0.0,
         "instructions": ["walk right past the sofa then turn left and stop at the plant", "go to the corner"]},
    ])
    return root / "conn", split, ids


@pytest.fixture()
def world(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    return grid_world(tmp_path)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, world, stdin: str, out: Path,
            *extra: str) -> tuple[int, dict, str]:
    conn, split, _ = world
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(["rollout", "--split-file", str(split), "--connectivity", str(conn), "--instr-id", "7_0",
               "--out", str(out), *extra])
    text = capsys.readouterr().out
    return rc, json.loads((out / "rollout.json").read_text()), text


# ----------------------------------------------------------------------------------------
# Driving


def test_scripted_human_moves_then_stops(monkeypatch, capsys, world, tmp_path):
    """Pick candidate 2 at the start (east: 90 deg right of heading 0), then stop."""
    conn, split, ids = world
    rc, rep, text = run_cli(monkeypatch, capsys, world, "2\ns\n", tmp_path / "out", "--interactive")
    assert rc == 0
    first = rep["steps"][0]
    # At vp0 facing north (+y) the neighbours are vp3 (ahead) and vp1 (90 deg right).
    by_number = {c["number"]: c for c in first["candidates"]}
    assert by_number[2]["viewpoint"] == ids[1] and by_number[2]["heading_deg"] == pytest.approx(90.0)
    assert by_number[1]["viewpoint"] == ids[3] and by_number[1]["heading_deg"] == pytest.approx(0.0)
    assert [t[0] for t in rep["trajectory"]] == [ids[0], ids[1]]
    assert [s["actor"] for s in rep["steps"]] == ["human", "human"]
    assert rep["ended_by"] == "stop"
    assert rep["steps"][0]["distance_to_goal"] == pytest.approx(8.0)
    assert rep["steps"][1]["distance_to_goal"] == pytest.approx(6.0)
    m = rep["metrics"]
    assert m["success"] == 0.0 and m["nav_error"] == pytest.approx(6.0)
    assert m["trajectory_length"] == pytest.approx(2.0)
    assert "episode metrics" in text and "chose STOP" in text


def test_undo_then_teacher_reaches_goal(monkeypatch, capsys, world, tmp_path):
    """A wrong move undone leaves no trace; Enter lets the teacher finish with success."""
    conn, split, ids = world
    script = "1\n1\nu\nu\n" + "\n" * 8
    rc, rep, text = run_cli(monkeypatch, capsys, world, script, tmp_path / "out", "--interactive")
    assert rc == 0
    assert text.count("undone") == 2
    assert all(s["actor"] == "teacher" for s in rep["steps"])
    assert rep["ended_by"] == "stop"
    assert rep["metrics"]["success"] == 1.0 and rep["metrics"]["spl"] == pytest.approx(1.0)
    assert rep["trajectory"][-1][0] == ids[8]
    assert len(rep["steps"]) == 5  # four 2 m moves + STOP
    # distances to goal along the way: 8, 6, 4, 2, 0
    assert [s["distance_to_goal"] for s in rep["steps"]] == pytest.approx([8, 6, 4, 2, 0])


def test_end_of_input_quits_and_bad_input_is_explained(monkeypatch, capsys, world, tmp_path):
    rc, rep, text = run_cli(monkeypatch, capsys, world, "9\nfoo\n1\n", tmp_path / "out", "--interactive")
    assert rc == 0
    assert "not understood: '9'" in text and "not understood: 'foo'" in text
    assert rep["ended_by"] == "quit"
    assert len(rep["steps"]) == 1 and rep["steps"][0]["actor"] == "human"
    assert len(rep["trajectory"]) == 2


def test_undo_after_stop_and_continue(tmp_path):
    conn, split, ids = grid_world(tmp_path)
    env = NavEnv(conn, split)
    ep = read_episodes(split)[0]
    player = EpisodePlayer(env, ep, GraphStore(conn)[SCAN])
    lines = iter(["s", "u", "2", "s", "q"])
    from rich.console import Console

    result = play(player, TeacherActor(), Console(file=io.StringIO()), interactive=True,
                  input_fn=lambda prompt: next(lines))
    assert result.ended_by == "stop"
    assert result.viewpoints == [ids[0], ids[1]]
    assert [s.actor for s in result.steps] == ["human", "human"]


def test_random_policy_is_seeded_and_legal(tmp_path):
    conn, split, ids = grid_world(tmp_path)
    graph = GraphStore(conn)[SCAN]
    ep = read_episodes(split)[0]
    runs = []
    for _ in range(2):
        env = NavEnv(conn, split, max_steps=10)
        from rich.console import Console

        res = play(EpisodePlayer(env, ep, graph, max_steps=10), RandomActor(seed=3), Console(file=io.StringIO()))
        runs.append(res.viewpoints)
        for a, b in zip(res.viewpoints, res.viewpoints[1:]):
            assert graph.has_edge(a, b)
        assert len(res.steps) <= 10
        assert res.ended_by in ("stop", "max_steps")
    assert runs[0] == runs[1]


def test_agent_policy_without_checkpoint_is_an_error(monkeypatch, capsys, world, tmp_path):
    conn, split, _ = world
    rc = main(["rollout", "--split-file", str(split), "--connectivity", str(conn), "--instr-id", "7_0",
               "--policy", "agent"])
    assert rc == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_unknown_instr_id_names_the_file(capsys, world):
    conn, split, _ = world
    rc = main(["rollout", "--split-file", str(split), "--connectivity", str(conn), "--instr-id", "99_0"])
    err = capsys.readouterr().err
    assert rc == 2 and "99_0" in err and "7_0" in err


# ----------------------------------------------------------------------------------------
# Pictures


def _segment_pixels(p: np.ndarray, q: np.ndarray, margin: float = 12.0) -> list[tuple[int, int]]:
    """Pixels on the straight segment p -> q, away from both end markers."""
    length = float(np.linalg.norm(q - p))
    out = []
    for t in np.linspace(margin / length, 1 - margin / length, 15):
        c, r = p + t * (q - p)
        out.append((int(round(r)), int(round(c))))
    return out


def test_topdown_png_shows_agent_path_start_and_goal(monkeypatch, capsys, world, tmp_path):
    from PIL import Image

    conn, split, ids = world
    # human: north twice (vp0 -> vp3 -> vp6), then stop: an off-reference path ending away from the goal
    rc, rep, _ = run_cli(monkeypatch, capsys, world, "1\n1\ns\n", tmp_path / "out", "--interactive")
    assert [t[0] for t in rep["trajectory"]] == [ids[0], ids[3], ids[6]]
    img = np.asarray(Image.open(tmp_path / "out" / "topdown.png").convert("RGB"))
    graph = GraphStore(conn)[SCAN]
    pix, _ = td.topdown_pixels(graph, size=img.shape[0])
    idx = graph.index
    for a, b in [(ids[0], ids[3]), (ids[3], ids[6])]:  # agent path segments
        for r, c in _segment_pixels(pix[idx[a]], pix[idx[b]]):
            assert tuple(img[r, c]) == td.AGENT_PATH, (a, b, r, c, img[r, c])
    for a, b in [(ids[1], ids[2]), (ids[2], ids[5])]:  # reference only
        for r, c in _segment_pixels(pix[idx[a]], pix[idx[b]]):
            assert tuple(img[r, c]) == td.REFERENCE
    for a, b in [(ids[4], ids[7])]:  # an edge nobody walked
        assert all(tuple(img[r, c]) != td.AGENT_PATH for r, c in _segment_pixels(pix[idx[a]], pix[idx[b]]))
    gc, gr = np.round(pix[idx[ids[8]]]).astype(int)
    assert tuple(img[gr, gc]) == td.GOAL
    sc, sr = np.round(pix[idx[ids[0]]]).astype(int)
    assert tuple(img[sr, sc]) == td.START
    # the agent's final position carries the current-position disc
    cc, cr = np.round(pix[idx[ids[6]]]).astype(int)
    assert tuple(img[cr, cc]) == td.CURRENT
    # and no agent-path colour anywhere in the right column where it never went
    right_col = int(round(pix[idx[ids[2]]][0]))
    assert not np.any(np.all(img[:, right_col - 1:right_col + 2] == td.AGENT_PATH, axis=-1))


def test_gif_has_one_frame_per_step_growing_path(monkeypatch, capsys, world, tmp_path):
    conn, split, ids = world
    rc, rep, _ = run_cli(monkeypatch, capsys, world, "1\n1\ns\n", tmp_path / "out", "--interactive")
    frames = read_gif_frames(tmp_path / "out" / "topdown.gif")
    assert len(frames) == len(rep["steps"]) == 3
    graph = GraphStore(conn)[SCAN]
    pix, _ = td.topdown_pixels(graph, size=frames[0].shape[0])
    idx = graph.index
    seg1 = _segment_pixels(pix[idx[ids[0]]], pix[idx[ids[3]]])
    seg2 = _segment_pixels(pix[idx[ids[3]]], pix[idx[ids[6]]])

    def red(frame, seg):
        return np.mean([tuple(frame[r, c]) == td.AGENT_PATH for r, c in seg])

    assert red(frames[0], seg1) == 1.0 and red(frames[0], seg2) == 0.0  # after step 0: one move
    assert red(frames[1], seg1) == 1.0 and red(frames[1], seg2) == 1.0  # after step 1: two moves
    assert red(frames[2], seg2) == 1.0  # the stop keeps the path


def test_html_report_embeds_images_and_lists_every_step(monkeypatch, capsys, world, tmp_path):
    conn, split, ids = world
    rc, rep, _ = run_cli(monkeypatch, capsys, world, "2\nu\n" + "\n" * 8, tmp_path / "out", "--interactive")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "src='http" not in html and 'src="http' not in html  # nothing linked: self-contained
    png = re.search(r"id='topdown' alt='[^']*' src='data:image/png;base64,([^']+)'", html).group(1)
    assert base64.b64decode(png) == (tmp_path / "out" / "topdown.png").read_bytes()
    gif = re.search(r"src='data:image/gif;base64,([^']+)'", html).group(1)
    assert base64.b64decode(gif) == (tmp_path / "out" / "topdown.gif").read_bytes()
    rows = re.findall(r"<tr class='step' data-step='(\d+)'>", html)
    assert rows == [str(s["step"]) for s in rep["steps"]] == ["0", "1", "2", "3", "4"]
    for s in rep["steps"]:
        assert s["viewpoint"] in html
    assert "success" in html and "STOP" in html


def _colour_of_direction(d: np.ndarray) -> np.ndarray:
    return 127.5 * (d + 1.0)


def test_view_strip_shows_the_view_faced_at_each_step(monkeypatch, capsys, world, tmp_path):
    """Skyboxes painted by world direction: the centre of each thumbnail has the faced direction's colour."""
    from PIL import Image

    from vln_clip.features.views import skybox_from_function, write_skybox

    conn, split, ids = world
    sky = tmp_path / "skyboxes"
    for vp in ids:
        faces = skybox_from_function(_colour_of_direction, 32, rotation=np.eye(3))
        write_skybox(sky / SCAN / "matterport_skybox_images", vp, faces, quality=100)
    rc, rep, _ = run_cli(monkeypatch, capsys, world, "2\n1\ns\n", tmp_path / "out", "--interactive",
                         "--skybox-dir", str(sky))
    strip = np.asarray(Image.open(tmp_path / "out" / "views.png").convert("RGB")).astype(float)
    # steps: east (view 15 = heading 90), then north (view 12 = heading 0), then stop facing north
    expected_headings = [90.0, 0.0, 0.0]
    assert len(rep["steps"]) == 3
    from vln_clip.viz.pictures import VIEW_SIZE

    w, h = VIEW_SIZE
    for k, deg in enumerate(expected_headings):
        col = k * (w + 4) + w // 2
        centre = strip[h // 2 - 2:h // 2 + 3, col - 2:col + 3].reshape(-1, 3).mean(0)
        hd = math.radians(deg)
        want = _colour_of_direction(np.array([math.sin(hd), math.cos(hd), 0.0]))
        assert np.abs(centre - want).max() < 14, (k, centre, want)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "id='views'" in html and "views rendered from skybox" in html


# ----------------------------------------------------------------------------------------
# A real (briefly trained) follower


@pytest.fixture(scope="module")
def follower_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from agents_world import make_plus_world

    from vln_clip.agents.config import TrainConfig
    from vln_clip.agents.trainer import train

    root = make_plus_world(tmp_path_factory.mktemp("plus"), train_scans=2)
    cfg = TrainConfig.preset("synthetic", encoder="test_enc", data_dir=str(root), out_dir=str(root / "run"),
                             iters=1, batch_size=4, eval_every=1, save_every=1, log_every=1, min_word_count=1,
                             eval_max_episodes=4)
    result = train(cfg, progress=False)
    return root, result.last_checkpoint


def first_id(root: Path) -> str:
    return read_episodes(root / "r2r" / "R2R_val_unseen.json")[0].instr_id


def test_agent_rollout_shows_its_probabilities_and_attention(monkeypatch, capsys, follower_run, tmp_path):
    root, ckpt = follower_run
    out = tmp_path / "out"
    rc = main(["rollout", "--checkpoint", str(ckpt), "--split-file", str(root / "r2r" / "R2R_val_unseen.json"),
               "--connectivity", str(root / "connectivity"), "--instr-id", first_id(root), "--out", str(out),
               "--max-steps", "6"])
    text = capsys.readouterr().out
    assert rc == 0, text
    rep = json.loads((out / "rollout.json").read_text())
    assert "randomly initialised" in text  # the store's weights are recorded as random: said plainly
    for s in rep["steps"]:
        assert s["actor"] == "agent"
        probs = [c["prob"] for c in s["candidates"]] + [s["stop_prob"]]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        actions = [c["action"] for c in s["candidates"]]
        chosen = actions.index(s["action"]) if s["action"] in actions else len(actions)
        assert s["action_label"] == "STOP" or chosen < len(actions)
        assert int(np.argmax(probs)) == chosen  # greedy: the chosen action is the most probable one
    html = (out / "report.html").read_text()
    assert "title=\"attention" in html  # instruction words shaded by attention


def test_overruled_agent_follows_the_path_really_taken(follower_run):
    """After a person overrules the agent, its next probabilities are those of the policy told so."""
    from rich.console import Console

    from vln_clip.agents.inference import load_policy
    from vln_clip.rollout import open_rollout

    root, ckpt = follower_run
    split, conn = root / "r2r" / "R2R_val_unseen.json", root / "connectivity"
    iid = first_id(root)
    setup = open_rollout(split, conn, iid, str(ckpt), helper="agent", max_steps=6)
    first = setup.player.current
    agent_choice = setup.player.agent_decision().action
    human = next(c for c in first.candidates if c.action != agent_choice)
    lines = iter([str(first.candidates.index(human) + 1), "q"])
    res = play(setup.player, setup.actor, Console(file=io.StringIO()), interactive=True,
               input_fn=lambda p: next(lines))
    assert res.steps[0].actor == "human" and res.steps[0].action == human.action
    # by hand: the same policy, same env, overruled with the same action
    policy = load_policy(ckpt)
    env = NavEnv(conn, split, vocab=policy.vocab, features=root / "features" / "test_enc.h5",
                 max_instr_len=policy.max_instr_len)
    obs, info = env.reset(options={"instr_id": iid})
    policy.reset(obs)
    policy.step(obs)
    policy.overrule(human.action)
    obs, *_ = env.step(human.action)
    expected = policy.step(obs).probs
    shown = setup.player.agent_decision().probs
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    # and undo restores the first step's probabilities exactly
    setup.player.undo()
    np.testing.assert_allclose([c.prob for c in setup.player.current.candidates],
                               [c.prob for c in first.candidates], atol=1e-6)


def test_policy_names_have_one_home():
    """--policy's choices and open_rollout's helpers are vln_clip.actors' names, not a copy."""
    import argparse

    from vln_clip.actors import HELPERS, POLICIES, resolve_policy
    from vln_clip.errors import DataError
    from vln_clip.cli import rollout as cli_rollout

    parser = argparse.ArgumentParser()
    cli_rollout.register(parser.add_subparsers())
    action = next(a for a in parser._subparsers._group_actions[0].choices["rollout"]._actions if a.dest == "policy")
    assert tuple(action.choices) == POLICIES == ("human",) + HELPERS
    assert resolve_policy(None, False, None) == ("teacher", False, "teacher")
    assert resolve_policy(None, False, "f.pt") == ("agent", False, "agent")
    assert resolve_policy("human", False, "f.pt") == ("human", True, "agent")
    with pytest.raises(DataError, match="--checkpoint"):
        resolve_policy("agent", False, None)
    with pytest.raises(DataError, match="unknown policy"):
        resolve_policy("robot", False, None)
