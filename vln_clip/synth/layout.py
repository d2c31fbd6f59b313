"""Viewpoints and navigation edges of a synthetic house, in Matterport's connectivity format.

Viewpoints stand on a jittered grid inside every room (about 2 m apart, clear of walls and
furniture) and in the middle of every doorway, camera 1.5 m above the floor; a staircase adds
three (its foot, half-way up, its top), the only links between floors. Two
viewpoints are joined when they are within ``max_edge`` metres and the straight segment
between them crosses no wall piece (door openings are gaps) and no furniture footprint:
the same "see each other unobstructed within a few metres" rule Matterport's graphs follow.
``visible`` is the same line-of-sight test without the distance limit. Viewpoints that end
up outside the largest connected component are dropped, so every house is connected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .world import DOOR_WIDTH, FLOOR_HEIGHT, House, WALL_HALF

CAMERA_HEIGHT = 1.5
# Pose rotation written for every synthetic panorama (row-major 3x3). It is what a real
# Matterport pose with zero yaw looks like: the skybox's local +y axis points down (world
# -z) and face 1 (GL +Z) looks along world +y, so MatterSim's cube-map lookup sees the
# faces upright; see vln_clip.synth.skybox and docs/synthetic.md.
POSE_ROTATION = ((-1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, -1.0, 0.0))


@dataclass
class Viewpoint:
    id: str
    x: float
    y: float
    z: float
    room: int  # room index; for a doorway, the first room of the door
    door: int = -1  # door index when the viewpoint stands in a doorway
    floor: int = 0
    stair: int = -1  # 0 foot of the stairs, 1 half-way up, 2 top (-1: not a stair viewpoint)

    @property
    def xy(self) -> tuple[float, float]:
        return (self.x, self.y)


def viewpoint_id(scan: str, k: int) -> str:
    """32 hex characters, like Matterport's panorama ids, stable for (scan, k)."""
    return hashlib.md5(f"{scan}/vp/{k}".encode()).hexdigest()


