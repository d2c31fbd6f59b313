"""NavEnv, the panoramic candidate tables, teachers and top-down maps (hand-computed worlds)."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vln_clip.envs  # noqa: F401  (registers the ids)
from env_worlds import DEG, fan_world, two_scan_world, write_features, write_rxr
from helpers import line_world, write_connectivity, write_r2r
from vln_clip.envs import NavEnv, Simulator, draw_topdown, run_shortest_agent, scan_panorama, teacher_table
from vln_clip.envs import topdown
from vln_clip.envs.panorama import compute_scan_panorama
from vln_clip.episodes import read_r2r
from vln_clip.errors import DataError
from vln_clip.geometry import angle_feature
from vln_clip.graph import GraphStore


def _sim(root: Path, batch: int = 1) -> Simulator:
    sim = Simulator()
    sim.setNavGraphPath(str(root))
    sim.setRenderingEnabled(False)  # MatterSim renders by default; these tests use the graphs only
    sim.setCameraResolution(640, 480)
    sim.setCameraVFOV(math.radians(60))
    sim.setDiscretizedViewingAngles(True)
    sim.setBatchSize(batch)
    sim.initialize()
    return sim


def envdrop_sweep(sim: Simulator, scan: str, vp: str) -> dict[str, dict]:
    """EnvDrop's make_candidate loop, literally, against the MatterSim-compatible simulator."""
    adj: dict[str, dict] = {}
    for ix in range(36):
        if ix == 0:
            sim.newEpisode([scan], [vp], [0.0], [math.radians(-30)])
        elif ix % 12 == 0:
            sim.makeAction([0], [1.0], [1.0])
        else:
            sim.makeAction([0], [1.0], [0.0])
        s = sim.getState()[0]
        for j, loc in enumerate(s.navigableLocations[1:]):
            d = math.sqrt(loc.rel_heading**2 + loc.rel_elevation**2)
            if loc.viewpointId not in adj or d < adj[loc.viewpointId]["d"]:
                adj[loc.viewpointId] = {"d": d, "view": ix, "idx": j + 1, "heading": s.heading + loc.rel_heading,
                                        "elevation": s.elevation + loc.rel_elevation}
    return adj


def _assert_matches_sweep(root: Path, scan: str) -> None:
    graph = GraphStore(root)[scan]
    pano = compute_scan_panorama(graph)
    sim = _sim(root)
    for i, vp in enumerate(graph.viewpoints):
        ref = envdrop_sweep(sim, scan, vp)
        got = [graph.viewpoints[k] for k in pano.candidates(i)]
        assert got == list(ref), f"{scan}/{vp}: candidate order"
        for k, v in enumerate(got):
            assert pano.view[i, k] == ref[v]["view"]
            assert pano.nav_index[i, k] == ref[v]["idx"]
            assert pano.heading[i, k] == pytest.approx(ref[v]["heading"], abs=1e-12)
            assert pano.elevation[i, k] == pytest.approx(ref[v]["elevation"], abs=1e-12)


# -- panoramic candidates ---------------------------------------------------------------------

def test_fan_world_candidates_hand_computed(tmp_path: Path) -> None:
    ids = fan_world(tmp_path)
    graph = GraphStore(tmp_path)["fan"]
    pano = scan_panorama(graph)
    assert scan_panorama(graph) is pano  # cached per graph
    centre = graph.idx(ids[0])
    assert [graph.viewpoints[k] for k in pano.candidates(centre)] == [ids[1], ids[4], ids[2], ids[3]]
    assert pano.view[centre, :4].tolist() == [12, 26, 15, 19]
    assert (np.degrees(pano.heading[centre, :4]) + 180) % 360 - 180 == pytest.approx([0, 60, 90, -160], abs=1e-4)
    assert np.degrees(pano.elevation[centre, :4]) == pytest.approx([0, 25, 0, 0], abs=1e-4)
    # agent looking at view 15 (heading 90 deg): A is 90 deg to the left, D 30 deg left and 25 up
    ang = pano.angle_features(centre, 15)
    assert ang.shape == (4, 128)
    assert ang[0, :4] == pytest.approx([-1, 0, 0, 1], abs=1e-6)
    assert ang[1, :4] == pytest.approx([-0.5, math.sqrt(3) / 2, math.sin(25 * DEG), math.cos(25 * DEG)], abs=1e-6)
    assert ang[3, :4] == pytest.approx([math.sin(110 * DEG), math.cos(110 * DEG), 0, 1], abs=1e-6)
    assert np.array_equal(ang[:, 4:8], ang[:, :4])  # repeated 32 times
    _assert_matches_sweep(tmp_path, "fan")


