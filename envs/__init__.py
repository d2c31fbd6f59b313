"""Navigation environments: the MatterSim-compatible simulator and Gymnasium wrappers.

``gymnasium.make("vln_clip/R2R-v0", connectivity_dir=..., episodes=..., features=...)`` (and
``vln_clip/RxR-v0``) build a :class:`NavEnv`; :class:`BatchedNavEnv` is the batched training path.
See docs/envs.md.
"""

import gymnasium as _gym

from .backends import available_backends, has_habitat, has_mattersim, make_simulator
from .batched import BatchedNavEnv, Rollout
from .feature_table import FeatureTable, Views
from .nav_env import NavEnv, NavEnvConfig, NavTask
from .panorama import ScanPanorama, scan_panorama
from .simulator import SimState, Simulator, ViewPoint, navigable_neighbours
from .teacher import ShortestAgent, panoramic_teacher, run_shortest_agent, teacher_table
from .topdown import draw_topdown

ENV_IDS = ("vln_clip/R2R-v0", "vln_clip/RxR-v0")


def _register() -> None:
    registry = _gym.envs.registration.registry
    if "vln_clip/R2R-v0" not in registry:
        _gym.register(id="vln_clip/R2R-v0", entry_point="vln_clip.envs.nav_env:NavEnv",
                      kwargs={"dataset": "r2r"})
    if "vln_clip/RxR-v0" not in registry:
        _gym.register(id="vln_clip/RxR-v0", entry_point="vln_clip.envs.nav_env:NavEnv",
                      kwargs={"dataset": "rxr"})


_register()

__all__ = ["Simulator", "SimState", "ViewPoint", "navigable_neighbours", "make_simulator",
           "available_backends", "has_mattersim", "has_habitat", "NavEnv", "NavEnvConfig", "NavTask",
           "BatchedNavEnv", "Rollout", "FeatureTable", "Views", "ScanPanorama", "scan_panorama", "ShortestAgent", "panoramic_teacher",
           "run_shortest_agent", "teacher_table", "draw_topdown", "ENV_IDS"]
