"""Generating a whole synthetic world: graphs, skyboxes, scenes and R2R / RxR episodes.

Layout of the output directory (the rest of the toolkit reads it like the real data)::

    DIR/connectivity/<scan>_connectivity.json, scans.txt
    DIR/scans/<scan>/matterport_skybox_images/<pano>_skybox<i>_sami.jpg   (i = 0 up, 1-4 around, 5 down)
    DIR/scenes/<scan>.json
    DIR/r2r/R2R_{train,val_seen,val_unseen,test}.json
    DIR/rxr/rxr_{train,val_seen,val_unseen}_guide.jsonl.gz
    DIR/world.json

Every random choice comes from ``numpy.random.default_rng`` streams keyed by
``(seed, house, purpose)``, floats are rounded before they are written, JPEGs use a fixed
quality and gzip a zero mtime, so one seed gives the same bytes on every run. ``world.json``
is written last; a later call with the same parameters finds it and returns at once.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vln_clip.errors import DataError
from vln_clip.geometry import NUM_VIEWS, VIEW_ELEVATIONS, VIEW_HEADINGS, VIEW_HEIGHT, VIEW_VFOV, VIEW_WIDTH
from vln_clip.graph import NavGraph, load_graph
from vln_clip.io import atomic_path, read_json, write_json, write_jsonl

from . import language
from .layout import (Viewpoint, connect, connectivity_json, largest_component, place_viewpoints)
from .render import RayCaster, Rects, build_scene, resolve_renderer
from .world import House, make_house

GENERATOR_VERSION = "1.2"
SPLITS = ("train", "val_seen", "val_unseen", "test")
RXR_SPLITS = ("train", "val_seen", "val_unseen")
VIEW_ASPECT = VIEW_WIDTH / VIEW_HEIGHT
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass
class SynthConfig:
    """Everything that determines a world's bytes (``world.json`` stores it)."""

    houses: int = 6
    seed: int = 0
    face_size: int = 128
    render: bool = True
    renderer: str = "auto"  # recorded; gl and numpy draw the same scene, pixels differ slightly
    paths_per_house: int = 40
    val_seen_per_house: int = 10
    rxr_paths_per_house: int = 12
    min_edges: int = 4
    max_edges: int = 6
    min_distance: float = 5.0
    min_rooms: int = 5
    max_rooms: int = 9
    two_floor_fraction: float = 0.34  # chance that a house gets an upper floor reached by stairs
    jpeg_quality: int = 90
    skybox_small: bool = False


@dataclass
class WorldPaths:
    """Where a generated world's files are."""

    root: Path
    connectivity: Path
    scans_dir: Path
    scenes: Path
    r2r: dict[str, Path]
    rxr: dict[str, Path]
    world_json: Path
    splits: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage of the last generation

    @classmethod
    def at(cls, root: Path, splits: dict[str, list[str]] | None = None) -> "WorldPaths":
        root = Path(root)
        return cls(root, root / "connectivity", root / "scans", root / "scenes",
                   {s: root / "r2r" / f"R2R_{s}.json" for s in SPLITS},
                   {s: root / "rxr" / f"rxr_{s}_guide.jsonl.gz" for s in RXR_SPLITS},
                   root / "world.json", splits or {})

    def skybox(self, scan: str, pano: str, face: int) -> Path:
        return self.scans_dir / scan / "matterport_skybox_images" / f"{pano}_skybox{face}_sami.jpg"


def scan_id(seed: int, house: int) -> str:
    """11 alphanumeric characters (no underscore), like a Matterport scan id."""
    digest = hashlib.sha256(f"vln-clip-synth/{seed}/{house}".encode()).digest()
    n = int.from_bytes(digest, "big")
    chars = []
    for _ in range(11):
        n, r = divmod(n, len(_ALNUM))
        chars.append(_ALNUM[r])
    return "".join(chars)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % (1 << 64), *keys])


@dataclass
class _HouseData:
    scan: str
    house: House
    vps: list[Viewpoint]
    graph: NavGraph
    rects: Rects


