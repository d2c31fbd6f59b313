"""The pure-Python simulator against MatterSim's semantics, with hand-computed geometry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from helpers import write_connectivity
from vln_clip.envs import Simulator
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore

DEG = math.pi / 180


def _star(root: Path) -> list[str]:
    # centre 0; 1 north (0,2); 2 at (1,2) (26.57 deg right of north); 3 east; 4 south;
    # 5 north-west and 1 m up ((-2,2,1): 45 deg left, elevation atan2(1, 2.83))
    pts = [(0, 0, 1.5), (0, 2, 1.5), (1, 2, 1.5), (2, 0, 1.5), (0, -2, 1.5), (-2, 2, 2.5)]
    return write_connectivity(root, "star", pts, [(0, k) for k in range(1, 6)])


def _sim(root: Path, batch: int = 1) -> Simulator:
    sim = Simulator()
    sim.setNavGraphPath(str(root))
    sim.setRenderingEnabled(False)
    sim.setCameraResolution(640, 480)
    sim.setCameraVFOV(math.radians(60))
    sim.setDiscretizedViewingAngles(True)
    sim.setBatchSize(batch)
    sim.initialize()
    return sim


def test_snapping_and_view_index(tmp_path: Path) -> None:
    ids = _star(tmp_path)
    sim = _sim(tmp_path, batch=3)
    sim.newEpisode(["star"] * 3, [ids[0]] * 3, [0.3, -0.1, 15 * DEG], [0.0, -0.4, 0.3])
    s = sim.getState()
    assert s[0].heading == pytest.approx(30 * DEG) and s[0].viewIndex == 13
    assert s[1].heading == pytest.approx(0.0) and s[1].elevation == pytest.approx(-30 * DEG)
    assert s[1].viewIndex == 0
    assert s[2].heading == pytest.approx(30 * DEG)  # 15 deg is a half: rounds away from zero
    assert s[2].viewIndex == 1 + 24
    sim.makeAction([0, 0, 0], [1, -0.01, 5.0], [1, -1, 1])
    s = sim.getState()
    assert s[0].heading == pytest.approx(60 * DEG) and s[0].elevation == pytest.approx(30 * DEG)
    assert s[0].viewIndex == 26 and s[0].step == 1
    assert s[1].heading == pytest.approx(330 * DEG) and s[1].viewIndex == 11  # saturated at -30
    assert s[2].elevation == pytest.approx(30 * DEG)  # +30 + 30 saturates


def test_navigable_locations_fov_and_order(tmp_path: Path) -> None:
    ids = _star(tmp_path)
    sim = _sim(tmp_path)
    sim.newEpisode(["star"], [ids[0]], [0.0], [0.0])
    nav = sim.getState()[0].navigableLocations
    assert [v.viewpointId for v in nav] == [ids[0], ids[1], ids[2]]  # HFOV 80: east and NW are out
    assert nav[2].rel_heading == pytest.approx(math.atan2(1, 2), abs=1e-6)  # right is positive
    assert nav[1].rel_distance == pytest.approx(2.0, abs=1e-6)
    # turn left 30 degrees: NW (45 deg left) enters (|-15 deg| <= 40), (1,2) is now 56.6 deg right: out
    sim.makeAction([0], [-1], [0])
    nav = sim.getState()[0].navigableLocations
    names = [v.viewpointId for v in nav]
    # north is now 30 deg right; NW is 15 deg left and 19.5 deg up: sqrt(15^2+19.5^2) = 24.6 < 30
    assert names == [ids[0], ids[5], ids[1]]
    nw = nav[1]
    assert nw.rel_heading == pytest.approx(-15 * DEG, abs=1e-6)
    assert nw.rel_elevation == pytest.approx(math.atan2(1, math.hypot(2, 2)), abs=1e-6)


def test_moving_keeps_heading_and_resets_rel(tmp_path: Path) -> None:
    ids = _star(tmp_path)
    sim = _sim(tmp_path)
    sim.newEpisode(["star"], [ids[0]], [0.0], [0.0])
    sim.makeAction([1], [0], [0])  # walk north
    s = sim.getState()[0]
    assert s.location.viewpointId == ids[1] and s.heading == pytest.approx(0.0)
    assert s.location.rel_heading == 0.0 and s.navigableLocations[0] is s.location
    # looking north from the north end: centre is behind, nothing navigable ahead
    assert [v.viewpointId for v in s.navigableLocations] == [ids[1]]
    with pytest.raises(ValueError, match="Invalid action index"):
        sim.makeAction([3], [0], [0])


def test_real_graphs_full_fov_sees_every_neighbour(shared_connectivity: Path) -> None:
    from vln_clip.envs.simulator import navigable_neighbours

    store = GraphStore(shared_connectivity)
    for scan in store.scans[:10]:
        g = store[scan]
        for ix in range(0, len(g), 7):
            nav = navigable_neighbours(g, ix, 0.0, 0.0, 2 * math.pi)
            assert len(nav) == int(g.adjacency[ix].sum())
            keys = [math.hypot(v.rel_heading, v.rel_elevation) for v in nav]
            assert keys == sorted(keys)


def test_real_graph_headings_cover_neighbours(shared_connectivity: Path) -> None:
    # Over the 12 discretized headings every neighbour is navigable at least once (80 deg HFOV
    # windows every 30 degrees overlap), and the batched call style handles 12 items at once.
    store = GraphStore(shared_connectivity)
    g = store["17DRP5sb8fy"]
    sim = _sim(shared_connectivity, batch=12)
    vp = g.viewpoints[0]
    sim.newEpisode(["17DRP5sb8fy"] * 12, [vp] * 12, [k * 30 * DEG for k in range(12)], [0.0] * 12)
    seen = {v.viewpointId for s in sim.getState() for v in s.navigableLocations[1:]}
    assert seen == set(g.neighbors(vp))


# ----------------------------------------------------------------------------------------
# MatterSim::Simulator's defaults (src/lib/MatterSim.cpp constructor), one test each


@pytest.mark.parametrize("attribute, expected", [
    ("nav_graph_path", "./connectivity"),
    ("dataset_path", "./data/v1/scans/"),
    ("width", 320),
    ("height", 240),
    ("vfov", 0.8),
    ("min_elevation", -0.94),
    ("max_elevation", 0.94),
    ("batch_size", 1),
    ("preloading", False),
    ("depth", False),
    ("rendering", True),
    ("discretized", False),
    ("restricted", True),
    ("cache_size", 200),
    ("seed", 1),
])
def test_defaults_equal_mattersim(attribute: str, expected: object) -> None:
    assert getattr(Simulator(), attribute) == expected


def test_default_graph_path_is_connectivity_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    ids = _star(tmp_path / "connectivity")
    monkeypatch.chdir(tmp_path)
    sim = Simulator()  # no setNavGraphPath, as in scripts written for MatterSim
    sim.setRenderingEnabled(False)
    sim.setDiscretizedViewingAngles(True)
    sim.initialize()
    sim.newEpisode(["star"], [ids[0]], [0.0], [0.0])
    assert sim.getState()[0].location.viewpointId == ids[0]
    # the default 320x240 camera at VFOV 0.8 rad sees HFOV/2 = 0.533 rad = 30.6 deg either side:
    # straight ahead (0, 2) is visible, (1, 2) at 26.6 deg too, (2, 0) at 90 deg is not
    seen = {v.viewpointId for v in sim.getState()[0].navigableLocations[1:]}
    assert seen == {ids[1], ids[2]}


def test_missing_default_graph_path_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    sim = Simulator()
    sim.setRenderingEnabled(False)
    with pytest.raises(DataError, match=r"'./connectivity' is not a folder .*setNavGraphPath"):
        sim.initialize()


def test_set_seed_is_mattersims_name() -> None:
    sim = Simulator()
    sim.setSeed(7)
    assert sim.seed == 7
