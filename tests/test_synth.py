"""The synthetic world: real formats, R2R statistics, connectivity, determinism, rendering, language."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from vln_clip.episodes import read_episodes, validate_episodes
from vln_clip.errors import DataError
from vln_clip.geometry import wrap_to_pi
from vln_clip.graph import GraphStore
from vln_clip.synth import generate_world, scan_id
from vln_clip.synth.generate import SynthConfig, _build_house
from vln_clip.synth.language import classify_turn, path_events
from vln_clip.synth.render import NumpyRenderer, RayCaster, build_scene, egl_available, render_panoramas
from vln_clip.synth.skybox import face_directions, render_view

if TYPE_CHECKING:
    from vln_clip.envs.simulator import Simulator

# Small houses (4 rooms) and few paths keep every world here to a second or two.
TINY = dict(houses=3, paths_per_house=10, val_seen_per_house=3, rxr_paths_per_house=3, min_rooms=4, max_rooms=6,
            two_floor_fraction=0.0)  # two-floor houses have their own (unrendered) fixture below


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return generate_world(tmp_path_factory.mktemp("synth") / "w", seed=0, face_size=16, renderer="numpy", **TINY)


@pytest.fixture(scope="module")
def store(world) -> GraphStore:
    return GraphStore(world.connectivity, use_cache=False)


def _all_r2r(world) -> dict[str, list[dict]]:
    return {s: json.loads(p.read_text()) for s, p in world.r2r.items()}


def test_ids_and_connectivity_format(world):
    scans = world.connectivity.joinpath("scans.txt").read_text().split()
    assert len(scans) == 3 and sorted(scans) == sorted(set(scans))
    for scan in scans:
        assert re.fullmatch(r"[A-Za-z0-9]{11}", scan), scan
        data = json.loads((world.connectivity / f"{scan}_connectivity.json").read_text())
        n = len(data)
        for item in data:
            assert set(item) == {"image_id", "pose", "included", "visible", "unobstructed", "height"}
            assert re.fullmatch(r"[0-9a-f]{32}", item["image_id"])
            assert len(item["pose"]) == 16 and item["pose"][12:] == [0.0, 0.0, 0.0, 1.0]
            rot = np.array(item["pose"]).reshape(4, 4)[:3, :3]
            assert np.allclose(rot @ rot.T, np.eye(3)) and np.isclose(np.linalg.det(rot), 1.0)
            # camera 1.5 m above the ground floor or the upper floor (3 m up), or half-way up the stairs
            assert min(abs(item["pose"][11] - z) for z in (1.5, 2.9, 4.5)) < 1e-9 and item["height"] == 1.5
            assert len(item["visible"]) == n and len(item["unobstructed"]) == n
            # an edge implies line of sight; no self loops
            assert all(v for u, v in zip(item["unobstructed"], item["visible"]) if u)
        unob = np.array([d["unobstructed"] for d in data])
        assert (unob == unob.T).all() and not unob.diagonal().any()


def test_every_house_connected_with_sane_edges(world, store):
    for scan in store.scans:
        g = store[scan]
        assert 8 <= len(g) <= 80
        assert np.isfinite(g.distances).all(), f"{scan} is not connected"
        w = g.edge_weights[g.adjacency]
        assert w.max() <= 3.2 + 1e-6 and w.min() > 0.3
        # no navigable neighbour count the environments could not hold (max_candidates 16)
        assert g.adjacency.sum(1).max() <= 15


def test_splits_readable_and_valid(world, store):
    for split, path in list(world.r2r.items()) + list(world.rxr.items()):
        eps = read_episodes(path)
        assert eps, split
        validate_episodes(eps, store, str(path))
    summary = json.loads(world.world_json.read_text())
    sp = summary["splits"]
    assert set(sp["val_seen"]) == set(sp["train"])
    assert not set(sp["train"]) & set(sp["val_unseen"]) and not set(sp["train"]) & set(sp["test"])
    assert not set(sp["val_unseen"]) & set(sp["test"])
    for split, items in _all_r2r(world).items():
        assert {it["scan"] for it in items} <= set(sp[split])


def test_r2r_path_statistics(world, store):
    data = _all_r2r(world)
    summary = json.loads(world.world_json.read_text())
    for split in ("train", "val_seen", "val_unseen"):
        for it in data[split]:
            g = store[it["scan"]]
            assert 4 <= len(it["path"]) - 1 <= 6
            assert it["path"] == g.shortest_path(it["path"][0], it["path"][-1])
            d = g.distance(it["path"][0], it["path"][-1])
            assert it["distance"] == pytest.approx(d, abs=1e-3)
            assert d >= summary["min_distance_used"][it["scan"]] - 1e-6 >= 3.0 - 1e-6
            assert len(it["instructions"]) == 3 and len(set(it["instructions"])) >= 2
            assert 0.0 <= it["heading"] < 2 * math.pi
    pairs = lambda s: {(it["path"][0], it["path"][-1]) for it in data[s]}  # noqa: E731
    assert not pairs("train") & pairs("val_seen")
    for it in data["test"]:
        assert len(it["path"]) == 1 and "distance" not in it and len(it["instructions"]) == 3
    ids = [it["path_id"] for s in data for it in data[s]]
    assert len(ids) == len(set(ids))


def test_default_houses_reach_five_metres(tmp_path):
    """Full-size houses keep R2R's 5 m minimum (only tiny ones lower it)."""
    w = generate_world(tmp_path / "d", houses=3, seed=4, render=False, paths_per_house=12,
                       val_seen_per_house=2, rxr_paths_per_house=1)
    summary = json.loads(w.world_json.read_text())
    assert set(summary["min_distance_used"].values()) == {5.0}
    items = json.loads(w.r2r["train"].read_text())
    assert min(it["distance"] for it in items) >= 5.0


