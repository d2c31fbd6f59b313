"""Matterport skybox conventions, and a MatterSim-faithful view renderer over six faces.

Matterport ships six cube faces per panorama, ``<pano>_skybox<i>_sami.jpg``: 0 up, 1-4
around, 5 down. MatterSim uploads face ``i`` to the GL cube-map target
``0 -> +Y, 1 -> +Z, 2 -> +X, 3 -> -Z, 4 -> -X, 5 -> -Y`` (first image row as t = 0),
draws the cube with ``Model = pose rotation`` and ``View = Rx(elevation - pi/2) Rz(pi +
heading)``, and reads the frame back bottom row first. Worked through, a pixel whose true
world direction is ``d`` samples the cube map at ``g = -R^T d`` (``R`` = pose rotation).

Synthetic panoramas all use the zero-yaw pose ``R`` of :data:`vln_clip.synth.layout.POSE_ROTATION`,
for which ``-R^T d = (d_x, d_z, d_y)``. Inverting GL's face-selection table for that ``R``
gives upright, unmirrored perspective faces (90 degree field of view):

====  ==========  ==================  ===============
face  looks at    image right         image up
====  ==========  ==================  ===============
0     +z (up)     +x                  -y
1     +y (h 0)    +x                  +z
2     +x (h 90)   -y                  +z
3     -y (h 180)  -x                  +z
4     -x (h 270)  +y                  +z
5     -z (down)   +x                  +y
====  ==========  ==================  ===============

:func:`render_view` implements MatterSim's lookup literally (GL face selection with the
s/t formulas, the pose rotation and the read-back flip) so tests can check that a view at
heading 0 shows what lies along +y of the world.
"""

from __future__ import annotations

import math

import numpy as np

from vln_clip.geometry import VIEW_HEIGHT, VIEW_VFOV, VIEW_WIDTH

# face index -> (forward, right, up) unit vectors in world coordinates (z up).
FACE_AXES: tuple[tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]], ...] = (
    ((0, 0, 1), (1, 0, 0), (0, -1, 0)),
    ((0, 1, 0), (1, 0, 0), (0, 0, 1)),
    ((1, 0, 0), (0, -1, 0), (0, 0, 1)),
    ((0, -1, 0), (-1, 0, 0), (0, 0, 1)),
    ((-1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((0, 0, -1), (1, 0, 0), (0, 1, 0)),
)
# MatterSim's mapping of skybox face index to GL cube-map face.
FACE_TO_GL = ("+Y", "+Z", "+X", "-Z", "-X", "-Y")
GL_TO_FACE = {g: i for i, g in enumerate(FACE_TO_GL)}


def face_directions(size: int) -> np.ndarray:
    """(6, size, size, 3) world directions through each face's pixel centres (row 0 = top)."""
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    xs = c[None, :]  # right
    ys = -c[:, None]  # up (row 0 at the top)
    out = np.zeros((6, size, size, 3))
    for i, (fwd, right, up) in enumerate(FACE_AXES):
        f, r, u = np.array(fwd, float), np.array(right, float), np.array(up, float)
        out[i] = f + xs[..., None] * r + ys[..., None] * u
    return out


def _gl_lookup(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GL cube-map face selection: (face index, s, t) for direction vectors ``g``."""
    ax, ay, az = np.abs(g[..., 0]), np.abs(g[..., 1]), np.abs(g[..., 2])
    gx, gy, gz = g[..., 0], g[..., 1], g[..., 2]
    face = np.empty(g.shape[:-1], dtype=np.int64)
    sc = np.empty(g.shape[:-1])
    tc = np.empty(g.shape[:-1])
    ma = np.empty(g.shape[:-1])
    xm = (ax >= ay) & (ax >= az)
    ym = ~xm & (ay >= az)
    zm = ~xm & ~ym
    for mask, pos, name_p, name_n in ((xm, gx >= 0, "+X", "-X"), (ym, gy >= 0, "+Y", "-Y"), (zm, gz >= 0, "+Z", "-Z")):
        p = mask & pos
        n = mask & ~pos
        face[p] = GL_TO_FACE[name_p]
        face[n] = GL_TO_FACE[name_n]
    # OpenGL spec table 3.21 (sc, tc, ma) per major axis.
    sel = xm & (gx >= 0); sc[sel] = -gz[sel]; tc[sel] = -gy[sel]; ma[sel] = ax[sel]
    sel = xm & (gx < 0); sc[sel] = gz[sel]; tc[sel] = -gy[sel]; ma[sel] = ax[sel]
    sel = ym & (gy >= 0); sc[sel] = gx[sel]; tc[sel] = gz[sel]; ma[sel] = ay[sel]
    sel = ym & (gy < 0); sc[sel] = gx[sel]; tc[sel] = -gz[sel]; ma[sel] = ay[sel]
    sel = zm & (gz >= 0); sc[sel] = gx[sel]; tc[sel] = -gy[sel]; ma[sel] = az[sel]
    sel = zm & (gz < 0); sc[sel] = -gx[sel]; tc[sel] = -gy[sel]; ma[sel] = az[sel]
    s = (sc / ma + 1.0) / 2.0
    t = (tc / ma + 1.0) / 2.0
    return face, s, t


def render_view(faces: list[np.ndarray] | np.ndarray, pose: list[float] | np.ndarray, heading: float,
                elevation: float, width: int = VIEW_WIDTH, height: int = VIEW_HEIGHT, vfov: float = VIEW_VFOV) -> np.ndarray:
    """The RGB image MatterSim would render from six skybox faces (nearest-texel sampling).

    ``faces[i]`` is face ``i`` as read from its JPEG (row 0 = top); ``pose`` the 16 numbers
    of the connectivity entry. Returns ``(height, width, 3)`` uint8, row 0 at the top, RGB
    (MatterSim itself hands back BGR).
    """
    faces = [np.asarray(f) for f in faces]
    size = faces[0].shape[0]
    rot = np.asarray(pose, dtype=np.float64).reshape(4, 4)[:3, :3]
    # Camera rays in GL camera space (looking down -z), window row 0 at the bottom.
    tan_v = math.tan(vfov / 2)
    tan_h = tan_v * width / height
    xs = ((np.arange(width) + 0.5) / width * 2 - 1) * tan_h
    ys = ((np.arange(height) + 0.5) / height * 2 - 1) * tan_v
    cam = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], -np.ones((height, width))), -1)
    # View = Rx(elevation - pi/2) @ Rz(pi + heading); world = View^T cam for a rotation.
    def rx(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])

    def rz(a: float) -> np.ndarray:
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    view = rx(elevation - math.pi / 2) @ rz(math.pi + heading)
    world = cam @ view  # rows: view^T applied to each camera vector
    local = world @ rot  # R^T world: texture coordinates of the cube model
    face, s, t = _gl_lookup(local)
    col = np.clip((s * size).astype(np.int64), 0, size - 1)
    row = np.clip((t * size).astype(np.int64), 0, size - 1)
    stack = np.stack(faces)
    image_bottom_up = stack[face, row, col]
    # glReadPixels returns the bottom row first into cv::Mat row 0.
    return image_bottom_up
