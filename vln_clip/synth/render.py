"""Rasterising synthetic houses into Matterport skybox faces.

The scene is a list of axis-aligned rectangles (floors, ceilings, wall faces with door
openings, door frames, baseboards, furniture boxes), each with a flat colour already lit by
an ambient + directional (half-Lambert) term, and darkened slightly with distance so depth
reads. Two backends draw it:

* ``gl``: OpenGL 3.3 through moderngl on a headless EGL context (Mesa llvmpipe on CPU-only
  machines), rendered at ``supersample`` times the face size and box-filtered down.
* ``numpy``: an exact ray caster over the same rectangles, with no system dependency; it
  is what runs when EGL is missing (and what the tests use, being fast at tiny sizes).

Both produce upright faces oriented per :data:`vln_clip.synth.skybox.FACE_AXES`. The ray
caster also answers visibility queries (which objects each view sees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vln_clip.errors import MissingResourceError

from .skybox import FACE_AXES, face_directions
from .world import CEILING_HEIGHT, DOOR_HEIGHT, DOOR_WIDTH, FLOOR_HEIGHT, STAIR_STEPS, WALL_HALF, House

LIGHT = np.array([0.35, 0.55, 0.75]) / np.linalg.norm([0.35, 0.55, 0.75])
BACKGROUND = (135, 170, 210)  # never visible inside a closed house; a sky tint if it is
FRAME_RGB = (95, 65, 40)
STAIR_RGB = (150, 105, 70)
STAIR_RGB_ALT = (130, 90, 60)
SLAB_RGB = (200, 200, 195)
ATTENUATION = 0.25  # fraction of brightness lost at 10 m


@dataclass
class Rects:
    """Axis-aligned rectangles: normal axis k, plane coordinate, bounds on the two other axes."""

    axis: np.ndarray  # (M,) int
    coord: np.ndarray  # (M,)
    lo: np.ndarray  # (M, 2) min on the other axes (in increasing axis order)
    hi: np.ndarray  # (M, 2)
    rgb: np.ndarray  # (M, 3) float, lit colour 0..255
    owner: np.ndarray  # (M,) object index, -1 for the building
    sign: np.ndarray  # (M,) +1 / -1: the side of the plane the surface faces

    def __len__(self) -> int:
        return len(self.axis)


def _shade(rgb: tuple[int, int, int], normal: tuple[float, float, float]) -> np.ndarray:
    lam = 0.5 + 0.5 * float(np.dot(LIGHT, normal))
    return np.asarray(rgb, dtype=np.float64) * (0.55 + 0.45 * lam)


class _Builder:
    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float, float, float, float, np.ndarray, int, float]] = []

    def rect(self, axis: int, coord: float, a: tuple[float, float], b: tuple[float, float],
             rgb: tuple[int, int, int], normal_sign: float, owner: int = -1) -> None:
        """Rectangle on plane ``x[axis] = coord`` spanning a..b on the other two axes."""
        if a[1] - a[0] <= 1e-6 or b[1] - b[0] <= 1e-6:
            return
        n = [0.0, 0.0, 0.0]
        n[axis] = normal_sign
        self.rows.append((axis, coord, a[0], b[0], a[1], b[1], _shade(rgb, tuple(n)), owner, normal_sign))  # type: ignore[arg-type]

    def box(self, lo: tuple[float, float, float], hi: tuple[float, float, float], rgb: tuple[int, int, int],
            owner: int) -> None:
        for axis in range(3):
            o = [k for k in range(3) if k != axis]
            a = (lo[o[0]], hi[o[0]])
            b = (lo[o[1]], hi[o[1]])
            if not (axis == 2 and lo[2] <= 1e-6):  # the bottom of a floor-standing box is never seen
                self.rect(axis, lo[axis], a, b, rgb, -1.0, owner)
            self.rect(axis, hi[axis], a, b, rgb, 1.0, owner)

    def build(self) -> Rects:
        r = self.rows
        return Rects(np.array([x[0] for x in r], dtype=np.int64), np.array([x[1] for x in r]),
                     np.array([[x[2], x[3]] for x in r]), np.array([[x[4], x[5]] for x in r]),
                     np.array([x[6] for x in r]), np.array([x[7] for x in r], dtype=np.int64),
                     np.array([x[8] for x in r]))


def _minus(x0: float, y0: float, x1: float, y1: float,
           hole: tuple[float, float, float, float] | None) -> list[tuple[float, float, float, float]]:
    """The rectangle [x0, x1] x [y0, y1] without ``hole`` (as up to four rectangles)."""
    if hole is None or hole[0] >= x1 or hole[2] <= x0 or hole[1] >= y1 or hole[3] <= y0:
        return [(x0, y0, x1, y1)]
    hx0, hy0, hx1, hy1 = max(hole[0], x0), max(hole[1], y0), min(hole[2], x1), min(hole[3], y1)
    out = [(x0, y0, x1, hy0), (x0, hy1, x1, y1), (x0, hy0, hx0, hy1), (hx1, hy0, x1, hy1)]
    return [r for r in out if r[2] - r[0] > 1e-6 and r[3] - r[1] > 1e-6]


def build_scene(house: House) -> Rects:
    """The house as lit rectangles: rooms, door openings, frames, stairs and furniture."""
    bld = _Builder()
    W = WALL_HALF
    st = house.stairs
    for room in house.rooms:
        x0, y0, x1, y1 = room.x0 + W, room.y0 + W, room.x1 - W, room.y1 - W
        z0, zc = room.z0, room.z0 + CEILING_HEIGHT
        floor_hole = st.footprint if st is not None and room.index == st.room1 else None
        ceil_hole = st.footprint if st is not None and room.index == st.room0 else None
        for a0, b0, a1, b1 in _minus(x0, y0, x1, y1, floor_hole):
            bld.rect(2, z0, (a0, a1), (b0, b1), room.floor_rgb, 1.0)
        for a0, b0, a1, b1 in _minus(x0, y0, x1, y1, ceil_hole):
            bld.rect(2, zc, (a0, a1), (b0, b1), room.ceiling_rgb, -1.0)
        base = tuple(int(c * 0.6) for c in room.wall_rgb)
        # Four inner wall faces: (axis, coord, span axis range, normal sign, door filter)
        sides = [
            (1, y0, (x0, x1), 1.0, lambda d, r=room: d.axis == "x" and abs(d.y - r.y0) < 1e-6),
            (1, y1, (x0, x1), -1.0, lambda d, r=room: d.axis == "x" and abs(d.y - r.y1) < 1e-6),
            (0, x0, (y0, y1), 1.0, lambda d, r=room: d.axis == "y" and abs(d.x - r.x0) < 1e-6),
            (0, x1, (y0, y1), -1.0, lambda d, r=room: d.axis == "y" and abs(d.x - r.x1) < 1e-6),
        ]
        for axis, coord, (s0, s1), sign, on_side in sides:
            gaps = sorted((d.x if axis == 1 else d.y) for d in house.doors
                          if room.index in (d.a, d.b) and on_side(d))
            start = s0
            pieces = []
            for g in gaps:
                pieces.append((start, g - DOOR_WIDTH / 2))
                start = g + DOOR_WIDTH / 2
            pieces.append((start, s1))
            # rect() takes bounds in increasing order of the two remaining axes.
            c = coord + sign * 0.006
            for a, b in pieces:
                bld.rect(axis, coord, (a, b), (z0 + 0.12, zc), room.wall_rgb, sign)
                bld.rect(axis, coord + sign * 0.004, (a, b), (z0, z0 + 0.12), base, sign)
            for g in gaps:
                lo, hi = g - DOOR_WIDTH / 2, g + DOOR_WIDTH / 2
                bld.rect(axis, coord, (lo, hi), (z0 + DOOR_HEIGHT, zc), room.wall_rgb, sign)
                # frame strips just in front of the wall face
                bld.rect(axis, c, (lo - 0.08, lo), (z0, z0 + DOOR_HEIGHT + 0.08), FRAME_RGB, sign)
                bld.rect(axis, c, (hi, hi + 0.08), (z0, z0 + DOOR_HEIGHT + 0.08), FRAME_RGB, sign)
                bld.rect(axis, c, (lo, hi), (z0 + DOOR_HEIGHT, z0 + DOOR_HEIGHT + 0.08), FRAME_RGB, sign)
    for d in house.doors:  # the opening through the wall thickness: jambs, lintel, threshold
        lo, hi = -DOOR_WIDTH / 2, DOOR_WIDTH / 2
        floor = house.rooms[d.a].floor_rgb
        z0 = house.rooms[d.a].z0
        if d.axis == "x":
            bld.rect(0, d.x + lo, (d.y - W, d.y + W), (z0, z0 + DOOR_HEIGHT), FRAME_RGB, 1.0)
            bld.rect(0, d.x + hi, (d.y - W, d.y + W), (z0, z0 + DOOR_HEIGHT), FRAME_RGB, -1.0)
            bld.rect(2, z0 + DOOR_HEIGHT, (d.x + lo, d.x + hi), (d.y - W, d.y + W), FRAME_RGB, -1.0)
            bld.rect(2, z0, (d.x + lo, d.x + hi), (d.y - W, d.y + W), floor, 1.0)
        else:
            bld.rect(1, d.y + lo, (d.x - W, d.x + W), (z0, z0 + DOOR_HEIGHT), FRAME_RGB, 1.0)
            bld.rect(1, d.y + hi, (d.x - W, d.x + W), (z0, z0 + DOOR_HEIGHT), FRAME_RGB, -1.0)
            bld.rect(2, z0 + DOOR_HEIGHT, (d.x - W, d.x + W), (d.y + lo, d.y + hi), FRAME_RGB, -1.0)
            bld.rect(2, z0, (d.x - W, d.x + W), (d.y + lo, d.y + hi), floor, 1.0)
    if st is not None:
        _stairs(bld, house)
    for obj in house.objects:
        for part in obj.parts:
            bld.box(part.lo, part.hi, part.rgb, obj.index)
    return bld.build()


def _stairs(bld: "_Builder", house: House) -> None:
    """Steps as boxes, and the four faces of the slab around the opening above them."""
    st = house.stairs
    assert st is not None
    x0, y0, x1, y1 = st.footprint
    rgb = STAIR_RGB
    run = (x1 - x0) if st.axis == "x" else (y1 - y0)
    for k in range(STAIR_STEPS):
        top = FLOOR_HEIGHT * (k + 1) / STAIR_STEPS
        # step k spans [k, k+1]/STAIR_STEPS of the run from the bottom end
        a = k / STAIR_STEPS * run
        b = (k + 1) / STAIR_STEPS * run
        if st.axis == "x":
            lo, hi = (x0 + a, x0 + b) if st.direction == 1 else (x1 - b, x1 - a)
            bld.box((lo, y0, 0.0), (hi, y1, top), rgb if k % 2 == 0 else STAIR_RGB_ALT, -1)
        else:
            lo, hi = (y0 + a, y0 + b) if st.direction == 1 else (y1 - b, y1 - a)
            bld.box((x0, lo, 0.0), (x1, hi, top), rgb if k % 2 == 0 else STAIR_RGB_ALT, -1)
    slab = (CEILING_HEIGHT, FLOOR_HEIGHT)
    bld.rect(0, x0, (y0, y1), slab, SLAB_RGB, 1.0)
    bld.rect(0, x1, (y0, y1), slab, SLAB_RGB, -1.0)
    bld.rect(1, y0, (x0, x1), slab, SLAB_RGB, 1.0)
    bld.rect(1, y1, (x0, x1), slab, SLAB_RGB, -1.0)


def _other_axes(axis: int) -> tuple[int, int]:
    return ((1, 2), (0, 2), (0, 1))[axis]


class RayCaster:
    """Nearest-hit queries against a :class:`Rects` scene (exact, vectorised over rays)."""

    def __init__(self, rects: Rects) -> None:
        self.r = rects
        self.others = np.array([_other_axes(int(a)) for a in rects.axis], dtype=np.int64).reshape(-1, 2)

    def _in_front(self, origin: np.ndarray, forward: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Rectangles with a corner in front of the plane through ``origin`` facing ``forward``."""
        r = self.r
        best = np.full(len(keep), -np.inf)
        for u in (0, 1):
            for v in (0, 1):
                p = np.zeros((len(keep), 3))
                p[np.arange(len(keep)), r.axis[keep]] = r.coord[keep]
                p[np.arange(len(keep)), self.others[keep, 0]] = (r.lo if u == 0 else r.hi)[keep, 0]
                p[np.arange(len(keep)), self.others[keep, 1]] = (r.lo if v == 0 else r.hi)[keep, 1]
                best = np.maximum(best, (p - origin) @ forward)
        return best > 0

    def cast(self, origin: np.ndarray, dirs: np.ndarray, budget: int = 1 << 21,
             forward: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(distance along ``dirs``, rectangle index or -1) of the first hit of each ray.

        Rays are tested against all rectangles at once in chunks of ``budget`` ray-rectangle
        pairs; ties between coplanar surfaces resolve to the lower index (deterministic).
        """
        dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        origin = np.asarray(origin, dtype=np.float64)
        origins = np.broadcast_to(origin, dirs.shape) if origin.ndim == 1 else origin.reshape(-1, 3)
        r = self.r
        m = len(r)
        t_best = np.full(len(dirs), np.inf)
        idx = np.full(len(dirs), -1, dtype=np.int64)
        keep = np.arange(m)
        if origin.ndim == 1:
            # One eye: surfaces facing away from it can never be the first hit (every
            # surface is one side of a closed solid or a wall with its own back face).
            keep = keep[(origin[r.axis] - r.coord) * r.sign > 0]
            if forward is not None:
                keep = keep[self._in_front(origin, forward, keep)]
        m = len(keep)
        if m == 0:
            return t_best, idx
        ax, a0, a1 = r.axis[keep], self.others[keep, 0], self.others[keep, 1]
        coord, lo, hi = r.coord[keep], r.lo[keep], r.hi[keep]
        chunk = max(1, budget // m)
        for s in range(0, len(dirs), chunk):
            d = dirs[s:s + chunk]
            o = origins[s:s + chunk]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (coord[None, :] - o[:, ax]) / d[:, ax]
                pa = o[:, a0] + t * d[:, a0]
                pb = o[:, a1] + t * d[:, a1]
                ok = (t > 1e-6) & (pa >= lo[None, :, 0]) & (pa <= hi[None, :, 0]) & \
                     (pb >= lo[None, :, 1]) & (pb <= hi[None, :, 1])
            t = np.where(ok, t, np.inf)
            k = np.argmin(t, axis=1)
            tk = t[np.arange(len(k)), k]
            hit = np.isfinite(tk)
            t_best[s:s + chunk] = tk
            idx[s:s + chunk] = np.where(hit, keep[k], -1)
        return t_best, idx

    def colours(self, origin: np.ndarray, dirs: np.ndarray, forward: np.ndarray | None = None) -> np.ndarray:
        """Lit colour of the first hit along each ray (background where nothing is hit)."""
        shape = dirs.shape[:-1]
        t, idx = self.cast(origin, dirs, forward=forward)
        norms = np.linalg.norm(dirs.reshape(-1, 3), axis=1)
        dist = t * norms
        rgb = np.empty((len(idx), 3))
        hit = idx >= 0
        rgb[hit] = self.r.rgb[idx[hit]] * (1.0 - ATTENUATION * np.minimum(dist[hit] / 10.0, 1.0))[:, None]
        rgb[~hit] = BACKGROUND
        return rgb.reshape(*shape, 3)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _downsample(img: np.ndarray, f: int) -> np.ndarray:
    """Box-filter an (f*s, f*s, 3) image by ``f`` (strided sums: far faster than reshape-mean)."""
    acc = np.zeros((img.shape[0] // f, img.shape[1] // f, 3), dtype=np.float64 if img.dtype != np.uint8 else np.uint32)
    for dy in range(f):
        for dx in range(f):
            acc += img[dy::f, dx::f]
    if img.dtype == np.uint8:
        return ((acc + (f * f) // 2) // (f * f)).astype(np.uint8)
    return acc / (f * f)


class NumpyRenderer:
    """Software fallback: a z-buffered rectangle rasteriser in numpy (no system dependencies).

    Each rectangle facing the eye is projected onto the face; only the pixels inside its
    projected bounding box are tested (exact ray-plane intersection and in-rectangle test, as
    :class:`RayCaster` does), keeping the nearest hit. Rectangles that reach behind the eye
    are tested on the whole face. The result equals ray casting every pixel.
    """

    name = "numpy"

    def __init__(self, size: int, supersample: int = 1) -> None:
        self.size = size
        self.ss = supersample
        self._dirs = face_directions(size * supersample)
        self._rects: Rects | None = None
        self._caster: RayCaster | None = None
        self._others: np.ndarray | None = None
        self._corners: np.ndarray | None = None

    def set_scene(self, rects: Rects) -> None:
        self._rects = rects
        self._caster = RayCaster(rects)
        m = len(rects)
        self._others = np.array([_other_axes(int(a)) for a in rects.axis], dtype=np.int64).reshape(-1, 2)
        corners = np.zeros((m, 4, 3))
        rows = np.arange(m)
        for c, (u, v) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
            corners[rows, c, rects.axis] = rects.coord
            corners[rows, c, self._others[:, 0]] = (rects.lo if u == 0 else rects.hi)[:, 0]
            corners[rows, c, self._others[:, 1]] = (rects.lo if v == 0 else rects.hi)[:, 1]
        self._corners = corners

    def render(self, eye: tuple[float, float, float]) -> list[np.ndarray]:
        assert self._rects is not None, "set_scene first"
        r = self._rects
        e = np.asarray(eye, dtype=np.float64)
        px = self.size * self.ss
        if px <= 48:
            # Tiny faces: one vectorised ray cast per face beats looping over rectangles
            # (same hits, same colours: see RayCaster).
            out = []
            for i in range(6):
                img = self._caster.colours(e, self._dirs[i], forward=np.asarray(FACE_AXES[i][0], dtype=np.float64))
                out.append(_to_uint8(_downsample(img, self.ss) if self.ss > 1 else img))
            return out
        facing = np.flatnonzero((e[r.axis] - r.coord) * r.sign > 0)
        rel = self._corners[facing] - e  # [K, 4, 3]
        out = []
        for i, (fwd, right, up) in enumerate(FACE_AXES):
            f, rt, u = (np.asarray(a, dtype=np.float64) for a in (fwd, right, up))
            z = rel @ f
            x = rel @ rt
            y = rel @ u
            dirs = self._dirs[i]
            depth = np.full((px, px), np.inf)
            index = np.full((px, px), -1, dtype=np.int64)
            in_front = (z > 1e-9).all(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                uu = np.where(in_front[:, None], x / z, 0.0)
                vv = np.where(in_front[:, None], y / z, 0.0)
            # pixel column c covers u in [2c/px - 1, 2(c+1)/px - 1]; rows grow downward (v = -1..1 reversed)
            c0 = np.floor((uu.min(1) + 1) / 2 * px - 0.5).astype(np.int64)
            c1 = np.ceil((uu.max(1) + 1) / 2 * px - 0.5).astype(np.int64)
            r0 = np.floor((1 - vv.max(1)) / 2 * px - 0.5).astype(np.int64)
            r1 = np.ceil((1 - vv.min(1)) / 2 * px - 0.5).astype(np.int64)
            any_front = (z > 1e-9).any(1)
            for j in range(len(facing)):
                if not any_front[j]:
                    continue
                if in_front[j]:
                    a0, a1 = max(c0[j], 0), min(c1[j], px - 1)
                    b0, b1 = max(r0[j], 0), min(r1[j], px - 1)
                    if a0 > a1 or b0 > b1:
                        continue
                else:
                    a0, a1, b0, b1 = 0, px - 1, 0, px - 1
                k = facing[j]
                ax = r.axis[k]
                d = dirs[b0:b1 + 1, a0:a1 + 1]
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = (r.coord[k] - e[ax]) / d[..., ax]
                o0, o1 = self._others[k]
                pa = e[o0] + t * d[..., o0]
                pb = e[o1] + t * d[..., o1]
                hit = (t > 1e-6) & (pa >= r.lo[k, 0]) & (pa <= r.hi[k, 0]) & (pb >= r.lo[k, 1]) & (pb <= r.hi[k, 1])
                zb = depth[b0:b1 + 1, a0:a1 + 1]
                ib = index[b0:b1 + 1, a0:a1 + 1]
                # strictly nearer wins; equal depth keeps the lower index (as RayCaster's argmin)
                better = hit & ((t < zb) | ((t == zb) & (k < ib)))
                zb[better] = t[better]
                ib[better] = k
            norms = np.linalg.norm(dirs, axis=-1)
            img = np.empty((px, px, 3))
            hit = index >= 0
            dist = depth * norms
            img[hit] = r.rgb[index[hit]] * (1.0 - ATTENUATION * np.minimum(dist[hit] / 10.0, 1.0))[:, None]
            img[~hit] = BACKGROUND
            if self.ss > 1:
                img = _downsample(img, self.ss)
            out.append(_to_uint8(img))
        return out

    def close(self) -> None:
        self._rects = None
        self._caster = None


_VERTEX = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
in vec3 in_rgb;
out vec3 v_rgb;
out vec3 v_pos;
void main() {
    gl_Position = mvp * vec4(in_pos, 1.0);
    v_rgb = in_rgb;
    v_pos = in_pos;
}
"""
_FRAGMENT = """
#version 330
uniform vec3 eye;
uniform float atten;
in vec3 v_rgb;
in vec3 v_pos;
out vec4 f_colour;
void main() {
    float d = length(v_pos - eye);
    float k = 1.0 - atten * min(d / 10.0, 1.0);
    f_colour = vec4(v_rgb * k / 255.0, 1.0);
}
"""


def _perspective(fov: float, near: float, far: float) -> np.ndarray:
    f = 1.0 / math.tan(fov / 2)
    return np.array([[f, 0, 0, 0], [0, f, 0, 0], [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
                     [0, 0, -1, 0]], dtype=np.float64)


def _look(eye: np.ndarray, fwd: np.ndarray, right: np.ndarray, up: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = right, up, -fwd
    m[:3, 3] = -m[:3, :3] @ eye
    return m


class GLRenderer:
    """moderngl on a headless EGL context; one draw per face, read back and flipped upright."""

    name = "gl"

    def __init__(self, size: int, supersample: int = 2) -> None:
        try:
            import moderngl
        except ImportError as exc:  # pragma: no cover - moderngl is a dependency
            raise MissingResourceError(f"moderngl is not importable ({exc}); pip install moderngl") from exc
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as exc:
            raise MissingResourceError(
                f"no headless OpenGL context (EGL): {exc}. Install EGL and Mesa "
                "(e.g. `apt-get install -y libegl1 libgl1-mesa-dri`) or use --renderer numpy"
            ) from exc
        self.size = size
        self.ss = supersample
        px = size * supersample
        self.fbo = self.ctx.framebuffer(color_attachments=[self.ctx.renderbuffer((px, px), 4)],
                                        depth_attachment=self.ctx.depth_renderbuffer((px, px)))
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.proj = _perspective(math.pi / 2, 0.02, 60.0)
        self.vao = None
        self.vbo = None

    def set_scene(self, rects: Rects) -> None:
        tris = []
        for k in range(len(rects)):
            ax = int(rects.axis[k])
            a0, a1 = _other_axes(ax)
            corners = []
            for u, v in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = [0.0, 0.0, 0.0]
                p[ax] = rects.coord[k]
                p[a0] = rects.lo[k, 0] if u == 0 else rects.hi[k, 0]
                p[a1] = rects.lo[k, 1] if v == 0 else rects.hi[k, 1]
                corners.append(p)
            c = list(rects.rgb[k])
            for tri in ((0, 1, 2), (0, 2, 3)):
                for j in tri:
                    tris.append(corners[j] + c)
        data = np.asarray(tris, dtype="f4")
        if self.vbo is not None:
            self.vao.release()
            self.vbo.release()
        self.vbo = self.ctx.buffer(data.tobytes())
        self.vao = self.ctx.vertex_array(self.prog, [(self.vbo, "3f 3f", "in_pos", "in_rgb")])

    def render(self, eye: tuple[float, float, float]) -> list[np.ndarray]:
        import moderngl

        e = np.asarray(eye, dtype=np.float64)
        self.fbo.use()
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.prog["eye"].value = tuple(float(v) for v in e)
        self.prog["atten"].value = ATTENUATION
        px = self.size * self.ss
        out = []
        for fwd, right, up in FACE_AXES:
            mvp = self.proj @ _look(e, np.array(fwd, float), np.array(right, float), np.array(up, float))
            self.prog["mvp"].write(mvp.T.astype("f4").tobytes())  # column-major for GLSL
            self.fbo.clear(*(c / 255 for c in BACKGROUND), 1.0)
            self.vao.render(moderngl.TRIANGLES)
            raw = np.frombuffer(self.fbo.read(components=3), dtype=np.uint8).reshape(px, px, 3)[::-1]
            if self.ss > 1:
                out.append(_downsample(raw, self.ss))
            else:
                out.append(raw.copy())
        return out

    def close(self) -> None:
        try:
            self.ctx.release()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------
# Process isolation for OpenGL
#
# Creating a Mesa (llvmpipe) EGL context in a process that later imports torch._dynamo
# (triton) crashes that process with a segmentation fault: the two LLVM builds collide.
# So GL work never runs in the caller's process: it runs in a spawned child that exits
# afterwards, and the EGL probe does too. The numpy rasteriser runs in-process.


def _isolated_pool() -> "concurrent.futures.ProcessPoolExecutor":  # noqa: F821
    import concurrent.futures
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


def _probe_egl() -> bool:
    import moderngl

    ctx = moderngl.create_standalone_context(backend="egl")
    ok = bool(ctx.info.get("GL_RENDERER"))
    ctx.release()
    return ok


def egl_available() -> bool:
    """Whether a headless GL context can be created (probed once, in a child process)."""
    global _EGL_OK
    if _EGL_OK is None:
        try:
            with _isolated_pool() as pool:
                _EGL_OK = bool(pool.submit(_probe_egl).result(timeout=120))
        except Exception:
            _EGL_OK = False
    return _EGL_OK


_EGL_OK: bool | None = None


def _gl_render_many(rects: Rects, eyes: list[tuple[float, float, float]], size: int,
                    supersample: int) -> np.ndarray:
    rend = GLRenderer(size, supersample)
    try:
        rend.set_scene(rects)
        return np.stack([np.stack(rend.render(e)) for e in eyes]) if eyes else np.zeros((0, 6, size, size, 3), np.uint8)
    finally:
        rend.close()


def render_panoramas(rects: Rects, eyes: list[tuple[float, float, float]], size: int, kind: str = "auto",
                     supersample: int | None = None) -> np.ndarray:
    """``[N, 6, S, S, 3]`` uint8 skybox faces for each eye position (face order of FACE_AXES).

    ``gl`` renders in a spawned child process (see above); ``numpy`` in this process.
    """
    if kind == "auto":
        kind = "gl" if egl_available() else "numpy"
    if kind == "gl":
        with _isolated_pool() as pool:
            return pool.submit(_gl_render_many, rects, list(eyes), size, supersample or 2).result()
    if kind == "numpy":
        rend = NumpyRenderer(size, supersample or 1)
        rend.set_scene(rects)
        return np.stack([np.stack(rend.render(e)) for e in eyes])
    raise ValueError(f"unknown renderer {kind!r}; choose auto, gl or numpy")


def resolve_renderer(kind: str) -> str:
    """``gl`` or ``numpy`` for a requested ``auto`` / ``gl`` / ``numpy``."""
    if kind == "auto":
        return "gl" if egl_available() else "numpy"
    if kind not in ("gl", "numpy"):
        raise ValueError(f"unknown renderer {kind!r}; choose auto, gl or numpy")
    return kind


def make_renderer(kind: str, size: int) -> GLRenderer | NumpyRenderer:
    """An in-process renderer. Prefer :func:`render_panoramas` for ``gl`` (process isolation):
    a GL context in this process makes a later ``import torch._dynamo`` crash."""
    kind = resolve_renderer(kind)
    return GLRenderer(size) if kind == "gl" else NumpyRenderer(size)