def test_rxr_fields_languages_and_scripts(world):
    rows = [json.loads(line) for line in gzip.open(world.rxr["train"], "rt", encoding="utf-8")]
    assert rows
    by_path: dict[int, set[str]] = {}
    for r in rows:
        assert {"instruction_id", "path_id", "scan", "path", "heading", "instruction", "language"} <= set(r)
        by_path.setdefault(r["path_id"], set()).add(r["language"])
        text = r["instruction"]
        letters = [c for c in text if c.isalpha()]
        if r["language"] == "hi-IN":
            dev = sum(0x0900 <= ord(c) <= 0x097F for c in letters)
            assert dev / len(letters) > 0.9, text
        elif r["language"] == "te-IN":
            tel = sum(0x0C00 <= ord(c) <= 0x0C7F for c in letters)
            assert tel / len(letters) > 0.9, text
        else:
            assert r["language"] in ("en-IN", "en-US") and text.isascii()
    for langs in by_path.values():
        assert len(langs) == 3 and {"hi-IN", "te-IN"} <= langs
    # RxR instructions are longer than R2R's
    r2r = json.loads(world.r2r["train"].read_text())
    en_rxr = [len(r["instruction"].split()) for r in rows if r["language"].startswith("en")]
    en_r2r = [len(t.split()) for it in r2r for t in it["instructions"]]
    assert np.mean(en_rxr) > 1.5 * np.mean(en_r2r)


def test_instructions_name_the_goal(world):
    scenes = {p.stem: json.loads(p.read_text()) for p in world.scenes.glob("*.json")}
    for split in ("train", "val_seen", "val_unseen"):
        for it in json.loads(world.r2r[split].read_text()):
            scene = scenes[it["scan"]]
            vp = {v["id"]: v for v in scene["viewpoints"]}[it["path"][-1]]
            rooms = [scene["rooms"][r]["type"] for r in vp.get("doorway", [vp["room"]])]
            joined = " ".join(it["instructions"]).lower()
            assert any(room in joined for room in rooms), (rooms, it["instructions"])


def test_turn_words_follow_mattersim_headings():
    assert classify_turn(math.radians(90)) == "right"  # clockwise = to the right
    assert classify_turn(math.radians(-90)) == "left"
    assert classify_turn(math.radians(45)) == "slight right"
    assert classify_turn(math.radians(170)) == "around" and classify_turn(math.radians(-175)) == "around"
    assert classify_turn(math.radians(10)) == ""


