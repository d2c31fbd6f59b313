"""A pure-Python drop-in for ``MatterSim.Simulator`` (discretized, feature-based use).

It reproduces the C++ simulator's state semantics so that scripts written for MatterSim
(EnvDrop, CLIP-ViL, the R2R baselines) run unchanged on machines without the compiled
simulator: same method names, the batched call style, heading snapping, elevation
saturation, view indices, and navigable locations filtered by the camera's horizontal field
of view (HFOV = VFOV * width / height) and sorted by angular distance.

Positions are held in float32 like MatterSim's ``glm::vec3`` so relative angles agree to the
last bit that matters for sorting. RGB frames (``state.rgb``, BGR like MatterSim) are rendered
from Matterport skyboxes when rendering is enabled and ``setDatasetPath`` points at them
(:class:`vln_clip.features.views.SkyboxCamera`); otherwise use the feature store.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from vln_clip.errors import DataError
from vln_clip.geometry import (ELEVATION_INCREMENT, HEADING_INCREMENT, angular_distance, neighbour_directions,
                               snap_elevation, snap_heading, view_index, wrap_to_2pi)
from vln_clip.features.views import SkyboxCamera, has_skyboxes
from vln_clip.graph import GraphStore, NavGraph


@dataclass
class ViewPoint:
    """MatterSim's ``Viewpoint``: a location plus its direction relative to the camera."""

    viewpointId: str
    ix: int
    x: float
    y: float
    z: float
    rel_heading: float = 0.0
    rel_elevation: float = 0.0
    rel_distance: float = 0.0

    @property
    def point(self) -> tuple[float, float, float]:
        return (self.x, self.y, self.z)


@dataclass
class SimState:
    """MatterSim's ``SimState`` without images unless a rendering backend fills ``rgb``."""

    scanId: str
    step: int
    location: ViewPoint
    heading: float
    elevation: float
    viewIndex: int
    navigableLocations: list[ViewPoint] = field(default_factory=list)
    rgb: Any = None
    depth: Any = None


#: MatterSim::Simulator's defaults (Matterport3DSimulator, src/lib/MatterSim.cpp): the navigation
#: graphs and the skyboxes are looked up relative to the working directory, the camera is
#: 320x240 with a 0.8 rad vertical field of view, rendering is on, depth and preloading off.
#: ($MATTERPORT_DATA_DIR is not read by MatterSim itself: its Docker setup mounts that folder
#: at ./data/v1/scans, which is where the default points.)
MATTERSIM_DEFAULTS: dict[str, Any] = {
    "nav_graph_path": "./connectivity",
    "dataset_path": "./data/v1/scans/",
    "width": 320,
    "height": 240,
    "vfov": 0.8,
    "min_elevation": -0.94,
    "max_elevation": 0.94,
    "rendering": True,
    "discretized": False,
    "restricted": True,
    "preloading": False,
    "depth": False,
    "batch_size": 1,
    "cache_size": 200,
    "seed": 1,
}


