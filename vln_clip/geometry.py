"""MatterSim's angle conventions and navigable-location geometry: the one home for both.

Every part of the navigation half (the simulator, EnvDrop's candidate tables, the batched
environment, the teachers, the baselines, rollouts and pictures) derives headings, elevations,
view indices and the directions of neighbouring viewpoints from this module, so that they
agree to the bit and a convention is changed in one place.

Angles (MatterSim, src/lib/MatterSim.cpp):

* heading is in radians clockwise from +y seen from above (camera direction (sin h, cos h, 0)),
  kept in [0, 2pi) in the simulator state; elevation is positive up;
* discretized mode has 12 headings x 3 elevations (30 degrees apart);
  ``viewIndex = heading_step + 12 * level`` with level 0 looking down, 1 level, 2 up
  (EnvDrop's ``pointId`` of a candidate is such a view index).

Navigable locations (``Simulator::populateNavigable``), computed by
:func:`neighbour_directions`: positions are float32 (``glm::vec3``); a neighbour is visible when
the cosine between its horizontal direction and the camera's horizontal direction is at least
``cos(HFOV / 2)`` with ``HFOV = VFOV * width / height``; its ``rel_heading`` is
``atan2(cross, dot)`` of those two directions (in [-pi, pi], positive to the right), its
``rel_elevation`` is its elevation angle seen from the camera position minus the camera's
elevation, ``rel_distance`` its 3-D distance; the visible ones are sorted by
:func:`angular_distance`. A heading relative to an agent that a person reads is
:func:`wrap_to_pi` of the difference, in (-pi, pi].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HEADING_COUNT = 12
ELEVATION_LEVELS = 3
NUM_VIEWS = HEADING_COUNT * ELEVATION_LEVELS
HEADING_INCREMENT = 2 * math.pi / HEADING_COUNT
ELEVATION_INCREMENT = math.pi / 6
ANGLE_FEATURE_SIZE = 128

#: The camera of the 36 discretized views (R2R's and EnvDrop's feature extraction and EnvDrop's
#: candidate sweep): 640x480 at a vertical field of view of 60 degrees, so MatterSim's
#: horizontal field of view ``VFOV * width / height`` is 80 degrees.
VIEW_WIDTH, VIEW_HEIGHT, VIEW_VFOV_DEG = 640, 480, 60.0
VIEW_VFOV = math.radians(VIEW_VFOV_DEG)
VIEW_HFOV = VIEW_VFOV * VIEW_WIDTH / VIEW_HEIGHT


def wrap_to_2pi(heading: float) -> float:
    """Heading into [0, 2pi) the way MatterSim does (fmod, then add 2pi while negative)."""
    h = math.fmod(heading, 2 * math.pi)
    while h < 0.0:
        h += 2 * math.pi
    return h


def wrap_to_pi(angle: float) -> float:
    """Angle into (-pi, pi]."""
    a = math.fmod(angle + math.pi, 2 * math.pi)
    if a <= 0.0:
        a += 2 * math.pi
    return a - math.pi


def wrap_angles(angles: np.ndarray) -> np.ndarray:
    """:func:`wrap_to_pi` of every element (the same operations, so the same bits), float64."""
    a = np.fmod(np.asarray(angles, dtype=np.float64) + math.pi, 2 * math.pi)
    a = np.where(a <= 0.0, a + 2 * math.pi, a)
    return a - math.pi


def snap_heading(heading: float) -> tuple[float, int]:
    """Nearest 30-degree heading and its step (C ``lround``: halves away from zero; 12 -> 0)."""
    h = wrap_to_2pi(heading)
    x = h / HEADING_INCREMENT
    step = int(math.floor(x + 0.5))  # x >= 0, so floor(x + .5) is lround
    if step == HEADING_COUNT:
        step = 0
    return step * HEADING_INCREMENT, step


def snap_elevation(elevation: float) -> tuple[float, int]:
    """-30, 0 or +30 degrees and its level 0/1/2; saturates beyond the extremes."""
    if elevation < -ELEVATION_INCREMENT / 2.0:
        return -ELEVATION_INCREMENT, 0
    if elevation > ELEVATION_INCREMENT / 2.0:
        return ELEVATION_INCREMENT, 2
    return 0.0, 1


def view_index(heading_step: int, level: int) -> int:
    return heading_step + HEADING_COUNT * level


def view_level(ix):  # int -> int, integer array -> integer array
    """Elevation level of view ``ix``: 0 looking down, 1 level, 2 up (R2R's ``viewIndex // 12``)."""
    return ix // HEADING_COUNT


def nearest_view(heading: float, elevation: float = 0.0) -> int:
    """The discretized view a camera at (``heading``, ``elevation``) snaps to.

    With the default elevation this is where an R2R/EnvDrop episode starts: the episode's
    heading snapped to 30 degrees, looking level.
    """
    return view_index(snap_heading(heading)[1], snap_elevation(elevation)[1])


def view_heading(ix):  # int -> float, integer array -> float64 array
    """Heading of discretized view ``ix`` (an int or an integer array): ``(ix % 12) * 30`` degrees."""
    return (ix % HEADING_COUNT) * HEADING_INCREMENT


def view_elevation(ix):  # int -> float, integer array -> float64 array
    """Elevation of discretized view ``ix`` (an int or an integer array): ``(level - 1) * 30`` degrees."""
    return (view_level(ix) - 1) * ELEVATION_INCREMENT


def view_angles(ix: int) -> tuple[float, float]:
    """(heading, elevation) of discretized view ``ix`` in [0, 36)."""
    return view_heading(ix), view_elevation(ix)


VIEW_HEADINGS = np.array([view_angles(i)[0] for i in range(NUM_VIEWS)])
VIEW_ELEVATIONS = np.array([view_angles(i)[1] for i in range(NUM_VIEWS)])


def world_heading(dx: float, dy: float) -> float:
    """MatterSim heading in [0, 2pi) of the horizontal direction (dx, dy).

    Computed as R2R's shortest-path teacher computes it (``pi/2 - atan2(dy, dx)``, plus 2pi
    when negative), so the teacher turns the way R2R's does, to the bit.
    """
    heading = math.pi / 2.0 - math.atan2(dy, dx)
    if heading < 0:
        heading += 2.0 * math.pi
    return heading


def camera_horizon(headings: np.ndarray | float) -> np.ndarray:
    """``[H, 2]`` float32 horizontal camera directions of ``headings`` (MatterSim's
    ``camera_horizon_dir = (cos(pi/2 - h), sin(pi/2 - h))``, rounded to float32 like glm)."""
    return np.array([[math.cos(math.pi / 2 - h), math.sin(math.pi / 2 - h)]
                     for h in np.atleast_1d(headings)], dtype=np.float32).reshape(-1, 2)


@dataclass(frozen=True)
class NeighbourDirections:
    """Where target viewpoints lie seen from origin viewpoints, for cameras at ``H`` headings.

    ``...`` is the broadcast shape of the origin and target index arrays.
    """

    rel_heading: np.ndarray  # [..., H] float64 in [-pi, pi], positive to the right of the camera
    elevation: np.ndarray  # [...] float64, elevation angle of the target seen from the origin (camera level)
    distance: np.ndarray  # [...] float64, 3-D distance in metres
    visible: np.ndarray  # [..., H] bool, inside the horizontal field of view

    def rel_elevation(self, camera_elevations: np.ndarray | float) -> np.ndarray:
        """``[..., E]`` MatterSim's ``rel_elevation`` for cameras at ``E`` elevations: the
        target's elevation angle minus the camera's."""
        return self.elevation[..., None] - np.atleast_1d(camera_elevations)


def neighbour_directions(positions: np.ndarray, origin: np.ndarray | int, target: np.ndarray,
                         headings: np.ndarray | float, hfov: float) -> NeighbourDirections:
    """MatterSim's navigable-location geometry (``Simulator::populateNavigable``), vectorized.

    ``positions`` are the graph's ``[N, 3]`` viewpoint positions; ``origin`` and ``target`` are
    broadcastable arrays of indices into them; ``headings`` are camera headings. The arithmetic
    is MatterSim's: float32 positions and camera direction, the field-of-view test on their
    float32 cosine, ``rel_heading = atan2(cross, dot)`` in float64. ``hfov >= 2pi`` sees every
    neighbour (EnvDrop's panoramic sweep). A target straight above or below has no horizontal
    direction: it is never visible and its ``rel_heading`` is meaningless.
    """
    pos = np.asarray(positions).astype(np.float32)
    vec = pos[np.asarray(target)] - pos[np.asarray(origin)]  # [..., 3] float32
    distance = np.linalg.norm(vec.astype(np.float64), axis=-1)
    horiz = vec[..., :2]
    horiz_len = np.linalg.norm(horiz, axis=-1).astype(np.float32)
    elevation = np.arctan2(vec[..., 2].astype(np.float64), horiz_len.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = horiz / horiz_len[..., None]
    cams = camera_horizon(headings)  # [H, 2]
    cos_angle = (normed[..., None, :] * cams).sum(-1)  # [..., H] float32
    if hfov < 2 * math.pi:
        visible = cos_angle >= math.cos(hfov / 2.0)
    else:
        visible = np.ones(cos_angle.shape, dtype=bool)
    hx = horiz[..., 0].astype(np.float64)[..., None]
    hy = horiz[..., 1].astype(np.float64)[..., None]
    cx, cy = cams[:, 0].astype(np.float64), cams[:, 1].astype(np.float64)
    rel_heading = np.arctan2(hx * cy - hy * cx, hx * cx + hy * cy)
    return NeighbourDirections(rel_heading, elevation, distance, visible)


def angular_distance(rel_heading: np.ndarray, rel_elevation: np.ndarray) -> np.ndarray:
    """MatterSim's order of navigable locations (``ViewpointPtrComp``): ``sqrt(h^2 + e^2)``.

    EnvDrop attaches each candidate to the view where this is smallest.
    """
    return np.sqrt(rel_heading**2 + rel_elevation**2)


def angle_feature(heading: np.ndarray | float, elevation: np.ndarray | float,
                  size: int = ANGLE_FEATURE_SIZE) -> np.ndarray:
    """EnvDrop's angle encoding: [sin h, cos h, sin e, cos e] repeated ``size // 4`` times."""
    h = np.asarray(heading, dtype=np.float32)
    e = np.asarray(elevation, dtype=np.float32)
    base = np.stack([np.sin(h), np.cos(h), np.sin(e), np.cos(e)], axis=-1)
    return np.tile(base, (1,) * (base.ndim - 1) + (size // 4,)).astype(np.float32)


def feature_heading(angle_features: np.ndarray) -> np.ndarray:
    """The heading encoded in :func:`angle_feature` rows ``[..., >= 2]``: ``atan2(sin h, cos h)``.

    The inverse of the encoding, in [-pi, pi], float64: an agent that reads directions from its
    observation (as a learned agent does) decodes them with this.
    """
    f = np.asarray(angle_features)
    return np.arctan2(f[..., 0], f[..., 1]).astype(np.float64)
