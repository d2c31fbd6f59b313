"""A synthetic V&L world: perspective images of the synthetic houses with what each one shows.

``generate_vl_world(world_dir, out_dir)`` reads a world made by :func:`vln_clip.synth.generate_world`
(scene descriptions, connectivity poses, skybox faces), picks camera poses in its houses, renders
a perspective image from each panorama's skybox faces (the same bilinear cube lookup the
feature extractor uses, :mod:`vln_clip.features.views`), and describes the image from the exact
geometry: a per-pixel object-id buffer cast with :class:`vln_clip.synth.render.RayCaster` along
the very rays of the image gives which objects are visible, how much of the image they cover,
where they are (left to right) and which room the camera is in. From those descriptions
:mod:`vln_clip.synth.vl_language` writes VQA questions with ten annotators' answers, captions,
GQA programs and SNLI-VE hypotheses, and this module writes them in the real formats through
the writers of :mod:`vln_clip.datasets`. Layout (docs/vl-data.md)::

    DIR/images/COCO_synth_<image_id:012d>.jpg
    DIR/scenes.json
    DIR/vqa/v2_OpenEnded_mscoco_{split}_questions.json, v2_mscoco_{split}_annotations.json
    DIR/coco/captions_{split}.json, dataset_coco.json
    DIR/gqa/{split}_balanced_questions.json
    DIR/snli_ve/snli_ve_{split}.jsonl
    DIR/lxmert/mscoco_{train,val}.json
    DIR/vl_world.json                      (written last: parameters, counts, complete: true)

Splits follow the navigation world's houses: its ``train`` houses give ``train`` images,
``val_unseen`` gives ``val`` and ``test`` gives ``test``, so no house (and no image) is in
two splits. Randomness comes from ``numpy.random.default_rng([seed, house, purpose])``
streams and floats are rounded before they are written: one seed gives the same bytes.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vln_clip.datasets.coco import (CaptionImage, KarpathyImage, KarpathySentence, read_karpathy, write_captions,
                                    write_karpathy)
from vln_clip.datasets.gqa import GQAItem, GQAStep, read_gqa, write_gqa
from vln_clip.datasets.lxmert import LXMERTItem, write_lxmert
from vln_clip.datasets.snli_ve import SNLIVEItem, read_snli_ve, write_snli_ve
from vln_clip.datasets.vqa import AnswerVocab, VQAItem, answer_histogram, read_vqa, write_vqa
from vln_clip.errors import DataError
from vln_clip.eval.vqa_accuracy import normalize_answer, vqa_accuracy
from vln_clip.features.views import (ViewSpec, faces_to_strip, load_skybox, read_pano_rotations, render_skybox,
                                     view_rays)
from vln_clip.io import atomic_path, read_json, write_json

from . import vl_language as lang
from .render import RayCaster, Rects, build_scene
from .world import CEILING_HEIGHT, Door, House, Room, SceneObject, Stairs, _parts, _wall_pieces

VL_GENERATOR_VERSION = "1.1"  # 1.1: SNLI-VE lines carry hypothesis_type
#: Image split <- navigation split of the house.
SPLIT_OF_NAV = {"train": "train", "val_unseen": "val", "test": "test"}
VL_SPLITS = ("train", "val", "test")
DATA_SUBTYPE = "synth"
#: Default image sizes (width, height): 4:3, 16:9, 1:1 and portrait 3:4, 160-480 px.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((320, 240), (480, 360), (448, 252), (288, 288), (240, 320),
                                              (160, 120))


@dataclass
class VLConfig:
    """Everything that determines a V&L world's bytes (``vl_world.json`` stores it)."""

    seed: int = 0
    images_per_house: int = 40
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    fov_deg: float = 75.0  # field of view across the longer image side
    elevation_deg: tuple[float, float] = (-35.0, 0.0)  # camera tilt range (objects stand on the floor)
    min_objects: int = 1  # an image shows at least this many (clearly visible) objects of its room
    min_area: float = 0.004  # share of the image an object must cover to count as visible
    id_long_side: int = 96  # the object-id buffer's longer side (rays), whatever the image size
    vqa_per_image: int = 8
    gqa_per_image: int = 5
    snli_per_image: int = 6
    jpeg_quality: int = 90
    # pre-training-only questions per train/val image, in the LXMERT mix only (source visual7w,
    # as LXMERT's Visual7W / Visual Genome QA): half VQA-style, half GQA-style, none of them in a
    # fine-tuning set, so the mix holds QA data beyond what fine-tuning sees (0 = none)
    visual7w_per_image: int = 0


@dataclass
class VLPaths:
    """Where a V&L world's files are."""

    root: Path
    images: Path
    scenes: Path
    vl_world: Path
    timings: dict[str, float] = field(default_factory=dict)  # empty when the world was found cached

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> "VLPaths":
        root = Path(root)
        return cls(root, root / "images", root / "scenes.json", root / "vl_world.json")

    def image(self, key: str) -> Path:
        return self.images / f"{key}.jpg"

    def vqa_questions(self, split: str) -> Path:
        return self.root / "vqa" / f"v2_OpenEnded_mscoco_{split}_questions.json"

    def vqa_annotations(self, split: str) -> Path:
        return self.root / "vqa" / f"v2_mscoco_{split}_annotations.json"

    def captions(self, split: str) -> Path:
        return self.root / "coco" / f"captions_{split}.json"

    @property
    def karpathy(self) -> Path:
        return self.root / "coco" / "dataset_coco.json"

    def gqa(self, split: str) -> Path:
        return self.root / "gqa" / f"{split}_balanced_questions.json"

    def snli_ve(self, split: str) -> Path:
        return self.root / "snli_ve" / f"snli_ve_{split}.jsonl"

    def lxmert(self, split: str) -> Path:
        return self.root / "lxmert" / f"mscoco_{split}.json"