class Simulator:
    """Batched MatterSim-compatible simulator over connectivity graphs.

    Call order follows MatterSim: configure with the ``set*`` methods, ``initialize()``,
    then ``newEpisode`` / ``makeAction`` / ``getState`` with one list entry per batch item.
    """

    def __init__(self) -> None:
        # Every default is MatterSim::Simulator's (src/lib/MatterSim.cpp, constructor initialiser
        # list), so a script written for MatterSim behaves the same without its set* calls.
        self.nav_graph_path: str = MATTERSIM_DEFAULTS["nav_graph_path"]
        self.dataset_path: str = MATTERSIM_DEFAULTS["dataset_path"]
        self.rendering = MATTERSIM_DEFAULTS["rendering"]
        self.depth = MATTERSIM_DEFAULTS["depth"]
        self.preloading = MATTERSIM_DEFAULTS["preloading"]
        self.width, self.height = MATTERSIM_DEFAULTS["width"], MATTERSIM_DEFAULTS["height"]
        self.vfov = MATTERSIM_DEFAULTS["vfov"]
        self.discretized = MATTERSIM_DEFAULTS["discretized"]
        self.batch_size = MATTERSIM_DEFAULTS["batch_size"]
        self.min_elevation, self.max_elevation = MATTERSIM_DEFAULTS["min_elevation"], MATTERSIM_DEFAULTS["max_elevation"]
        self.restricted = MATTERSIM_DEFAULTS["restricted"]
        self.seed = MATTERSIM_DEFAULTS["seed"]
        self.cache_size = MATTERSIM_DEFAULTS["cache_size"]
        self.initialized = False
        self._graphs: GraphStore | None = None
        self._states: list[SimState] = []
        self._rng = random.Random(self.seed)

    # -- configuration (MatterSim names) -------------------------------------------------
    def setNavGraphPath(self, path: str) -> None:
        self.nav_graph_path = str(path)

    def setDatasetPath(self, path: str) -> None:
        self.dataset_path = str(path)

    def setRenderingEnabled(self, value: bool) -> None:
        self.rendering = bool(value)

    def setDepthEnabled(self, value: bool) -> None:
        self.depth = bool(value)

    def setPreloadingEnabled(self, value: bool) -> None:
        self.preloading = bool(value)

    def setCameraResolution(self, width: int, height: int) -> None:
        self.width, self.height = int(width), int(height)

    def setCameraVFOV(self, vfov: float) -> None:
        self.vfov = float(vfov)

    def setDiscretizedViewingAngles(self, value: bool) -> None:
        self.discretized = bool(value)

    def setBatchSize(self, size: int) -> None:
        self.batch_size = int(size)

    def setCacheSize(self, size: int) -> None:
        self.cache_size = int(size)

    def setRestrictedNavigation(self, value: bool) -> None:
        self.restricted = bool(value)

    def setSeed(self, seed: int) -> None:
        """MatterSim's name; :meth:`setRandomSeed` is kept for older scripts."""
        self.seed = int(seed)
        self._rng = random.Random(self.seed)

    setRandomSeed = setSeed

    def setElevationLimits(self, min_elevation: float, max_elevation: float) -> bool:
        if -math.pi / 2 < min_elevation < 0.0 < max_elevation < math.pi / 2:
            self.min_elevation, self.max_elevation = float(min_elevation), float(max_elevation)
            return True
        return False

    def initialize(self) -> None:
        self._camera = None
        if self.rendering:
            if not has_skyboxes(self.dataset_path) or not self.nav_graph_path:
                raise DataError(
                    "the pure-Python simulator renders RGB only from Matterport skyboxes: "
                    "setDatasetPath(DIR) where DIR holds <scan>/matterport_skybox_images (found none in "
                    f"{self.dataset_path!r}); otherwise call setRenderingEnabled(False) and use a feature "
                    "store, or build the Matterport3D simulator (`import MatterSim`) and use "
                    "vln_clip.envs.make_simulator(backend='mattersim')"
                )
            self._camera = SkyboxCamera(self.dataset_path, self.nav_graph_path, self.width, self.height, self.vfov)
        if not os.path.isdir(self.nav_graph_path):
            raise DataError(f"navigation graph path {self.nav_graph_path!r} is not a folder (MatterSim's default is "
                            "./connectivity in the working directory): call setNavGraphPath(DIR) with the folder "
                            "of <scan>_connectivity.json files")
        self._graphs = GraphStore(self.nav_graph_path)
        self.initialized = True

    init = initialize  # the v0.1 name

    def close(self) -> None:
        self.initialized = False

    # -- episodes ------------------------------------------------------------------------
    @property
    def graphs(self) -> GraphStore:
        if self._graphs is None:
            self.initialize()
        assert self._graphs is not None
        return self._graphs

    def newEpisode(self, scanIds: Sequence[str] | str, viewpointIds: Sequence[str] | str,
                   headings: Sequence[float] | float, elevations: Sequence[float] | float) -> None:
        scans, vps, hs, es = _as_batch(scanIds, viewpointIds, headings, elevations)
        if len(scans) != self.batch_size and not isinstance(scanIds, str):
            raise ValueError(f"newEpisode got {len(scans)} items but setBatchSize({self.batch_size})")
        self._states = []
        for scan, vp, h, e in zip(scans, vps, hs, es):
            graph = self.graphs[scan]
            if not vp:
                vp = graph.viewpoints[self._rng.randrange(len(graph))]
            ix = graph.idx(vp, "newEpisode")
            x, y, z = (float(c) for c in graph.positions[ix].astype(np.float32))
            state = SimState(scan, 0, ViewPoint(vp, ix, x, y, z), 0.0, 0.0, 0)
            self._set_heading_elevation(state, h, e)
            self._populate_navigable(state, graph)
            self._states.append(state)

    def makeAction(self, indices: Sequence[int] | int, headingDeltas: Sequence[float] | float,
                   elevationDeltas: Sequence[float] | float) -> None:
        if not self._states:
            raise RuntimeError("makeAction before newEpisode")
        idx = [indices] if isinstance(indices, (int, np.integer)) else list(indices)
        dh = [headingDeltas] if np.isscalar(headingDeltas) else list(headingDeltas)  # type: ignore[arg-type]
        de = [elevationDeltas] if np.isscalar(elevationDeltas) else list(elevationDeltas)  # type: ignore[arg-type]
        if not (len(idx) == len(dh) == len(de) == len(self._states)):
            raise ValueError(f"makeAction needs {len(self._states)} indices, heading and elevation deltas")
        for state, i, h, e in zip(self._states, idx, dh, de):
            if i < 0 or i >= len(state.navigableLocations):
                raise ValueError(f"MatterSim: Invalid action index: {i}")
            nxt = state.navigableLocations[int(i)]
            state.location = ViewPoint(nxt.viewpointId, nxt.ix, nxt.x, nxt.y, nxt.z)
            state.step += 1
            if self.discretized:
                h = HEADING_INCREMENT if h > 0 else (-HEADING_INCREMENT if h < 0 else 0.0)
                e = ELEVATION_INCREMENT if e > 0 else (-ELEVATION_INCREMENT if e < 0 else 0.0)
            self._set_heading_elevation(state, state.heading + h, state.elevation + e)
            self._populate_navigable(state, self.graphs[state.scanId])

    def getState(self) -> list[SimState]:
        if getattr(self, "_camera", None) is not None:  # rgb like MatterSim: uint8 H x W x 3, BGR
            for st in self._states:
                if st.rgb is None or getattr(st, "_rgb_for", None) != (st.location.viewpointId, st.heading,
                                                                        st.elevation):
                    st.rgb = self._camera.render(st.scanId, st.location.viewpointId, st.heading, st.elevation)
                    st._rgb_for = (st.location.viewpointId, st.heading, st.elevation)  # type: ignore[attr-defined]
        return self._states

    # -- internals -----------------------------------------------------------------------
    def _set_heading_elevation(self, state: SimState, heading: float, elevation: float) -> None:
        if self.discretized:
            state.heading, step = snap_heading(heading)
            state.elevation, level = snap_elevation(elevation)
            state.viewIndex = view_index(step, level)
        else:
            state.heading = wrap_to_2pi(heading)
            state.elevation = max(min(elevation, self.max_elevation), self.min_elevation)
            state.viewIndex = 0

    def _populate_navigable(self, state: SimState, graph: NavGraph) -> None:
        state.navigableLocations = [state.location] + navigable_neighbours(
            graph, state.location.ix, state.heading, state.elevation, self.vfov * self.width / self.height)


