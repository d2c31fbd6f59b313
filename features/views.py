"""Panoramas to MatterSim's 36 discretized views, rendered in batches with ``grid_sample``.

No C++ simulator is needed: MatterSim draws a textured cube with OpenGL, and this module
reproduces that lookup exactly, for many panoramas and all 36 views in one call.

Conventions (the simulator's, see :mod:`vln_clip.geometry`): heading clockwise from +y seen
from above, elevation positive up; view ``i`` looks at heading ``(i % 12) * 30`` degrees and
elevation ``(i // 12 - 1) * 30`` degrees; VFOV 60 degrees, 640x480 by default (any size).

Skybox faces (Matterport's layout, what MatterSim reads)
--------------------------------------------------------
The download has six faces ``<pano>_skybox<i>_sami.jpg`` (0 up, 1-4 around, 5 down);
MatterSim reads the downsized strip ``<pano>_skybox_small.jpg`` (face ``i`` at column ``i``)
and uploads face ``i`` to the GL cube target 0 -> +Y, 1 -> +Z, 2 -> +X, 3 -> -Z, 4 -> -X,
5 -> -Y, first image row at texture t = 0. The cube is drawn with the panorama's pose rotation
``R`` (the 3x3 block of the connectivity ``pose``) as model matrix and the frame is read back
bottom-up (``glReadPixels``). Working the camera and the read-back through, a pixel that
looks along world direction ``d`` samples the cube at texture direction ``t = -R^T d``, with
GL's face selection and (s, t) rules. In world terms, for a panorama whose face 1 looks along
heading ``h1``: faces 1, 2, 3, 4 look at headings ``h1, h1 + 90, h1 + 180, h1 + 270``
(clockwise), each upright and unmirrored; face 0 (up) has its bottom edge against face 1's
top edge, face 5 (down) its top edge against face 1's bottom edge; both read left to right
like face 1. :data:`CANONICAL_ROTATION` is the pose rotation with face 1 at heading 0 (+y).

Equirectangular panoramas use the same panorama frame: the centre column looks like face 1,
heading grows to the right (column 0 is face 1's heading - 180 degrees), the top row is up.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vln_clip.errors import DataError, MissingResourceError
from vln_clip.geometry import (NUM_VIEWS, VIEW_ELEVATIONS, VIEW_HEADINGS, VIEW_HEIGHT, VIEW_VFOV, VIEW_VFOV_DEG,
                               VIEW_WIDTH)
from vln_clip.graph import pose_rotation, read_connectivity
from vln_clip.mattersim import MATTERSIM_HELP, has_mattersim

SKYBOX_SUBDIR = "matterport_skybox_images"
EQUIRECT_SUBDIR = "equirect_images"
FACE_TEMPLATE = "{pano}_skybox{i}_sami.jpg"
STRIP_TEMPLATE = "{pano}_skybox_small.jpg"
MATTERSIM_FACE_SIZE = 512  # MatterSim's downsize_skybox.py resizes 1024 -> 512 (area)

# GL cube targets in order +X, -X, +Y, -Y, +Z, -Z -> Matterport file index.
GL_TO_FILE = (2, 4, 0, 5, 1, 3)
FILE_TO_GL = tuple(GL_TO_FILE.index(i) for i in range(6))
#: Pose rotation of a panorama whose face 1 looks along +y (heading 0) and face 0 up.
CANONICAL_ROTATION = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class ViewSpec:
    """Camera of the discretized views (MatterSim's defaults for the published features)."""

    width: int = VIEW_WIDTH
    height: int = VIEW_HEIGHT
    vfov_deg: float = VIEW_VFOV_DEG

    def __post_init__(self) -> None:
        # a 0-pixel or 0-degree camera renders nothing (or NaN rays) without any error
        for name, value in (("width", self.width), ("height", self.height)):
            if not value >= 1:
                raise DataError(f"view {name} {value!r} (--{name}): must be a positive number of pixels")
        if not 0.0 < float(self.vfov_deg) < 180.0:
            raise DataError(f"view VFOV {self.vfov_deg!r} degrees (--vfov): must be between 0 and 180 "
                            "(MatterSim's discretized views: 60)")

    @property
    def vfov(self) -> float:
        return math.radians(self.vfov_deg)

    def center_square(self) -> tuple[float, float, float, float]:
        """Window (u0, v0, u1, v1) kept by CLIP's resize-shorter-side + center-crop."""
        if self.width >= self.height:
            m = (1.0 - self.height / self.width) / 2.0
            return (m, 0.0, 1.0 - m, 1.0)
        m = (1.0 - self.width / self.height) / 2.0
        return (0.0, m, 1.0, 1.0 - m)


# ---------------------------------------------------------------------------------------
# Rays


def view_rays(headings: Sequence[float] | np.ndarray, elevations: Sequence[float] | np.ndarray,
              spec: ViewSpec = ViewSpec(), window: tuple[float, float, float, float] | None = None,
              out_size: tuple[int, int] | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
    """World directions ``[V, h, w, 3]`` of the pixel centres of each view (row 0 at the top).

    ``window`` = (u0, v0, u1, v1) selects a part of the full frame in [0, 1] coordinates and
    ``out_size`` = (w, h) its resolution (default: the full frame at ``spec`` size).
    """
    u0, v0, u1, v1 = window or (0.0, 0.0, 1.0, 1.0)
    w, h = out_size or (spec.width, spec.height)
    tan_v = math.tan(spec.vfov / 2.0)
    tan_h = tan_v * spec.width / spec.height
    u = u0 + (u1 - u0) * (torch.arange(w, dtype=torch.float64, device=device) + 0.5) / w
    v = v0 + (v1 - v0) * (torch.arange(h, dtype=torch.float64, device=device) + 0.5) / h
    x = (2.0 * u - 1.0) * tan_h  # right
    y = (1.0 - 2.0 * v) * tan_v  # up
    hd = torch.as_tensor(np.asarray(headings, dtype=np.float64), device=device)
    el = torch.as_tensor(np.asarray(elevations, dtype=np.float64), device=device)
    sh, ch, se, ce = hd.sin(), hd.cos(), el.sin(), el.cos()
    fwd = torch.stack([sh * ce, ch * ce, se], -1)  # [V, 3]
    right = torch.stack([ch, -sh, torch.zeros_like(sh)], -1)
    up = torch.stack([-sh * se, -ch * se, ce], -1)
    rays = (fwd[:, None, None, :] + x[None, None, :, None] * right[:, None, None, :]
            + y[None, :, None, None] * up[:, None, None, :])
    return F.normalize(rays, dim=-1).float()


def discretized_rays(spec: ViewSpec = ViewSpec(), window: tuple[float, float, float, float] | None = None,
                     out_size: tuple[int, int] | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
    """Rays of the 36 discretized views ``[36, h, w, 3]``."""
    return view_rays(VIEW_HEADINGS, VIEW_ELEVATIONS, spec, window, out_size, device)


# ---------------------------------------------------------------------------------------
# Cube map lookup (OpenGL rules)


# Per GL face (+X, -X, +Y, -Y, +Z, -Z): which texture-direction component gives sc and tc, and
# with which sign (OpenGL's table: +X (-rz, -ry), -X (rz, -ry), +Y (rx, rz), -Y (rx, -rz),
# +Z (rx, -ry), -Z (-rx, -ry)).
_S_COMP = (2, 2, 0, 0, 0, 0)
_S_SIGN = (-1.0, 1.0, 1.0, 1.0, 1.0, -1.0)
_T_COMP = (1, 1, 2, 2, 1, 1)
_T_SIGN = (-1.0, -1.0, 1.0, -1.0, -1.0, -1.0)


_TABLES: dict[tuple[str, torch.dtype], tuple[torch.Tensor, ...]] = {}


def _lookup_tables(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The face tables on ``device``, made once (a host-to-device copy per call would stall
    the GPU queue: pageable copies synchronize the stream)."""
    key = (str(device), dtype)
    if key not in _TABLES:
        _TABLES[key] = (torch.tensor(_S_COMP, device=device), torch.tensor(_S_SIGN, device=device, dtype=dtype),
                        torch.tensor(_T_COMP, device=device), torch.tensor(_T_SIGN, device=device, dtype=dtype),
                        torch.tensor(GL_TO_FILE, device=device), torch.tensor(CANONICAL_ROTATION, device=device,
                                                                              dtype=dtype))
    return _TABLES[key]


def cube_lookup(tex: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GL face selection: ``(file index, s, t)`` for texture directions ``[..., 3]``.

    s grows along the face image's columns, t along its rows (first row = t 0). Written as a
    few gathers rather than a cascade of ``where`` (the op count dominates on large grids).
    """
    s_comp_t, s_sign_t, t_comp_t, t_sign_t, file_t, _ = _lookup_tables(tex.device, tex.dtype)
    ma, axis = tex.abs().max(-1)
    comp = tex.gather(-1, axis.unsqueeze(-1)).squeeze(-1)
    gl = axis * 2 + (comp < 0).long()
    sc = tex.gather(-1, s_comp_t[gl].unsqueeze(-1)).squeeze(-1) * s_sign_t[gl]
    tc = tex.gather(-1, t_comp_t[gl].unsqueeze(-1)).squeeze(-1) * t_sign_t[gl]
    inv = 0.5 / ma
    return file_t[gl], sc * inv + 0.5, tc * inv + 0.5


def face_directions(size: int, rotation: np.ndarray | None = None) -> np.ndarray:
    """World directions ``[6, size, size, 3]`` of every skybox face pixel (file order).

    The inverse of :func:`cube_lookup`: use it to write skyboxes (synthetic worlds, tests)
    that MatterSim and :func:`render_skybox` read back in the intended orientation.
    """
    rot = CANONICAL_ROTATION if rotation is None else np.asarray(rotation, dtype=np.float64)
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    tc, sc = np.meshgrid(c, c, indexing="ij")  # rows: t, columns: s
    one = np.ones_like(sc)
    by_gl = [
        np.stack([one, -tc, -sc], -1), np.stack([-one, -tc, sc], -1),  # +X, -X
        np.stack([sc, one, tc], -1), np.stack([sc, -one, -tc], -1),  # +Y, -Y
        np.stack([sc, -tc, one], -1), np.stack([-sc, -tc, -one], -1),  # +Z, -Z
    ]
    out = np.zeros((6, size, size, 3))
    for gl, tex in enumerate(by_gl):
        d = -(tex @ rot.T)  # world = -R tex
        out[GL_TO_FILE[gl]] = d / np.linalg.norm(d, axis=-1, keepdims=True)
    return out


def equirect_directions(height: int, width: int, rotation: np.ndarray | None = None) -> np.ndarray:
    """World directions ``[height, width, 3]`` of an equirectangular panorama's pixels."""
    rot = CANONICAL_ROTATION if rotation is None else np.asarray(rotation, dtype=np.float64)
    lon = (np.arange(width) + 0.5) / width * 2 * np.pi - np.pi
    lat = np.pi / 2 - (np.arange(height) + 0.5) / height * np.pi
    lat, lon = np.meshgrid(lat, lon, indexing="ij")
    local = np.stack([np.sin(lon) * np.cos(lat), np.cos(lon) * np.cos(lat), np.sin(lat)], -1)
    # local = Rc R^T d  =>  d = R Rc^T local
    return local @ (rot @ CANONICAL_ROTATION.T).T


def faces_to_strip(faces: torch.Tensor) -> torch.Tensor:
    """``[B, 6, C, S, S]`` faces -> ``[B, C, S, 6S]`` strip (MatterSim's skybox_small layout)."""
    b, n, c, s, s2 = faces.shape
    if n != 6 or s != s2:
        raise DataError(f"expected 6 square skybox faces, got tensor of shape {tuple(faces.shape)}")
    return faces.permute(0, 2, 3, 1, 4).reshape(b, c, s, 6 * s)


def skybox_grid(rotations: torch.Tensor, rays: torch.Tensor, face_size: int) -> torch.Tensor:
    """``grid_sample`` grid ``[B, V*h, w, 2]`` into a ``[B, C, S, 6S]`` strip (align_corners=True)."""
    v, h, w, _ = rays.shape
    d = rays.reshape(-1, 3).to(rotations.dtype)
    tex = -torch.matmul(d.unsqueeze(0), rotations)  # (R^T d)^T = d^T R
    face, s, t = cube_lookup(tex)
    S = face_size
    # GL_LINEAR + CLAMP_TO_EDGE inside each face: never blend with the neighbour in the strip.
    col = (s * S - 0.5).clamp(0.0, S - 1.0) + face.to(s.dtype) * S
    row = (t * S - 0.5).clamp(0.0, S - 1.0)
    gx = col / (6 * S - 1) * 2.0 - 1.0
    gy = row / (S - 1) * 2.0 - 1.0
    return torch.stack([gx, gy], -1).reshape(rotations.shape[0], v * h, w, 2)


def equirect_grid(rotations: torch.Tensor, rays: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Grid ``[B, V*h, w, 2]`` into an equirect padded by one wrapped column on each side."""
    v, h, w, _ = rays.shape
    d = rays.reshape(-1, 3).to(rotations.dtype)
    rc = _lookup_tables(rotations.device, rotations.dtype)[5]
    local = torch.matmul(d.unsqueeze(0), torch.matmul(rotations, rc.T))  # (Rc R^T d)^T = d^T R Rc^T
    lx, ly, lz = local.unbind(-1)
    lon = torch.atan2(lx, ly)
    lat = torch.atan2(lz, torch.sqrt(lx * lx + ly * ly))
    col = (lon + math.pi) / (2 * math.pi) * width - 0.5 + 1.0
    row = ((math.pi / 2 - lat) / math.pi * height - 0.5).clamp(0.0, height - 1.0)
    gx = col / (width + 1) * 2.0 - 1.0
    gy = row / (height - 1) * 2.0 - 1.0
    return torch.stack([gx, gy], -1).reshape(rotations.shape[0], v * h, w, 2)


def _sample(image: torch.Tensor, grid: torch.Tensor, v: int, h: int, w: int) -> torch.Tensor:
    dtype = image.dtype
    img = image.float() if dtype == torch.uint8 else image
    out = F.grid_sample(img, grid.to(img.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    b, c = out.shape[:2]
    out = out.reshape(b, c, v, h, w).permute(0, 2, 1, 3, 4)  # [B, V, C, h, w]
    if dtype == torch.uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    return out


def render_skybox(strip: torch.Tensor, rotations: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Views ``[B, V, C, h, w]`` of skybox strips ``[B, C, S, 6S]`` (uint8 or float)."""
    if strip.ndim != 4 or strip.shape[-1] != 6 * strip.shape[-2]:
        raise DataError(f"skybox strip must be [B, C, S, 6S], got {tuple(strip.shape)}")
    v, h, w, _ = rays.shape
    grid = skybox_grid(rotations.to(strip.device, torch.float32), rays.to(strip.device), strip.shape[-2])
    return _sample(strip, grid, v, h, w)


def render_equirect(pano: torch.Tensor, rotations: torch.Tensor, rays: torch.Tensor) -> torch.Tensor:
    """Views ``[B, V, C, h, w]`` of equirectangular panoramas ``[B, C, H, W]``."""
    v, h, w, _ = rays.shape
    padded = torch.cat([pano[..., -1:], pano, pano[..., :1]], dim=-1)  # wrap longitude
    grid = equirect_grid(rotations.to(pano.device, torch.float32), rays.to(pano.device),
                         pano.shape[-2], pano.shape[-1])
    return _sample(padded, grid, v, h, w)


# ---------------------------------------------------------------------------------------
# Files


def read_pano_rotations(connectivity_dir: str | os.PathLike[str], scan: str) -> dict[str, np.ndarray]:
    """Pose rotation (3x3) of every panorama of ``scan`` (included or not)."""
    data = read_connectivity(Path(connectivity_dir) / f"{scan}_connectivity.json")
    return {str(item["image_id"]): pose_rotation(item["pose"]) for item in data}


def skybox_folder(skybox_dir: str | os.PathLike[str], scan: str) -> Path:
    return Path(skybox_dir) / scan / SKYBOX_SUBDIR


def _open_rgb(path: Path, draft: tuple[int, int] | None = None) -> "PIL.Image.Image":  # noqa: F821
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        if draft is not None and img.format == "JPEG":
            img.draft("RGB", draft)  # DCT-domain downscale while decoding: much cheaper
        return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}); re-download or re-extract it") from exc


def load_skybox(skybox_dir: str | os.PathLike[str], scan: str, pano: str,
                face_size: int | None = None) -> np.ndarray:
    """The six faces ``[6, S, S, 3]`` uint8 RGB of one panorama, in Matterport file order.

    Reads MatterSim's ``<pano>_skybox_small.jpg`` strip when present, else the six
    ``<pano>_skybox<i>_sami.jpg`` faces. ``face_size`` caps the face size: larger faces are
    reduced (area filter) to it; 512 (:data:`MATTERSIM_FACE_SIZE`) is what MatterSim sees
    from the full-size 1024-pixel downloads. Smaller faces are kept as they are.
    """
    from PIL import Image

    folder = skybox_folder(skybox_dir, scan)
    strip_path = folder / STRIP_TEMPLATE.format(pano=pano)
    if strip_path.exists():
        img = _open_rgb(strip_path, (6 * face_size, face_size) if face_size else None)
        w, h = img.size
        face_size = face_size if face_size and h > face_size else None
        if w != 6 * h:
            raise DataError(f"{strip_path}: a skybox strip must be 6 faces wide ({6 * h}x{h}), got {w}x{h}; "
                            "re-create it with MatterSim's scripts/downsize_skybox.py layout")
        if face_size and h != face_size:
            img = img.resize((6 * face_size, face_size), Image.BOX)
            h = face_size
        arr = np.asarray(img)
        return np.ascontiguousarray(arr.reshape(h, 6, h, 3).transpose(1, 0, 2, 3))
    faces = []
    for i in range(6):
        path = folder / FACE_TEMPLATE.format(pano=pano, i=i)
        if not path.exists():
            raise DataError(f"{path}: skybox face {i} of panorama {pano} (scan {scan}) not found, and no "
                            f"{strip_path.name} strip either; download the matterport_skybox_images of "
                            f"scan {scan} into {folder}")
        img = _open_rgb(path, (face_size, face_size) if face_size else None)
        if img.size[0] != img.size[1]:
            raise DataError(f"{path}: skybox faces must be square, got {img.size[0]}x{img.size[1]}")
        if face_size and img.size[0] > face_size:
            img = img.resize((face_size, face_size), Image.BOX)
        faces.append(np.asarray(img))
    if len({f.shape for f in faces}) != 1:
        raise DataError(f"{folder}: the six faces of {pano} have different sizes "
                        f"{[f.shape[0] for f in faces]}; re-download them")
    return np.stack(faces)


def equirect_path(root: str | os.PathLike[str], scan: str, pano: str) -> Path:
    folder = Path(root) / scan / EQUIRECT_SUBDIR
    for ext in (".jpg", ".png", ".jpeg"):
        cand = folder / f"{pano}{ext}"
        if cand.exists():
            return cand
    return folder / f"{pano}.jpg"


def load_equirect(root: str | os.PathLike[str], scan: str, pano: str) -> np.ndarray:
    """An equirectangular panorama ``[H, 2H, 3]`` uint8 RGB from ``<root>/<scan>/equirect_images/``."""
    path = equirect_path(root, scan, pano)
    if not path.exists():
        raise DataError(f"{path}: equirectangular panorama of {pano} (scan {scan}) not found; put "
                        f"<pano>.jpg or .png files in {path.parent} or use --source skybox")
    arr = np.array(_open_rgb(path))  # a writable copy (torch.from_numpy needs one)
    if arr.shape[1] != 2 * arr.shape[0]:
        raise DataError(f"{path}: an equirectangular panorama must be twice as wide as high, got "
                        f"{arr.shape[1]}x{arr.shape[0]}")
    return arr


def has_skyboxes(skybox_dir: str | os.PathLike[str] | None) -> bool:
    """Whether ``skybox_dir`` holds at least one ``<scan>/matterport_skybox_images`` folder."""
    if not skybox_dir or not Path(skybox_dir).is_dir():
        return False
    return any((p / SKYBOX_SUBDIR).is_dir() for p in Path(skybox_dir).iterdir() if p.is_dir())


# ---------------------------------------------------------------------------------------
# One panorama at a time (CLI, simulator)


def panorama_views(source: str, scan: str, pano: str, rotation: np.ndarray, spec: ViewSpec = ViewSpec(),
                   skybox_dir: str | os.PathLike[str] | None = None,
                   connectivity_dir: str | os.PathLike[str] | None = None,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """The 36 views ``[36, H, W, 3]`` uint8 RGB of one panorama from ``skybox``, ``equirect`` or ``mattersim``."""
    if source == "mattersim":
        if skybox_dir is None or connectivity_dir is None:
            raise DataError("--source mattersim needs the skybox and connectivity folders")
        return mattersim_views(skybox_dir, connectivity_dir, scan, pano, spec)[..., ::-1].copy()
    rays = discretized_rays(spec, device=device)
    rot = torch.as_tensor(np.asarray(rotation), dtype=torch.float32, device=device)[None]
    if source == "skybox":
        faces = torch.from_numpy(load_skybox(skybox_dir or ".", scan, pano)).to(device)
        views = render_skybox(faces_to_strip(faces.permute(0, 3, 1, 2)[None]), rot, rays)
    elif source == "equirect":
        pano_img = torch.from_numpy(load_equirect(skybox_dir or ".", scan, pano)).to(device)
        views = render_equirect(pano_img.permute(2, 0, 1)[None].contiguous(), rot, rays)
    else:
        raise DataError(f"unknown view source {source!r}; choose skybox, equirect or mattersim")
    return views[0].permute(0, 2, 3, 1).cpu().numpy()


def write_view_pngs(views: np.ndarray, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``[36, H, W, 3]`` RGB views as ``00.png`` .. ``35.png`` (named by view index)."""
    from PIL import Image

    from vln_clip.io import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(views):
        path = out / f"{i:02d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(img)).save(tmp, format="PNG")
        paths.append(path)
    return paths


def make_mattersim(skybox_dir: str | os.PathLike[str], connectivity_dir: str | os.PathLike[str],
                   spec: ViewSpec = ViewSpec()) -> object:
    """A discretized, rendering MatterSim simulator (needs ``import MatterSim``; explains otherwise)."""
    if not has_mattersim():
        raise MissingResourceError(MATTERSIM_HELP)
    import MatterSim  # type: ignore[import-not-found]

    sim = MatterSim.Simulator()
    sim.setCameraResolution(spec.width, spec.height)
    sim.setCameraVFOV(spec.vfov)
    sim.setDiscretizedViewingAngles(True)
    sim.setRenderingEnabled(True)
    sim.setDatasetPath(str(skybox_dir))
    sim.setNavGraphPath(str(connectivity_dir))
    if hasattr(sim, "setBatchSize"):
        sim.setBatchSize(1)
    if hasattr(sim, "initialize"):
        sim.initialize()
    else:
        sim.init()
    return sim


def mattersim_views(skybox_dir: str | os.PathLike[str], connectivity_dir: str | os.PathLike[str], scan: str,
                    pano: str, spec: ViewSpec = ViewSpec(), sim: object | None = None) -> np.ndarray:
    """The 36 views ``[36, H, W, 3]`` uint8 **BGR** rendered by MatterSim itself (needs ``import MatterSim``).

    Follows the reference feature scripts: start at heading 0, elevation -30 degrees, turn
    right through 12 headings, look up after every 12 views.
    """
    if sim is None:
        sim = make_mattersim(skybox_dir, connectivity_dir, spec)
    out = np.zeros((NUM_VIEWS, spec.height, spec.width, 3), dtype=np.uint8)
    sim.newEpisode([scan], [pano], [0.0], [math.radians(-30)])
    for ix in range(NUM_VIEWS):
        state = sim.getState()[0]
        if state.viewIndex != ix:
            raise DataError(f"MatterSim returned view {state.viewIndex} where {ix} was expected")
        out[ix] = np.asarray(state.rgb)
        if ix % 12 == 11:
            sim.makeAction([0], [1.0], [1.0])
        else:
            sim.makeAction([0], [1.0], [0.0])
    return out


class SkyboxCamera:
    """Frames like MatterSim's ``state.rgb`` (uint8 ``H x W x 3`` BGR) for any heading/elevation.

    Used by :class:`vln_clip.envs.Simulator` when rendering is enabled and the dataset path
    holds skyboxes; the last few panoramas stay decoded (an LRU of ``cache_size``).
    """

    def __init__(self, skybox_dir: str | os.PathLike[str], connectivity_dir: str | os.PathLike[str],
                 width: int = VIEW_WIDTH, height: int = VIEW_HEIGHT, vfov: float = VIEW_VFOV, cache_size: int = 8) -> None:
        self.skybox_dir = Path(skybox_dir)
        self.connectivity_dir = Path(connectivity_dir)
        self.spec = ViewSpec(width, height, math.degrees(vfov))
        self.cache_size = cache_size
        self._strips: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self._rotations: dict[str, dict[str, np.ndarray]] = {}

    def _strip(self, scan: str, pano: str) -> torch.Tensor:
        key = (scan, pano)
        if key in self._strips:
            self._strips.move_to_end(key)
            return self._strips[key]
        faces = torch.from_numpy(load_skybox(self.skybox_dir, scan, pano))
        strip = faces_to_strip(faces.permute(0, 3, 1, 2)[None])
        self._strips[key] = strip
        while len(self._strips) > self.cache_size:
            self._strips.popitem(last=False)
        return strip

    def render(self, scan: str, pano: str, heading: float, elevation: float) -> np.ndarray:
        if scan not in self._rotations:
            self._rotations[scan] = read_pano_rotations(self.connectivity_dir, scan)
        rot = torch.as_tensor(self._rotations[scan][pano], dtype=torch.float32)[None]
        rays = view_rays([heading], [elevation], self.spec)
        rgb = render_skybox(self._strip(scan, pano), rot, rays)[0, 0].permute(1, 2, 0).numpy()
        return np.ascontiguousarray(rgb[..., ::-1])


def skybox_from_function(color: Callable[[np.ndarray], np.ndarray], size: int,
                         rotation: np.ndarray | None = None) -> np.ndarray:
    """Faces ``[6, size, size, 3]`` uint8 painting ``color(directions [..., 3]) -> [..., 3]`` (0-255)."""
    return np.clip(np.rint(color(face_directions(size, rotation))), 0, 255).astype(np.uint8)


def write_skybox(folder: str | os.PathLike[str], pano: str, faces: np.ndarray, strip: bool = False,
                 quality: int = 95) -> list[Path]:
    """Write faces ``[6, S, S, 3]`` RGB as ``<pano>_skybox<i>_sami.jpg`` (or the ``_small`` strip)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if strip:
        path = folder / STRIP_TEMPLATE.format(pano=pano)
        Image.fromarray(np.concatenate(list(faces), axis=1)).save(path, quality=quality)
        return [path]
    paths = []
    for i, face in enumerate(faces):
        path = folder / FACE_TEMPLATE.format(pano=pano, i=i)
        Image.fromarray(face).save(path, quality=quality)
        paths.append(path)
    return paths