def test_first_event_matches_geometry(world, store):
    cfg = SynthConfig(seed=0, **TINY)
    scans = world.connectivity.joinpath("scans.txt").read_text().split()
    for h, scan in enumerate(scans):
        hd = _build_house(cfg, h, world.root.parent / "rebuild")
        assert hd.scan == scan
        vps = {v.id: v for v in hd.vps}
        g = store[scan]
        for start in g.viewpoints[:5]:
            goal = g.viewpoints[-1]
            if start == goal:
                continue
            path = g.shortest_path(start, goal)
            a, b = vps[path[0]].xy, vps[path[1]].xy
            edge = math.atan2(b[0] - a[0], b[1] - a[1])
            base = path_events(hd.house, vps, path, edge)  # already facing the first edge: no first turn
            key = lambda evs: [(e.kind, e.direction, e.room) for e in evs]  # noqa: E731
            for heading, want in ((edge - math.pi / 2, "right"), (edge + math.pi / 2, "left"),
                                  (edge + math.pi, "around"), (edge + math.radians(45), "slight left")):
                ev = path_events(hd.house, vps, path, heading)
                assert ev[0].kind == "turn" and ev[0].direction == want
                assert key(ev[1:]) == key(base)


def test_scene_description(world, store):
    for scan in store.scans:
        scene = json.loads((world.scenes / f"{scan}.json").read_text())
        types = [r["type"] for r in scene["rooms"]]
        assert len(types) == len(set(types)) >= 4
        ids = {v["id"] for v in scene["viewpoints"]}
        assert ids == set(store[scan].viewpoints)
        seen_any = 0
        for v in scene["viewpoints"]:
            assert len(v["views"]) == 36
            seen_any += any(v["views"])
            # an object seen from a viewpoint is in its room or visible through a door
            for view in v["views"]:
                for o in view:
                    assert 0 <= o < len(scene["objects"])
        assert seen_any >= 0.8 * len(scene["viewpoints"])
        for o in scene["objects"]:
            assert o["colour"] and len(o["rgb"]) == 3 and len(o["position"]) == 3 and o["room"] < len(types)


def test_views_see_objects_in_their_direction(world):
    """An object straight ahead at heading h (level) is listed in the level view of heading h."""
    cfg = SynthConfig(seed=0, **TINY)
    hd = _build_house(cfg, 0, world.root.parent / "rebuild")
    scene = json.loads((world.scenes / f"{hd.scan}.json").read_text())
    caster = RayCaster(hd.rects)
    checked = 0
    for v, entry in zip(hd.vps, scene["viewpoints"]):
        for obj in hd.house.objects:
            if obj.room != v.room or obj.size[2] < 0.7 or v.door >= 0 or v.stair >= 0:
                continue
            dx, dy = obj.centre[0] - v.x, obj.centre[1] - v.y
            if abs(math.atan2(obj.centre[2] - v.z, math.hypot(dx, dy))) > math.radians(25):
                continue  # not within the level views' vertical field of view
            h = math.atan2(dx, dy) % (2 * math.pi)
            step = round(h / (math.pi / 6)) % 12
            if abs(wrap_to_pi(h - step * math.pi / 6)) > math.radians(10):
                continue
            # occluded by another object? skip those; the ray caster decides
            t, idx = caster.cast(np.array([v.x, v.y, v.z]), np.array([[dx, dy, obj.centre[2] - v.z]]))
            if caster.r.owner[idx[0]] != obj.index:
                continue
            assert obj.index in entry["views"][12 + step]
            checked += 1
    assert checked >= 3


def test_determinism_by_hash(tmp_path, world):
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
        return h.hexdigest()

    again = generate_world(tmp_path / "again", seed=0, face_size=16, renderer="numpy", **TINY)
    assert digest(again.root) == digest(world.root)
    # another seed: different graphs and episodes (images skipped to keep the test fast)
    other = generate_world(tmp_path / "other", seed=1, render=False, **TINY)
    for sub in ("connectivity", "r2r", "rxr", "scenes"):
        assert digest(other.root / sub) != digest(world.root / sub)
    same = generate_world(tmp_path / "same", seed=0, render=False, **TINY)
    for sub in ("connectivity", "r2r", "rxr", "scenes"):
        assert digest(same.root / sub) == digest(world.root / sub)
    assert scan_id(0, 0) != scan_id(1, 0) and scan_id(0, 0) == scan_id(0, 0)


