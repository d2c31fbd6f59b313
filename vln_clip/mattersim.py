"""Whether the compiled Matterport3D simulator is importable, and how to get it.

A leaf module (no vln_clip imports): the environments (:mod:`vln_clip.envs.backends`) and the
feature renderer (:mod:`vln_clip.features.views`) both ask, and neither imports the other for it.
"""

from __future__ import annotations

import importlib.util

MATTERSIM_HELP = (
    "the Matterport3D simulator (`import MatterSim`) is not importable. It is built from source: "
    "clone github.com/peteanderson80/Matterport3DSimulator, build it with CMake "
    "(-DEGL_RENDERING=ON or -DOSMESA_RENDERING=ON on headless machines), and put its build/ "
    "directory on PYTHONPATH. Do NOT `pip install mattersim`: that PyPI package is an unrelated "
    "atomistic model. Without it, vln_clip.envs.Simulator gives the same states from the "
    "connectivity graphs (no RGB)."
)


def has_mattersim() -> bool:
    return importlib.util.find_spec("MatterSim") is not None
