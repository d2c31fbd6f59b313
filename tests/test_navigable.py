"""One home for navigable-location geometry (vln_clip.geometry): hand-computed values, and every
former call site (simulator, EnvDrop tables, batched tables, rollout display, baselines, teacher)
agreeing with it to the bit."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from env_worlds import DEG, fan_world, two_scan_world
from helpers import write_connectivity
from vln_clip.agents.baselines import _candidate_headings
from vln_clip.envs import BatchedNavEnv, NavEnv, Simulator
from vln_clip.envs.panorama import compute_scan_panorama
from vln_clip.envs.teacher import LEFT, RIGHT, ShortestAgent
from vln_clip.episodes import read_r2r
from vln_clip.geometry import (VIEW_HFOV, angle_feature, angular_distance, camera_horizon, feature_heading,
                               nearest_view, neighbour_directions, view_angles, view_elevation, view_heading,
                               view_level, world_heading, wrap_angles, wrap_to_pi)
from vln_clip.graph import GraphStore
from vln_clip.rollout import describe_state


def _sim(root: Path, batch: int = 1) -> Simulator:
    """The discretized 640x480 / VFOV 60 simulator EnvDrop sweeps with."""
    sim = Simulator()
    sim.setNavGraphPath(str(root))
    sim.setRenderingEnabled(False)
    sim.setCameraResolution(640, 480)
    sim.setCameraVFOV(math.radians(60))
    sim.setDiscretizedViewingAngles(True)
    sim.setBatchSize(batch)
    sim.initialize()
    return sim


# -- the home, against hand-computed values ---------------------------------------------------

def test_neighbour_directions_hand_computed() -> None:
    # origin 0 at (0,0,1); 1 north 2 m; 2 east 3 m; 3 south-west; 4 north 1 m and 1 m up; 5 straight above
    pos = np.array([(0, 0, 1), (0, 2, 1), (3, 0, 1), (-1, -1, 1), (0, 1, 2), (0, 0, 3)], dtype=np.float64)
    d = neighbour_directions(pos, 0, np.arange(1, 6), [0.0, math.pi / 2], VIEW_HFOV)
    assert d.rel_heading.shape == (5, 2) and d.visible.shape == (5, 2) and d.elevation.shape == (5,)
    # camera north: north ahead, east 90 deg right, south-west 135 deg left; camera east: north 90 deg left
    assert d.rel_heading[:4, 0] == pytest.approx([0, math.pi / 2, -3 * math.pi / 4, 0], abs=1e-6)
    assert d.rel_heading[:4, 1] == pytest.approx([-math.pi / 2, 0, 3 * math.pi / 4, -math.pi / 2], abs=1e-6)
    assert d.elevation[:4] == pytest.approx([0, 0, 0, math.pi / 4], abs=1e-7)
    assert d.elevation[4] == pytest.approx(math.pi / 2)
    assert d.distance == pytest.approx([2, 3, math.sqrt(2), math.sqrt(2), 2])
    # HFOV 80 deg: only what lies within 40 deg of the camera's direction; nothing straight above
    assert d.visible[:, 0].tolist() == [True, False, False, True, False]
    assert d.visible[:, 1].tolist() == [False, True, False, False, False]
    assert neighbour_directions(pos, 0, np.arange(1, 5), 0.0, 2 * math.pi).visible.all()  # full sweep
    assert d.rel_elevation([0.0, -math.pi / 6])[3] == pytest.approx([math.pi / 4, math.pi / 4 + math.pi / 6])
    assert angular_distance(np.array([3.0]), np.array([4.0])) == pytest.approx([5.0])
    assert camera_horizon([0.0, math.pi / 2]) == pytest.approx(np.array([[0, 1], [1, 0]]), abs=1e-7)
    assert camera_horizon(0.0).dtype == np.float32


def test_view_conventions_hand_computed() -> None:
    assert nearest_view(0.0) == 12  # level, heading step 0
    assert nearest_view(math.radians(95), 0.3) == 3 + 24  # 95 deg -> step 3; 0.3 rad > 15 deg -> looking up
    assert nearest_view(-0.1, -0.4) == 0  # -6 deg snaps to heading 0 (step 12 wraps to 0); looking down
    assert nearest_view(-0.4, -0.4) == 11  # -23 deg = 337 deg -> step 11
    assert nearest_view(math.radians(15)) == 13  # a half step rounds away from zero
    assert [view_level(v) for v in (0, 11, 12, 35)] == [0, 0, 1, 2]
    assert view_angles(27) == (pytest.approx(math.pi / 2), pytest.approx(math.pi / 6))
    views = np.arange(36)
    assert np.array_equal(view_heading(views), [view_angles(int(v))[0] for v in views])
    assert np.array_equal(view_elevation(views), [view_angles(int(v))[1] for v in views])
    # world headings: clockwise from north, in [0, 2pi)
    assert [world_heading(dx, dy) for dx, dy in ((0, 1), (1, 0), (0, -1), (-1, 0))] == pytest.approx(
        [0, math.pi / 2, math.pi, 3 * math.pi / 2])
    assert 0 <= world_heading(-1e-9, 1.0) < 2 * math.pi


def test_wrap_angles_is_wrap_to_pi_to_the_bit() -> None:
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(-20, 20, 2000),
                         [0.0, math.pi, -math.pi, 2 * math.pi, -2 * math.pi, 3 * math.pi, 1e-17, -1e-17]])
    got = wrap_angles(xs)
    assert np.array_equal(got, [wrap_to_pi(float(x)) for x in xs])
    assert (got > -math.pi).all() and (got <= math.pi).all()
    assert wrap_angles(np.array([-math.pi]))[0] == pytest.approx(math.pi)


def test_feature_heading_inverts_the_angle_feature() -> None:
    rng = np.random.default_rng(1)
    h, e = rng.uniform(-7, 7, 500), rng.uniform(-1, 1, 500)
    dec = feature_heading(angle_feature(h, e))
    assert dec.dtype == np.float64
    assert dec == pytest.approx(wrap_angles(h), abs=1e-6)


# -- the former call sites, against the home --------------------------------------------------

def _worlds(tmp_path: Path, shared: Path | None) -> list[tuple[Path, str]]:
    fan_world(tmp_path / "fan")
    two_scan_world(tmp_path / "two")
    write_connectivity(tmp_path / "stairs", "stairs", [(0, 0, 1.5), (0, 1, 2.5), (0, 0, 4.5), (1, -1, 1.0)],
                       [(0, 1), (0, 2), (0, 3), (1, 3)])
    worlds = [(tmp_path / "fan", "fan"), (tmp_path / "two" / "connectivity", "gridScan"),
              (tmp_path / "stairs", "stairs")]
    if shared is not None:
        worlds += [(shared, "17DRP5sb8fy"), (shared, "8194nk5LbLH")]
    return worlds


@pytest.fixture()
def shared_or_none(request: pytest.FixtureRequest) -> Path | None:
    try:
        return request.getfixturevalue("shared_connectivity")
    except pytest.skip.Exception:
        return None


def test_simulator_navigable_locations_are_the_home_geometry(tmp_path: Path, shared_or_none: Path | None) -> None:
    for root, scan in _worlds(tmp_path, shared_or_none):
        graph = GraphStore(root)[scan]
        sim = Simulator()
        sim.setNavGraphPath(str(root))
        sim.setRenderingEnabled(False)
        sim.initialize()  # MatterSim's default camera: 320x240, VFOV 0.8 (continuous headings)
        hfov = sim.vfov * sim.width / sim.height
        rng = np.random.default_rng(0)
        for ix, vp in enumerate(graph.viewpoints[:25]):
            heading, elevation = float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(-0.5, 0.5))
            sim.newEpisode([scan], [vp], [heading], [elevation])
            state = sim.getState()[0]
            nbrs = np.flatnonzero(graph.adjacency[ix])
            d = neighbour_directions(graph.positions, ix, nbrs, state.heading, hfov)
            rel_e = d.rel_elevation(state.elevation)[:, 0]
            keep = [k for k in np.argsort(angular_distance(d.rel_heading[:, 0], rel_e), kind="stable")
                    if d.visible[k, 0]]
            want = [(graph.viewpoints[nbrs[k]], d.rel_heading[k, 0], rel_e[k], d.distance[k]) for k in keep]
            got = [(v.viewpointId, v.rel_heading, v.rel_elevation, v.rel_distance)
                   for v in state.navigableLocations[1:]]
            assert got == want, f"{scan}/{vp}"


def test_envdrop_tables_equal_the_literal_sweep_to_the_bit(tmp_path: Path, shared_or_none: Path | None) -> None:
    """EnvDrop's make_candidate loop on the simulator gives each candidate's view, navigable index,
    heading (view heading + rel_heading), elevation and distance exactly as the tables hold them."""
    for root, scan in _worlds(tmp_path, shared_or_none):
        graph = GraphStore(root)[scan]
        pano = compute_scan_panorama(graph)
        sim = _sim(root)
        for i, vp in enumerate(graph.viewpoints):
            best: dict[str, tuple] = {}
            for view in range(36):
                if view == 0:
                    sim.newEpisode([scan], [vp], [0.0], [math.radians(-30)])
                else:
                    sim.makeAction([0], [1.0], [1.0 if view % 12 == 0 else 0.0])
                s = sim.getState()[0]
                assert (s.heading, s.elevation) == view_angles(view)
                for j, loc in enumerate(s.navigableLocations[1:], 1):
                    dist = math.sqrt(loc.rel_heading**2 + loc.rel_elevation**2)
                    if loc.viewpointId not in best or dist < best[loc.viewpointId][0]:
                        best[loc.viewpointId] = (dist, view, j, s.heading + loc.rel_heading,
                                                 s.elevation + loc.rel_elevation, loc.rel_distance)
            got = {graph.viewpoints[pano.neighbour[i, k]]: (pano.view[i, k], pano.nav_index[i, k], pano.heading[i, k],
                                                            pano.elevation[i, k], pano.distance[i, k])
                   for k in range(pano.num_candidates[i])}
            assert list(got) == list(best), f"{scan}/{vp}: candidate order"
            assert got == {v: b[1:] for v, b in best.items()}, f"{scan}/{vp}"


def test_environments_rollout_and_baselines_read_the_one_geometry(tmp_path: Path) -> None:
    _, train, _ = two_scan_world(tmp_path)
    store = GraphStore(tmp_path / "connectivity")
    eps = read_r2r(train)
    env = NavEnv(store, eps)
    benv = BatchedNavEnv(store, eps, None, num_envs=len(eps))
    assert benv.ep_view0.tolist() == [nearest_view(ep.heading) for ep in eps]
    obs_b, info_b = benv.reset(options={"instr_ids": [ep.instr_id for ep in eps]})
    sim = _sim(tmp_path / "connectivity")
    for b, ep in enumerate(eps):
        obs, info = env.reset(options={"instr_id": ep.instr_id})
        graph, pano = store[ep.scan], env.task.panos[ep.scan]
        for _ in range(4):
            view, ix, n = int(obs["view_index"]), graph.idx(info["viewpoint"]), int(obs["num_candidates"])
            assert (info["heading"], info["elevation"]) == view_angles(view)
            # the rollout display: relative heading wrapped, distance = the simulator's rel_distance
            record = describe_state(obs, info, graph, 0)
            assert [c.heading for c in record.candidates] == [wrap_to_pi(pano.heading[ix, k] - info["heading"])
                                                             for k in range(n)]
            for c in record.candidates:
                sim.newEpisode([ep.scan], [info["viewpoint"]], [view_heading(c.view_index)],
                               [view_elevation(c.view_index)])
                loc = sim.getState()[0].navigableLocations[pano.nav_index[ix, c.action]]
                assert (loc.viewpointId, loc.rel_distance) == (c.viewpoint, c.distance)
            # the random baseline decodes the same relative headings from the observation
            # (float32 features: equal to 1e-6, and +-pi may come back as -+pi)
            gap = wrap_angles(_candidate_headings(obs) - np.array([c.heading for c in record.candidates]))
            assert np.abs(gap).max(initial=0.0) < 1e-6
            if n == 0 or info["teacher"] == n:
                break
            obs, _, _, _, info = env.step(info["teacher"])
    # the batched tables hold the same candidate features as NavEnv, and its trajectories the same poses
    for b, ep in enumerate(eps):
        obs, info = env.reset(options={"instr_id": ep.instr_id})
        assert np.array_equal(obs_b["candidates"][b].numpy(), obs["candidates"])
    teacher = info_b["teacher"].clamp(min=0)
    for _ in range(6):
        obs_b, _, _, _, info_b = benv.step(teacher)
        teacher = info_b["teacher"].clamp(min=0)
    for traj in benv.trajectories():
        assert traj is not None
        for _, heading, elevation in traj:
            assert (heading, elevation) == view_angles(nearest_view(heading, elevation))


def test_shortest_agent_turns_toward_the_world_heading(tmp_path: Path) -> None:
    """Next hop out of view: the R2R teacher turns the shorter way toward world_heading."""
    ids = fan_world(tmp_path)
    sim = _sim(tmp_path)
    agent = ShortestAgent(sim.graphs)
    graph = sim.graphs["fan"]
    here, target = graph.position(ids[0]), graph.position(ids[3])  # C, 200 deg
    assert math.degrees(world_heading(target[0] - here[0], target[1] - here[1])) == pytest.approx(200)
    for start_deg, want in ((90, RIGHT), (150, RIGHT), (300, LEFT), (330, LEFT)):
        sim.newEpisode(["fan"], [ids[0]], [start_deg * DEG], [0.0])
        assert agent.act(sim.getState()[0], ids[3]) == want, start_deg