def test_tables_match_literal_envdrop_sweep_on_real_scans(shared_connectivity: Path) -> None:
    for scan in ("17DRP5sb8fy", "8194nk5LbLH"):
        _assert_matches_sweep(shared_connectivity, scan)


def test_real_graphs_fit_default_candidates_and_teacher_is_next_step(shared_connectivity: Path) -> None:
    store = GraphStore(shared_connectivity)
    worst = 0
    for scan in store.scans:
        g = store[scan]
        pano = scan_panorama(g)
        worst = max(worst, pano.max_candidates)
        assert (pano.num_candidates == g.adjacency.sum(1)).all(), scan  # every neighbour is a candidate
        tab = teacher_table(g, pano)
        reach = (g.next_hop >= 0) & ~np.eye(len(g), dtype=bool)
        i, j = np.nonzero(reach)
        chosen = pano.neighbour[i, tab[i, j]]
        assert np.array_equal(chosen, g.next_hop[i, j]), scan
        assert (np.diag(tab) == pano.num_candidates).all()
    assert worst == 13  # + STOP = 14 <= the default 16


# -- NavEnv semantics -------------------------------------------------------------------------

def _line_env(tmp_path: Path, **kw) -> tuple[NavEnv, list[str]]:
    ids = line_world(tmp_path / "c", n=5, spacing=1.5)
    split = write_r2r(tmp_path / "R2R_x.json", [
        {"path_id": 7, "scan": "lineScan", "path": ids[:5], "heading": 0.0, "instructions": ["go north", "walk ahead"]}])
    return NavEnv(tmp_path / "c", split, **kw), ids


def test_stop_convention_teacher_and_rewards(tmp_path: Path) -> None:
    env, ids = _line_env(tmp_path)
    obs, info = env.reset()
    assert info["instr_id"] == "7_0" and info["viewpoint"] == ids[0]
    assert int(obs["num_candidates"]) == 1 and obs["candidate_mask"].tolist()[:3] == [1, 1, 0]
    assert info["action_mask"].sum() == 2 and info["candidate_viewpoints"] == [ids[1]]
    assert info["teacher"] == 0 and info["distance_to_goal"] == pytest.approx(6.0)
    assert obs["candidates"][1].sum() == 0  # STOP row is zeros
    assert int(obs["view_index"]) == 12
    obs, r, term, trunc, info = env.step(0)  # north: 1.5 m closer
    assert r == 1.0 and not term and not trunc
    # at vp1 the sweep sees vp2 (north, view 0) before vp0 (south, first visible at view 5)
    assert info["candidate_viewpoints"] == [ids[2], ids[0]] and int(obs["num_candidates"]) == 2
    obs, r, *_ , info = env.step(1)  # back south: farther
    assert r == -1.0 and info["viewpoint"] == ids[0]
    assert info["heading"] == pytest.approx(math.pi) and int(obs["view_index"]) == 18  # faces south, level
    env.step(0)
    obs, r, term, trunc, info = env.step(0)  # vp2: exactly 3.0 m from the goal
    assert info["distance_to_goal"] == pytest.approx(3.0)
    obs, r, term, trunc, info = env.step(2)  # STOP at 3.0 m: strict < 3 fails
    assert r == -2.0 and term and not trunc and info["stopped"] and not info["success"]
    assert info["teacher"] == -1
    assert [p[0] for p in info["trajectory"]] == [ids[0], ids[1], ids[0], ids[1], ids[2]]
    with pytest.raises(RuntimeError):
        env.step(0)