def image_key(image_id: int) -> str:
    """``COCO_synth_<image_id:012d>``: the file stem (the VQA convention with subtype ``synth``)."""
    return f"COCO_{DATA_SUBTYPE}_{int(image_id):012d}"


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % (1 << 64), *keys])


# ---------------------------------------------------------------------------------------
# Houses back from their scene descriptions


def house_from_scene(scene: dict[str, Any]) -> House:
    """The :class:`House` a scene description was written from (geometry, colours, furniture).

    ``build_scene`` of the result draws the same rectangles the world's skyboxes were rendered
    from (object boxes to the 1 mm the description rounds to), so visibility computed on it
    matches the pixels.
    """
    rooms = [Room(int(r["id"]), r["type"], *map(float, r["box"]), (0, 0), tuple(r["wall_rgb"]),
                  tuple(r["floor_rgb"]), tuple(r["ceiling_rgb"]), int(r["floor"]), float(r["z"]))
             for r in scene["rooms"]]
    doors = [Door(int(d["id"]), int(d["rooms"][0]), int(d["rooms"][1]), float(d["position"][0]),
                  float(d["position"][1]), d["wall_axis"], float(d["width"]), int(d["floor"])) for d in scene["doors"]]
    objects = []
    for o in scene["objects"]:
        c, s = np.asarray(o["position"], float), np.asarray(o["size"], float)
        lo, hi = tuple(c - s / 2), tuple(c + s / 2)
        obj = SceneObject(int(o["id"]), o["type"], o["colour"], tuple(o["rgb"]), int(o["room"]),
                          tuple(o["position"]), tuple(o["size"]))
        obj.parts = _parts(o["type"], lo, hi, tuple(o["rgb"]))
        objects.append(obj)
    walls = []
    for f in range(int(scene["floors"])):
        boxes = [r for r in rooms if r.floor == f]
        xs = np.array(sorted({r.x0 for r in boxes} | {r.x1 for r in boxes}))
        ys = np.array(sorted({r.y0 for r in boxes} | {r.y1 for r in boxes}))
        walls.append(_wall_pieces(xs, ys, [d for d in doors if d.floor == f]))
    st = scene.get("stairs")
    stairs = None
    if st:
        foot, top = tuple(st["foot"]), tuple(st["top"])
        stairs = Stairs(int(st["rooms"][0]), int(st["rooms"][1]), tuple(st["footprint"]), st["axis"],
                        int(st["direction"]), foot, ((foot[0] + top[0]) / 2, (foot[1] + top[1]) / 2), top)
    return House(rooms, doors, objects, walls, tuple(scene["extent"]), stairs)


# ---------------------------------------------------------------------------------------
# Cameras and what they see


@dataclass(frozen=True)
class Camera:
    """One image: a panorama, a direction and an image size (MatterSim's heading convention)."""

    scan: str
    viewpoint: str
    eye: tuple[float, float, float]
    heading: float  # radians, clockwise from +y seen from above
    elevation: float  # radians, positive up
    width: int
    height: int
    vfov: float  # radians

    @property
    def spec(self) -> ViewSpec:
            return ViewSpec(self.width, self.height, math.degrees(self.vfov))


def vfov_for(width: int, height: int, fov_deg: float) -> float:
    """Vertical field of view (radians) that spans ``fov_deg`` across the longer image side."""
    t = math.tan(math.radians(fov_deg) / 2)
    return 2 * math.atan(t * height / max(width, height))


def camera_rays(cam: Camera, long_side: int | None = None) -> np.ndarray:
    """World directions ``[h, w, 3]`` through ``cam``'s image: its pixel centres, or a coarser
    grid over the same frame with ``long_side`` rays across the longer side (the frame the
    image is sampled in, so ids and pixels line up)."""
    w, h = cam.width, cam.height
    if long_side is not None and max(w, h) > long_side:
        f = long_side / max(w, h)
        w, h = max(1, round(w * f)), max(1, round(h * f))
    return view_rays([cam.heading], [cam.elevation], cam.spec, out_size=(w, h))[0].double().numpy()


