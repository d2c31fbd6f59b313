"""Simulator backends: the pure-Python one always, MatterSim and habitat-sim when importable.

Neither optional backend can be installed from PyPI (the PyPI package named ``mattersim`` is
an unrelated atomistic model), so they are detected lazily and explained, never faked.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from vln_clip.errors import MissingResourceError
from vln_clip.mattersim import MATTERSIM_HELP, has_mattersim  # noqa: F401 (re-exported)

from .simulator import Simulator

HABITAT_HELP = (
    "habitat-sim is not importable; it has no wheel for this Python. Install it with conda "
    "(`conda install habitat-sim -c conda-forge -c aihabitat`) in a Python it supports."
)


def has_habitat() -> bool:
    return importlib.util.find_spec("habitat_sim") is not None


def available_backends() -> dict[str, bool]:
    return {"python": True, "mattersim": has_mattersim(), "habitat": has_habitat()}


def make_simulator(backend: str = "auto") -> Any:
    """A MatterSim-API simulator: ``auto`` picks MatterSim when importable, else pure Python."""
    if backend not in ("auto", "python", "mattersim"):
        if backend == "habitat":
            if not has_habitat():
                raise MissingResourceError(HABITAT_HELP)
            raise MissingResourceError("habitat-sim is importable, but vln-clip has no habitat backend "
                                       "for discretized Matterport navigation yet; use backend='python'")
        raise ValueError(f"unknown simulator backend {backend!r}; choose auto, python or mattersim")
    if backend == "mattersim" or (backend == "auto" and has_mattersim()):
        if not has_mattersim():
            raise MissingResourceError(MATTERSIM_HELP)
        return importlib.import_module("MatterSim").Simulator()
    return Simulator()