def test_teacher_rollout_success_and_stop_bonus(tmp_path: Path) -> None:
    env, ids = _line_env(tmp_path)
    obs, info = env.reset(options={"instr_id": "7_1"})
    rewards = []
    while True:
        obs, r, term, trunc, info = env.step(info["teacher"])
        rewards.append(r)
        if term or trunc:
            break
    assert rewards == [1, 1, 1, 1, 2] and info["success"] and term
    assert [p[0] for p in info["trajectory"]] == ids[:5]


def test_any_action_past_stop_is_stop_and_strict_raises(tmp_path: Path) -> None:
    env, _ = _line_env(tmp_path)
    env.reset()
    _, r, term, _, info = env.step(15)
    assert term and r == -2.0 and len(info["trajectory"]) == 1
    strict, _ = _line_env(tmp_path / "s", strict=True)
    strict.reset()
    with pytest.raises(ValueError, match="not valid"):
        strict.step(5)


def test_truncation_after_max_steps_without_stop_bonus(tmp_path: Path) -> None:
    env, ids = _line_env(tmp_path, max_steps=3)
    env.reset()
    out = [env.step(a) for a in (0, 1, 0)]
    assert [o[1] for o in out] == [1, -1, 1]
    assert out[-1][3] and not out[-1][2] and not out[-1][4]["stopped"]
    assert out[1][3] is False


def test_test_split_without_goal_is_playable(tmp_path: Path) -> None:
    _, train, test = two_scan_world(tmp_path)
    env = NavEnv(tmp_path / "connectivity", test)
    obs, info = env.reset()
    assert info["teacher"] == -1 and math.isinf(info["distance_to_goal"])
    _, r, *_ , info = env.step(0)
    assert r == 0.0 and info["teacher"] == -1
    _, r, term, _, info = env.step(int(info["action_mask"].sum()) - 1)
    assert r == 0.0 and term and "success" not in info


def test_reset_order_shuffle_seed_and_instr_id(tmp_path: Path) -> None:
    _, train, _ = two_scan_world(tmp_path)
    env = NavEnv(tmp_path / "connectivity", train)
    seen = [env.reset()[1]["instr_id"] for _ in range(6)]
    assert seen == ["1_0", "1_1", "2_0", "3_0", "4_0", "1_0"]
    assert env.reset(options={"instr_id": "3_0"})[1]["scan"] == "lineScan"
    with pytest.raises(DataError, match="unknown instr_id"):
        env.reset(options={"instr_id": "99_0"})
    sh = NavEnv(tmp_path / "connectivity", train, shuffle=True)
    a = [sh.reset(seed=5)[1]["instr_id"]] + [sh.reset()[1]["instr_id"] for _ in range(4)]
    b = [sh.reset(seed=5)[1]["instr_id"]] + [sh.reset()[1]["instr_id"] for _ in range(4)]
    assert a == b and sorted(a) == sorted(seen[:5])
    orders = {tuple([sh.reset(seed=s)[1]["instr_id"]] + [sh.reset()[1]["instr_id"] for _ in range(4)])
              for s in range(6)}
    assert len(orders) > 1


def test_check_env_with_and_without_features(tmp_path: Path) -> None:
    vps, train, test = two_scan_world(tmp_path)
    feats = write_features(tmp_path / "f.h5", vps)
    for f, split in ((None, train), (feats, train), (feats, test)):
        env = gym.make("vln_clip/R2R-v0", connectivity_dir=tmp_path / "connectivity", episodes=split, features=f,
                       render_mode="rgb_array")
        check_env(env.unwrapped)
        obs, _ = env.reset()
        assert obs in env.observation_space