def _build_house(cfg: SynthConfig, h: int, conn_dir: Path) -> _HouseData:
    scan = scan_id(cfg.seed, h)
    for attempt in range(20):
        rng = _rng(cfg.seed, h, attempt)
        floors = 2 if _rng(cfg.seed, h, 77).random() < cfg.two_floor_fraction else 1
        house = make_house(rng, cfg.min_rooms, cfg.max_rooms, floors)
        vps = place_viewpoints(house, scan, rng)
        visible, unob = connect(house, vps)
        keep = largest_component(unob)
        if len(keep) >= max(8, cfg.min_edges + 2):
            break
    else:  # pragma: no cover - the layout rules make this unreachable in practice
        raise DataError(f"house {h} of seed {cfg.seed}: could not build a connected house")
    vps = [vps[k] for k in keep]
    visible, unob = visible[np.ix_(keep, keep)], unob[np.ix_(keep, keep)]
    path = conn_dir / f"{scan}_connectivity.json"
    write_json(path, connectivity_json(vps, visible, unob))
    graph = load_graph(path, use_cache=False)
    return _HouseData(scan, house, vps, graph, build_scene(house))


# ---------------------------------------------------------------------------------------
# Episodes


def _candidate_pairs(graph: NavGraph, min_edges: int, max_edges: int, min_distance: float) -> tuple[list[tuple[int, int]], float]:
    """(start, goal) index pairs whose shortest path has the wanted number of edges.

    The minimum start-goal distance starts at ``min_distance`` and drops by 0.5 m (not
    below 3 m) while a house offers fewer than 20 pairs, so small houses still yield paths.
    """
    n = len(graph)
    hops = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            k, c = i, 0
            while k != j:
                k = int(graph.next_hop[k, j])
                c += 1
            hops[i, j] = c
    d = min_distance
    while True:
        ok = (hops >= min_edges) & (hops <= max_edges) & (graph.distances >= d - 1e-9)
        pairs = [(int(i), int(j)) for i, j in zip(*np.nonzero(ok))]
        if len(pairs) >= 20 or d <= 3.0:
            return pairs, d
        d -= 0.5


def _sample_paths(rng: np.random.Generator, pairs: list[tuple[int, int]], count: int,
                  exclude: set[tuple[int, int]]) -> list[tuple[int, int]]:
    avail = [p for p in pairs if p not in exclude]
    if not avail:
        return []
    order = rng.permutation(len(avail))[:count]
    return [avail[int(k)] for k in sorted(order)]


