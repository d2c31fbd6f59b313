"""Gymnasium environment for VLN with EnvDrop's panoramic action space.

Create it with ``gymnasium.make("vln_clip/R2R-v0", connectivity_dir=DIR, episodes=FILE_OR_LIST,
features=H5_OR_STORE_OR_None)`` (``vln_clip/RxR-v0`` for RxR; ``import vln_clip.envs`` first, which
registers both ids) or directly as :class:`NavEnv`.

Observation (a fixed ``gymnasium.spaces.Dict``; ``K = max_candidates``, ``L = max_instr_len``,
``D`` = feature width, 0 when ``features=None``)::

    instruction         int64  [L]        BOS, word ids, EOS, then PAD (= 0)
    instruction_length  int64  []         number of non-PAD ids
    panorama            float32 [36, D]   visual features of the 36 views (view order of MatterSim)
    panorama_angles     float32 [36, 128] EnvDrop angle feature of each view relative to the agent
    candidates          float32 [K, D+128] candidate features, STOP row = zeros, padding = zeros
    candidate_mask      int8   [K]        1 for the real candidates and STOP, 0 for padding
    num_candidates      int64  []         n = number of real candidates = the STOP index
    view_index          int64  []         the agent's current view (heading step + 12 * level)

STOP convention (EnvDrop's): the real candidates occupy slots ``0 .. n-1`` in EnvDrop's order
and STOP is slot ``n = obs["num_candidates"]`` (its feature is a zero vector), so the valid
actions are exactly ``candidate_mask == 1`` (``n + 1`` of them). Any action ``>= n`` is executed
as STOP (``strict=True`` raises instead), so an unmasked ``action_space.sample()`` is legal.

Executing candidate ``k`` moves the agent to its viewpoint with the camera turned to the
candidate's view (EnvDrop: tilt to its elevation level, turn right until ``viewIndex`` is its
view, move; moving keeps heading and elevation). Episodes start at the episode's heading
snapped to 30 degrees, elevation 0.

Reward (EnvDrop's A2C shaping): after a move, ``sign(d_before - d_after)`` where ``d`` is the
shortest-path distance to the goal (+1 closer, -1 farther, 0 unchanged); at STOP, ``+2`` if
``d < 3`` m (the success rule) else ``-2``. An episode terminates at STOP and is truncated
after ``max_steps`` (35) actions without a stop bonus. Test splits (no goal): reward 0,
``teacher = -1``, ``distance_to_goal = inf`` (never a success; inf == inf keeps
``check_env``'s determinism check meaningful, nan would not); the environment is still playable.

``info``: ``instr_id``, ``scan``, ``viewpoint``, ``heading``, ``elevation``, ``step``,
``teacher`` (the action that follows the shortest path: STOP at the goal, -1 without a goal),
``action_mask`` (bool [K]), ``candidate_viewpoints`` (ids of slots ``0..n-1``),
``distance_to_goal`` (metres), ``trajectory`` (list of ``(viewpoint, heading, elevation)``:
the start then one entry per move, the R2R submission format) and, once the episode ends,
``stopped`` (ended by STOP rather than truncation) and, with a goal, ``success``
(``distance_to_goal < 3``). ``teacher`` is -1 once the episode is over.

Episodes: ``reset()`` walks the episode list in order (a new permutation per pass when
``shuffle=True``); ``reset(seed=s)`` restarts that walk deterministically;
``reset(options={"instr_id": ID})`` starts that instruction. Vocabulary: pass a
:class:`~vln_clip.tokenizers.Vocab` (or a vocab file) to share the trainer's; with
``vocab=None`` one is built from these episodes' instructions with ``min_count=1`` (every word
known, so encoding is lossless, but ids differ between splits: pass the train vocab to agents).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vln_clip.episodes import Episode, base_language, read_episodes, validate_episodes
from vln_clip.errors import DataError
from vln_clip.features.store import FeatureStore
from vln_clip.geometry import ANGLE_FEATURE_SIZE, NUM_VIEWS, nearest_view, view_angles
from vln_clip.graph import GraphStore, NavGraph
from vln_clip.task import MAX_ACTIONS, SUCCESS_DISTANCE
from vln_clip.tokenizers import Vocab, tokenize

from .panorama import ScanPanorama, scan_panorama, view_angle_table
from .teacher import teacher_table
from .topdown import draw_topdown

STOP_REWARD = 2.0
DEFAULT_MAX_INSTR_LEN = {"r2r": 80, "r4r": 80, "rxr": 160}


@dataclass
class NavEnvConfig:
    """Options shared by :class:`NavEnv` and :class:`~vln_clip.envs.batched.BatchedNavEnv`."""

    dataset: str | None = None  # r2r / r4r / rxr; None = from the episodes
    max_steps: int = MAX_ACTIONS
    max_candidates: int = 16  # K, including STOP; real graphs have at most 13 neighbours
    max_instr_len: int | None = None  # None: 80 (R2R) or 160 (RxR)
    languages: Sequence[str] | None = None  # RxR language filter (en, hi, te; en-* counts as en)
    shuffle: bool = False
    seed: int | None = None
    validate: bool = True  # check episodes against the graphs at construction
    strict: bool = False  # raise on actions outside the mask instead of treating them as STOP


class NavTask:
    """Everything both environments need, loaded once: graphs, episodes, tokens, tables, features.

    Building it checks the inputs and raises :class:`DataError` naming the file, the entry and
    the fix: unknown scans/viewpoints, a language filter that leaves nothing, more neighbours
    than ``max_candidates - 1``, a feature store without some viewpoint or with the wrong width.
    """

    def __init__(self, connectivity_dir: str | os.PathLike[str] | GraphStore,
                 episodes: str | os.PathLike[str] | Sequence[Episode],
                 features: Any = None, config: NavEnvConfig | None = None,
                 vocab: Vocab | str | os.PathLike[str] | None = None, feature_dim: int | None = None) -> None:
        self.config = cfg = config or NavEnvConfig()
        self.graphs = connectivity_dir if isinstance(connectivity_dir, GraphStore) else GraphStore(connectivity_dir)
        self.source, self.episodes = _load_episodes(episodes, cfg.languages)
        if not self.episodes:
            extra = f" for languages {list(cfg.languages)}" if cfg.languages else ""
            raise DataError(f"{self.source}: no episodes{extra}; check the split file and the language filter")
        if cfg.validate:
            validate_episodes(self.episodes, self.graphs, self.source)
        self.dataset = cfg.dataset or self.episodes[0].dataset
        self.max_instr_len = cfg.max_instr_len or DEFAULT_MAX_INSTR_LEN.get(self.dataset, 80)
        self.max_candidates = int(cfg.max_candidates)
        self.index = {ep.instr_id: i for i, ep in enumerate(self.episodes)}
        if len(self.index) != len(self.episodes):
            raise DataError(f"{self.source}: instruction ids are not unique")

        self.scans = sorted({ep.scan for ep in self.episodes})
        self.panos: dict[str, ScanPanorama] = {}
        self.teachers: dict[str, np.ndarray] = {}
        for scan in self.scans:
            graph = self.graphs[scan]
            pano = self.panos[scan] = scan_panorama(graph)
            if pano.max_candidates + 1 > self.max_candidates:
                worst = int(np.argmax(pano.num_candidates))
                raise DataError(
                    f"scan {scan}: viewpoint {graph.viewpoints[worst]} has {pano.max_candidates} navigable "
                    f"neighbours but max_candidates={self.max_candidates} leaves room for "
                    f"{self.max_candidates - 1} plus STOP; pass max_candidates={pano.max_candidates + 1} or more")
            self.teachers[scan] = teacher_table(graph, pano)

        # instructions
        toks = [tokenize(ep.instruction, ep.language, ep.dataset) for ep in self.episodes]
        if vocab is None:
            vocab = Vocab.build(toks, min_count=1)
        elif not isinstance(vocab, Vocab):
            path = Path(vocab)
            if not path.exists():
                raise DataError(f"{path}: vocabulary file not found; pass a Vocab or the vocab.txt "
                                "written next to the trainer's checkpoint")
            vocab = Vocab.load(path)
        self.vocab = vocab
        L = self.max_instr_len
        self.tokens = np.full((len(self.episodes), L), vocab.pad, dtype=np.int64)
        self.lengths = np.zeros(len(self.episodes), dtype=np.int64)
        for i, t in enumerate(toks):
            ids = vocab.encode(t, L)
            self.tokens[i, : len(ids)] = ids
            self.lengths[i] = len(ids)

        # features
        self.features = _open_features(features)
        self.feature_dim = 0 if self.features is None else int(self.features.dim)
        if feature_dim is not None and self.features is not None and feature_dim != self.feature_dim:
            raise DataError(f"{self.features.path}: features have width {self.feature_dim}, "
                            f"expected {feature_dim}; use the store made by the matching encoder")
        if self.features is not None:
            self._check_features()

    # -- lookups -----------------------------------------------------------------------
    def episode_index(self, instr_id: str) -> int:
        try:
            return self.index[str(instr_id)]
        except KeyError:
            raise DataError(f"unknown instr_id {instr_id!r}: not among the {len(self.episodes)} episodes "
                            f"of {self.source}; instr_ids look like {self.episodes[0].instr_id!r}") from None

    def visual(self, scan: str, viewpoint: str) -> np.ndarray:
        """``[36, D]`` float32 visual features (``[36, 0]`` without a feature store)."""
        if self.features is None:
            return np.zeros((NUM_VIEWS, 0), dtype=np.float32)
        arr = self.features.get(scan, viewpoint)
        if arr.shape != (NUM_VIEWS, self.feature_dim):
            raise DataError(f"{self.features.path}: {scan}_{viewpoint} has shape {tuple(arr.shape)}, expected "
                            f"({NUM_VIEWS}, {self.feature_dim}); re-extract that viewpoint")
        return arr

    def _check_features(self) -> None:
        assert self.features is not None
        for scan in self.scans:
            for vp in self.graphs[scan].viewpoints:
                if f"{scan}_{vp}" not in self.features:
                    raise DataError(
                        f"{self.features.path}: no features for scan {scan} viewpoint {vp} (key {scan}_{vp}); "
                        f"the store was extracted for other scans or is incomplete: run "
                        f"`vln-clip features extract` for scan {scan} (it resumes)")

    def observation_space(self) -> spaces.Dict:
        K, L, D = self.max_candidates, self.max_instr_len, self.feature_dim
        big = np.float32(np.finfo(np.float32).max)
        return spaces.Dict({
            "instruction": spaces.Box(0, max(len(self.vocab) - 1, 1), shape=(L,), dtype=np.int64),
            "instruction_length": spaces.Box(0, L, shape=(), dtype=np.int64),
            "panorama": spaces.Box(-big, big, shape=(NUM_VIEWS, D), dtype=np.float32),
            "panorama_angles": spaces.Box(-1.0, 1.0, shape=(NUM_VIEWS, ANGLE_FEATURE_SIZE), dtype=np.float32),
            "candidates": spaces.Box(-big, big, shape=(K, D + ANGLE_FEATURE_SIZE), dtype=np.float32),
            "candidate_mask": spaces.MultiBinary(K),
            "num_candidates": spaces.Box(0, K - 1, shape=(), dtype=np.int64),
            "view_index": spaces.Box(0, NUM_VIEWS - 1, shape=(), dtype=np.int64),
        })


def _load_episodes(episodes: Any, languages: Sequence[str] | None) -> tuple[str, list[Episode]]:
    if isinstance(episodes, (str, os.PathLike)):
        return str(episodes), read_episodes(episodes, languages)
    if isinstance(episodes, Iterable):
        eps = list(episodes)
        for k, ep in enumerate(eps):
            if not isinstance(ep, Episode):
                raise DataError(f"episodes[{k}] is a {type(ep).__name__}, expected vln_clip.episodes.Episode "
                                "(or pass the split file path)")
        if languages:
            wanted = {base_language(lang) for lang in languages}
            eps = [ep for ep in eps if base_language(ep.language) in wanted]
        return "episode list", eps
    raise DataError(f"episodes must be a split file path or a list of Episode, got {type(episodes).__name__}")


def _open_features(features: Any) -> Any:
    if features is None:
        return None
    if isinstance(features, (str, os.PathLike)):
        return FeatureStore(features)
    for attr in ("get", "dim", "__contains__"):
        if not hasattr(features, attr):
            raise DataError(f"features must be an HDF5 path, a FeatureStore or None, got {type(features).__name__}")
    return features


VIEW_ANGLES = view_angle_table()  # [36 agent views, 36, 128]


class NavEnv(gym.Env):
    """One VLN episode at a time with EnvDrop's panoramic actions (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, connectivity_dir: str | os.PathLike[str] | GraphStore | None = None,
                 episodes: str | os.PathLike[str] | Sequence[Episode] | None = None,
                 features: Any = None, *, dataset: str | None = None, max_steps: int = MAX_ACTIONS,
                 max_candidates: int = 16, max_instr_len: int | None = None,
                 vocab: Vocab | str | os.PathLike[str] | None = None, languages: Sequence[str] | None = None,
                 shuffle: bool = False, seed: int | None = None, render_mode: str | None = None,
                 validate: bool = True, strict: bool = False, feature_dim: int | None = None,
                 task: NavTask | None = None) -> None:
        if task is None:
            if connectivity_dir is None or episodes is None:
                raise DataError("NavEnv needs connectivity_dir=DIR (the <scan>_connectivity.json folder) and "
                                "episodes=<split file or list of Episode>")
            cfg = NavEnvConfig(dataset=dataset, max_steps=max_steps, max_candidates=max_candidates,
                               max_instr_len=max_instr_len, languages=languages, shuffle=shuffle, seed=seed,
                               validate=validate, strict=strict)
            task = NavTask(connectivity_dir, episodes, features, cfg, vocab, feature_dim)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise DataError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.task = task
        self.config = task.config
        self.render_mode = render_mode
        self.max_steps = int(self.config.max_steps)
        self.observation_space = task.observation_space()
        self.action_space = spaces.Discrete(task.max_candidates)
        self._order_rng = np.random.default_rng(self.config.seed)
        self._order = self._new_order()
        self._cursor = 0
        self._ep: int = -1
        self._graph: NavGraph | None = None

    # -- convenience -------------------------------------------------------------------
    @property
    def vocab(self) -> Vocab:
        return self.task.vocab

    @property
    def episodes(self) -> list[Episode]:
        return self.task.episodes

    @property
    def episode(self) -> Episode:
        if self._ep < 0:
            raise RuntimeError("call reset() first")
        return self.task.episodes[self._ep]

    def _new_order(self) -> np.ndarray:
        n = len(self.task.episodes)
        return self._order_rng.permutation(n) if self.config.shuffle else np.arange(n)

    # -- gymnasium API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._order_rng = np.random.default_rng(seed)
            self._order = self._new_order()
            self._cursor = 0
        options = options or {}
        if "instr_id" in options:
            self._ep = self.task.episode_index(options["instr_id"])
        else:
            if self._cursor >= len(self._order):
                self._order = self._new_order()
                self._cursor = 0
            self._ep = int(self._order[self._cursor])
            self._cursor += 1
        ep = self.episode
        self._graph = graph = self.task.graphs[ep.scan]
        self._pano = self.task.panos[ep.scan]
        self._teacher = self.task.teachers[ep.scan]
        self._cur = graph.idx(ep.start, f"instr_id {ep.instr_id} start")
        self._goal = graph.idx(ep.path[-1], f"instr_id {ep.instr_id} goal") if ep.has_goal else -1
        self._view = nearest_view(ep.heading)  # the episode's heading snapped, looking level
        self._steps = 0
        self._done = False
        self._stopped = False
        self._traj = [self._pose()]
        return self._observe(), self._info()

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        if self._ep < 0:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("episode is over: call reset()")
        a = int(action)
        n = int(self._pano.num_candidates[self._cur])
        if self.config.strict and not 0 <= a <= n:
            raise ValueError(f"action {a} is not valid here: candidates 0..{n - 1}, STOP = {n}")
        d_before = self.distance_to_goal
        reward = 0.0
        self._steps += 1
        if a < 0 or a >= n:
            self._stopped = self._done = True
            terminated = True
            if self._goal >= 0:
                reward = STOP_REWARD if d_before < SUCCESS_DISTANCE else -STOP_REWARD
        else:
            self._view = int(self._pano.view[self._cur, a])
            self._cur = int(self._pano.neighbour[self._cur, a])
            self._traj.append(self._pose())
            terminated = False
            if self._goal >= 0:
                reward = float(np.sign(d_before - self.distance_to_goal))
        truncated = (not terminated) and self._steps >= self.max_steps
        self._done = terminated or truncated
        return self._observe(), reward, terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        ep = self.episode
        assert self._graph is not None
        return draw_topdown(self._graph, reference=ep.path if ep.has_goal else (ep.start,),
                            trajectory=[p[0] for p in self._traj], heading=self._traj[-1][1],
                            goal=ep.goal, title=f"{ep.instr_id}  step {self._steps}")

    # -- state -------------------------------------------------------------------------
    @property
    def viewpoint(self) -> str:
        assert self._graph is not None
        return self._graph.viewpoints[self._cur]

    @property
    def distance_to_goal(self) -> float:
        if self._goal < 0:
            return math.inf
        assert self._graph is not None
        return float(self._graph.distances[self._cur, self._goal])

    @property
    def trajectory(self) -> list[tuple[str, float, float]]:
        return list(self._traj)

    def _pose(self) -> tuple[str, float, float]:
        heading, elevation = view_angles(self._view)
        return (self.viewpoint, heading, elevation)

    def teacher_action(self) -> int:
        """The shortest-path action (STOP at the goal), -1 without a goal."""
        if self._goal < 0:
            return -1
        return int(self._teacher[self._cur, self._goal])

    def _observe(self) -> dict[str, np.ndarray]:
        task, K = self.task, self.task.max_candidates
        ep = self.episode
        n = int(self._pano.num_candidates[self._cur])
        visual = task.visual(ep.scan, self.viewpoint)
        cands = np.zeros((K, task.feature_dim + ANGLE_FEATURE_SIZE), dtype=np.float32)
        cands[:n] = self._pano.candidate_features(self._cur, self._view, visual)
        mask = np.zeros(K, dtype=np.int8)
        mask[: n + 1] = 1
        return {
            "instruction": task.tokens[self._ep].copy(),
            "instruction_length": np.array(task.lengths[self._ep], dtype=np.int64),
            "panorama": visual.astype(np.float32, copy=True),
            "panorama_angles": VIEW_ANGLES[self._view].copy(),
            "candidates": cands,
            "candidate_mask": mask,
            "num_candidates": np.array(n, dtype=np.int64),
            "view_index": np.array(self._view, dtype=np.int64),
        }

    def _info(self) -> dict[str, Any]:
        ep = self.episode
        assert self._graph is not None
        n = int(self._pano.num_candidates[self._cur])
        mask = np.zeros(self.task.max_candidates, dtype=bool)
        mask[: n + 1] = True
        vp, heading, elevation = self._traj[-1]
        info: dict[str, Any] = {
            "instr_id": ep.instr_id,
            "scan": ep.scan,
            "viewpoint": vp,
            "heading": heading,
            "elevation": elevation,
            "step": self._steps,
            "teacher": self.teacher_action() if not self._done else -1,
            "action_mask": mask,
            "candidate_viewpoints": [self._graph.viewpoints[j] for j in self._pano.candidates(self._cur)],
            "distance_to_goal": self.distance_to_goal,
            "trajectory": list(self._traj),
        }
        if self._done:
            info["stopped"] = self._stopped
            if self._goal >= 0:
                info["success"] = bool(self.distance_to_goal < SUCCESS_DISTANCE)
        return info