def navigable_neighbours(graph: NavGraph, ix: int, heading: float, elevation: float,
                         hfov: float) -> list[ViewPoint]:
    """Neighbours inside the horizontal field of view, sorted as MatterSim sorts them.

    The geometry is :func:`vln_clip.geometry.neighbour_directions` (the one home of MatterSim's
    navigable-location arithmetic). ``hfov = math.tau`` returns every neighbour (what EnvDrop's
    panoramic sweep sees).
    """
    nbrs = np.flatnonzero(graph.adjacency[ix])
    if len(nbrs) == 0:
        return []
    dirs = neighbour_directions(graph.positions, ix, nbrs, heading, hfov)
    rel_heading, visible = dirs.rel_heading[:, 0], dirs.visible[:, 0]
    rel_elevation = dirs.rel_elevation(elevation)[:, 0]
    order = np.argsort(angular_distance(rel_heading, rel_elevation), kind="stable")
    pos = graph.positions.astype(np.float32)
    out = []
    for k in order:
        if not visible[k]:
            continue
        j = int(nbrs[k])
        x, y, z = (float(c) for c in pos[j])
        out.append(ViewPoint(graph.viewpoints[j], j, x, y, z, float(rel_heading[k]),
                             float(rel_elevation[k]), float(dirs.distance[k])))
    return out


def _as_batch(*args: Any) -> list[list[Any]]:
    if isinstance(args[0], str):
        return [[a] for a in args]
    return [list(a) for a in args]
