"""Navigation environments: the MatterSim-compatible simulator and Gymnasium wrappers."""

from .backends import available_backends, has_habitat, has_mattersim, make_simulator
from .simulator import SimState, Simulator, ViewPoint, navigable_neighbours

__all__ = ["Simulator", "SimState", "ViewPoint", "navigable_neighbours", "make_simulator",
           "available_backends", "has_mattersim", "has_habitat"]