def test_candidate_visual_features_come_from_their_view(tmp_path: Path) -> None:
    vps, train, _ = two_scan_world(tmp_path)
    feats = write_features(tmp_path / "f.h5", vps, dim=8)
    env = NavEnv(tmp_path / "connectivity", train, feats)
    obs, info = env.reset(options={"instr_id": "2_0"})
    graph = env.task.graphs["gridScan"]
    pano = env.task.panos["gridScan"]
    ix = graph.idx(info["viewpoint"])
    n = int(obs["num_candidates"])
    assert obs["panorama"].shape == (36, 8) and obs["candidates"].shape == (16, 136)
    assert obs["panorama"][:, 0].tolist() == list(range(36))
    assert obs["candidates"][:n, 0].tolist() == pano.view[ix, :n].tolist()  # channel 0 = view index
    assert np.array_equal(obs["candidates"][:n, :8], obs["panorama"][pano.view[ix, :n]])
    ang = angle_feature(pano.heading[ix, :n] - (int(obs["view_index"]) % 12) * 30 * DEG, pano.elevation[ix, :n])
    assert np.allclose(obs["candidates"][:n, 8:], ang)
    assert np.all(obs["candidates"][n:] == 0)


def test_bad_inputs(tmp_path: Path) -> None:
    vps, train, _ = two_scan_world(tmp_path)
    conn = tmp_path / "connectivity"
    missing = write_features(tmp_path / "m.h5", vps, skip=("gridScan", vps["gridScan"][5]))
    with pytest.raises(DataError, match=f"gridScan viewpoint {vps['gridScan'][5]}"):
        NavEnv(conn, train, missing)
    ok = write_features(tmp_path / "ok.h5", vps, dim=8)
    with pytest.raises(DataError, match="width 8, expected 512"):
        NavEnv(conn, train, ok, feature_dim=512)
    with pytest.raises(DataError, match="not found"):
        NavEnv(conn, train, tmp_path / "nope.h5")
    with pytest.raises(DataError, match="gridScanvp4 has 6 navigable neighbours.*max_candidates=7 or more"):
        NavEnv(conn, train, max_candidates=6)  # the grid centre has 6 neighbours: 7 slots with STOP
    bad = write_r2r(tmp_path / "bad.json", [{"path_id": 1, "scan": "noScan", "path": ["x"], "heading": 0,
                                             "instructions": ["a"]}])
    with pytest.raises(DataError, match="unknown scan"):
        NavEnv(conn, bad)
    with pytest.raises(DataError, match="Episode"):
        NavEnv(conn, [{"instr_id": "1"}])


def test_rxr_env_language_filter_and_lengths(tmp_path: Path) -> None:
    ids = line_world(tmp_path / "c", n=6)
    path = write_rxr(tmp_path / "rxr_guide.jsonl", "lineScan", ids)
    env = gym.make("vln_clip/RxR-v0", connectivity_dir=tmp_path / "c", episodes=path, languages=["en"])
    assert [e.instr_id for e in env.unwrapped.episodes] == ["1", "3"]
    obs, info = env.reset()
    assert obs["instruction"].shape == (160,)
    vocab = env.unwrapped.vocab
    assert vocab.decode(obs["instruction"]) == ["walk", "forward", "twice"]
    assert int(obs["instruction_length"]) == 5
    hi = NavEnv(tmp_path / "c", path, languages=["hi"], dataset="rxr")
    assert len(hi.episodes) == 1 and hi.reset()[1]["instr_id"] == "2"


