"""The feature table: a feature store's panoramas as one tensor on the device, read by index.

Why it exists: a batched step that hands the agent copied feature tensors writes a fresh
``[B, 36, D]`` panorama and ``[B, K, D + 128]`` candidates every step (7 MB at batch 64,
512-d), and the agent then concatenates and slices them again. The visual part of every view
an agent can see is already in the table, so :class:`~vln_clip.envs.batched.BatchedNavEnv`
with ``observation="indices"`` returns only *which rows* (the viewpoint, each candidate's row)
and the angle features it computes anyway; the agent's input layer reads the rows it needs
from this table where they are consumed (:meth:`FeatureTable.panorama_views`,
:meth:`FeatureTable.candidate_views`).

Layout: ``flat`` is ``[V * 36 + 1, D]``: row ``v * 36 + k`` is view ``k`` of global viewpoint
``v`` (the environment's global viewpoint index), the last row is all zeros (what STOP and
padding candidate slots point at). The store's float16 is kept as float16 (lossless, half the
memory); gathered rows are returned as float32, the values the copied observations hold.

This module is the one home of how a view feature is formed from its parts: EnvDrop's
``[visual[view], angle feature]`` (:meth:`Views.joined`). The angle features come from the
environment's tables (:func:`vln_clip.envs.panorama.candidate_angle_features` and the per-view
table of :mod:`vln_clip.envs.nav_env`); nothing here derives a direction again.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from vln_clip.geometry import ANGLE_FEATURE_SIZE, NUM_VIEWS
from vln_clip.graph import NavGraph


class Views(NamedTuple):
    """A set of ``N`` views (36 panorama views or ``K`` candidates) as its two parts.

    ``visual`` ``[B, N, D]`` float32 (``D = 0`` vision-free), ``angle`` ``[B, N, 128]`` float32.
    The follower computes on the parts, so neither path has to build the concatenation.
    """

    visual: torch.Tensor
    angle: torch.Tensor

    def joined(self) -> torch.Tensor:
        """``[B, N, D + 128]``: EnvDrop's view feature ``[visual, angle]`` (a new tensor)."""
        if self.visual.shape[-1] == 0:
            return self.angle
        return torch.cat([self.visual, self.angle], dim=-1)


def as_views(x: torch.Tensor | Views, feature_dim: int) -> Views:
    """``x`` as :class:`Views`: a joined ``[..., D + 128]`` tensor is split (views, no copy)."""
    if isinstance(x, Views):
        return x
    return Views(x[..., :feature_dim], x[..., feature_dim:])


def as_joined(x: torch.Tensor | Views) -> torch.Tensor:
    """``x`` as one ``[..., D + 128]`` tensor (what the speaker and CUDA-graph inputs take)."""
    return x.joined() if isinstance(x, Views) else x


class FeatureTable:
    """The ``[V * 36 + 1, D]`` visual feature table on one device (module docstring).

    ``view_angles`` is ``[36 agent views, 36, 128]``: the panorama's angle features for an
    agent looking at each view (:func:`vln_clip.envs.panorama.view_angle_table`).
    """

    def __init__(self, flat: torch.Tensor, view_angles: torch.Tensor) -> None:
        if flat.dim() != 2 or (flat.shape[0] - 1) % NUM_VIEWS:
            raise ValueError(f"flat must be [V * {NUM_VIEWS} + 1, D], got {tuple(flat.shape)}")
        self.flat = flat
        self.view_angles = view_angles
        self.num_viewpoints = (flat.shape[0] - 1) // NUM_VIEWS
        self.dim = int(flat.shape[1])
        self.device = flat.device
        self._view_offsets = torch.arange(NUM_VIEWS, device=flat.device)

    @classmethod
    def build(cls, graphs: Sequence[NavGraph], visual: Any, dim: int, view_angles: np.ndarray,
              device: torch.device, dtype: torch.dtype | None = None, store_dtype: str = "float32") -> "FeatureTable":
        """Load every viewpoint of ``graphs`` (in order: the global viewpoint index) once.

        ``visual(scan, viewpoint) -> [36, D]`` reads one panorama (``NavTask.visual``, which checks
        its shape), or ``None`` for a vision-free table (``D = 0``). ``dtype`` defaults to float16
        for a float16 store and float32 otherwise.
        """
        V = sum(len(g) for g in graphs)
        angles = torch.as_tensor(view_angles, dtype=torch.float32, device=device)
        if visual is None or dim == 0:
            return cls(torch.zeros((V * NUM_VIEWS + 1, 0), dtype=torch.float32, device=device), angles)
        if dtype is None:
            dtype = torch.float16 if store_dtype == "float16" else torch.float32
        table = np.zeros((V * NUM_VIEWS + 1, dim), dtype=np.float32)
        row = 0
        for g in graphs:
            for vp in g.viewpoints:
                table[row:row + NUM_VIEWS] = visual(g.scan, vp)
                row += NUM_VIEWS
        return cls(torch.as_tensor(table, device=device).to(dtype), angles)

    @property
    def zero_row(self) -> int:
        """The all-zero row (STOP and padding candidates)."""
        return self.num_viewpoints * NUM_VIEWS

    @property
    def panoramas(self) -> torch.Tensor:
        """``[V, 36, D]`` view of the table (its zero row left out)."""
        return self.flat[: self.zero_row].view(self.num_viewpoints, NUM_VIEWS, self.dim)

    def visual(self, rows: torch.Tensor) -> torch.Tensor:
        """``[*rows.shape, D]`` float32 visual features of table rows."""
        out = self.flat.index_select(0, rows.reshape(-1)).view(*rows.shape, self.dim)
        return out.float()

    def panorama(self, viewpoint: torch.Tensor) -> torch.Tensor:
        """``[B, 36, D]`` float32 panoramas of global viewpoints ``viewpoint`` ``[B]``."""
        # flat rows rather than index_select on [V, 36, D]: the same values, ~3x faster on CPU
        return self.visual(viewpoint.unsqueeze(1) * NUM_VIEWS + self._view_offsets)

    def panorama_angles(self, view_index: torch.Tensor) -> torch.Tensor:
        """``[B, 36, 128]`` angle features of the 36 views for agents looking at ``view_index``."""
        return self.view_angles.index_select(0, view_index)

    def panorama_views(self, viewpoint: torch.Tensor, view_index: torch.Tensor) -> Views:
        """The panorama an agent at ``viewpoint`` looking at ``view_index`` sees, as parts."""
        return Views(self.panorama(viewpoint), self.panorama_angles(view_index))

    def candidate_views(self, rows: torch.Tensor, angles: torch.Tensor) -> Views:
        """Candidates as parts: visual rows ``rows`` ``[B, K]`` and their ``angles`` ``[B, K, 128]``."""
        if angles.shape[-1] != ANGLE_FEATURE_SIZE:
            raise ValueError(f"candidate angles must be [..., {ANGLE_FEATURE_SIZE}], got {tuple(angles.shape)}")
        return Views(self.visual(rows), angles)
