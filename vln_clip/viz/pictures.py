"""Pictures of a rollout: top-down PNG, its GIF over the steps, the views faced, the HTML report.

All maps come from :func:`vln_clip.envs.topdown.draw_topdown` (the environments'
``render_mode="rgb_array"`` picture), so a frame here is exactly what ``env.render()`` shows
at that step. Views are rendered from skybox cube faces (synthetic or Matterport) with
:class:`vln_clip.features.views.SkyboxCamera`, or by MatterSim when it is importable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vln_clip.envs.topdown import draw_topdown
from vln_clip.features.views import SkyboxCamera, ViewSpec, has_skyboxes, mattersim_views
from vln_clip.geometry import VIEW_VFOV, view_angles
from vln_clip.graph import NavGraph
from vln_clip.io import atomic_path
from vln_clip.mattersim import has_mattersim
from vln_clip.rollout import ended_phrase

from .images import encode_gif, encode_png
from .report import rollout_html
from .safe import printable
from .strips import view_strip

if TYPE_CHECKING:
    from vln_clip.rollout import RolloutResult

MAP_SIZE = 512
VIEW_SIZE = (160, 120)  # width, height of each faced view (4:3 like MatterSim's 640x480)


def topdown_image(result: "RolloutResult", graph: NavGraph, size: int = MAP_SIZE) -> np.ndarray:
    """The whole rollout on the map: reference path, agent path, start, goal, final pose."""
    ep = result.episode
    last = result.trajectory[-1]
    return _draw(graph, ep, [t[0] for t in result.trajectory], last[1], size,
                 f"{printable(ep.instr_id)}: {ended_phrase(result)}")


def topdown_frames(result: "RolloutResult", graph: NavGraph, size: int = MAP_SIZE) -> list[np.ndarray]:
    """One map per step: the path walked up to and including that step's action."""
    frames = []
    moves = 0
    for rec in result.steps:
        if not rec.stopped and rec.action is not None:
            moves += 1
        upto = result.trajectory[: 1 + moves]
        frames.append(_draw(graph, result.episode, [t[0] for t in upto], upto[-1][1], size,
                            f"step {rec.step}: {rec.actor} {rec.action_label()}"))
    return frames


def _draw(graph: NavGraph, ep: Any, path: list[str], heading: float, size: int, title: str) -> np.ndarray:
    return draw_topdown(graph, trajectory=path, reference=ep.path if ep.has_goal else (ep.start,),
                        start=ep.start, goal=ep.goal, heading=heading, size=size, title=title)


# ----------------------------------------------------------------------------------------
# Views


class ViewRenderer:
    """Renders the view an agent faced from skyboxes (or MatterSim); ``None`` when impossible.

    ``reason`` says why views are unavailable, so the report can tell the user what to add.
    """

    def __init__(self, skybox_dir: str | os.PathLike[str] | None, connectivity_dir: str | os.PathLike[str],
                 width: int = VIEW_SIZE[0], height: int = VIEW_SIZE[1], backend: str = "auto") -> None:
        self.skybox_dir = Path(skybox_dir) if skybox_dir else None
        self.connectivity_dir = Path(connectivity_dir)
        self.width, self.height = width, height
        self.source = ""
        self.reason = ""
        self._camera: Any = None
        if self.skybox_dir is None or not has_skyboxes(self.skybox_dir):
            self.reason = ("no skybox images (pass --skybox-dir DIR holding <scan>/matterport_skybox_images/; "
                           "the synthetic world has them under DIR/scans)")
            return
        if backend == "mattersim" or (backend == "auto" and has_mattersim()):
            self.source = "mattersim"
        else:
            self._camera = SkyboxCamera(self.skybox_dir, self.connectivity_dir, width, height, VIEW_VFOV)
            self.source = "skybox"

    @property
    def available(self) -> bool:
        return bool(self.source)

    def render(self, scan: str, viewpoint: str, view_index: int) -> np.ndarray:
        """RGB ``[H, W, 3]`` uint8 of discretized view ``view_index`` at ``viewpoint``."""
        if self.source == "mattersim":
            views = mattersim_views(self.skybox_dir, self.connectivity_dir, scan, viewpoint,
                                    ViewSpec(self.width, self.height))
            return np.ascontiguousarray(views[view_index][..., ::-1])
        heading, elevation = view_angles(view_index)
        bgr = self._camera.render(scan, viewpoint, heading, elevation)
        return np.ascontiguousarray(bgr[..., ::-1])


def faced_views(result: "RolloutResult", renderer: ViewRenderer) -> list[np.ndarray]:
    """For each step, the view the agent looked along when it acted (see ``StepRecord.faced_view``)."""
    return [renderer.render(result.episode.scan, rec.viewpoint, rec.faced_view) for rec in result.steps]


# ----------------------------------------------------------------------------------------
# Everything at once


@dataclass
class RolloutFiles:
    out_dir: Path
    topdown_png: Path
    topdown_gif: Path
    report_html: Path
    rollout_json: Path
    views_png: Path | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, str | None]:
        return {"topdown_png": str(self.topdown_png), "topdown_gif": str(self.topdown_gif),
                "report_html": str(self.report_html), "rollout_json": str(self.rollout_json),
                "views_png": str(self.views_png) if self.views_png else None}


def write_rollout_files(result: "RolloutResult", graph: NavGraph, out_dir: str | os.PathLike[str],
                        renderer: ViewRenderer | None = None, map_size: int = MAP_SIZE,
                        gif_seconds_per_step: float = 0.8, notes: list[str] | None = None) -> RolloutFiles:
    """Write ``topdown.png``, ``topdown.gif``, ``views.png`` (when views render), ``report.html``
    and ``rollout.json`` (the per-step table) into ``out_dir``; each file atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = list(notes or [])
    png = encode_png(topdown_image(result, graph, map_size))
    gif = encode_gif(topdown_frames(result, graph, map_size), gif_seconds_per_step)
    strip_png = None
    if renderer is not None and renderer.available and result.steps:
        views = faced_views(result, renderer)
        captions = [f"{r.step}: {r.action_label().split(' ')[0]}" for r in result.steps]
        strip_png = encode_png(view_strip(views, captions, height=renderer.height))
        notes.append(f"views rendered from {renderer.source}")
    elif renderer is not None and renderer.reason:
        notes.append(f"no view strip: {renderer.reason}")
    files = RolloutFiles(out, out / "topdown.png", out / "topdown.gif", out / "report.html", out / "rollout.json",
                         out / "views.png" if strip_png is not None else None, notes)
    _write_bytes(files.topdown_png, png)
    _write_bytes(files.topdown_gif, gif)
    if strip_png is not None and files.views_png is not None:
        _write_bytes(files.views_png, strip_png)
    _write_bytes(files.report_html, rollout_html(result, png, gif, strip_png, notes).encode("utf-8"))
    payload = result.to_dict()
    payload["files"] = files.as_dict()
    payload["notes"] = notes
    _write_bytes(files.rollout_json, json.dumps(payload, indent=1).encode("utf-8"))
    return files


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        # mkstemp makes 0600 files; reports are meant to be shared, so use the umask's default.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