def test_render_topdown_colours(tmp_path: Path) -> None:
    env, ids = _line_env(tmp_path, render_mode="rgb_array")
    env.reset()
    env.step(0)
    img = env.render()
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    for c in (topdown.AGENT_PATH, topdown.REFERENCE, topdown.START, topdown.GOAL, topdown.CURRENT):
        assert c in colours
    graph = env.task.graphs["lineScan"]
    blank = draw_topdown(graph, size=64)
    assert topdown.AGENT_PATH not in {tuple(c) for c in blank.reshape(-1, 3)}
    with pytest.raises(DataError):
        draw_topdown(graph, trajectory=["nowhere"])


# -- low-level teacher ----------------------------------------------------------------------

def test_shortest_agent_turns_and_tilts_like_r2r(tmp_path: Path) -> None:
    ids = fan_world(tmp_path)
    sim = _sim(tmp_path)
    # facing D's heading (60 deg), level: D is 25 deg up (within 30), so it moves at once
    trajs = run_shortest_agent(sim, ["fan"], [ids[0]], [60 * DEG], [ids[4]])
    assert [t[0] for t in trajs[0]] == [ids[0], ids[4]]
    # facing 150 deg, C (heading 200) is outside the 80 deg HFOV: turn right once (to 180), then move
    (traj,) = run_shortest_agent(sim, ["fan"], [ids[0]], [150 * DEG], [ids[3]])
    assert [t[0] for t in traj] == [ids[0], ids[0], ids[3]]
    assert [round(math.degrees(t[1])) for t in traj] == [150, 180, 180]
    # a neighbour 45 deg up: look up first, then move; coming back (level camera): look down, then move
    ids2 = write_connectivity(tmp_path / "s", "stairs", [(0, 0, 1.5), (0, 1, 2.5)], [(0, 1)])
    sim2 = _sim(tmp_path / "s", batch=2)
    up, down = run_shortest_agent(sim2, ["stairs"] * 2, [ids2[0], ids2[1]], [0.0, math.pi], [ids2[1], ids2[0]])
    assert [(t[0], round(math.degrees(t[2]))) for t in up] == [(ids2[0], 0), (ids2[0], 30), (ids2[1], 30)]
    assert [(t[0], round(math.degrees(t[2]))) for t in down] == [(ids2[1], 0), (ids2[1], -30), (ids2[0], -30)]


def test_shortest_agent_reaches_goals_on_real_sample(shared_connectivity: Path, shared_r2r_train: Path) -> None:
    eps = read_r2r(shared_r2r_train)[::400][:32]
    sim = _sim(shared_connectivity, batch=len(eps))
    trajs = run_shortest_agent(sim, [e.scan for e in eps], [e.start for e in eps], [e.heading for e in eps],
                               [e.path[-1] for e in eps])
    store = sim.graphs
    for ep, traj in zip(eps, trajs):
        vps = [t[0] for t in traj]
        assert vps[0] == ep.start and vps[-1] == ep.path[-1]
        store[ep.scan].check_path(vps, ep.instr_id)
        assert store[ep.scan].path_length(vps) == pytest.approx(store[ep.scan].distance(ep.start, ep.path[-1]))


def test_feature_entry_with_wrong_width_is_reported(tmp_path: Path) -> None:
    import h5py

    from vln_clip.envs import BatchedNavEnv

    vps, train, _ = two_scan_world(tmp_path)
    path = write_features(tmp_path / "f.h5", vps, dim=8)
    bad_vp = vps["lineScan"][0]
    with h5py.File(path, "a") as h5:  # a damaged file: the store's writer itself refuses the wrong width
        del h5[f"lineScan_{bad_vp}"]
        h5[f"lineScan_{bad_vp}"] = np.zeros((36, 6), dtype=np.float16)
    env = NavEnv(tmp_path / "connectivity", train, path)
    with pytest.raises(DataError, match=f"lineScan_{bad_vp} has shape \\(36, 6\\), expected \\(36, 8\\)"):
        env.reset(options={"instr_id": "1_0"})
    with pytest.raises(DataError, match="re-extract"):
        BatchedNavEnv(tmp_path / "connectivity", train, path, num_envs=2)