def test_cached_and_regenerated(tmp_path):
    kw = dict(TINY, houses=3, render=False)
    a = generate_world(tmp_path / "c", seed=2, **kw)
    assert a.timings  # generated
    mtime = a.world_json.stat().st_mtime_ns
    b = generate_world(tmp_path / "c", seed=2, **kw)
    assert not b.timings and b.world_json.stat().st_mtime_ns == mtime and b.splits == a.splits
    c = generate_world(tmp_path / "c", seed=3, **kw)
    assert c.timings and json.loads(c.world_json.read_text())["seed"] == 3
    # the previous seed's scans are gone, nothing else
    files = {p.name for p in (tmp_path / "c" / "connectivity").iterdir()}
    assert files == {"scans.txt"} | {f"{s}_connectivity.json" for s in c.splits["train"] + c.splits["val_unseen"]
                                     + c.splits["test"]}
    assert len(list((tmp_path / "c" / "scenes").iterdir())) == 3


def test_bad_parameters(tmp_path):
    with pytest.raises(DataError, match="at least 3 houses"):
        generate_world(tmp_path / "x", houses=2, render=False)
    with pytest.raises(DataError, match="face-size"):
        generate_world(tmp_path / "x", face_size=4)
    with pytest.raises(TypeError, match="unknown option"):
        generate_world(tmp_path / "x", bogus=1)


# ---------------------------------------------------------------------------------------
# Rendering


def _faces(world, scan: str, pano: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(world.skybox(scan, pano, i)).convert("RGB")) for i in range(6)]


def test_skybox_files_and_sanity(world, store):
    for scan in store.scans:
        scene = json.loads((world.scenes / f"{scan}.json").read_text())
        means_by_type: dict[str, list[np.ndarray]] = {}
        for v in scene["viewpoints"]:
            faces = _faces(world, scan, v["id"])
            for f in faces:
                assert f.shape == (16, 16, 3)
                assert f.mean() > 25 and f.std() > 0 or f.mean() > 60  # never empty or black
            room = scene["rooms"][v["room"]]
            if "doorway" in v or "stairs" in v:  # stair viewpoints look down on steps, not the floor
                continue
            up = faces[0].reshape(-1, 3).mean(0)
            down = faces[5][4:12, 4:12].reshape(-1, 3).mean(0)
            # up is ceiling-coloured, down floor-coloured (lit, so compare by nearest room colour)
            floors = np.array([r["floor_rgb"] for r in scene["rooms"]], float)
            scale = down.sum() / max(np.asarray(room["floor_rgb"], float).sum(), 1)
            assert np.argmin(np.abs(floors * scale - down).sum(1)) in (
                [i for i, r in enumerate(scene["rooms"]) if r["floor_rgb"] == room["floor_rgb"]]), (room["type"], down)
            assert up.min() > 0.45 * min(room["ceiling_rgb"]) and np.ptp(up) < 40
            means_by_type.setdefault(room["type"], []).append(np.concatenate([f.reshape(-1, 3).mean(0) for f in faces[1:5]]))
        # rooms of different types look different: mean horizontal-face colours far apart
        cents = {t: np.mean(m, 0) for t, m in means_by_type.items()}
        types = sorted(cents)
        for i in range(len(types)):
            for j in range(i + 1, len(types)):
                assert np.abs(cents[types[i]] - cents[types[j]]).mean() > 4, (types[i], types[j])


