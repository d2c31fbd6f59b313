"""A natively batched VLN environment: the whole batch steps with torch gathers on one device.

:class:`BatchedNavEnv` is a ``gymnasium.vector.VectorEnv`` with the exact semantics of
:class:`~vln_clip.envs.nav_env.NavEnv` (same candidates and order, STOP convention, rewards,
teacher, trajectories; tested item by item), built for the training path:

* every table lives on ``device`` as flat tensors: global viewpoint index over all scans of
  the episodes, candidate tables ``[V, K-1]`` (next viewpoint, view, absolute heading and
  elevation), per-scan distance and teacher blocks packed flat, the feature table
  ``[V * 36 + 1, D]`` (:class:`~vln_clip.envs.feature_table.FeatureTable`; the store's float16
  is kept as float16: lossless, half the memory);
* ``observation="features"`` (default) returns NavEnv's observation (copied feature tensors,
  bit-identical to NavEnv); ``observation="indices"`` returns integer rows of the feature
  table plus the angle features instead, and the agent gathers the visual rows on the device
  (``env.feature_table``): the training path, which saves the per-step feature copies;
* the episode state is tensors; :meth:`step` is gather/index arithmetic only: no Python loop
  over the batch and no host synchronisation (unless ``strict=True``), so a rollout can stay
  on the GPU and be captured as a CUDA graph;
* strings (instruction ids, viewpoint ids, trajectories) are produced on demand by
  :meth:`current_episodes`, :meth:`instr_ids`, :meth:`viewpoints`, :meth:`trajectories`.

API::

    env = BatchedNavEnv(connectivity_dir, episodes, features, num_envs=64, device="cuda",
                        vocab=vocab, max_steps=35, max_candidates=16, shuffle=True, seed=0)
    obs, info = env.reset()                                  # next 64 episodes of the walk
    obs, info = env.reset(options={"instr_ids": ids})        # these episodes (len <= num_envs;
                                                             # unused slots start ended)
    obs, reward, terminated, truncated, info = env.step(actions)   # actions: LongTensor [B]
    ro = env.rollout(policy, feedback="teacher" | "sample" | "argmax")

Observations are a dict of tensors with NavEnv's keys and a leading batch dimension
(``candidate_mask`` is ``bool`` here). With ``observation="indices"`` the keys ``panorama``,
``panorama_angles`` and ``candidates`` are replaced by ``viewpoint`` [B] (row block of the
feature table), ``candidate_rows`` [B, K] (table row of each slot's view; STOP and padding ->
the zero row) and ``candidate_angles`` [B, K, 128];
``env.feature_table.panorama_views(obs["viewpoint"], obs["view_index"])`` and
``env.feature_table.candidate_views(obs["candidate_rows"], obs["candidate_angles"])`` give
exactly the values of the copied observation (tested). ``info`` holds tensors: ``teacher`` [B] (-1 when ended or
without a goal), ``distance_to_goal`` [B] float32 (inf without a goal), ``action_mask`` [B, K]
bool, ``done`` [B] bool (ended at or before this step), ``active`` [B] bool (slot holds an
episode), ``step`` [B], ``viewpoint`` [B] (global viewpoint index, see :meth:`viewpoints`),
``success`` [B] bool (``distance_to_goal < 3``; meaningful once done).

Ended items ignore their actions and get reward 0 (EnvDrop's ``ended`` mask); there is no
auto-reset (``autoreset_mode = DISABLED``): call :meth:`reset` for the next batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from vln_clip.episodes import Episode
from vln_clip.errors import DataError
from vln_clip.geometry import ANGLE_FEATURE_SIZE, HEADING_COUNT, NUM_VIEWS, nearest_view, view_angles
from vln_clip.graph import GraphStore
from vln_clip.task import MAX_ACTIONS, SUCCESS_DISTANCE
from vln_clip.tokenizers import Vocab

from .feature_table import FeatureTable
from .nav_env import STOP_REWARD, VIEW_ANGLES, NavEnvConfig, NavTask
from .panorama import candidate_angle_features

FEEDBACKS = ("teacher", "sample", "argmax")
#: what ``step`` returns: NavEnv's copied feature tensors, or feature-table indices
OBSERVATIONS = ("features", "indices")


@dataclass
class Rollout:
    """Per-step tensors of one batched rollout (``T`` = steps taken, ``B`` = batch).

    ``active[t]`` says the item was still running when ``actions[t]`` was taken: mask losses
    with it. ``outputs[t]`` is whatever the policy returned at step ``t`` (e.g. logits that
    carry gradients). ``distance`` has ``T + 1`` rows (before the first action, after each).
    """

    actions: torch.Tensor  # [T, B] long
    teacher: torch.Tensor  # [T, B] long, -1 when ended / no goal
    rewards: torch.Tensor  # [T, B] float32
    active: torch.Tensor  # [T, B] bool
    distance: torch.Tensor  # [T + 1, B] float32
    outputs: list[Any] = field(default_factory=list)

    @property
    def final_distance(self) -> torch.Tensor:
        return self.distance[-1]


class BatchedNavEnv(gym.vector.VectorEnv):
    """``num_envs`` VLN episodes stepped together with tensor operations (module docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}

    def __init__(self, connectivity_dir: str | os.PathLike[str] | GraphStore | None = None,
                 episodes: str | os.PathLike[str] | Sequence[Episode] | None = None,
                 features: Any = None, *, num_envs: int = 64, device: str | torch.device = "cpu",
                 feature_dtype: torch.dtype | None = None, dataset: str | None = None, max_steps: int = MAX_ACTIONS,
                 max_candidates: int = 16, max_instr_len: int | None = None,
                 vocab: Vocab | str | os.PathLike[str] | None = None, languages: Sequence[str] | None = None,
                 shuffle: bool = False, seed: int | None = None, validate: bool = True, strict: bool = False,
                 feature_dim: int | None = None, task: NavTask | None = None,
                 observation: str = "features") -> None:
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
        if task is None:
            if connectivity_dir is None or episodes is None:
                raise DataError("BatchedNavEnv needs connectivity_dir=DIR and episodes=<split file or list>")
            cfg = NavEnvConfig(dataset=dataset, max_steps=max_steps, max_candidates=max_candidates,
                               max_instr_len=max_instr_len, languages=languages, shuffle=shuffle, seed=seed,
                               validate=validate, strict=strict)
            task = NavTask(connectivity_dir, episodes, features, cfg, vocab, feature_dim)
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        self.task = task
        self.config = task.config
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.max_steps = int(self.config.max_steps)
        self.K = task.max_candidates
        self.observation = observation
        self.single_observation_space = (task.observation_space() if observation == "features"
                                         else self._index_observation_space())
        self.single_action_space = spaces.Discrete(self.K)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._build_tables(feature_dtype)
        self._order_rng = np.random.default_rng(self.config.seed)
        self._order = self._new_order()
        self._cursor = 0
        self._reset_state()

    # -- construction ------------------------------------------------------------------
    def _build_tables(self, feature_dtype: torch.dtype | None) -> None:
        task, dev, M = self.task, self.device, self.K - 1
        graphs = [task.graphs[s] for s in task.scans]
        sizes = np.array([len(g) for g in graphs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        pair_sizes = sizes**2
        pair_offsets = np.concatenate([[0], np.cumsum(pair_sizes)[:-1]]).astype(np.int64)
        V = int(sizes.sum())
        self._scan_index = {s: i for i, s in enumerate(task.scans)}
        self._offsets = offsets
        self._vp_names: list[str] = [vp for g in graphs for vp in g.viewpoints]
        self._vp_scan = np.repeat(np.arange(len(graphs)), sizes)
        num = np.zeros(V, dtype=np.int64)
        nxt = np.zeros((V, M), dtype=np.int64)
        view = np.zeros((V, M), dtype=np.int64)
        heading = np.zeros((V, M), dtype=np.float64)
        elevation = np.zeros((V, M), dtype=np.float64)
        dist = np.zeros(int(pair_sizes.sum()), dtype=np.float64)
        teach = np.zeros(int(pair_sizes.sum()), dtype=np.int64)
        hop = np.zeros(int(pair_sizes.sum()), dtype=np.int64)
        for s, g in enumerate(graphs):
            pano = task.panos[g.scan]
            o, n, m = offsets[s], sizes[s], pano.neighbour.shape[1]
            num[o:o + n] = pano.num_candidates
            valid = pano.neighbour >= 0
            nxt[o:o + n, :m] = np.where(valid, pano.neighbour + o, 0)
            view[o:o + n, :m] = np.where(valid, pano.view, 0)
            heading[o:o + n, :m] = pano.heading
            elevation[o:o + n, :m] = pano.elevation
            dist[pair_offsets[s]:pair_offsets[s] + n * n] = np.asarray(g.distances, dtype=np.float64).ravel()
            teach[pair_offsets[s]:pair_offsets[s] + n * n] = task.teachers[g.scan].ravel()
            nh = np.asarray(g.next_hop, dtype=np.int64)
            hop[pair_offsets[s]:pair_offsets[s] + n * n] = np.where(nh >= 0, nh + o, -1).ravel()
        local = np.arange(V) - np.repeat(offsets, sizes)
        t = lambda a: torch.as_tensor(a, device=dev)  # noqa: E731
        self.num_candidates_table = t(num)
        self.cand_next = t(nxt)
        self.cand_view = t(view)
        self.cand_heading = t(heading)
        self.cand_elevation = t(elevation)
        # observation tables, K wide so one gather yields all K slots (STOP and padding = zeros):
        # the view of each slot (padding -> the all-zero view 36 of the feature table) and the
        # angle feature base [sin h, cos h, sin e, cos e] for each of the 12 agent headings,
        # from the function NavEnv's candidates use (bit-identical candidates).
        slot_valid = np.zeros((V, self.K), dtype=bool)
        slot_valid[:, :M] = np.arange(M)[None, :] < num[:, None]
        # row of each slot's view in the feature table [V * 36 + 1, D]; STOP/padding -> the zero row
        slot_view = np.full((V, self.K), V * NUM_VIEWS, dtype=np.int64)
        slot_view[:, :M] = np.where(slot_valid[:, :M], np.arange(V)[:, None] * NUM_VIEWS + view, V * NUM_VIEWS)
        ang = np.zeros((V, HEADING_COUNT, self.K, 4), dtype=np.float32)
        for step in range(HEADING_COUNT):
            base = candidate_angle_features(heading, elevation, step, size=4)  # agent looking at view `step`
            ang[:, step, :M] = np.where(slot_valid[:, :M, None], base, 0.0)
        self.slot_view = t(slot_view)
        self.slot_angle = t(ang.reshape(V * HEADING_COUNT, self.K, 4))  # row = viewpoint * 12 + heading step
        # (distance, teacher action) per (viewpoint, goal) pair of a scan, side by side so one
        # random-access gather fetches both; teacher ids are small integers, exact in float64
        self.pair_table = t(np.stack([dist, teach.astype(np.float64)], axis=1))
        self.distance_table = self.pair_table[:, 0]
        self.teacher_table = self.pair_table[:, 1]
        #: global index of the next viewpoint on the shortest path (-1 unreachable), same layout
        self.next_hop_table = t(hop)
        self.vp_local = t(local)
        # episodes
        E = len(task.episodes)
        start = np.zeros(E, dtype=np.int64)
        goal = np.full(E, -1, dtype=np.int64)
        pbase = np.zeros(E, dtype=np.int64)
        psize = np.zeros(E, dtype=np.int64)
        view0 = np.zeros(E, dtype=np.int64)
        for e, ep in enumerate(task.episodes):
            s = self._scan_index[ep.scan]
            g = graphs[s]
            start[e] = offsets[s] + g.index[ep.start]
            if ep.has_goal:
                gl = g.index[ep.path[-1]]
                goal[e] = offsets[s] + gl
                pbase[e] = pair_offsets[s] + gl
            else:
                pbase[e] = pair_offsets[s]
            psize[e] = sizes[s]
            view0[e] = nearest_view(ep.heading)
        self.ep_start, self.ep_goal, self.ep_pbase, self.ep_psize, self.ep_view0 = map(t, (start, goal, pbase, psize, view0))
        self.ep_tokens = t(task.tokens)
        self.ep_lengths = t(task.lengths)
        # features: one table on the device, read by index (the observation copies rows of it,
        # or, with observation="indices", the agent does)
        self.feature_dim = task.feature_dim
        stored = str(getattr(task.features, "attrs", {}).get("dtype", "float32"))
        self.feature_table = FeatureTable.build(graphs, task.visual if task.features is not None else None,
                                                task.feature_dim, VIEW_ANGLES, dev, feature_dtype, stored)
        self._arangeB = torch.arange(self.num_envs, device=dev)
        self._arangeK = torch.arange(self.K, device=dev)
        # 0-d constants: torch.where with Python scalars converts them on every call
        f64 = lambda v: torch.tensor(v, dtype=torch.float64, device=dev)  # noqa: E731
        self._c_win, self._c_lose, self._c_zero, self._c_inf = f64(STOP_REWARD), f64(-STOP_REWARD), f64(0.0), f64(math.inf)
        self._c_minus1 = torch.tensor(-1, dtype=torch.long, device=dev)
        self._c_trash = torch.tensor(self.max_steps + 1, dtype=torch.long, device=dev)
        self._tile = torch.zeros((4, ANGLE_FEATURE_SIZE), dtype=torch.float32, device=dev)
        self._tile[torch.arange(ANGLE_FEATURE_SIZE) % 4, torch.arange(ANGLE_FEATURE_SIZE)] = 1.0

    def _new_order(self) -> np.ndarray:
        n = len(self.task.episodes)
        return self._order_rng.permutation(n) if self.config.shuffle else np.arange(n)

    def _reset_state(self) -> None:
        B, dev = self.num_envs, self.device
        z = lambda dtype=torch.long: torch.zeros(B, dtype=dtype, device=dev)  # noqa: E731
        self.ep = z()
        self.cur = z()
        self.view = z()
        self.goal = z() - 1
        self.pbase = z()
        self.psize = z() + 1
        self.steps = z()
        self.done = torch.ones(B, dtype=torch.bool, device=dev)
        self.active = torch.zeros(B, dtype=torch.bool, device=dev)
        # visited viewpoints / views; the extra last column absorbs the writes of items that did not move
        self.traj = torch.zeros((B, self.max_steps + 2), dtype=torch.long, device=dev)
        self.traj_view = torch.zeros((B, self.max_steps + 2), dtype=torch.long, device=dev)
        self.traj_len = z()
        self._refresh(new_episodes=True)

    # -- properties ----------------------------------------------------------------------
    @property
    def vocab(self) -> Vocab:
        return self.task.vocab

    @property
    def episodes(self) -> list[Episode]:
        return self.task.episodes

    # -- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Start a batch: the next ``num_envs`` episodes of the walk, or ``options`` ones.

        ``options={"instr_ids": [...]}`` or ``{"episode_indices": [...]}`` (at most ``num_envs``;
        the remaining slots are inactive and start ended). ``seed`` restarts the walk.
        """
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
            self._order_rng = np.random.default_rng(seed)
            self._order = self._new_order()
            self._cursor = 0
        options = options or {}
        if "instr_ids" in options:
            idx = [self.task.episode_index(i) for i in options["instr_ids"]]
        elif "episode_indices" in options:
            idx = [int(i) for i in options["episode_indices"]]
            bad = [i for i in idx if not 0 <= i < len(self.task.episodes)]
            if bad:
                raise DataError(f"episode index {bad[0]} is out of range (0..{len(self.task.episodes) - 1})")
        else:
            idx = []
            while len(idx) < self.num_envs:
                if self._cursor >= len(self._order):
                    self._order = self._new_order()
                    self._cursor = 0
                take = self._order[self._cursor:self._cursor + self.num_envs - len(idx)]
                idx.extend(int(i) for i in take)
                self._cursor += len(take)
        if len(idx) > self.num_envs:
            raise DataError(f"reset got {len(idx)} episodes for a batch of {self.num_envs}")
        self._reset_state()
        nb = len(idx)
        if nb:
            e = torch.as_tensor(idx, dtype=torch.long, device=self.device)
            sl = slice(0, nb)
            self.ep[sl] = e
            self.cur[sl] = self.ep_start[e]
            self.view[sl] = self.ep_view0[e]
            self.goal[sl] = self.ep_goal[e]
            self.pbase[sl] = self.ep_pbase[e]
            self.psize[sl] = self.ep_psize[e]
            self.done[sl] = False
            self.active[sl] = True
        self.traj[:, 0] = self.cur
        self.traj_view[:, 0] = self.view
        self.traj_len.fill_(1)
        self._refresh(new_episodes=True)
        return self._observe(), self._info()

    def step(self, actions: torch.Tensor | np.ndarray | Sequence[int]
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Apply one action per item. Actions ``>= num_candidates`` (or < 0) are STOP."""
        a = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
        if a.device != self.device or a.dtype != torch.long:
            a = a.to(self.device, torch.long)
        a = a.reshape(self.num_envs)
        n = self._n
        live = ~self.done
        if self.config.strict:
            bad = live & ((a < 0) | (a > n))
            if bool(bad.any()):
                b = int(torch.nonzero(bad)[0, 0])
                raise ValueError(f"item {b}: action {int(a[b])} is not valid (candidates 0..{int(n[b]) - 1}, "
                                 f"STOP = {int(n[b])})")
        is_stop = (a < 0) | (a >= n)
        move = live & ~is_stop
        stop = live & is_stop
        ac = a.clamp(0, self.K - 2)
        d_before = self._d64
        prev = self.cur
        flat = prev * (self.K - 1) + ac
        self.cur = torch.where(move, self.cand_next.view(-1).index_select(0, flat), prev)
        self.view = torch.where(move, self.cand_view.view(-1).index_select(0, flat), self.view)
        self.steps = self.steps + live.long()
        self._refresh()
        # progress sign after a move, +-2 at STOP; 0 for ended items and without a goal (inf distances)
        stop_r = torch.where(d_before < SUCCESS_DISTANCE, self._c_win, self._c_lose)
        reward = torch.where(move, torch.sign(d_before - self._d64), torch.where(stop, stop_r, self._c_zero))
        reward = torch.where(self._has_goal, reward, self._c_zero).float()
        pos = torch.where(move, self.traj_len, self._c_trash).unsqueeze(1)
        self.traj.scatter_(1, pos, self.cur.unsqueeze(1))
        self.traj_view.scatter_(1, pos, self.view.unsqueeze(1))
        self.traj_len = self.traj_len + move.long()
        terminated = stop
        truncated = live & ~stop & (self.steps >= self.max_steps)
        self.done = self.done | terminated | truncated
        return self._observe(), reward, terminated, truncated, self._info()

    # -- observation ---------------------------------------------------------------------
    def _refresh(self, new_episodes: bool = False) -> None:
        """Quantities of the current state used by step, observation and info (computed once)."""
        # index_select rather than advanced indexing: several times faster for these gathers
        if new_episodes:
            self._instr = self.ep_tokens.index_select(0, self.ep)
            self._instr_len = self.ep_lengths.index_select(0, self.ep)
        self._n = self.num_candidates_table.index_select(0, self.cur)
        self._pair = self.pbase + self.vp_local.index_select(0, self.cur) * self.psize
        pair = self.pair_table.index_select(0, self._pair)
        d = pair[:, 0]
        self._teacher_raw = pair[:, 1].long()
        if new_episodes:
            self._has_goal = self.goal >= 0
        self._d64 = torch.where(self._has_goal, d, self._c_inf)
        self._mask = self._arangeK[None, :] <= self._n[:, None]

    def _candidate_angles(self) -> torch.Tensor:
        """``[B, K, 128]`` angle features of the candidate slots (STOP and padding: zeros)."""
        base = self.slot_angle.index_select(0, self.cur * HEADING_COUNT + self.view % HEADING_COUNT)  # [B, K, 4]
        B, K = base.shape[0], base.shape[1]
        # [sin h, cos h, sin e, cos e] x 32 from the 4-wide base of the view tables
        if self.device.type == "cpu":
            # tiling as a product with a 0/1 matrix: exact (x*1 + 0s), and far faster on CPU than
            # a strided copy; not on CUDA, where TF32 matmuls would round the features
            return torch.mm(base.reshape(B * K, 4), self._tile).view(B, K, ANGLE_FEATURE_SIZE)
        return base.unsqueeze(2).expand(B, K, ANGLE_FEATURE_SIZE // 4, 4).reshape(B, K, ANGLE_FEATURE_SIZE)

    def _observe(self) -> dict[str, torch.Tensor]:
        cur, view, n = self.cur, self.view, self._n
        rows = self.slot_view.index_select(0, cur)  # [B, K] feature-table row of each slot's view
        angles = self._candidate_angles()
        obs = {
            "instruction": self._instr,  # fixed per episode: gathered once at reset
            "instruction_length": self._instr_len,
        }
        if self.observation == "indices":
            obs.update(viewpoint=cur, candidate_rows=rows, candidate_angles=angles)
        else:
            # the copied observation is the index one read through the table (one home)
            table = self.feature_table
            obs.update(panorama=table.panorama(cur), panorama_angles=table.panorama_angles(view),
                       candidates=table.candidate_views(rows, angles).joined())
        obs.update(candidate_mask=self._mask, num_candidates=n, view_index=view)
        return obs

    def _index_observation_space(self) -> spaces.Dict:
        """The single-item space of ``observation="indices"`` (NavEnv's, features replaced by rows)."""
        full = self.task.observation_space()
        V = sum(len(self.task.graphs[s]) for s in self.task.scans)
        keep = {k: v for k, v in full.spaces.items() if k not in ("panorama", "panorama_angles", "candidates")}
        keep.update(
            viewpoint=spaces.Box(0, max(V - 1, 0), shape=(), dtype=np.int64),
            candidate_rows=spaces.Box(0, V * NUM_VIEWS, shape=(self.K,), dtype=np.int64),
            candidate_angles=spaces.Box(-1.0, 1.0, shape=(self.K, ANGLE_FEATURE_SIZE), dtype=np.float32))
        return spaces.Dict(keep)

    def _info(self) -> dict[str, Any]:
        teacher = self._teacher_raw
        teacher = torch.where(self._has_goal & ~self.done, teacher, self._c_minus1)
        return {
            "teacher": teacher,
            "distance_to_goal": self._d64.float(),
            "action_mask": self._mask,
            "done": self.done,
            "active": self.active,
            "step": self.steps,
            "viewpoint": self.cur,
            "success": self._d64 < SUCCESS_DISTANCE,
        }

    def next_hop(self) -> torch.Tensor:
        """[B] global index of the next viewpoint on the shortest path to each goal (-1: none).

        The current viewpoint at the goal; -1 without a goal. Names via :meth:`viewpoint_names`.
        """
        hop = self.next_hop_table.index_select(0, self._pair)
        return torch.where(self._has_goal, hop, self._c_minus1)

    # -- on-demand strings (these synchronise with the device) ---------------------------
    def current_episodes(self) -> list[Episode | None]:
        """The episode in each slot (None for an inactive slot)."""
        ep, active = self.ep.tolist(), self.active.tolist()
        return [self.task.episodes[e] if a else None for e, a in zip(ep, active)]

    def instr_ids(self) -> list[str | None]:
        return [e.instr_id if e is not None else None for e in self.current_episodes()]

    def viewpoints(self) -> list[str]:
        """Current viewpoint id of each slot."""
        return [self._vp_names[i] for i in self.cur.tolist()]

    def viewpoint_names(self, index: torch.Tensor | Sequence[int]) -> list[str]:
        """Viewpoint ids of global viewpoint indices (e.g. ``info["viewpoint"]``)."""
        return [self._vp_names[int(i)] for i in torch.as_tensor(index).reshape(-1).tolist()]

    def trajectories(self) -> list[list[tuple[str, float, float]] | None]:
        """R2R trajectories ``[(viewpoint, heading, elevation), ...]`` per slot (None if inactive)."""
        traj, views, lens = self.traj.tolist(), self.traj_view.tolist(), self.traj_len.tolist()
        out: list[list[tuple[str, float, float]] | None] = []
        for b, active in enumerate(self.active.tolist()):
            if not active:
                out.append(None)
                continue
            out.append([(self._vp_names[traj[b][k]], *view_angles(views[b][k])) for k in range(lens[b])])
        return out

    # -- rollouts ------------------------------------------------------------------------
    @staticmethod
    def select_actions(logits: torch.Tensor | None, obs: dict[str, torch.Tensor], info: dict[str, Any],
                       feedback: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions for one step: the teacher's, a sample from ``logits``, or their argmax.

        ``logits`` ``[B, K]`` are masked with ``candidate_mask`` first. Ended items get STOP-like
        actions that the environment ignores. A ``generator`` for sampling must live on the
        logits' device (``torch.Generator(device="cuda")`` on a GPU).
        """
        if feedback == "teacher":
            return info["teacher"].clamp(min=0)
        if feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, got {feedback!r}")
        if logits is None:
            raise ValueError(f"feedback={feedback!r} needs logits")
        masked = logits.detach().float().masked_fill(~obs["candidate_mask"], float("-inf"))
        if feedback == "argmax":
            return masked.argmax(-1)
        probs = torch.softmax(masked, -1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def rollout(self, policy: Callable[[dict[str, torch.Tensor], dict[str, Any]], Any], feedback: str = "teacher",
                reset_options: dict[str, Any] | None = None, generator: torch.Generator | None = None,
                reset: bool = True, early_exit: bool = False) -> Rollout:
        """Run one batch to the end: teacher-forced (IL), sampled (A2C) or greedy (eval).

        ``policy(obs, info)`` returns logits ``[B, K]`` (or a tuple whose first item is the logits,
        or None with ``feedback="teacher"``); its return values are kept in ``Rollout.outputs`` so a
        trainer can compute losses with gradients. The loop runs ``max_steps`` steps without
        looking at the device unless ``early_exit=True`` (one sync per step to stop once all ended).
        """
        if reset:
            obs, info = self.reset(options=reset_options)
        else:
            obs, info = self._observe(), self._info()
        acts, teach, rews, act_mask, dists, outs = [], [], [], [], [info["distance_to_goal"]], []
        for _ in range(self.max_steps):
            out = policy(obs, info)
            outs.append(out)
            logits = out[0] if isinstance(out, tuple) else out
            a = self.select_actions(logits, obs, info, feedback, generator)
            acts.append(a)
            teach.append(info["teacher"])
            act_mask.append(~info["done"])
            obs, r, _, _, info = self.step(a)
            rews.append(r)
            dists.append(info["distance_to_goal"])
            if early_exit and bool(info["done"].all()):
                break
        return Rollout(torch.stack(acts), torch.stack(teach), torch.stack(rews), torch.stack(act_mask),
                       torch.stack(dists), outs)