def test_neighbour_straight_above_is_no_candidate_and_teacher_goes_around(tmp_path: Path) -> None:
    from vln_clip.envs import panoramic_teacher

    # B is 3 m straight above A: MatterSim's horizontal FOV test never shows it, so EnvDrop has
    # no candidate for it; the teacher takes the detour through C (2.5 + 2.5 m) instead
    ids = write_connectivity(tmp_path, "shaft", [(0, 0, 1.5), (0, 0, 4.5), (1.5, 0, 3.5)], [(0, 1), (0, 2), (1, 2)])
    graph = GraphStore(tmp_path)["shaft"]
    pano = scan_panorama(graph)
    a, b, c = (graph.idx(v) for v in ids)
    assert graph.next_step(ids[0], ids[1]) == ids[1]
    assert pano.candidates(a).tolist() == [c]
    assert panoramic_teacher(graph, ids[0], ids[1]) == 0  # slot of C
    assert teacher_table(graph, pano)[a, b] == 0
    assert panoramic_teacher(graph, ids[1], ids[1]) == pano.num_candidates[b]  # STOP at the goal
    assert panoramic_teacher(graph, ids[0], None) == -1
    split = write_r2r(tmp_path / "R2R_s.json", [{"path_id": 1, "scan": "shaft", "path": [ids[0], ids[2], ids[1]],
                                                 "heading": 0.0, "instructions": ["climb"]}])
    env = NavEnv(tmp_path, split)
    obs, info = env.reset()
    while True:
        obs, r, term, trunc, info = env.step(info["teacher"])
        if term or trunc:
            break
    assert info["success"] and [p[0] for p in info["trajectory"]] == [ids[0], ids[2], ids[1]]


def test_candidate_moves_match_envdrop_equivalent_actions_in_the_simulator(shared_connectivity: Path,
                                                                          shared_r2r_train: Path) -> None:
    """EnvDrop's make_equiv_action (tilt, turn right to the view, move by navigable index) on the
    Simulator lands where NavEnv puts the agent, with the same heading, elevation and view."""
    eps = read_r2r(shared_r2r_train)[5::700][:20]
    graphs = GraphStore(shared_connectivity)
    env = NavEnv(graphs, eps)
    sim = _sim(shared_connectivity)
    rng = np.random.default_rng(0)
    for ep in eps:
        obs, info = env.reset(options={"instr_id": ep.instr_id})
        sim.newEpisode([ep.scan], [ep.start], [ep.heading], [0.0])
        for _ in range(5):
            state = sim.getState()[0]
            assert state.location.viewpointId == info["viewpoint"] and state.viewIndex == int(obs["view_index"])
            n = int(obs["num_candidates"])
            if n == 0:
                break
            k = int(rng.integers(0, n))
            pano = env.task.panos[ep.scan]
            ix = graphs[ep.scan].idx(info["viewpoint"])
            point, nav = int(pano.view[ix, k]), int(pano.nav_index[ix, k])
            src, trg = state.viewIndex // 12, point // 12
            while src < trg:
                sim.makeAction([0], [0], [1]); src += 1  # noqa: E702
            while src > trg:
                sim.makeAction([0], [0], [-1]); src -= 1  # noqa: E702
            while sim.getState()[0].viewIndex != point:
                sim.makeAction([0], [1], [0])
            assert sim.getState()[0].navigableLocations[nav].viewpointId == info["candidate_viewpoints"][k]
            sim.makeAction([nav], [0], [0])
            obs, _, _, _, info = env.step(k)
            s = sim.getState()[0]
            assert (s.location.viewpointId, s.viewIndex) == (info["viewpoint"], int(obs["view_index"]))
            assert (s.heading, s.elevation) == pytest.approx((info["heading"], info["elevation"]))