def test_mattersim_reads_faces_upright(world):
    """MatterSim's cube-map lookup over the written faces equals a direct perspective render."""
    cfg = SynthConfig(seed=0, **TINY)
    hd = _build_house(cfg, 1, world.root.parent / "rebuild")
    rend = NumpyRenderer(48)
    rend.set_scene(hd.rects)
    caster = RayCaster(hd.rects)
    v = next(v for v in hd.vps if v.door < 0)
    faces = rend.render((v.x, v.y, v.z))
    pose = json.loads((world.connectivity / f"{hd.scan}_connectivity.json").read_text())[0]["pose"]
    w, h = 40, 30
    for heading, elevation in ((0.0, 0.0), (math.pi / 2, 0.0), (math.radians(210), math.radians(30)),
                               (math.radians(300), -math.radians(30))):
        sim = render_view(faces, pose, heading, elevation, w, h)
        tv = math.tan(math.radians(30))
        xs = ((np.arange(w) + 0.5) / w * 2 - 1) * tv * w / h
        ys = -((np.arange(h) + 0.5) / h * 2 - 1) * tv
        fwd = np.array([math.sin(heading) * math.cos(elevation), math.cos(heading) * math.cos(elevation),
                        math.sin(elevation)])
        right = np.array([math.cos(heading), -math.sin(heading), 0.0])
        up = np.cross(right, fwd)
        direct = caster.colours(np.array([v.x, v.y, v.z]), fwd + xs[None, :, None] * right + ys[:, None, None] * up)
        assert np.abs(sim.astype(float) - direct).mean() < 12
        # and it is not the same picture rotated: the opposite heading differs
        opposite = render_view(faces, pose, heading + math.pi, elevation, w, h)
        assert np.abs(opposite.astype(float) - direct).mean() > np.abs(sim.astype(float) - direct).mean() + 5


def test_face_axes_heading_convention():
    d = face_directions(4)
    centre = lambda i: d[i, 1:3, 1:3].mean((0, 1))  # noqa: E731
    assert np.allclose(centre(1), [0, 1, 0]) and np.allclose(centre(2), [1, 0, 0])  # heading 0: +y, 90: +x
    assert np.allclose(centre(3), [0, -1, 0]) and np.allclose(centre(4), [-1, 0, 0])
    assert np.allclose(centre(0), [0, 0, 1]) and np.allclose(centre(5), [0, 0, -1])
    assert d[1, 0, 2, 2] > 0 and d[1, 3, 2, 2] < 0  # row 0 is the top
    # face 0's bottom edge meets face 1's top edge, face 5's top edge face 1's bottom edge
    assert d[0, -1, 2, 1] > 0 and d[5, 0, 2, 1] > 0
    try:
        from vln_clip.features.views import face_directions as feat_dirs
    except ImportError:
        return
    ours = d / np.linalg.norm(d, axis=-1, keepdims=True)
    assert np.allclose(ours, feat_dirs(4), atol=1e-9)


def test_gl_and_numpy_renderers_agree():
    """The OpenGL path (in its own process) and the numpy rasteriser draw the same picture."""
    if not egl_available():
        pytest.skip("no EGL/OpenGL context on this machine")
    cfg = SynthConfig(seed=0, **TINY)
    hd = _build_house(cfg, 0, Path("/tmp") / "vln_clip_synth_unused")
    eyes = [(v.x, v.y, v.z) for v in hd.vps[:3]]
    a = render_panoramas(hd.rects, eyes, 32, "gl", supersample=1)
    b = render_panoramas(hd.rects, eyes, 32, "numpy")
    assert a.shape == b.shape == (3, 6, 32, 32, 3)
    assert np.abs(a.astype(float) - b).mean(axis=(2, 3, 4)).max() < 3.0
    # the caller's process never got a GL context (a later torch._dynamo import would crash)
    import sys
    assert "moderngl" not in sys.modules


@pytest.mark.parametrize("floors", [0.0, 1.0])
def test_scene_geometry_is_closed(floors):
    """Rays in every direction from every viewpoint (stairs included) hit a surface."""
    cfg = SynthConfig(seed=0, **dict(TINY, two_floor_fraction=floors))
    hd = _build_house(cfg, 2 if floors == 0 else 0, Path("/tmp") / "vln_clip_synth_unused")
    assert (hd.house.stairs is not None) == (floors == 1.0)
    caster = RayCaster(build_scene(hd.house))
    dirs = face_directions(6).reshape(-1, 3)
    for v in hd.vps:
        _, idx = caster.cast(np.array([v.x, v.y, v.z]), dirs)
        assert (idx >= 0).all()
    if hd.house.stairs is not None:
        # from the foot of the stairs, looking along the climb and up 30 degrees, one sees steps
        foot = next(v for v in hd.vps if v.stair == 0)
        st = hd.house.stairs
        d = np.array([st.direction, 0.0, 0.0]) if st.axis == "x" else np.array([0.0, st.direction, 0.0])
        d[2] = math.tan(math.radians(20))
        eye = np.array([foot.x, foot.y, foot.z])
        t, idx = caster.cast(eye, d[None])
        hit = eye + t[0] * d
        x0, y0, x1, y1 = st.footprint
        assert idx[0] >= 0 and x0 - 1e-6 <= hit[0] <= x1 + 1e-6 and y0 - 1e-6 <= hit[1] <= y1 + 1e-6
        assert 0.0 < hit[2] <= 3.0  # a step, below the upper floor


