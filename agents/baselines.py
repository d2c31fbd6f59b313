"""Reference-point agents (random, stop, shortest) that act through :class:`vln_clip.envs.nav_env.NavEnv`.

They are agents like the follower, so they live with it; :mod:`vln_clip.eval` scores their
trajectories as it scores anyone's. They never write paths directly: every trajectory is what the environment recorded after the
agent's actions, so their scores also check the environment (a shortest-path agent that does
not reach SR = SPL = 1.0 on R2R means the panoramic action space or the teacher is wrong).

* ``stop``: STOP at the first step. Success 0 on R2R (start and goal are >= 5 m apart);
  nDTW/CLS are then the "did nothing" floor.
* ``shortest``: the action in ``info["teacher"]`` (next hop of the shortest path, STOP at the
  goal). SR = SPL = 1.0 on any split with goals.
* ``random``: the R2R paper's random agent (Anderson et al. 2018: "randomly selects a heading
  and completes a total of 5 successful forward actions", turning right when no forward move
  is available; SR about 16% on val unseen) in the panoramic action space: a heading drawn
  uniformly at step 0, then at each step the candidate nearest straight ahead within the
  80-degree field of view, turning right by 30 degrees until one is; STOP after
  :data:`RANDOM_STEPS` = 5 moves (earlier only at a dead end). Candidate directions come from
  the observation's angle features, the same input a learned agent gets
  (:func:`vln_clip.geometry.feature_heading`). The generator of each episode is seeded with
  ``(seed, crc32(instr_id))``, so the result does not depend on the episode order or the batch.

Predictions are returned as R2R leaderboard rows (``{"instr_id", "trajectory"}``).
"""

from __future__ import annotations

import math
import os
import zlib
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from vln_clip.episodes import Episode
from vln_clip.errors import DataError
from vln_clip.geometry import ANGLE_FEATURE_SIZE, HEADING_COUNT, HEADING_INCREMENT, VIEW_HFOV, feature_heading, wrap_angles
from vln_clip.task import MAX_ACTIONS

RANDOM_STEPS = 5
HALF_FOV = VIEW_HFOV / 2  # the discretized views' camera (640x480, VFOV 60): HFOV 80 degrees
AGENTS = ("random", "stop", "shortest")
#: agents that need the goal (none on test splits, so they cannot make a submission)
NEEDS_GOAL = frozenset({"shortest"})

Policy = Callable[[dict[str, np.ndarray], dict[str, Any], int, np.random.Generator], int]


def stop_policy(obs: dict[str, np.ndarray], info: dict[str, Any], step: int, rng: np.random.Generator) -> int:
    return int(obs["num_candidates"])  # STOP is slot n


def shortest_policy(obs: dict[str, np.ndarray], info: dict[str, Any], step: int, rng: np.random.Generator) -> int:
    action = int(info["teacher"])
    if action < 0:
        raise DataError(f"instr_id {info['instr_id']}: the split has no goal, so there is no shortest path; "
                        "the shortest agent needs a split with goals")
    return action


def _candidate_headings(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Headings of the real candidates relative to the agent (radians, right positive).

    Read from the EnvDrop angle feature ``[sin h, cos h, sin e, cos e] * 32`` that follows the
    visual part of each candidate row.
    """
    n = int(obs["num_candidates"])
    cands = obs["candidates"]
    return feature_heading(cands[:n, cands.shape[1] - ANGLE_FEATURE_SIZE:])


def random_policy(obs: dict[str, np.ndarray], info: dict[str, Any], step: int, rng: np.random.Generator) -> int:
    """R2R-paper-style random walk: a random heading, then up to 5 forward moves.

    Step 0 draws a heading offset uniformly in [0, 2 pi). At each step the agent "turns right"
    in 30 degree increments from the wanted heading until some candidate lies within half the
    field of view (40 degrees) of the camera, and moves to the one nearest the centre; after a
    move the wanted heading is straight ahead. STOP after :data:`RANDOM_STEPS` moves.
    """
    n = int(obs["num_candidates"])
    if step >= RANDOM_STEPS or n == 0:
        return n
    rel = _candidate_headings(obs)
    wanted = rng.uniform(0.0, 2 * math.pi) if step == 0 else 0.0
    for turns in range(HEADING_COUNT):
        off = np.abs(wrap_angles(rel - wanted - turns * HEADING_INCREMENT))
        if (off <= HALF_FOV + 1e-6).any():
            return int(np.argmin(off))
    return n  # unreachable: 12 turns cover the circle


POLICIES: dict[str, Policy] = {"random": random_policy, "stop": stop_policy, "shortest": shortest_policy}


def episode_rng(seed: int, instr_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(instr_id.encode("utf-8"))])


def rollout(env: Any, policy: Policy, instr_ids: Sequence[str], seed: int = 0,
            progress: bool = False) -> list[dict[str, Any]]:
    """Run ``policy`` on each instruction through ``env``; the recorded trajectories, R2R format."""
    rows = []
    for instr_id in tqdm(instr_ids, desc="episodes", disable=not progress, leave=False):
        rng = episode_rng(seed, instr_id)
        obs, info = env.reset(options={"instr_id": instr_id})
        done, step = False, 0
        while not done:
            obs, _, terminated, truncated, info = env.step(policy(obs, info, step, rng))
            done = terminated or truncated
            step += 1
        rows.append({"instr_id": instr_id,
                     "trajectory": [[vp, float(h), float(e)] for vp, h, e in info["trajectory"]]})
    return rows


def run_baseline(name: str, episodes: Sequence[Episode] | str | os.PathLike[str],
                 connectivity_dir: str | os.PathLike[str], features: Any = None, batch_size: int = 64,
                 seed: int = 0, progress: bool | None = None) -> list[dict[str, Any]]:
    """Roll out baseline ``name`` on ``episodes`` (a list or a split file) and return its predictions.

    ``features`` (an HDF5 feature store) is optional: the baselines do not look at the views,
    but passing it checks that the store covers every viewpoint. ``batch_size`` is accepted for
    interface parity with checkpoint inference; the baselines step one episode at a time.
    """
    # Deferred on purpose (no import cycle here): vln_clip.envs loads torch and gymnasium (about
    # 2.5 s), and the command line imports this module at start-up for AGENTS, its --agent choices.
    from vln_clip.envs.nav_env import NavEnv

    if name not in POLICIES:
        raise DataError(f"unknown baseline agent {name!r}; choose one of {', '.join(AGENTS)}")
    env = NavEnv(connectivity_dir, episodes if isinstance(episodes, (str, os.PathLike)) else list(episodes),
                 features, max_steps=MAX_ACTIONS, seed=seed)
    try:
        ids = [ep.instr_id for ep in env.episodes]
        if progress is None:
            progress = len(ids) > 2000
        return rollout(env, POLICIES[name], ids, seed=seed, progress=progress)
    finally:
        env.close()