def _camera_axes(cam: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(forward, right, up) of ``cam`` in world coordinates (MatterSim's conventions)."""
    sh, ch, se, ce = math.sin(cam.heading), math.cos(cam.heading), math.sin(cam.elevation), math.cos(cam.elevation)
    return np.array([sh * ce, ch * ce, se]), np.array([ch, -sh, 0.0]), np.array([-sh * se, -ch * se, ce])


def frustum_subset(rects: Rects, cam: Camera) -> Rects:
    """The rectangles that may appear in ``cam``'s image: a rectangle goes only when all its
    corners are outside one side of the view frustum (conservative, so nothing visible is
    lost; it makes the id buffer several times cheaper)."""
    fwd, right, up = _camera_axes(cam)
    eye = np.asarray(cam.eye, dtype=np.float64)
    tan_v = math.tan(cam.vfov / 2)
    tan_h = tan_v * cam.width / cam.height
    m = len(rects)
    others = np.array([((1, 2), (0, 2), (0, 1))[int(a)] for a in rects.axis], dtype=np.int64).reshape(-1, 2)
    corners = np.zeros((m, 4, 3))
    rows = np.arange(m)
    for c, (u, v) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
        corners[rows, c, rects.axis] = rects.coord
        corners[rows, c, others[:, 0]] = (rects.lo if u == 0 else rects.hi)[:, 0]
        corners[rows, c, others[:, 1]] = (rects.lo if v == 0 else rects.hi)[:, 1]
    rel = corners - eye
    z, x, y = rel @ fwd, rel @ right, rel @ up
    out = ((z <= 0).all(1) | (x > tan_h * z).all(1) | (-x > tan_h * z).all(1) | (y > tan_v * z).all(1)
           | (-y > tan_v * z).all(1))
    keep = ~out
    return Rects(rects.axis[keep], rects.coord[keep], rects.lo[keep], rects.hi[keep], rects.rgb[keep],
                 rects.owner[keep], rects.sign[keep])


def _room_of_points(rooms: list[dict[str, Any]], pts: np.ndarray) -> np.ndarray:
    """Room id of each hit point (-1 outside every room: stairs wells, the slab)."""
    out = np.full(len(pts), -1, dtype=np.int64)
    for r in rooms:
        x0, y0, x1, y1 = r["box"]
        z0 = float(r["z"])
        inside = ((pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
                  & (pts[:, 2] >= z0 - 1e-3) & (pts[:, 2] <= z0 + CEILING_HEIGHT + 1e-3) & (out < 0))
        out[inside] = int(r["id"])
    return out


def _attributes(obj: dict[str, Any], distance: float) -> dict[str, str]:
    """Visually decidable attributes beyond colour: size class, height class, near / far."""
    sx, sy, sz = obj["size"]
    volume = sx * sy * sz
    attrs = {"colour": obj["colour"],
             "size": "large" if volume >= 1.0 else ("small" if volume < 0.2 else "medium"),
             "distance": "near" if distance < 2.5 else ("far" if distance > 4.5 else "middle")}
    if sz >= 1.5:
        attrs["height"] = "tall"
    elif sz <= 0.7:
        attrs["height"] = "low"
    return attrs


def describe_view(scene: dict[str, Any], rects: Rects, cam: Camera, cfg: VLConfig,
                  room_id: int) -> dict[str, Any]:
    """What the image of ``cam`` shows, from an object-id buffer cast along the image's rays.

    Objects covering at least ``min_area`` of the image are ``objects`` (left to right by the
    centroid of their visible pixels); smaller glimpses are ``partial`` (questions never use
    them, neither as present nor as absent). ``room_share`` is the share of the image whose
    first surface lies in the camera's room.
    """
    dirs = camera_rays(cam, cfg.id_long_side)
    h, w, _ = dirs.shape
    eye = np.asarray(cam.eye, dtype=np.float64)
    fwd = _camera_axes(cam)[0]
    caster = RayCaster(frustum_subset(rects, cam))
    t, idx = caster.cast(eye, dirs.reshape(-1, 3))
    owner = np.where(idx >= 0, caster.r.owner[np.maximum(idx, 0)], -1).reshape(h, w)
    pts = eye + dirs.reshape(-1, 3) * np.where(np.isfinite(t), t, 0.0)[:, None]
    rooms = _room_of_points(scene["rooms"], pts)
    objs = {int(o["id"]): o for o in scene["objects"]}
    total = h * w
    visible, partial = [], []
    cols = (np.arange(w) + 0.5) / w
    rows = (np.arange(h) + 0.5) / h
    for k in sorted(int(v) for v in np.unique(owner) if v >= 0):
        mask = owner == k
        n = int(mask.sum())
        o = objs[k]
        entry: dict[str, Any] = {"id": k, "type": o["type"], "colour": o["colour"], "room": int(o["room"]),
                                 "room_type": o["room_type"]}
        area = n / total
        if area < cfg.min_area:
            partial.append(entry)
            continue
        ys, xs = np.nonzero(mask)
        centre = np.asarray(o["position"], float)
        dist = float(np.linalg.norm(centre - eye))
        entry.update({
            "in_room": int(o["room"]) == room_id,
            "area": round(area, 4),
            "center": [round(float(cols[xs].mean()), 4), round(float(rows[ys].mean()), 4)],
            "bbox": [int(xs.min() * cam.width // w), int(ys.min() * cam.height // h),
                     int(math.ceil((xs.max() + 1) * cam.width / w)), int(math.ceil((ys.max() + 1) * cam.height / h))],
            "distance": round(dist, 2),
            "depth": round(float(np.dot(centre - eye, fwd)), 2),
            "attributes": _attributes(o, dist),
        })
        visible.append(entry)
    visible.sort(key=lambda e: (e["center"][0], e["id"]))
    counts: dict[str, int] = {}
    for e in visible:
        counts[e["type"]] = counts.get(e["type"], 0) + 1
    room = scene["rooms"][room_id]
    return {
        "room": {"id": room_id, "type": room["type"]},
        "room_share": round(float((rooms == room_id).mean()), 4),
        "objects": visible,
        "partial": partial,
        "counts": dict(sorted(counts.items())),
    }


# ---------------------------------------------------------------------------------------
# Choosing the images of a house


@dataclass
class _Shot:
    camera: Camera
    description: dict[str, Any]


def _house_shots(scene: dict[str, Any], cfg: VLConfig, house: int) -> list[_Shot]:
    """Camera poses in one house whose images show the camera's room and its furniture.

    Room viewpoints only (doorways and stairs have no single room). Each draw aims the camera
    at an object the scene description says the viewpoint sees (objects of its own room three
    times as likely), jittered by up to half the field of view across and 12 degrees up or
    down, tilt kept within ``elevation_deg``; the image size is drawn uniformly. A draw is kept
    when at least ``min_objects`` objects of the camera's room are clearly visible (one with a
    single visible object only every other time, so images tend to show several) and each
    (viewpoint, 30-degree sector) is used once, so no two images are near copies.
    """
    rng = _rng(cfg.seed, house, 1)
    vps = [v for v in scene["viewpoints"] if "doorway" not in v and "stairs" not in v]
    objects = {int(o["id"]): o for o in scene["objects"]}
    if not vps:
        return []
    rects = build_scene(house_from_scene(scene))
    shots: list[_Shot] = []
    used: set[tuple[str, int]] = set()
    lo, hi = (math.radians(e) for e in cfg.elevation_deg)
    for _attempt in range(cfg.images_per_house * 15):
        if len(shots) >= cfg.images_per_house:
            break
        v = vps[int(rng.integers(len(vps)))]
        seen = sorted({k for view in v["views"] for k in view})
        width, height = cfg.sizes[int(rng.integers(len(cfg.sizes)))]
        if not seen:
            continue
        w = np.array([3.0 if objects[k]["room"] == v["room"] else 1.0 for k in seen])
        target = objects[seen[int(rng.choice(len(seen), p=w / w.sum()))]]
        d = np.asarray(target["position"], float) - np.asarray(v["position"], float)
        vfov = vfov_for(width, height, cfg.fov_deg)
        hfov = 2 * math.atan(math.tan(vfov / 2) * width / height)
        heading = (math.atan2(d[0], d[1]) + float(rng.uniform(-0.5, 0.5)) * hfov / 2) % (2 * math.pi)
        elevation = math.atan2(d[2], math.hypot(d[0], d[1])) + float(rng.uniform(-1, 1)) * math.radians(12)
        elevation = min(hi, max(lo, elevation))
        sector = int(round(heading / (math.pi / 6))) % 12
        if (v["id"], sector) in used:
            continue
        cam = Camera(scene["scan"], v["id"], tuple(float(x) for x in v["position"]), round(heading, 6),
                     round(elevation, 6), int(width), int(height), round(vfov, 6))
        desc = describe_view(scene, rects, cam, cfg, int(v["room"]))
        in_room = sum(1 for o in desc["objects"] if o["in_room"])
        keep_single = rng.random() < 0.5
        if in_room < cfg.min_objects or (len(desc["objects"]) < 2 and not keep_single):
            continue
        used.add((v["id"], sector))
        shots.append(_Shot(cam, desc))
    return shots


def render_image(world_root: Path, cam: Camera, rotation: np.ndarray,
                 faces_cache: dict[str, Any] | None = None) -> np.ndarray:
    """``[height, width, 3]`` uint8: the view of ``cam`` sampled from its panorama's skybox faces
    (bilinear, the lookup of :func:`vln_clip.features.views.render_skybox`; ``rotation`` is the
    panorama's pose rotation from the connectivity file)."""
    key = f"{cam.scan}/{cam.viewpoint}"
    strip = faces_cache.get(key) if faces_cache is not None else None
    if strip is None:
        faces = torch.from_numpy(load_skybox(world_root / "scans", cam.scan, cam.viewpoint))
        strip = faces_to_strip(faces.permute(0, 3, 1, 2)[None])
        if faces_cache is not None:
            faces_cache.clear()  # one panorama at a time: shots of a viewpoint are not adjacent anyway
            faces_cache[key] = strip
    rot = torch.as_tensor(np.asarray(rotation), dtype=torch.float32)[None]
    rays = view_rays([cam.heading], [cam.elevation], cam.spec)
    return render_skybox(strip, rot, rays)[0, 0].permute(1, 2, 0).contiguous().numpy()


# ---------------------------------------------------------------------------------------
# Writing the formats


def _params(cfg: VLConfig, world: dict[str, Any]) -> dict[str, Any]:
    p = asdict(cfg)
    if not cfg.visual7w_per_image:
        del p["visual7w_per_image"]  # worlds made before the option keep their identity
    p["sizes"] = [list(s) for s in cfg.sizes]
    p["elevation_deg"] = list(cfg.elevation_deg)
    p["vl_generator_version"] = VL_GENERATOR_VERSION
    p["world"] = {"params": world.get("params"), "generator_version": world.get("generator_version")}
    return p


def _read_world(world_dir: Path) -> dict[str, Any]:
    wj = world_dir / "world.json"
    if not wj.exists():
        raise DataError(f"{wj}: no synthetic world here; make one with `vln-clip data synth --out {world_dir}`")
    world = read_json(wj, "synthetic world summary")
    if not isinstance(world, dict) or not world.get("complete"):
        raise DataError(f"{wj}: the world is incomplete (an interrupted generation); rerun "
                        f"`vln-clip data synth --out {world_dir}` with the same options")
    if world.get("renderer") in (None, "none") or not world.get("params", {}).get("render", True):
        raise DataError(f"{wj}: the world was generated with --no-render, so it has no skybox images to "
                        f"view; regenerate it without --no-render")
    return world


def _progress(total: int, desc: str, enabled: bool, unit: str = "img") -> Any:
    """A tqdm bar (it also prints when stdout is not a terminal: every 2 s at most)."""
    if not enabled:
        return None
    return tqdm(total=total, desc=desc, unit=unit, mininterval=2.0)


def _answer_labels(vocab: Any, answers: list[str]) -> dict[str, float]:
    return {vocab.answers[i]: round(float(s), 4) for i, s in sorted(vocab.soft_scores(answers, "butd").items())}


LXMERT_SPLITS = ("train", "val")  # the pre-training mix: test images are never in it


def _pretraining_questions(cfg: VLConfig, desc: dict[str, Any], house: int, image_id: int, freq: Any,
                           asked: set[str]) -> list[tuple[str, str, list[str] | None]]:
    """The image's ``visual7w`` questions: drawn from their own random streams (so the fine-tuning
    sets are the same with or without them), minus any question the image already has (``asked``)."""
    asked = set(asked)
    n_vqa = (cfg.visual7w_per_image + 1) // 2
    out: list[tuple[str, str, list[str] | None]] = []
    for qa in lang.vqa_questions(_rng(cfg.seed, house, 6, image_id), desc, n_vqa, freq):
        if qa["question"] not in asked:
            asked.add(qa["question"])
            out.append((qa["question"], qa["answer"], list(qa["answers"])))
    for q in lang.gqa_questions(_rng(cfg.seed, house, 7, image_id), desc, cfg.visual7w_per_image - n_vqa, freq):
        if q["question"] not in asked:
            asked.add(q["question"])
            out.append((q["question"], q["answer"], None))
    return out


def generate_vl_world(world_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], cfg: VLConfig | None = None,
                      force: bool = False, progress: bool = False) -> VLPaths:
    """Render, describe and annotate images of a synthetic world; write every V&L format.

    Cached like :func:`vln_clip.synth.generate_world`: when ``out_dir/vl_world.json`` records the
    same parameters (and the same world parameters) it returns at once; ``force`` rebuilds.
    Images already on disk from an interrupted run with the same parameters are kept (they
    are written atomically), so a rerun after a kill only renders what is missing.
    """
    cfg = cfg or VLConfig()
    _check_config(cfg)
    world_dir, paths = Path(world_dir), VLPaths.at(out_dir)
    world = _read_world(world_dir)
    params = _params(cfg, world)
    previous: dict[str, Any] = {}
    if paths.vl_world.exists():
        try:
            previous = read_json(paths.vl_world, "synthetic V&L world summary")
        except DataError:
            previous = {}
        if not force and previous.get("params") == params and previous.get("complete"):
            return paths
        paths.vl_world.unlink()  # a half-rewritten world must not look complete
    marker = paths.root / ".synth_vl_in_progress.json"
    resume = False
    if marker.exists() and not force:
        try:
            resume = read_json(marker, "synthetic V&L marker").get("params") == params
        except (DataError, AttributeError):
            resume = False
    paths.root.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"params": params})

    t0 = time.perf_counter()
    scans_txt = world_dir / "connectivity" / "scans.txt"
    order = scans_txt.read_text().split() if scans_txt.exists() else sorted(
        s for v in world["splits"].values() for s in v)
    house_index = {s: i for i, s in enumerate(order)}
    split_of: dict[str, str] = {}
    for nav, vl in SPLIT_OF_NAV.items():
        for scan in world["splits"].get(nav, []):
            split_of[scan] = vl
    scans = [s for vl in VL_SPLITS for s in sorted(x for x, y in split_of.items() if y == vl)]

    # 1. cameras and descriptions (geometry only)
    shots: list[tuple[str, _Shot]] = []
    bar = _progress(len(scans), "choosing and describing views", progress, "house")
    for scan in scans:
        scene = read_json(world_dir / "scenes" / f"{scan}.json", "synthetic scene description")
        shots.extend((scan, sh) for sh in _house_shots(scene, cfg, house_index[scan]))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    t_describe = time.perf_counter()
    records: list[dict[str, Any]] = []
    for image_id, (scan, sh) in enumerate(shots, 1):
        key = image_key(image_id)
        c = sh.camera
        records.append({"image_id": image_id, "key": key, "split": split_of[scan], "house": scan,
                        "house_index": house_index[scan], "camera": c, "description": sh.description})

    # 2. images
    paths.images.mkdir(parents=True, exist_ok=True)
    bar = _progress(len(records), "rendering V&L images", progress)
    cache: dict[str, Any] = {}
    rotations: dict[str, dict[str, np.ndarray]] = {}
    try:
        for r in records:
            target = paths.image(r["key"])
            if not (resume and target.exists()):
                cam = r["camera"]
                if cam.scan not in rotations:
                    rotations = {cam.scan: read_pano_rotations(world_dir / "connectivity", cam.scan)}
                img = render_image(world_dir, cam, rotations[cam.scan][cam.viewpoint], cache)
                with atomic_path(target) as tmp:
                    Image.fromarray(img).save(tmp, format="JPEG", quality=cfg.jpeg_quality, optimize=False,
                                              progressive=False)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    keep = {paths.image(r["key"]).name for r in records}
    for f in paths.images.glob(f"COCO_{DATA_SUBTYPE}_*.jpg"):
        if f.name not in keep:
            f.unlink()  # from a previous, larger generation here
    t_render = time.perf_counter()

    # 3. language, split by split
    by_split = {s: [r for r in records if r["split"] == s] for s in VL_SPLITS}
    counts: dict[str, Any] = {"images": {}, "houses": {}, "vqa_questions": {}, "captions": {}, "gqa_questions": {},
                              "snli_ve_pairs": {}}
    vqa_items: dict[str, list[Any]] = {}
    gqa_items: dict[str, list[Any]] = {}
    cap_images: dict[str, list[Any]] = {}
    extra_qa: dict[str, list[tuple[str, str, list[str] | None]]] = {}  # image key -> (question, answer, VQA answers)
    karpathy: list[Any] = []
    caption_id = 1
    sent_id = 0
    for split in VL_SPLITS:
        rs = by_split[split]
        freq = lang.Frequencies([r["description"] for r in rs])
        vqa_items[split], gqa_items[split], cap_images[split], snli = [], [], [], []
        for r in rs:
            d, key, iid, h = r["description"], r["key"], r["image_id"], r["house_index"]
            caps = lang.captions(_rng(cfg.seed, h, 3, iid), d, 5)
            ids = list(range(caption_id, caption_id + len(caps)))
            caption_id += len(caps)
            cam = r["camera"]
            cap_images[split].append(CaptionImage(iid, key, f"{key}.jpg", cam.height, cam.width, caps, ids))
            karpathy.append(KarpathyImage(len(karpathy), key, f"{key}.jpg", split,
                                          [KarpathySentence(sent_id + k, c, lang.tokenize(c)) for k, c in enumerate(caps)],
                                          "images", iid))
            sent_id += len(caps)
            first_vqa, first_gqa = len(vqa_items[split]), len(gqa_items[split])
            for k, qa in enumerate(lang.vqa_questions(_rng(cfg.seed, h, 2, iid), d, cfg.vqa_per_image, freq)):
                vqa_items[split].append(VQAItem(iid * 1000 + k, iid, key, qa["question"], qa["question_type"],
                                                qa["answer_type"], qa["answers"], qa["answer"], qa["confidences"]))
            for k, q in enumerate(lang.gqa_questions(_rng(cfg.seed, h, 4, iid), d, cfg.gqa_per_image, freq)):
                qid = f"{iid}{k:03d}"
                steps = [GQAStep(s["operation"], s["argument"], s["dependencies"]) for s in q["semantic"]]
                detailed = q["types"]["detailed"]
                gqa_items[split].append(GQAItem(
                    qid, key, q["question"], q["answer"], q["fullAnswer"], True, q["types"], steps,
                    lang.semantic_str(q["semantic"]),
                    {"groups": {"global": q["types"]["semantic"] if q["types"]["structural"] == "query" else None,
                                "local": f"{detailed}-{q['group']}"},
                     "entailed": [], "equivalent": [qid], "annotations": {"question": {}, "answer": {}, "fullAnswer": {}}}))
            if cfg.visual7w_per_image and split in LXMERT_SPLITS:
                asked = {it.question for it in vqa_items[split][first_vqa:]}
                asked |= {g.question for g in gqa_items[split][first_gqa:]}
                extra_qa[key] = _pretraining_questions(cfg, d, h, iid, freq, asked)
            hyps = lang.snli_hypotheses(_rng(cfg.seed, h, 5, iid), d, cfg.snli_per_image, freq)
            for k, (hyp, label, template) in enumerate(hyps):
                premise = caps[k % len(caps)]
                snli.append(SNLIVEItem(f"{key}#{k % len(caps)}r{k}{label[0]}", key, hyp, label, premise,
                                       {"captionID": f"{key}.jpg#{k % len(caps)}", "annotator_labels": [label],
                                        lang.HYPOTHESIS_TYPE: template}))
        write_vqa(paths.vqa_questions(split), paths.vqa_annotations(split), vqa_items[split], data_subtype=DATA_SUBTYPE,
                  info={"description": "vln-clip synthetic V&L world", "version": VL_GENERATOR_VERSION},
                  license={"name": "generated", "url": ""})
        write_captions(paths.captions(split), cap_images[split],
                       info={"description": "vln-clip synthetic V&L world", "version": VL_GENERATOR_VERSION})
        write_gqa(paths.gqa(split), gqa_items[split])
        write_snli_ve(paths.snli_ve(split), snli)
        counts["images"][split] = len(rs)
        counts["houses"][split] = len({r["house"] for r in rs})
        counts["vqa_questions"][split] = len(vqa_items[split])
        counts["captions"][split] = sum(len(im.captions) for im in cap_images[split])
        counts["gqa_questions"][split] = len(gqa_items[split])
        counts["snli_ve_pairs"][split] = len(snli)
    write_karpathy(paths.karpathy, karpathy)

    # 4. the LXMERT pre-training mix: captions + QA of the train and val images (test excluded)
    vocab = AnswerVocab.build(vqa_items["train"] + vqa_items["val"], min_count=1)
    for split in LXMERT_SPLITS:
        vqa_by_image: dict[int, list[Any]] = {}
        for it in vqa_items[split]:
            vqa_by_image.setdefault(it.image_id, []).append(it)
        gqa_by_image: dict[str, list[Any]] = {}
        for g in gqa_items[split]:
            gqa_by_image.setdefault(g.image_key, []).append(g)
        rows = []
        for im in cap_images[split]:
            vq, gq = vqa_by_image.get(im.image_id, []), gqa_by_image.get(im.image_key, [])
            sentf = {"mscoco": list(im.captions), "vqa": [q.question for q in vq], "gqa": [g.question for g in gq]}
            labelf = {"vqa": [_answer_labels(vocab, q.answers) for q in vq], "gqa": [{g.answer: 1.0} for g in gq]}
            if cfg.visual7w_per_image:
                extra = [(q, _answer_labels(vocab, answers) if answers else {answer: 1.0})
                         for q, answer, answers in extra_qa.get(im.image_key, [])]
                extra = [(q, label) for q, label in extra if label]  # no answer of the table: not a QA example
                sentf["visual7w"] = [q for q, _ in extra]
                labelf["visual7w"] = [label for _, label in extra]
            rows.append(LXMERTItem(im.image_key, sentf, labelf))
        write_lxmert(paths.lxmert(split), rows)
    t_language = time.perf_counter()

    # 5. scene descriptions, then the summary (last)
    scenes = {}
    for r in records:
        c = r["camera"]
        scenes[r["key"]] = {"image_id": r["image_id"], "file_name": f"{r['key']}.jpg", "split": r["split"],
                            "house": r["house"], "viewpoint": c.viewpoint, "camera": [round(x, 3) for x in c.eye],
                            "heading": c.heading, "elevation": c.elevation, "width": c.width, "height": c.height,
                            "vfov": c.vfov, **r["description"]}
    write_json(paths.scenes, scenes)
    summary = {
        "generator": "vln-clip synthetic V&L world", "vl_generator_version": VL_GENERATOR_VERSION,
        "world": str(world_dir.resolve()), "params": params,
        "splits": {s: sorted({r["house"] for r in by_split[s]}) for s in VL_SPLITS},
        "split_of_navigation_split": dict(SPLIT_OF_NAV), "counts": counts,
        "answer_vocabulary_train_val": len(vocab), "complete": True,
    }
    write_json(paths.vl_world, summary, indent=2)
    marker.unlink()
    paths.timings = {"describe_s": t_describe - t0, "render_s": t_render - t_describe,
                     "language_s": t_language - t_render, "total_s": time.perf_counter() - t0}
    return paths


def _check_config(cfg: VLConfig) -> None:
    if cfg.images_per_house < 1:
        raise DataError(f"--images-per-house {cfg.images_per_house}: need at least 1")
    if not cfg.sizes:
        raise DataError("--sizes: give at least one WIDTHxHEIGHT")
    for w, h in cfg.sizes:
        if not (32 <= w <= 2048 and 32 <= h <= 2048):
            raise DataError(f"--sizes {w}x{h}: width and height must be between 32 and 2048 pixels")
    if not 20.0 <= cfg.fov_deg <= 120.0:
        raise DataError(f"--fov {cfg.fov_deg}: the field of view must be between 20 and 120 degrees")
    if cfg.visual7w_per_image < 0:
        raise DataError(f"--visual7w-per-image {cfg.visual7w_per_image}: must be 0 (none) or more")
    if cfg.id_long_side < 8:
        raise DataError(f"id_long_side {cfg.id_long_side}: must be at least 8")


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"320x240,288x288"`` -> ``((320, 240), (288, 288))`` (a DataError names a bad entry)."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            w, h = (int(x) for x in part.split("x"))
        except ValueError:
            raise DataError(f"--sizes: {part!r} is not WIDTHxHEIGHT (e.g. 320x240)") from None
        out.append((w, h))
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Statistics


def vl_statistics(vl_dir: str | os.PathLike[str], prior_from: str = "train", evaluate_on: str = "val") -> dict[str, Any]:
    """Counts, answer distributions and the question-type prior of a V&L world, read back
    through the dataset readers.

    ``prior`` is the official VQA accuracy on ``evaluate_on`` of answering every question with
    the most frequent (normalised) ``multiple_choice_answer`` of its ``question_type`` in
    ``prior_from``; a model that looks at the image has to beat it (and a question-only model).
    """
    paths = VLPaths.at(vl_dir)
    vqa = {s: read_vqa(paths.vqa_questions(s), paths.vqa_annotations(s)) for s in VL_SPLITS}
    out: dict[str, Any] = {"vqa": {}, "gqa": {}, "snli_ve": {}, "captions": {}}
    for s, items in vqa.items():
        qt = Counter(i.question_type for i in items)
        at = Counter(i.answer_type for i in items)
        agree = [sum(normalize_answer(a) == normalize_answer(i.multiple_choice_answer) for a in i.answers)
                 for i in items]
        out["vqa"][s] = {"questions": len(items), "images": len({i.image_id for i in items}),
                         "question_types": dict(qt.most_common()), "answer_types": dict(at.most_common()),
                         "distinct_answers": len(answer_histogram(items)),
                         "mean_annotators_agreeing_with_majority": round(float(np.mean(agree)), 3) if agree else 0.0,
                         "distinct_raw_answers_per_question": round(float(np.mean([len(set(i.answers)) for i in items])), 3)
                         if items else 0.0}
    train = vqa[prior_from]
    by_type: dict[str, Counter[str]] = {}
    by_atype: dict[str, Counter[str]] = {}
    for i in train:
        by_type.setdefault(i.question_type, Counter())[normalize_answer(i.multiple_choice_answer)] += 1
        by_atype.setdefault(i.answer_type, Counter())[normalize_answer(i.multiple_choice_answer)] += 1
    out["vqa"]["top_answers"] = {t: dict(c.most_common(8)) for t, c in sorted(by_atype.items())}
    prior_answer = {t: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, c in by_type.items()}
    overall = answer_histogram(train).most_common(1)[0][0]
    test = vqa[evaluate_on]
    preds = [prior_answer.get(i.question_type, overall) for i in test]
    acc = vqa_accuracy([i.answers for i in test], preds)
    acc_overall = vqa_accuracy([i.answers for i in test], [overall] * len(test))
    per_type = {}
    for t in sorted({i.question_type for i in test}):
        m = np.array([i.question_type == t for i in test])
        per_type[t] = {"answer": prior_answer.get(t, overall), "accuracy": round(100 * float(acc[m].mean()), 2)}
    per_atype = {}
    for t in sorted({i.answer_type for i in test}):
        m = np.array([i.answer_type == t for i in test])
        per_atype[t] = round(100 * float(acc[m].mean()), 2)
    # question-only upper bound of a look-up table: the majority answer of the exact question text
    by_text: dict[str, Counter[str]] = {}
    for i in train:
        by_text.setdefault(i.question, Counter())[normalize_answer(i.multiple_choice_answer)] += 1
    text_preds = [min(by_text[i.question].items(), key=lambda kv: (-kv[1], kv[0]))[0] if i.question in by_text
                  else prior_answer.get(i.question_type, overall) for i in test]
    acc_text = vqa_accuracy([i.answers for i in test], text_preds)
    out["vqa"]["question_text_prior"] = {
        "accuracy": round(100 * float(acc_text.mean()), 2),
        "seen_questions": round(100 * float(np.mean([i.question in by_text for i in test])), 2)}
    out["vqa"]["prior"] = {"from": prior_from, "on": evaluate_on, "accuracy": round(100 * float(acc.mean()), 2),
                           "per_answer_type": per_atype, "per_question_type": per_type,
                           "single_answer": overall, "single_answer_accuracy": round(100 * float(acc_overall.mean()), 2)}
    for s in VL_SPLITS:
        g = read_gqa(paths.gqa(s))
        answers = Counter(x.answer for x in g)
        out["gqa"][s] = {"questions": len(g), "structural": dict(Counter(x.types["structural"] for x in g).most_common()),
                         "detailed": dict(Counter(x.types["detailed"] for x in g).most_common()),
                         "top_answers": dict(answers.most_common(6)),
                         "majority_answer_share": round(100 * answers.most_common(1)[0][1] / max(1, len(g)), 2)}
        sn = read_snli_ve(paths.snli_ve(s))
        out["snli_ve"][s] = {"pairs": len(sn), "labels": dict(Counter(x.gold_label for x in sn).most_common())}
    # hypothesis-only look-up table: majority label of the exact hypothesis text (else the majority label)
    hyp: dict[str, Counter[str]] = {}
    train_sn = read_snli_ve(paths.snli_ve(prior_from))
    for x in train_sn:
        hyp.setdefault(x.hypothesis, Counter())[x.gold_label] += 1
    top = Counter(x.gold_label for x in train_sn).most_common(1)[0][0]
    test_sn = read_snli_ve(paths.snli_ve(evaluate_on))
    guess = [min(hyp[x.hypothesis].items(), key=lambda kv: (-kv[1], kv[0]))[0] if x.hypothesis in hyp else top
             for x in test_sn]
    out["snli_ve"]["hypothesis_text_prior"] = {
        "accuracy": round(100 * float(np.mean([g == x.gold_label for g, x in zip(guess, test_sn)])), 2),
        "majority_label_accuracy": round(100 * float(np.mean([x.gold_label == top for x in test_sn])), 2)}
    kp = read_karpathy(paths.karpathy)
    for s in VL_SPLITS:
        sents = [x for im in kp if im.split == s for x in im.sentences]
        out["captions"][s] = {"images": sum(1 for im in kp if im.split == s), "captions": len(sents),
                              "mean_tokens": round(float(np.mean([len(x.tokens) for x in sents])), 2) if sents else 0.0,
                              "vocabulary": len({t for x in sents for t in x.tokens})}
    return out
