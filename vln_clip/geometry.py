"""MatterSim's angle conventions, shared by the simulator, environments, features and agents.

Heading is in radians clockwise from +y seen from above (camera direction (sin h, cos h, 0)),
elevation positive up. Discretized mode has 12 headings x 3 elevations (30 degrees apart);
``viewIndex = heading_step + 12 * level`` with level 0 looking down, 1 level, 2 up.
"""

from __future__ import annotations

import math

import numpy as np

HEADING_COUNT = 12
ELEVATION_LEVELS = 3
NUM_VIEWS = HEADING_COUNT * ELEVATION_LEVELS
HEADING_INCREMENT = 2 * math.pi / HEADING_COUNT
ELEVATION_INCREMENT = math.pi / 6
ANGLE_FEATURE_SIZE = 128


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


def view_angles(ix: int) -> tuple[float, float]:
    """(heading, elevation) of discretized view ``ix`` in [0, 36)."""
    return (ix % HEADING_COUNT) * HEADING_INCREMENT, (ix // HEADING_COUNT - 1) * ELEVATION_INCREMENT


VIEW_HEADINGS = np.array([view_angles(i)[0] for i in range(NUM_VIEWS)])
VIEW_ELEVATIONS = np.array([view_angles(i)[1] for i in range(NUM_VIEWS)])


def world_heading(dx: float, dy: float) -> float:
    """Heading (clockwise from +y) of a horizontal direction."""
    return math.atan2(dx, dy)


def angle_feature(heading: np.ndarray | float, elevation: np.ndarray | float,
                  size: int = ANGLE_FEATURE_SIZE) -> np.ndarray:
    """EnvDrop's angle encoding: [sin h, cos h, sin e, cos e] repeated ``size // 4`` times."""
    h = np.asarray(heading, dtype=np.float32)
    e = np.asarray(elevation, dtype=np.float32)
    base = np.stack([np.sin(h), np.cos(h), np.sin(e), np.cos(e)], axis=-1)
    return np.tile(base, (1,) * (base.ndim - 1) + (size // 4,)).astype(np.float32)