def _episodes(cfg: SynthConfig, data: list[_HouseData], splits: dict[str, list[str]]) -> tuple[dict, dict, dict]:
    r2r: dict[str, list[dict]] = {s: [] for s in SPLITS}
    rxr: dict[str, list[dict]] = {s: [] for s in RXR_SPLITS}
    stats: dict[str, Any] = {"min_distance_used": {}}
    by_scan = {d.scan: (h, d) for h, d in enumerate(data)}
    path_id = 0
    rxr_path_id = 0
    instr_id = 0
    for split in ("train", "val_unseen", "test"):
        for scan in splits[split]:
            h, hd = by_scan[scan]
            g = hd.graph
            pairs, used = _candidate_pairs(g, cfg.min_edges, cfg.max_edges, cfg.min_distance)
            stats["min_distance_used"][scan] = used
            rng = _rng(cfg.seed, h, 1000)
            vp_map = {v.id: v for v in hd.vps}
            taken: set[tuple[int, int]] = set()
            plan = [(split, cfg.paths_per_house)]
            if split == "train":
                plan.append(("val_seen", cfg.val_seen_per_house))
            for out_split, count in plan:
                chosen = _sample_paths(rng, pairs, count, taken)
                taken.update(chosen)
                for i, j in chosen:
                    path = g.shortest_path(g.viewpoints[i], g.viewpoints[j])
                    heading = round(float(rng.uniform(0, 2 * math.pi)), 6)
                    events = language.path_events(hd.house, vp_map, path, heading)
                    prng = _rng(cfg.seed, h, 2000 + path_id)
                    texts = [language.realise_en(events, prng, style) for style in range(3)]
                    item: dict[str, Any] = {"distance": round(g.distance(path[0], path[-1]), 4), "scan": scan,
                                            "path_id": path_id, "path": path, "heading": heading,
                                            "instructions": texts}
                    if out_split == "test":
                        item = {"scan": scan, "path_id": path_id, "path": [path[0]], "heading": heading,
                                "instructions": texts}
                    r2r[out_split].append(item)
                    path_id += 1
            # RxR: its own, longer paths (up to max_edges + 2) in the same houses.
            if split == "test":
                continue
            rx_pairs, _ = _candidate_pairs(g, cfg.min_edges, cfg.max_edges + 2, cfg.min_distance)
            rx_plan = [(split, cfg.rxr_paths_per_house)]
            if split == "train":
                rx_plan.append(("val_seen", max(1, cfg.rxr_paths_per_house // 4)))
            rx_taken: set[tuple[int, int]] = set()
            for out_split, count in rx_plan:
                for i, j in _sample_paths(rng, rx_pairs, count, rx_taken):
                    rx_taken.add((i, j))
                    path = g.shortest_path(g.viewpoints[i], g.viewpoints[j])
                    heading = round(float(rng.uniform(0, 2 * math.pi)), 6)
                    events = language.path_events(hd.house, vp_map, path, heading, long=True)
                    prng = _rng(cfg.seed, h, 50000 + rxr_path_id)
                    english = "en-IN" if prng.random() < 0.5 else "en-US"
                    for lang_code in (english, "hi-IN", "te-IN"):
                        text = language.realise_long(events, lang_code[:2], prng)
                        rxr[out_split].append({
                            "instruction_id": instr_id, "path_id": rxr_path_id, "scan": scan, "path": path,
                            "heading": heading, "instruction": text, "language": lang_code,
                        })
                        instr_id += 1
                    rxr_path_id += 1
    return r2r, rxr, stats


# ---------------------------------------------------------------------------------------
# Scene descriptions


def _view_frames() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forward, right, up) unit vectors of the 36 discretized views, each ``[36, 3]``."""
    h, e = VIEW_HEADINGS, VIEW_ELEVATIONS
    fwd = np.stack([np.sin(h) * np.cos(e), np.cos(h) * np.cos(e), np.sin(e)], -1)
    right = np.stack([np.cos(h), -np.sin(h), np.zeros_like(h)], -1)
    up = np.cross(right, fwd)
    return fwd, right, up


def _object_samples(house: House) -> tuple[np.ndarray, np.ndarray]:
    """Nine points per object (centre and corners pulled 15% inward) and their owners."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
    pts, owners = [], []
    for obj in house.objects:
        c = np.array(obj.centre)
        half = np.array(obj.size) / 2 * 0.85
        pts.append(np.vstack([c[None], c + corners * half]))
        owners.extend([obj.index] * 9)
    if not pts:
        return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    return np.vstack(pts), np.array(owners, dtype=np.int64)


def _visible_objects(caster: RayCaster, samples: tuple[np.ndarray, np.ndarray], eye: np.ndarray) -> list[list[int]]:
    """For each of the 36 discretized views (MatterSim order), the objects it sees.

    An object counts as seen when one of its sample points is in the view frustum
    (VFOV 60 degrees, 4:3) and the first surface hit on the way to it belongs to the object.
    """
    pts, owners = samples
    if len(pts) == 0:
        return [[] for _ in range(NUM_VIEWS)]
    dirs = pts - eye
    t, idx = caster.cast(eye, dirs)
    seen = (idx >= 0) & ((caster.r.owner[np.maximum(idx, 0)] == owners) | (t >= 1.0 - 1e-3))
    tan_v = math.tan(VIEW_VFOV / 2)
    tan_h = tan_v * VIEW_ASPECT
    fwd, right, up = _VIEW_FRAMES
    z = dirs @ fwd.T  # [P, 36]
    inside = (z > 1e-6) & (np.abs(dirs @ right.T) <= tan_h * z) & (np.abs(dirs @ up.T) <= tan_v * z)
    ok = inside & seen[:, None]
    return [sorted({int(o) for o in owners[ok[:, v]]}) for v in range(NUM_VIEWS)]


_VIEW_FRAMES = _view_frames()


def _scene_json(hd: _HouseData) -> dict[str, Any]:
    house = hd.house
    caster = RayCaster(hd.rects)
    samples = _object_samples(house)
    vps = []
    for v in hd.vps:
        eye = np.array([v.x, v.y, v.z])
        entry: dict[str, Any] = {"id": v.id, "position": [v.x, v.y, v.z], "room": v.room,
                                 "room_type": house.rooms[v.room].type, "floor": v.floor}
        if v.stair >= 0:
            entry["stairs"] = ("foot", "middle", "top")[v.stair]
        if v.door >= 0:
            d = house.doors[v.door]
            entry["doorway"] = [d.a, d.b]
        entry["views"] = _visible_objects(caster, samples, eye)
        vps.append(entry)
    return {
        "scan": hd.scan,
        "extent": [round(x, 3) for x in house.extent],
        "ceiling_height": 2.6,
        "floors": house.floors,
        "stairs": None if house.stairs is None else {
            "rooms": [house.stairs.room0, house.stairs.room1], "footprint": list(house.stairs.footprint),
            "axis": house.stairs.axis, "direction": house.stairs.direction,
            "foot": list(house.stairs.bottom), "top": list(house.stairs.top)},
        "rooms": [{"id": r.index, "type": r.type, "box": [r.x0, r.y0, r.x1, r.y1],
                   "polygon": [[r.x0, r.y0], [r.x1, r.y0], [r.x1, r.y1], [r.x0, r.y1]], "floor": r.floor,
                   "z": r.z0,
                   "wall_rgb": list(r.wall_rgb), "floor_rgb": list(r.floor_rgb), "ceiling_rgb": list(r.ceiling_rgb)}
                  for r in house.rooms],
        "doors": [{"id": d.index, "rooms": [d.a, d.b], "position": [d.x, d.y], "wall_axis": d.axis,
                   "width": d.width, "floor": d.floor} for d in house.doors],
        "objects": [{"id": o.index, "type": o.type, "colour": o.colour, "rgb": list(o.rgb),
                     "position": list(o.centre), "size": list(o.size), "room": o.room,
                     "room_type": house.rooms[o.room].type} for o in house.objects],
        "viewpoints": vps,
        "views": "views[i] lists object ids seen by MatterSim discretized view i "
                 "(heading (i % 12) * 30 deg, elevation (i // 12 - 1) * 30 deg, VFOV 60, 4:3)",
    }


# ---------------------------------------------------------------------------------------
# Rendering


def _save_jpeg(img: np.ndarray, path: Path, quality: int) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="JPEG", quality=quality, optimize=False, progressive=False)


def _render_job(kind: str, rects: Rects, scan: str, vps: list[tuple[str, float, float, float]], root: str,
                size: int, quality: int, skybox_small: bool, resume: bool = False) -> int:
    """Render and write one house's skyboxes; runs in a spawned child for ``gl``.

    With ``resume`` (an interrupted run with the same parameters), panoramas whose files all
    exist are skipped: files are written atomically, so an existing one is complete.
    """
    from .render import GLRenderer, NumpyRenderer

    paths = WorldPaths.at(Path(root))
    todo = vps
    if resume:
        def done(pano: str) -> bool:
            files = [paths.skybox(scan, pano, i) for i in range(6)]
            if skybox_small:
                files.append(files[0].with_name(f"{pano}_skybox_small.jpg"))
            return all(f.exists() for f in files)

        todo = [v for v in vps if not done(v[0])]
    if not todo:
        return len(vps)
    rend: Any = GLRenderer(size) if kind == "gl" else NumpyRenderer(size)
    try:
        rend.set_scene(rects)
        for pano, x, y, z in todo:
            faces = rend.render((x, y, z))
            for i, img in enumerate(faces):
                _save_jpeg(img, paths.skybox(scan, pano, i), quality)
            if skybox_small:
                strip = np.concatenate(faces, axis=1)
                _save_jpeg(strip, paths.skybox(scan, pano, 0).with_name(f"{pano}_skybox_small.jpg"), quality)
    finally:
        rend.close()
    return len(vps)


def _render_all(cfg: SynthConfig, data: list[_HouseData], paths: WorldPaths, kind: str,
                progress: Callable[[int], None] | None, resume: bool = False) -> None:
    """All houses' skyboxes: numpy in this process, gl in one spawned child process.

    A Mesa EGL context in this process would make a later ``import torch._dynamo`` crash it
    (see :mod:`vln_clip.synth.render`), and callers go on to train models.
    """
    jobs = [(kind, hd.rects, hd.scan, [(v.id, v.x, v.y, v.z) for v in hd.vps], str(paths.root), cfg.face_size,
             cfg.jpeg_quality, cfg.skybox_small, resume) for hd in data]
    if kind == "numpy":
        for job in jobs:
            n = _render_job(*job)
            if progress:
                progress(n)
        return
    from .render import _isolated_pool

    with _isolated_pool() as pool:
        for n in pool.map(_render_job, *zip(*jobs)):
            if progress:
                progress(n)


# ---------------------------------------------------------------------------------------
# Entry point


def split_scans(scans: list[str], seed: int) -> dict[str, list[str]]:
    """Houses into train / val_unseen / test (val_seen reuses the train houses)."""
    n = len(scans)
    n_test = max(1, int(round(n * 0.15)))
    n_unseen = max(1, int(round(n * 0.15)))
    order = [scans[int(k)] for k in _rng(seed, 999).permutation(n)]
    train = sorted(order[: n - n_test - n_unseen])
    unseen = sorted(order[n - n_test - n_unseen: n - n_test])
    test = sorted(order[n - n_test:])
    return {"train": train, "val_seen": list(train), "val_unseen": unseen, "test": test}


def _remove_stale(paths: WorldPaths, stale: set[str]) -> None:
    """Delete the files of scans that a previous generation here wrote and this one did not.

    Only scans listed in the previous ``world.json`` are touched, so nothing else in the
    folder is ever removed.
    """
    import shutil

    for scan in sorted(stale):
        for f in (paths.connectivity / f"{scan}_connectivity.json", paths.scenes / f"{scan}.json"):
            if f.exists():
                f.unlink()
        if (paths.scans_dir / scan).is_dir():
            shutil.rmtree(paths.scans_dir / scan)


def _params(cfg: SynthConfig) -> dict[str, Any]:
    p = asdict(cfg)
    p["generator_version"] = GENERATOR_VERSION
    return p


def generate_world(out_dir: str | os.PathLike[str], houses: int = 6, seed: int = 0, face_size: int = 128,
                   render: bool = True, renderer: str = "auto", force: bool = False, progress: bool = False,
                   **options: Any) -> WorldPaths:
    """Generate (or find already generated) a synthetic Matterport-format world.

    ``options`` are further :class:`SynthConfig` fields (``paths_per_house``, ``min_distance``,
    ``skybox_small``, ...). Returns the output paths. When ``out_dir/world.json`` records
    the same parameters the world is returned as is, so callers may invoke this freely.
    """
    unknown = set(options) - set(SynthConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"generate_world: unknown option(s) {sorted(unknown)}")
    cfg = SynthConfig(houses=houses, seed=seed, face_size=face_size, render=render, renderer=renderer, **options)
    if cfg.houses < 3:
        raise DataError(f"--houses {cfg.houses}: need at least 3 houses (train, val_unseen and test get one each)")
    if cfg.face_size < 8:
        raise DataError(f"--face-size {cfg.face_size}: faces must be at least 8 pixels")
    if not 0.0 <= cfg.two_floor_fraction <= 1.0:
        raise DataError(f"--two-floor-fraction {cfg.two_floor_fraction}: must be between 0 and 1")
    if not 2 <= cfg.min_edges <= cfg.max_edges:
        raise DataError(f"path edges {cfg.min_edges}..{cfg.max_edges}: need 2 <= min <= max")
    # Counts are slice bounds further down: a negative one would silently mean "all but the
    # last N" (thousands of paths), zero an empty split that only fails later, in training.
    for flag, value in (("--paths-per-house", cfg.paths_per_house), ("--val-seen-per-house", cfg.val_seen_per_house),
                        ("--rxr-paths-per-house", cfg.rxr_paths_per_house)):
        if value < 1:
            raise DataError(f"{flag} {value}: must be a positive integer (every split needs paths to train "
                            "and validate on)")
    if not cfg.min_distance >= 0.0:
        raise DataError(f"--min-distance {cfg.min_distance}: must be zero or more metres")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise DataError(f"--jpeg-quality {cfg.jpeg_quality}: must be between 1 and 100 (JPEG's scale)")
    root = Path(out_dir)
    paths = WorldPaths.at(root)
    previous: dict[str, Any] = {}
    if paths.world_json.exists():
        try:
            previous = read_json(paths.world_json, "synthetic world summary")
        except DataError:
            previous = {}
        if not force and previous.get("params") == _params(cfg) and previous.get("complete"):
            paths.splits = previous["splits"]
            return paths
        paths.world_json.unlink()  # a half-rewritten world must not look complete
    old_scans = {s for scans in previous.get("splits", {}).values() for s in scans} if previous else set()
    # An interrupted generation leaves this marker; the same parameters resume its rendering.
    marker = root / ".synth_in_progress.json"
    resume = False
    if marker.exists() and not force:
        try:
            resume = read_json(marker, "synthetic world marker").get("params") == _params(cfg)
        except (DataError, AttributeError):
            resume = False
    write_json(marker, {"params": _params(cfg)})

    t0 = time.perf_counter()
    conn = paths.connectivity
    conn.mkdir(parents=True, exist_ok=True)
    data = [_build_house(cfg, h, conn) for h in range(cfg.houses)]
    scans = [d.scan for d in data]
    if len(set(scans)) != len(scans):  # pragma: no cover - 62^11 ids
        raise DataError("scan id collision; choose another seed")
    with atomic_path(conn / "scans.txt") as tmp:
        tmp.write_text("".join(s + "\n" for s in scans))
    splits = split_scans(scans, cfg.seed)
    t_graph = time.perf_counter()

    r2r, rxr, stats = _episodes(cfg, data, splits)
    for s in SPLITS:
        write_json(paths.r2r[s], r2r[s], indent=2)
    for s in RXR_SPLITS:
        write_jsonl(paths.rxr[s], rxr[s])
    t_episodes = time.perf_counter()

    for hd in data:
        write_json(paths.scenes / f"{hd.scan}.json", _scene_json(hd))
    t_scenes = time.perf_counter()

    backend = "none"
    if cfg.render:
        backend = resolve_renderer(cfg.renderer)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(len(d.vps) for d in data), desc=f"rendering skyboxes ({backend})", unit="pano")
        try:
            _render_all(cfg, data, paths, backend, bar.update if bar else None, resume)
        finally:
            if bar:
                bar.close()
    t_render = time.perf_counter()
    _remove_stale(paths, old_scans - set(scans))

    summary = {
        "generator": "vln-clip synthetic Matterport",
        "generator_version": GENERATOR_VERSION,
        "seed": cfg.seed,
        "houses": cfg.houses,
        "params": _params(cfg),
        "splits": splits,
        "renderer": backend,
        "counts": {
            "viewpoints": {d.scan: len(d.vps) for d in data},
            "edges": {d.scan: d.graph.num_edges for d in data},
            "r2r_paths": {s: len(r2r[s]) for s in SPLITS},
            "rxr_instructions": {s: len(rxr[s]) for s in RXR_SPLITS},
        },
        "min_distance_used": stats["min_distance_used"],
        "complete": True,
    }
    timings = {"graphs_s": t_graph - t0, "episodes_s": t_episodes - t_graph, "scenes_s": t_scenes - t_episodes,
               "render_s": t_render - t_scenes}
    write_json(paths.world_json, summary, indent=2)
    marker.unlink()
    paths.splits = splits
    paths.timings = timings  # not written to disk: keeps the files deterministic
    return paths
