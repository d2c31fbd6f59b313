"""Play one episode step by step: who acts, what they saw, and an undoable history.

Researchers debug a VLN agent by watching it. :class:`EpisodePlayer` drives one episode of
the Gymnasium environment (:class:`vln_clip.envs.NavEnv`) and records, at every step, the
candidate directions (relative heading, elevation, distance, the agent's probability), the
teacher's choice, the distance to the goal and the agent's attention over words and views.
Any actor can take a step: the trained follower, the shortest-path teacher, a random agent,
or a person; :meth:`EpisodePlayer.undo` takes the last step back (by replaying the episode,
which is deterministic), so a person can try alternatives from any point.

:func:`open_rollout` opens one episode of a split (with a checkpoint's vocabulary and feature
store when given) for the terminal interface (:func:`vln_clip.viz.terminal.play`), the
``vln-clip rollout`` command and the demo.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from vln_clip.actors import HELPERS
from vln_clip.agents.inference import load_policy
from vln_clip.envs import NavEnv
from vln_clip.envs.panorama import scan_panorama
from vln_clip.episodes import Episode, read_episodes
from vln_clip.eval.inputs import follower_store
from vln_clip.eval.metrics import score_episode
from vln_clip.features.store import FeatureStore
from vln_clip.errors import DataError
from vln_clip.geometry import nearest_view
from vln_clip.graph import GraphStore, NavGraph
from vln_clip.task import MAX_ACTIONS
from vln_clip.tokenizers import tokenize

# ----------------------------------------------------------------------------------------
# What a step looks like


@dataclass
class Candidate:
    """One navigable direction offered at a step (relative to the agent's heading)."""

    action: int  # index of this candidate in the environment's action space
    viewpoint: str
    heading: float  # radians, (-pi, pi], positive to the right
    elevation: float  # radians, positive up
    distance: float  # metres to the neighbour (3-D)
    view_index: int = -1  # which of the 36 views the candidate is attached to
    prob: float | None = None  # the agent's probability of choosing it

    @property
    def heading_deg(self) -> float:
        return math.degrees(self.heading)

    @property
    def elevation_deg(self) -> float:
        return math.degrees(self.elevation)

    def describe(self) -> str:
        """``"45° right, 2.1 m"``: how a person reads a direction."""
        deg = self.heading_deg
        side = "ahead" if abs(deg) < 1 else (f"{abs(deg):.0f}° right" if deg > 0 else f"{abs(deg):.0f}° left")
        if abs(deg) > 179:
            side = "behind"
        tilt = "" if abs(self.elevation_deg) < 10 else (" up" if self.elevation > 0 else " down")
        return f"{side}{tilt}, {self.distance:.1f} m"


@dataclass
class StepRecord:
    """The state an actor saw at step ``step`` and what it did there."""

    step: int
    viewpoint: str
    heading: float
    elevation: float
    distance_to_goal: float | None
    candidates: list[Candidate]
    stop_action: int
    teacher_action: int | None
    stop_prob: float | None = None
    word_attention: list[float] | None = None
    view_attention: list[float] | None = None
    action: int | None = None  # filled in once someone acts
    actor: str = ""

    @property
    def stopped(self) -> bool:
        return self.action == self.stop_action

    @property
    def chosen(self) -> Candidate | None:
        for c in self.candidates:
            if c.action == self.action:
                return c
        return None

    @property
    def next_viewpoint(self) -> str:
        chosen = self.chosen
        return chosen.viewpoint if chosen is not None else self.viewpoint

    @property
    def faced_view(self) -> int:
        """The view the agent looked along when acting: the chosen candidate's, else its heading's."""
        chosen = self.chosen
        if chosen is not None and chosen.view_index >= 0:
            return chosen.view_index
        return nearest_view(self.heading, self.elevation)

    def action_label(self) -> str:
        if self.action is None:
            return "-"
        if self.stopped:
            return "STOP"
        chosen = self.chosen
        return f"#{self._number(self.action)} {chosen.describe()}" if chosen else f"action {self.action}"

    def _number(self, action: int) -> int:
        for k, c in enumerate(self.candidates, 1):
            if c.action == action:
                return k
        return -1


@dataclass
class RolloutResult:
    """A finished (or abandoned) episode: every step, the path and its metrics."""

    episode: Episode
    tokens: list[str]
    steps: list[StepRecord]
    trajectory: list[tuple[str, float, float]]  # (viewpoint, heading, elevation) after each move
    metrics: dict[str, float] = field(default_factory=dict)
    ended_by: str = ""  # "stop", "max_steps" or "quit"

    @property
    def viewpoints(self) -> list[str]:
        return [t[0] for t in self.trajectory]

    @property
    def moves(self) -> int:
        """Moves made (the metrics' ``steps``: repeated viewpoints count, the STOP does not)."""
        return max(0, len(self.trajectory) - 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the per-step table and an R2R-format trajectory)."""
        return {
            "instr_id": self.episode.instr_id,
            "scan": self.episode.scan,
            "instruction": self.episode.instruction,
            "reference_path": list(self.episode.path),
            "trajectory": [list(t) for t in self.trajectory],
            "ended_by": self.ended_by,
            "metrics": self.metrics,
            "steps": [
                {"step": s.step, "viewpoint": s.viewpoint, "heading_deg": round(math.degrees(s.heading), 1),
                 "distance_to_goal": s.distance_to_goal, "actor": s.actor, "action": s.action,
                 "action_label": s.action_label(), "teacher_action": s.teacher_action,
                 "next_viewpoint": s.next_viewpoint,
                 "candidates": [{"number": k, "action": c.action, "viewpoint": c.viewpoint,
                                 "heading_deg": round(c.heading_deg, 1), "distance": round(c.distance, 3),
                                 "prob": c.prob} for k, c in enumerate(s.candidates, 1)],
                 "stop_prob": s.stop_prob}
                for s in self.steps
            ],
        }


# ----------------------------------------------------------------------------------------
# Actors


@dataclass
class Decision:
    action: int
    probs: np.ndarray | None = None
    word_attention: np.ndarray | None = None
    view_attention: np.ndarray | None = None


class Actor(Protocol):
    name: str

    def reset(self, obs: Any, info: dict[str, Any]) -> None: ...

    def act(self, obs: Any, info: dict[str, Any]) -> Decision: ...


class TeacherActor:
    """Follows ``info["teacher"]``: the next hop of the shortest path to the goal (STOP there)."""

    name = "teacher"

    def reset(self, obs: Any, info: dict[str, Any]) -> None:
        if info.get("teacher") is None or int(info["teacher"]) < 0:
            raise DataError("this episode has no goal (a test split?), so there is no teacher to follow; "
                            "use --policy agent, random or human")

    def act(self, obs: Any, info: dict[str, Any]) -> Decision:
        return Decision(int(info["teacher"]))


class RandomActor:
    """Uniform over the allowed actions (STOP included), seeded for repeatable pictures."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def reset(self, obs: Any, info: dict[str, Any]) -> None:
        self._rng = random.Random(self.seed)

    def act(self, obs: Any, info: dict[str, Any]) -> Decision:
        allowed = np.flatnonzero(np.asarray(info["action_mask"], dtype=bool))
        return Decision(int(allowed[self._rng.randrange(len(allowed))]))


class AgentActor:
    """A trained follower (:func:`vln_clip.agents.inference.load_policy`): probabilities and attention."""

    name = "agent"

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def reset(self, obs: Any, info: dict[str, Any]) -> None:
        self.policy.reset(obs)

    def act(self, obs: Any, info: dict[str, Any]) -> Decision:
        out = self.policy.step(obs)
        return Decision(int(out.action), _np(out.probs), _np(getattr(out, "word_attention", None)),
                        _np(getattr(out, "view_attention", None)))

    def overrule(self, action: int) -> None:
        """The step just decided was replaced by ``action``: the policy's next input must say so."""
        self.policy.overrule(action)


def _np(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


# ----------------------------------------------------------------------------------------
# The player


class EpisodePlayer:
    """One episode of a NavEnv with an undoable history of who did what.

    ``shadow`` is an optional agent that is consulted at every step even when someone else
    acts, so its probabilities and attention are shown for a person's or the teacher's moves.
    """

    def __init__(self, env: Any, episode: Episode, graph: NavGraph, shadow: AgentActor | None = None,
                 max_steps: int | None = None) -> None:
        self.env = env
        self.episode = episode
        self.graph = graph
        self.shadow = shadow
        self.max_steps = max_steps or int(getattr(_unwrap(env), "max_steps", MAX_ACTIONS) or MAX_ACTIONS)
        self.actions: list[tuple[int, str]] = []  # (action, actor name) in order
        self.records: list[StepRecord] = []
        self.done = False
        self.ended_by = ""
        self._obs: Any = None
        self._info: dict[str, Any] = {}
        self._decision: Decision | None = None
        self._replay([])

    # -- state --------------------------------------------------------------------------
    @property
    def obs(self) -> Any:
        return self._obs

    @property
    def info(self) -> dict[str, Any]:
        return self._info

    @property
    def current(self) -> StepRecord:
        """The pending step (what the next actor sees)."""
        return self._pending

    @property
    def trajectory(self) -> list[tuple[str, float, float]]:
        return list(self._trajectory)

    # -- acting -------------------------------------------------------------------------
    def act(self, action: int, actor: str) -> StepRecord:
        """Take ``action`` (an environment action index) on behalf of ``actor``."""
        if self.done:
            raise RuntimeError("the episode is over; undo or start another")
        mask = np.asarray(self._info["action_mask"], dtype=bool)
        if not (0 <= action < len(mask)) or not mask[action]:
            raise ValueError(f"action {action} is not allowed here (allowed: {np.flatnonzero(mask).tolist()})")
        self.actions.append((int(action), actor))
        return self._advance(int(action), actor)

    def agent_decision(self) -> Decision | None:
        """What the shadow agent would do now (None without an agent)."""
        return self._decision

    def undo(self) -> bool:
        """Take back the last step; False when there is nothing to undo."""
        if not self.actions:
            return False
        self._replay(self.actions[:-1])
        return True

    def result(self, metrics_fn: Callable[[RolloutResult], dict[str, float]] | None = None) -> RolloutResult:
        res = RolloutResult(self.episode, self.tokens, list(self.records), self.trajectory,
                            ended_by=self.ended_by or ("quit" if not self.done else "stop"))
        if metrics_fn is not None:
            res.metrics = metrics_fn(res)
        return res

    # -- internals ----------------------------------------------------------------------
    def _replay(self, actions: Sequence[tuple[int, str]]) -> None:
        self.actions = list(actions)
        self.records = []
        self.done = False
        self.ended_by = ""
        self._obs, self._info = self.env.reset(options={"instr_id": self.episode.instr_id})
        self.tokens = _tokens(self._obs, self._info, self.episode)
        self._trajectory = [_pose(self._info, self._obs)]
        if self.shadow is not None:
            self.shadow.reset(self._obs, self._info)
        self._observe()
        for action, actor in self.actions:
            self._advance(action, actor)

    def _observe(self) -> None:
        self._decision = self.shadow.act(self._obs, self._info) if self.shadow is not None else None
        self._pending = describe_state(self._obs, self._info, self.graph, len(self.records), self._decision)

    def _advance(self, action: int, actor: str) -> StepRecord:
        record = self._pending
        record.action, record.actor = action, actor
        if self.shadow is not None and self._decision is not None and self._decision.action != action:
            # Someone overruled the agent: its next step must see the action really taken.
            self.shadow.overrule(action)
        self.records.append(record)
        self._obs, _reward, terminated, truncated, self._info = self.env.step(action)
        if action != record.stop_action:
            self._trajectory.append(_pose(self._info, self._obs))
        if terminated or truncated or len(self.records) >= self.max_steps:
            self.done = True
            self.ended_by = "stop" if action == record.stop_action else "max_steps"
            self._decision = None
        else:
            self._observe()
        return record


def _unwrap(env: Any) -> Any:
    return getattr(env, "unwrapped", env)


def _tokens(obs: Any, info: dict[str, Any], episode: Episode) -> list[str]:
    """The instruction's words as the agent's tokenizer saw them (for attention highlighting).

    The observation's ids are BOS, words, EOS; the attention is over those positions, so the
    displayed tokens keep BOS/EOS in place (and out-of-vocabulary words show as the raw word).
    """
    words = tokenize(episode.instruction, episode.language, "rxr" if episode.dataset == "rxr" else "r2r")
    if isinstance(obs, dict) and "instruction_length" in obs:
        n = int(obs["instruction_length"])
        # BOS + words (truncated to fit) + EOS
        body = words[: max(0, n - 2)]
        return ["<BOS>"] + body + ["<EOS>"]
    return words


def _pose(info: dict[str, Any], obs: Any) -> tuple[str, float, float]:
    return (str(info["viewpoint"]), float(info["heading"]), float(info["elevation"]))


def describe_state(obs: Any, info: dict[str, Any], graph: NavGraph, step: int,
                   decision: Decision | None = None) -> StepRecord:
    """A :class:`StepRecord` (without action) of the environment's current state.

    Directions and distances are read from the candidate tables the environment steps with
    (:func:`vln_clip.envs.panorama.scan_panorama`, MatterSim's navigable-location geometry):
    the heading relative to the agent wrapped to (-pi, pi], the elevation, the distance the
    simulator's navigable locations carry. So they read the same for every actor.
    """
    vp = str(info["viewpoint"])
    heading = float(info.get("heading", 0.0))
    elevation = float(info.get("elevation", 0.0))
    cand_vps = list(info["candidate_viewpoints"])
    mask = np.asarray(info["action_mask"], dtype=bool)
    stop = int(obs["num_candidates"]) if isinstance(obs, dict) and "num_candidates" in obs else len(cand_vps)
    ix = graph.idx(vp)
    table = scan_panorama(graph)  # candidate k of the env is column k of these tables
    rel_headings = table.relative_headings(ix, nearest_view(heading, elevation))
    probs = decision.probs if decision is not None else None
    cands: list[Candidate] = []
    for k, cvp in enumerate(cand_vps):
        if cvp is None or cvp == "" or k == stop or (k < len(mask) and not mask[k]):
            continue
        cands.append(Candidate(
            action=k, viewpoint=str(cvp),
            heading=float(rel_headings[k]),
            elevation=float(table.elevation[ix, k]),
            distance=float(table.distance[ix, k]),
            view_index=int(table.view[ix, k]),
            prob=float(probs[k]) if probs is not None and k < len(probs) else None,
        ))
    dist = info.get("distance_to_goal")
    teacher = info.get("teacher")
    if teacher is not None and int(teacher) < 0:
        teacher = None  # no goal (test split) or the episode is over
    return StepRecord(
        step=step, viewpoint=vp, heading=heading, elevation=elevation,
        distance_to_goal=None if dist is None or (isinstance(dist, float) and math.isnan(dist)) else float(dist),
        candidates=cands, stop_action=stop, teacher_action=None if teacher is None else int(teacher),
        stop_prob=float(probs[stop]) if probs is not None and stop < len(probs) else None,
        word_attention=None if decision is None or decision.word_attention is None else decision.word_attention.tolist(),
        view_attention=None if decision is None or decision.view_attention is None else decision.view_attention.tolist(),
    )


# ----------------------------------------------------------------------------------------
# Metrics and the terminal loop


def episode_metrics(graph: NavGraph) -> Callable[[RolloutResult], dict[str, float]]:
    """Metrics of a rollout from the one metrics module (empty for episodes without a goal)."""

    def compute(result: RolloutResult) -> dict[str, float]:
        if not result.episode.has_goal:
            return {}
        return dict(score_episode(result.viewpoints, list(result.episode.path), graph))

    return compute


def ended_phrase(result: RolloutResult) -> str:
    """``"ended by stop after 4 moves"``: one wording (and one step count) for terminal and report.

    A person who quits leaves the agent where it is; it is scored there, as the R2R evaluator
    scores a trajectory's last viewpoint, and the phrase says that it did not stop.
    """
    how = "was quit before stopping (scored where it was left)" if result.ended_by == "quit" else (
        f"ended by {result.ended_by}")
    return f"{how} after {result.moves} move{'s' if result.moves != 1 else ''}"


INTERACTIVE_HELP = ("type a candidate number to move there, s to stop, u to undo the last step, "
                    "Enter to let the {helper} act, q to quit")


@dataclass
class RolloutSetup:
    """The environment, episode, graph and actors of one rollout."""

    player: EpisodePlayer
    actor: Any  # who acts on Enter / every step
    graph: NavGraph
    weights_note: str = ""  # said on screen and in the report when the features are random-weight ones


def pick_episode(split_file: str | Path, instr_id: str | None) -> Episode:
    """The episode ``instr_id`` of ``split_file`` (its first one when None), or an error listing real ids."""
    episodes = read_episodes(split_file)
    if not episodes:
        raise DataError(f"{split_file}: no episodes")
    if instr_id is None:
        return episodes[0]
    found = [e for e in episodes if e.instr_id == str(instr_id)]
    if not found:
        ids = [e.instr_id for e in episodes[:3]]
        raise DataError(f"{split_file}: no instruction {instr_id!r}; ids in this file look like {', '.join(ids)} "
                        "(or leave out --instr-id for the first one)")
    return found[0]


def open_rollout(split_file: str | Path, connectivity: str | Path, instr_id: str | None = None,
                 checkpoint: str | Path | None = None, features: str | Path | None = None, helper: str = "teacher",
                 seed: int = 0, max_steps: int = MAX_ACTIONS) -> RolloutSetup:
    """Open one episode in a :class:`~vln_clip.envs.NavEnv` ready to be played.

    With ``checkpoint`` the follower shadows every step (probabilities, attention) and the
    environment uses its vocabulary and feature store (``features``, else the store it was
    trained with, checked by :func:`vln_clip.eval.inputs.follower_store`).
    """
    if helper not in HELPERS:
        raise DataError(f"unknown helper {helper!r}; choose one of {', '.join(HELPERS)}")
    graphs = GraphStore(connectivity)
    episode = pick_episode(split_file, instr_id)
    shadow = None
    note = ""
    env_kwargs: dict[str, Any] = {}
    if checkpoint:
        policy = load_policy(checkpoint)
        shadow = AgentActor(policy)
        path = follower_store(checkpoint, features, policy)
        store = FeatureStore(path) if path is not None else None
        if store is not None and str(getattr(store, "weights", "")) == "random":
            note = (f"note: the features in {store.path} come from a randomly initialised {store.encoder} "
                    "encoder (no pretrained CLIP weights were present), so the agent sees noise-like features")
        env_kwargs = dict(vocab=policy.vocab, features=store, max_instr_len=policy.max_instr_len)
    elif helper == "agent":
        raise DataError("the agent helper needs a follower checkpoint (--checkpoint CKPT)")
    elif features:
        env_kwargs = dict(features=str(features))
    env = NavEnv(graphs, [episode], max_steps=max_steps, **env_kwargs)
    graph = graphs[episode.scan]
    player = EpisodePlayer(env, episode, graph, shadow=shadow, max_steps=max_steps)
    actor = {"agent": shadow, "teacher": TeacherActor(), "random": RandomActor(seed)}[helper]
    return RolloutSetup(player, actor, graph, note)