# ---------------------------------------------------------------------------------------
# The rest of the toolkit on the synthetic world


def test_teacher_and_shortest_agent_reach_every_goal(world, store):
    pytest.importorskip("vln_clip.envs.nav_env")
    from vln_clip.envs.nav_env import NavEnv
    from vln_clip.envs.teacher import run_shortest_agent

    for split in ("train", "val_unseen"):
        env = NavEnv(world.connectivity, world.r2r[split], max_steps=35)
        for ep in env.episodes:
            obs, info = env.reset(options={"instr_id": ep.instr_id})
            done = False
            while not done:
                obs, _, term, trunc, info = env.step(env.teacher_action())
                done = term or trunc
            assert env.viewpoint == ep.goal and env.distance_to_goal == pytest.approx(0.0)
        env.close()
    # MatterSim-style low-level shortest agent through the simulator
    items = json.loads(world.r2r["val_seen"].read_text())
    sim = _graph_only_simulator(world.connectivity, len(items))
    trajs = run_shortest_agent(sim, [i["scan"] for i in items], [i["path"][0] for i in items],
                               [i["heading"] for i in items], [i["path"][-1] for i in items])
    for traj, it in zip(trajs, items):
        assert traj[-1][0] == it["path"][-1]


def test_shortest_baseline_scores_one(world, store):
    from vln_clip.agents.baselines import run_baseline
    from vln_clip.eval.metrics import score_paths

    eps = read_episodes(world.r2r["val_unseen"])
    rows = run_baseline("shortest", eps, world.connectivity)
    paths = {r["instr_id"]: [p[0] for p in r["trajectory"]] for r in rows}
    summary = score_paths(paths, eps, store).summary()
    assert summary["success"] == pytest.approx(1.0) and summary["spl"] == pytest.approx(1.0)