def _segments_cross(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether segment p->q properly meets each segment a[i]->b[i] (touching counts)."""
    def orient(u, v, w):
        return (v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0])

    eps = 1e-9
    d1 = orient(a, b, p)
    d2 = orient(a, b, q)
    d3 = orient(p, q, a)
    d4 = orient(p, q, b)
    proper = (((d1 > eps) & (d2 < -eps)) | ((d1 < -eps) & (d2 > eps))) & \
             (((d3 > eps) & (d4 < -eps)) | ((d3 < -eps) & (d4 > eps)))
    # Collinear overlap or an endpoint on the other segment also blocks.
    def on_seg(u, v, w, d):
        return (np.abs(d) <= eps) & (np.minimum(u[..., 0], v[..., 0]) - eps <= w[..., 0]) & \
               (w[..., 0] <= np.maximum(u[..., 0], v[..., 0]) + eps) & \
               (np.minimum(u[..., 1], v[..., 1]) - eps <= w[..., 1]) & (w[..., 1] <= np.maximum(u[..., 1], v[..., 1]) + eps)
    touch = on_seg(a, b, p, d1) | on_seg(a, b, q, d2) | on_seg(p, q, a, d3) | on_seg(p, q, b, d4)
    return proper | touch


def _square(cx: float, cy: float, h: float) -> list[tuple[float, float, float, float]]:
    a, b, c, d = (cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)
    return [(*a, *b), (*b, *c), (*c, *d), (*d, *a)]


def _blockers(house: House, floor: int = 0, furniture_margin: float = 0.15,
              jamb_clearance: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Wall pieces (thickened to both wall faces), door jambs and furniture as 2-D segments.

    Each wall end (a door jamb or a corner) is padded by ``jamb_clearance`` so an edge through
    a door opening keeps a body's width from the frame instead of grazing it.
    """
    segs = []
    for x0, y0, x1, y1 in house.walls[floor]:
        segs.extend(_square(x0, y0, jamb_clearance) + _square(x1, y1, jamb_clearance))
        if abs(y1 - y0) < 1e-9:  # wall along x at y = y0: its two faces
            for off in (-WALL_HALF, WALL_HALF):
                segs.append((x0, y0 + off, x1, y1 + off))
            for xe in (x0, x1):  # jambs / wall ends
                segs.append((xe, y0 - WALL_HALF, xe, y0 + WALL_HALF))
        else:
            for off in (-WALL_HALF, WALL_HALF):
                segs.append((x0 + off, y0, x1 + off, y1))
            for ye in (y0, y1):
                segs.append((x0 - WALL_HALF, ye, x0 + WALL_HALF, ye))
    for obj in house.objects:
        if house.rooms[obj.room].floor != floor or _hanging(house, obj):
            continue  # other storeys, and paintings (they block nothing on the floor)
        cx, cy, _ = obj.centre
        hx, hy = obj.size[0] / 2 + furniture_margin, obj.size[1] / 2 + furniture_margin
        a, b, c, d = (cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)
        segs.extend([(*a, *b), (*b, *c), (*c, *d), (*d, *a)])
    if house.stairs is not None:  # the steps downstairs, the opening upstairs
        x0, y0, x1, y1 = house.stairs.footprint
        segs.extend([(x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)])
    arr = np.array(segs, dtype=np.float64)
    return arr[:, :2], arr[:, 2:]


def _hanging(house: House, obj) -> bool:
    return obj.centre[2] - obj.size[2] / 2 - house.rooms[obj.room].z0 > 1.0


def _wall_only(house: House, floor: int = 0) -> tuple[np.ndarray, np.ndarray]:
    segs = []
    for x0, y0, x1, y1 in house.walls[floor]:
        if abs(y1 - y0) < 1e-9:
            for off in (-WALL_HALF, WALL_HALF):
                segs.append((x0, y0 + off, x1, y1 + off))
        else:
            for off in (-WALL_HALF, WALL_HALF):
                segs.append((x0 + off, y0, x1 + off, y1))
    arr = np.array(segs, dtype=np.float64)
    return arr[:, :2], arr[:, 2:]


def _free(house: House, x: float, y: float, clearance: float, floor: int = 0) -> bool:
    for obj in house.objects:
        if house.rooms[obj.room].floor != floor or _hanging(house, obj):
            continue
        cx, cy, _ = obj.centre
        if abs(x - cx) < obj.size[0] / 2 + clearance and abs(y - cy) < obj.size[1] / 2 + clearance:
            return False
    if house.stairs is not None:
        x0, y0, x1, y1 = house.stairs.zone(0.3)
        if x0 - clearance < x < x1 + clearance and y0 - clearance < y < y1 + clearance:
            return False
    return True


def place_viewpoints(house: House, scan: str, rng: np.random.Generator, spacing: float = 2.0) -> list[Viewpoint]:
    """Grid viewpoints in every room, one per doorway and three on the stairs; ids from the scan."""
    points: list[tuple[float, float, float, int, int, int, int]] = []
    for room in house.rooms:
        w, d = room.x1 - room.x0, room.y1 - room.y0
        nx, ny = max(1, int(round(w / spacing))), max(1, int(round(d / spacing)))
        for i in range(nx):
            for j in range(ny):
                x = room.x0 + (i + 0.5) * w / nx + float(rng.uniform(-0.25, 0.25))
                y = room.y0 + (j + 0.5) * d / ny + float(rng.uniform(-0.25, 0.25))
                x = float(np.clip(x, room.x0 + 0.6, room.x1 - 0.6))
                y = float(np.clip(y, room.y0 + 0.6, room.y1 - 0.6))
                if not _free(house, x, y, 0.35, room.floor):
                    # Try a few nudges toward the room centre before giving the spot up.
                    cx, cy = room.centre
                    for t in (0.3, 0.5, 0.7):
                        xx, yy = x + (cx - x) * t, y + (cy - y) * t
                        if _free(house, xx, yy, 0.35, room.floor):
                            x, y = xx, yy
                            break
                    else:
                        continue
                points.append((round(x, 3), round(y, 3), room.z0 + CAMERA_HEIGHT, room.index, -1, room.floor, -1))
    for door in house.doors:
        z = house.rooms[door.a].z0 + CAMERA_HEIGHT
        points.append((round(door.x, 3), round(door.y, 3), z, door.a, door.index, door.floor, -1))
    st = house.stairs
    if st is not None:
        points.append((st.bottom[0], st.bottom[1], CAMERA_HEIGHT, st.room0, -1, 0, 0))
        # half-way up, standing on the steps: about half a storey above the ground-floor camera
        # (0.1 m lower, so the camera is never exactly level with the upper floor's surface)
        points.append((st.mid[0], st.mid[1], CAMERA_HEIGHT + FLOOR_HEIGHT / 2 - 0.1, st.room0, -1, 0, 1))
        points.append((st.top[0], st.top[1], FLOOR_HEIGHT + CAMERA_HEIGHT, st.room1, -1, 1, 2))
    return [Viewpoint(viewpoint_id(scan, k), x, y, z, room, door, floor, stair)
            for k, (x, y, z, room, door, floor, stair) in enumerate(points)]


def connect(house: House, vps: list[Viewpoint], max_edge: float = 3.2) -> tuple[np.ndarray, np.ndarray]:
    """(visible, unobstructed) boolean matrices from line of sight and distance.

    Viewpoints see each other only on the same storey (slabs block everything else); the
    stairs are a chain foot - half-way - top, and the foot and the top join their floor's
    viewpoints like any other. The half-way viewpoint joins only the foot and the top.
    """
    n = len(vps)
    pos = np.array([v.xy for v in vps])
    walls = [_wall_only(house, f) for f in range(house.floors)]
    blockers = [_blockers(house, f) for f in range(house.floors)]
    visible = np.zeros((n, n), dtype=bool)
    unob = np.zeros((n, n), dtype=bool)
    stair = {v.stair: i for i, v in enumerate(vps) if v.stair >= 0}
    for a, b in ((0, 1), (1, 2)):
        if a in stair and b in stair:
            i, j = stair[a], stair[b]
            visible[i, j] = visible[j, i] = unob[i, j] = unob[j, i] = True
    for i in range(n):
        for j in range(i + 1, n):
            if vps[i].floor != vps[j].floor or vps[i].stair == 1 or vps[j].stair == 1:
                continue
            f = vps[i].floor
            p, q = pos[i], pos[j]
            if _segments_cross(p, q, *walls[f]).any():
                continue
            visible[i, j] = visible[j, i] = True
            dist = float(np.hypot(*(p - q)))
            if dist <= max_edge and not _segments_cross(p, q, *blockers[f]).any():
                # A doorway is entered straight: no edge grazing a door jamb at a shallow angle.
                if vps[i].door >= 0 or vps[j].door >= 0:
                    dv = vps[i] if vps[i].door >= 0 else vps[j]
                    door = house.doors[dv.door]
                    other = q if dv is vps[i] else p
                    along = abs(other[0] - dv.x) if door.axis == "x" else abs(other[1] - dv.y)
                    across = abs(other[1] - dv.y) if door.axis == "x" else abs(other[0] - dv.x)
                    if across < 0.3 or along > across * 1.5 + DOOR_WIDTH / 2:
                        continue
                unob[i, j] = unob[j, i] = True
    return visible, unob


def largest_component(unob: np.ndarray) -> np.ndarray:
    """Indices of the largest connected component (ties: the one with the lowest index)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(csr_matrix(unob.astype(np.int8)), directed=False)
    counts = np.bincount(labels)
    return np.flatnonzero(labels == int(np.argmax(counts)))


def connectivity_json(vps: list[Viewpoint], visible: np.ndarray, unob: np.ndarray) -> list[dict]:
    """Matterport's ``<scan>_connectivity.json`` entries for the viewpoints."""
    r = POSE_ROTATION
    out = []
    for i, v in enumerate(vps):
        pose = [r[0][0], r[0][1], r[0][2], v.x, r[1][0], r[1][1], r[1][2], v.y,
                r[2][0], r[2][1], r[2][2], v.z, 0.0, 0.0, 0.0, 1.0]
        out.append({
            "image_id": v.id,
            "pose": pose,
            "included": True,
            "visible": [bool(b) for b in visible[i]],
            "unobstructed": [bool(b) for b in unob[i]],
            "height": CAMERA_HEIGHT,
        })
    return out