def test_cli(tmp_path, capsys):
    from vln_clip.cli.main import main

    rc = main(["data", "synth", "--out", str(tmp_path / "cli"), "--houses", "3", "--no-render", "--json",
               "--paths-per-house", "4", "--rxr-paths-per-house", "1"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["r2r_paths"]["train"] == 4 and out["renderer"] == "none"
    rc = main(["data", "synth", "--out", str(tmp_path / "bad"), "--houses", "1"])
    assert rc != 0
    assert "at least 3 houses" in capsys.readouterr().err


def test_rasteriser_equals_ray_caster():
    cfg = SynthConfig(seed=0, **TINY)
    hd = _build_house(cfg, 1, Path("/tmp") / "vln_clip_synth_unused")
    rend = NumpyRenderer(24)
    rend.set_scene(hd.rects)
    caster = RayCaster(hd.rects)
    dirs = face_directions(24)
    for v in hd.vps[::5]:
        faces = rend.render((v.x, v.y, v.z))
        for i in range(6):
            ref = caster.colours(np.array([v.x, v.y, v.z]), dirs[i])
            assert np.array_equal(faces[i], np.clip(np.floor(ref + 0.5), 0, 255).astype(np.uint8))


def test_feature_extractor_reads_synthetic_skyboxes(world):
    """The feature engineer's skybox renderer (vln_clip.features.views) sees what lies in each direction."""
    views_mod = pytest.importorskip("vln_clip.features.views")
    cfg = SynthConfig(seed=0, **TINY)
    hd = _build_house(cfg, 0, world.root.parent / "rebuild")
    caster = RayCaster(hd.rects)
    rots = views_mod.read_pano_rotations(world.connectivity, hd.scan)
    spec = views_mod.ViewSpec(width=32, height=24)
    v = next(v for v in hd.vps if v.door < 0)
    views = views_mod.panorama_views("skybox", hd.scan, v.id, rots[v.id], spec, skybox_dir=world.scans_dir)
    rays = views_mod.discretized_rays(spec).numpy().astype(np.float64)
    truth = np.stack([caster.colours(np.array([v.x, v.y, v.z]), rays[i]) for i in range(36)])
    err = np.abs(views.astype(float) - truth).mean(axis=(1, 2, 3))
    assert err.mean() < 25
    # view i matches its own direction better than the view opposite to it
    opposite = np.abs(views.astype(float) - truth[[(i + 6) % 12 + 12 * (i // 12) for i in range(36)]]).mean(axis=(1, 2, 3))
    assert (err < opposite).mean() > 0.8


def test_landmark_side_is_hand_computed():
    from vln_clip.synth.language import _side
    from vln_clip.synth.world import SceneObject

    north = [np.array([0.0, 0.0]), np.array([0.0, 2.0])]
    west_obj = SceneObject(0, "sofa", "red", (200, 40, 40), 0, (-1.0, 1.0, 0.4), (2.0, 0.9, 0.8))
    east_obj = SceneObject(1, "lamp", "blue", (45, 80, 200), 0, (1.0, 1.0, 0.8), (0.4, 0.4, 1.6))
    assert _side(west_obj, north) == "left" and _side(east_obj, north) == "right"
    south = north[::-1]  # walking south, west is on the right
    assert _side(west_obj, south) == "right" and _side(east_obj, south) == "left"


def _graph_only_simulator(connectivity: Path, batch: int) -> Simulator:
    """MatterSim-API simulator on the world's graphs: discretized angles, no rendering."""
    from vln_clip.envs.simulator import Simulator

    sim = Simulator()
    sim.setNavGraphPath(str(connectivity))
    sim.setDiscretizedViewingAngles(True)
    sim.setBatchSize(batch)
    sim.setRenderingEnabled(False)
    sim.initialize()
    return sim


@pytest.fixture(scope="module")
def two_floor_world(tmp_path_factory: pytest.TempPathFactory):
    return generate_world(tmp_path_factory.mktemp("synth2") / "w", houses=3, seed=0, render=False,
                          paths_per_house=6, val_seen_per_house=2, rxr_paths_per_house=2, two_floor_fraction=1.0)


def test_two_floors_joined_only_by_the_stairs(two_floor_world):
    w = two_floor_world
    store = GraphStore(w.connectivity, use_cache=False)
    n_two = 0
    for scan in store.scans:
        scene = json.loads((w.scenes / f"{scan}.json").read_text())
        if scene["floors"] != 2:
            continue
        n_two += 1
        g = store[scan]
        z = g.positions[:, 2]
        stair = {v["stairs"]: g.idx(v["id"]) for v in scene["viewpoints"] if "stairs" in v}
        assert z[stair["foot"]] == pytest.approx(1.5) and z[stair["top"]] == pytest.approx(4.5)
        # every edge between different heights is a stair edge: foot-middle or middle-top
        a, b = np.nonzero(np.triu(g.adjacency, 1))
        cross = {(int(i), int(j)) for i, j in zip(a, b) if abs(z[i] - z[j]) > 0.5}
        want = {tuple(sorted((stair["foot"], stair["middle"]))), tuple(sorted((stair["middle"], stair["top"])))}
        assert cross == want
        # rooms: types unique over both floors; the room at the top is the landing
        types = [r["type"] for r in scene["rooms"]]
        assert len(types) == len(set(types)) and scene["rooms"][scene["stairs"]["rooms"][1]]["type"] == "landing"
        assert np.isfinite(g.distances).all()
        # a ground-floor to upper-floor route climbs the stairs, and says so
        down = [i for i in range(len(g)) if z[i] < 2 and i not in stair.values()]
        up = [i for i in range(len(g)) if z[i] > 4 and i not in stair.values()]
        path = g.shortest_path(g.viewpoints[down[0]], g.viewpoints[up[-1]])
        assert [g.viewpoints[stair[k]] for k in ("foot", "middle", "top")] == \
            [v for v in path if v in {g.viewpoints[s] for s in stair.values()}]
        cfg = SynthConfig(seed=0, houses=3, two_floor_fraction=1.0)
        hd = _build_house(cfg, store.scans.index(scan), w.root.parent / "rebuild2")
        events = path_events(hd.house, {v.id: v for v in hd.vps}, path, 0.0)
        kinds = [(e.kind, e.direction) for e in events]
        assert kinds.count(("stairs", "up")) == 1 and ("stairs", "down") not in kinds
    assert n_two >= 2


def test_simulator_shortest_agent_climbs_the_stairs(two_floor_world):
    from vln_clip.envs.teacher import run_shortest_agent

    w = two_floor_world
    store = GraphStore(w.connectivity, use_cache=False)
    scans, starts, goals = [], [], []
    for scan in store.scans:
        g = store[scan]
        z = g.positions[:, 2]
        if z.max() < 4:
            continue
        lo, hi = np.flatnonzero(z < 2), np.flatnonzero(z > 4)
        for a, b in ((lo[0], hi[-1]), (hi[0], lo[-1])):  # up and down
            scans.append(scan)
            starts.append(g.viewpoints[a])
            goals.append(g.viewpoints[b])
    assert scans
    sim = _graph_only_simulator(w.connectivity, len(scans))
    trajs = run_shortest_agent(sim, scans, starts, [0.0] * len(scans), goals, max_actions=200)
    for traj, goal in zip(trajs, goals):
        assert traj[-1][0] == goal
        assert any(abs(e) > 0.4 for _, _, e in traj)  # it had to look up or down at the stairs


def test_panoramic_teacher_on_two_floor_world(two_floor_world):
    from vln_clip.envs.nav_env import NavEnv

    w = two_floor_world
    for split in ("train", "val_seen", "val_unseen"):
        env = NavEnv(w.connectivity, w.r2r[split], max_steps=35)
        for ep in env.episodes:
            env.reset(options={"instr_id": ep.instr_id})
            done = False
            while not done:
                _, _, term, trunc, _ = env.step(env.teacher_action())
                done = term or trunc
            assert env.viewpoint == ep.goal
        env.close()


def test_interrupted_rendering_resumes(tmp_path, world):
    """A run cut short (no world.json, marker left, some faces missing) finishes the job only."""
    import shutil

    root = tmp_path / "r"
    shutil.copytree(world.root, root)
    summary = json.loads((root / "world.json").read_text())
    (root / "world.json").unlink()
    (root / ".synth_in_progress.json").write_text(json.dumps({"params": summary["params"]}))
    faces = sorted((root / "scans").rglob("*_sami.jpg"))
    missing, kept = faces[:4], faces[-1]
    for f in missing:
        f.unlink()
    before = kept.stat().st_mtime_ns
    again = generate_world(root, seed=0, face_size=16, renderer="numpy", **TINY)
    assert again.timings and all(f.exists() for f in missing)
    assert kept.stat().st_mtime_ns == before  # skipped, not re-rendered
    assert not (root / ".synth_in_progress.json").exists()
    for f in missing:
        assert f.read_bytes() == (world.root / f.relative_to(root)).read_bytes()


def test_landmark_style_says_no_turn_and_the_others_do():
    """Style 1 instructions name only rooms and objects: a vision-free follower cannot solve them."""
    from vln_clip.synth.language import EN_TURN, Event, realise_en

    events = [Event("turn", direction="left"), Event("enter", room="kitchen"), Event("turn", direction="right"),
              Event("stop_room", room="kitchen")]
    turn_phrases = [p for opts in EN_TURN.values() for p in opts]
    for seed in range(20):
        rng = np.random.default_rng(seed)
        texts = [realise_en(events, rng, style).lower() for style in range(3)]
        assert not any(p in texts[1] for p in turn_phrases) and "kitchen" in texts[1]
        assert sum(p in texts[0] for p in turn_phrases) == 2 and sum(p in texts[2] for p in turn_phrases) == 2
