"""VLN training: follower (IL + A2C), speaker (teacher forcing) and back-translation.

This module holds what is navigation: data and feature paths, the environment adapter, the
rollouts and their losses, evaluation (SR/SPL/nDTW, BLEU) and back-translation. A run is a
:class:`vln_clip.train.Task` (:class:`Run`); the loop around it (optimizers, checkpoints,
bit-exact resume, best-by-validation, TensorBoard, progress, Ctrl-C, curves) is the shared
training core, docs/training-core.md.

One follower iteration follows R2R-EnvDrop:

1. a teacher-forced rollout on a minibatch: at each step the cross-entropy between the
   candidate logits and the teacher's candidate (shortest-path next hop, STOP at the goal);
   ``il_loss`` = sum over steps of the batch mean over still-running episodes; weighted by
   ``ml_weight`` (0.2 R2R, 0.4 RxR);
2. a sampled rollout on another minibatch (A2C): actions sampled from the policy, EnvDrop's
   reward from the environment (sign of the decrease of the distance to the goal per move;
   +2 / -2 at STOP within / beyond 3 m), discounted returns with gamma 0.9 bootstrapped by the
   critic when an episode is still running after ``max_actions`` steps, and
   ``rl_loss = sum(-logp (R - V) + 0.5 (R - V)^2 - 0.01 entropy) / valid steps``;
3. one RMSprop step (lr 1e-4) on ``ml_weight * il_loss + rl_loss`` with gradient clipping 40.

Rollouts run on :class:`vln_clip.envs.BatchedNavEnv` on the training device. A rollout's
per-step work is tensor operations only. The environment returns feature-table indices
(``observation="indices"``) and :class:`Obs` gathers the visual rows the follower reads from
the device-resident :class:`~vln_clip.envs.feature_table.FeatureTable` as two parts (visual,
angle), so no step copies and re-concatenates ``[B, 36, D + 128]`` panoramas; the copied
observation (``observation="features"``) gives the same losses to the bit (tested). On CUDA nothing reads a tensor back to the host
inside a rollout: the loop runs the full ``max_actions`` steps with finished episodes
masked. On CPU "the host" is where the tensors are, so the loop stops as soon as every
episode has ended (a free check there). With ``cuda_graphs`` the decoder step (forward and
backward) is captured once per shape with :func:`torch.cuda.make_graphed_callables`.

Back-translation: per update one real batch (``ml_weight`` 0.2, plus A2C) and one augmented
batch: augmented paths (``vln-clip data aug-paths``) get an instruction from the speaker
(greedy, up to 120 tokens) computed on features multiplied by a per-episode environmental
dropout mask over feature channels; the follower then learns (``bt_ml_weight`` 0.6 IL + A2C)
on those instructions under the *same* mask for every view and every step.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from vln_clip.encoders import get_spec, resolve_weights
from vln_clip.envs.batched import BatchedNavEnv
from vln_clip.envs.feature_table import FeatureTable, Views, as_joined
from vln_clip.episodes import Episode, read_r2r, read_rxr
from vln_clip.errors import DataError, MissingResourceError
from vln_clip.eval.metrics import score_paths
from vln_clip.features.store import FeatureStore
from vln_clip.geometry import ANGLE_FEATURE_SIZE
from vln_clip.graph import GraphStore
from vln_clip.paths import (CONNECTIVITY_SUBDIRS, REAL_DATA_HELP, connectivity_dir, data_dir, feature_store_path,
                            find_split, skybox_dir, split_candidates)
from vln_clip.tokenizers import Vocab, tokenize

from vln_clip.train import DataOrder, LoopConfig, OptimizerConfig, Task, Trainer, fork_rng

from .aug_paths import read_aug_paths
from .checkpoint import CONVERTERS, load_checkpoint
from .config import TrainConfig
from .follower import Follower
from .speaker import Speaker, corpus_bleu

SPLITS = ("train", "val_seen", "val_unseen")


# ------------------------------------------------------------------------------------------
# Data


@dataclass
class DataPaths:
    connectivity: Path
    splits: dict[str, Path]
    features: Path | None


def extract_command(data: Path, encoder: str) -> str:
    """The exact command that creates the missing feature store (with ``--random-weights`` when
    this machine has no weights for the encoder, so the printed command works as written)."""
    try:
        resolve_weights(get_spec(encoder), None, False)
        weights = ""
    except (DataError, MissingResourceError):
        weights = " --random-weights"
    return (f"vln-clip features extract --encoder {encoder}{weights} --source skybox --skybox-dir {skybox_dir(data)} "
            f"--connectivity {connectivity_dir(data)} --out {feature_store_path(data, encoder)}")


def _data_hint(dataset: str, data: Path) -> str:
    """How to get the missing data: the README for real data; a synthetic world only for
    ``--dataset synthetic`` (never generated into a real-data folder)."""
    if dataset == "synthetic":
        return f"`vln-clip data synth --out {data}` makes one"
    return (f"download the {dataset.upper()} data as {REAL_DATA_HELP} describes (to try training without it, "
            "use `--dataset synthetic` with a world made by `vln-clip data synth --out DIR` in a folder of its own)")


def resolve_paths(cfg: TrainConfig) -> DataPaths:
    """Find the connectivity graphs, split files and feature store of a run, or say what is missing.

    The layout is :mod:`vln_clip.paths`' (the resolver ``eval``, ``submit`` and ``rollout`` use too),
    so training and evaluation look in the same places.
    """
    data = data_dir(cfg.data_dir)
    conn = connectivity_dir(data)
    if not conn.is_dir():
        raise MissingResourceError(
            f"{conn}: no connectivity graphs under the data directory {data} (looked in "
            f"{' and '.join(f'{sub}/' for sub in CONNECTIVITY_SUBDIRS)}); pass --data-dir (or set VLN_CLIP_DATA) "
            f"to a folder with connectivity/, r2r/ (or rxr/) and features/; {_data_hint(cfg.dataset, data)}")
    splits: dict[str, Path] = {}
    for split in SPLITS:
        found = find_split(data, cfg.dataset, split)
        if found is None:
            raise MissingResourceError(
                f"{split_candidates(data, cfg.dataset, split)[0]}: split file not found; {cfg.dataset} training "
                f"needs train, val_seen and val_unseen splits under {data}: {_data_hint(cfg.dataset, data)}")
        splits[split] = found
    feats: Path | None = None
    if not cfg.no_vision:
        feats = Path(cfg.features) if cfg.features else feature_store_path(data, cfg.encoder)
        if not feats.exists():
            raise MissingResourceError(
                f"{feats}: no {cfg.encoder} feature store. Create it with:\n  "
                + extract_command(data, cfg.encoder)
                + "\n(or pass --features FILE.h5, or --no-vision for a vision-free follower)")
    return DataPaths(conn, splits, feats)


def read_split(path: Path, cfg: TrainConfig) -> list[Episode]:
    if cfg.dataset == "rxr":
        langs = None if cfg.language == "multi" else [cfg.language]
        return read_rxr(path, langs)
    return read_r2r(path)


def build_vocab(episodes: Sequence[Episode], cfg: TrainConfig) -> Vocab:
    """Train words seen at least ``min_word_count`` times (EnvDrop: 5)."""
    return Vocab.build((tokenize(e.instruction, e.language, cfg.tokenizer_dataset) for e in episodes),
                       cfg.min_word_count)


def encode_instructions(episodes: Sequence[Episode], vocab: Vocab, max_len: int,
                        dataset: str) -> torch.Tensor:
    """``[N, max_len]`` word ids (BOS ... EOS, PAD = 0 after), truncated like EnvDrop."""
    out = torch.full((len(episodes), max_len), vocab.pad, dtype=torch.long)
    for i, e in enumerate(episodes):
        ids = vocab.encode(tokenize(e.instruction, e.language, dataset), max_len)
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def ids_to_tensor(rows: Sequence[Sequence[int]], vocab: Vocab, max_len: int) -> torch.Tensor:
    """Generated word ids (no BOS/EOS) -> padded ``[B, max_len]`` BOS ... EOS tensor."""
    out = torch.full((len(rows), max_len), vocab.pad, dtype=torch.long)
    for i, r in enumerate(rows):
        ids = [vocab.bos] + list(r)[: max_len - 2] + [vocab.eos]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


# ------------------------------------------------------------------------------------------
# Environment adapter: the only place that knows BatchedNavEnv's API


class RolloutEnv:
    """A :class:`vln_clip.envs.BatchedNavEnv` seen as tensors for the rollouts.

    ``reset(idx)`` starts the episodes ``idx`` (positions in ``episodes``; at most
    ``batch_size``) and returns :class:`Obs` for exactly those rows; ``step(actions)`` moves
    them (an ended episode ignores its action) and returns ``(Obs, reward)``; ``paths()`` gives
    each episode's viewpoint trajectory. Instruction ids are the trainer's own (the same
    vocabulary is handed to the environment).

    ``observation``: ``"indices"`` (default) has the environment return feature-table rows that
    :class:`Obs` gathers on the device; ``"features"`` takes the environment's copied feature
    tensors (the reference path; the same numbers).
    """

    def __init__(self, graphs: GraphStore, episodes: Sequence[Episode], features: Any, vocab: Vocab,
                 batch_size: int, device: torch.device, max_actions: int, max_instr_len: int,
                 observation: str = "indices") -> None:
        self.episodes = list(episodes)
        self.device = device
        self.batch_size = batch_size
        self.env = BatchedNavEnv(graphs, self.episodes, features, num_envs=batch_size, device=device,
                                 vocab=vocab, max_steps=max_actions, max_instr_len=max_instr_len,
                                 validate=False, observation=observation)
        self.table = self.env.feature_table
        self.feature_dim = int(self.env.feature_dim)
        self.n = batch_size

    def reset(self, idx: torch.Tensor) -> "Obs":
        """``idx`` lives on the CPU (the trainer's data-order generator): no device sync."""
        self.n = len(idx)
        obs, info = self.env.reset(options={"episode_indices": idx.tolist()})
        return Obs.from_env(obs, info, self.n, self.table)

    def step(self, actions: torch.Tensor) -> tuple["Obs", torch.Tensor]:
        if self.n < self.batch_size:
            full = torch.full((self.batch_size,), -1, dtype=torch.long, device=actions.device)
            full[: self.n] = actions
            actions = full
        obs, reward, _, _, info = self.env.step(actions)
        return Obs.from_env(obs, info, self.n, self.table), reward[: self.n]

    def trajectories(self) -> list[list[tuple[str, float, float]]]:
        """R2R trajectories (start + one entry per move) of the started episodes (host sync)."""
        return [list(t or []) for t in self.env.trajectories()[: self.n]]

    def paths(self) -> list[list[str]]:
        return [[str(p[0]) for p in traj] for traj in self.trajectories()]


@dataclass
class Obs:
    """What the follower needs from one environment step (rows = started episodes).

    ``pano`` and ``cand`` are :class:`Views` (visual and angle parts) on the index path, joined
    tensors on the copy path; :func:`vln_clip.envs.feature_table.as_joined` makes either one
    tensor (the speaker's input).
    """

    pano: torch.Tensor | Views  # [B, 36, D + 128]: visual features + angle relative to the agent
    cand: torch.Tensor | Views  # [B, K, D + 128]; STOP row (index ``stop``) is zeros
    cand_mask: torch.Tensor  # [B, K] bool, STOP included
    stop: torch.Tensor  # [B] long, index of STOP (= number of real candidates)
    teacher: torch.Tensor  # [B] long, STOP once ended
    done: torch.Tensor  # [B] bool, episode already ended

    @classmethod
    def from_env(cls, o: dict[str, torch.Tensor], info: dict[str, Any], n: int,
                 table: FeatureTable | None = None) -> "Obs":
        """Rows ``:n`` of a batched observation; an index observation is gathered from ``table``."""
        pano: torch.Tensor | Views
        cand: torch.Tensor | Views
        if "candidate_rows" in o:
            if table is None:
                raise ValueError("an index observation (observation='indices') needs the env's feature_table")
            pano = table.panorama_views(o["viewpoint"][:n], o["view_index"][:n])
            cand = table.candidate_views(o["candidate_rows"][:n], o["candidate_angles"][:n])
        else:
            pano = torch.cat([o["panorama"][:n].float(), o["panorama_angles"][:n].float()], dim=2)
            cand = o["candidates"][:n]
        stop = o["num_candidates"][:n]
        teacher = info["teacher"][:n]
        teacher = torch.where(teacher < 0, stop, teacher)
        return cls(pano, cand, o["candidate_mask"][:n].bool(), stop, teacher, info["done"][:n])


# ------------------------------------------------------------------------------------------
# Rollouts


def chosen_angle(cand: torch.Tensor | Views, action: torch.Tensor, feature_dim: int) -> torch.Tensor:
    """Angle part of the chosen candidate (zeros for STOP, whose feature is zero)."""
    angle = cand.angle if isinstance(cand, Views) else cand[..., feature_dim:]
    return angle.gather(1, action.view(-1, 1, 1).expand(-1, 1, angle.shape[2])).squeeze(1)


def chosen_view(cand: torch.Tensor | Views, action: torch.Tensor) -> torch.Tensor:
    """``[B, D + 128]`` joined feature of the chosen candidate (STOP: zeros); parts are picked
    before they are joined, so no step builds the whole ``[B, K, D + 128]`` candidate tensor."""
    parts = (cand.visual, cand.angle) if isinstance(cand, Views) else (cand,)
    picked = [p.gather(1, action.view(-1, 1, 1).expand(-1, 1, p.shape[2])).squeeze(1) for p in parts]
    return picked[0] if len(picked) == 1 else torch.cat(picked, dim=1)


def _any_running(ended: torch.Tensor) -> bool:
    """Early exit only where it costs no device sync (CPU tensors)."""
    return ended.device.type != "cpu" or not bool(ended.all())


StepFns = Sequence[Callable[..., tuple[torch.Tensor, ...]]]


def _decode(model: Follower, steps: StepFns | None, t: int, prev: torch.Tensor, obs: "Obs", h: torch.Tensor,
            c: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor, env_mask: torch.Tensor | None,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder step ``t``: eager, or the CUDA-graphed callable captured for step ``t``."""
    if steps is None:
        logits, h, c, h_tilde, _, _ = model.step(prev, obs.pano, obs.cand, obs.cand_mask, h, c, ctx, mask, env_mask)
        return logits, h, c, h_tilde
    extra = () if env_mask is None else (env_mask,)
    # the captured graph has static [B, N, D + 128] input buffers: hand it joined tensors
    logits, h, c, h_tilde = steps[t](prev, as_joined(obs.pano), as_joined(obs.cand), obs.cand_mask, h, c, ctx, mask,
                                     *extra)
    return logits, h, c, h_tilde


class StepModule(torch.nn.Module):
    """``Follower.step`` as a module with tensor-only outputs (what CUDA-graph capture needs)."""

    def __init__(self, model: Follower, with_env_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.with_env_mask = with_env_mask

    def forward(self, prev: torch.Tensor, pano: torch.Tensor, cand: torch.Tensor, cand_mask: torch.Tensor,
                h: torch.Tensor, c: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor,
                env_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        logits, h, c, h_tilde, _, _ = self.model.step(prev, pano, cand, cand_mask, h, c, ctx, ctx_mask,
                                                      env_mask if self.with_env_mask else None)
        return logits, h, c, h_tilde


def capture_steps(model: Follower, batch: int, candidates: int, instr_len: int, steps: int,
                  with_env_mask: bool, device: torch.device) -> list[Callable[..., tuple[torch.Tensor, ...]]]:
    """One CUDA-graphed decoder step (forward + backward) per rollout step.

    Each graphed callable keeps static input/output buffers and may run once per backward,
    so a rollout of ``steps`` steps needs ``steps`` of them (they share one memory pool).
    Shapes are static: full-width instructions, full batches, all ``max_actions`` steps.
    """
    if device.type != "cuda":
        raise DataError("cuda_graphs needs a CUDA device (--device cuda); the CPU path runs eagerly")
    f, hdim = model.view_dim, model.hidden_dim

    def sample() -> tuple[torch.Tensor, ...]:
        args = [torch.zeros(batch, ANGLE_FEATURE_SIZE, device=device),
                torch.randn(batch, 36, f, device=device), torch.randn(batch, candidates, f, device=device),
                torch.ones(batch, candidates, dtype=torch.bool, device=device),
                torch.randn(batch, hdim, device=device, requires_grad=True),
                torch.randn(batch, hdim, device=device, requires_grad=True),
                torch.randn(batch, instr_len, hdim, device=device, requires_grad=True),
                torch.ones(batch, instr_len, dtype=torch.bool, device=device)]
        if with_env_mask:
            args.append(torch.ones(batch, model.feature_dim, device=device))
        return tuple(args)

    mods = tuple(StepModule(model, with_env_mask) for _ in range(steps))
    graphed = torch.cuda.make_graphed_callables(mods, tuple(sample() for _ in range(steps)),
                                                allow_unused_input=True)
    return list(graphed)


def il_rollout(model: Follower, env: RolloutEnv, idx: torch.Tensor, tokens: torch.Tensor,
               max_actions: int, env_mask: torch.Tensor | None = None, steps: StepFns | None = None) -> torch.Tensor:
    """Teacher-forced rollout -> EnvDrop's ML loss (sum over steps of the batch-mean CE)."""
    mask = tokens != 0
    ctx, h, c = model.encode(tokens, mask)
    obs = env.reset(idx)
    prev = tokens.new_zeros(tokens.shape[0], ANGLE_FEATURE_SIZE, dtype=torch.float32)
    ended = obs.done.clone()
    loss = ctx.new_zeros(())
    for t in range(max_actions):
        logits, h, c, _ = _decode(model, steps, t, prev, obs, h, c, ctx, mask, env_mask)
        active = (~ended).float()
        ce = F.cross_entropy(logits, obs.teacher, reduction="none")
        loss = loss + (ce * active).sum() / active.sum().clamp(min=1.0)
        action = torch.where(ended, obs.stop, obs.teacher)
        prev = chosen_angle(obs.cand, action, model.feature_dim)
        ended = ended | (action == obs.stop)
        obs, _ = env.step(action)
        if not _any_running(ended):
            break
    return loss


def rl_rollout(model: Follower, env: RolloutEnv, idx: torch.Tensor, tokens: torch.Tensor,
               max_actions: int, gamma: float, entropy_weight: float, env_mask: torch.Tensor | None = None,
               steps: StepFns | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sampled rollout -> A2C loss (policy, value, entropy), normalised by valid steps."""
    mask = tokens != 0
    ctx, h, c = model.encode(tokens, mask)
    obs = env.reset(idx)
    b = tokens.shape[0]
    prev = torch.zeros(b, ANGLE_FEATURE_SIZE, device=tokens.device)
    ended = obs.done.clone()
    logps, ents, values, rewards, masks = [], [], [], [], []
    for t in range(max_actions):
        logits, h, c, h_tilde = _decode(model, steps, t, prev, obs, h, c, ctx, mask, env_mask)
        logp_all = F.log_softmax(logits, 1)
        probs = logp_all.exp()
        action = torch.multinomial(probs, 1).squeeze(1)
        action = torch.where(ended, obs.stop, action)
        logps.append(logp_all.gather(1, action.view(-1, 1)).squeeze(1))
        ents.append(-(probs * logp_all).sum(1))
        values.append(model.value(h_tilde))
        masks.append((~ended).float())
        prev = chosen_angle(obs.cand, action, model.feature_dim)
        ended = ended | (action == obs.stop)
        obs, reward = env.step(action)
        rewards.append(reward * masks[-1])
        if not _any_running(ended):
            break
    # bootstrap episodes still running after the last step with the critic
    with torch.no_grad():
        _, _, _, h_last, _, _ = model.step(prev, obs.pano, obs.cand, obs.cand_mask, h, c, ctx, mask, env_mask)
        ret = model.value(h_last) * (~ended).float()
    loss = ctx.new_zeros(())
    total = ctx.new_zeros(())
    for t in reversed(range(len(rewards))):
        ret = rewards[t] + gamma * ret * masks[t]  # masks[t]=0 -> return resets for finished episodes
        adv = (ret - values[t]).detach()
        loss = loss + (-logps[t] * adv * masks[t]).sum()
        loss = loss + (((ret - values[t]) ** 2) * masks[t]).sum() * 0.5
        loss = loss - (entropy_weight * ents[t] * masks[t]).sum()
        total = total + masks[t].sum()
    stats = {"reward": torch.stack(rewards).sum(0).mean().detach(),
             "entropy": (torch.stack(ents) * torch.stack(masks)).sum().detach() / total.clamp(min=1)}
    return loss / total.clamp(min=1.0), stats


@torch.no_grad()
def greedy_paths(model: Follower, env: RolloutEnv, idx: torch.Tensor, tokens: torch.Tensor,
                 max_actions: int) -> list[list[str]]:
    """Greedy decoding (argmax over unmasked candidates) -> viewpoint paths of the batch."""
    mask = tokens != 0
    ctx, h, c = model.encode(tokens, mask)
    obs = env.reset(idx)
    prev = torch.zeros(tokens.shape[0], ANGLE_FEATURE_SIZE, device=tokens.device)
    ended = obs.done.clone()
    for _ in range(max_actions):
        logits, h, c, _, _, _ = model.step(prev, obs.pano, obs.cand, obs.cand_mask, h, c, ctx, mask)
        action = torch.where(ended, obs.stop, logits.argmax(1))
        prev = chosen_angle(obs.cand, action, model.feature_dim)
        ended = ended | (action == obs.stop)
        obs, _ = env.step(action)
        if not bool(ended.all()):  # evaluation: one sync per step is acceptable here
            continue
        break
    return env.paths()


@torch.no_grad()
def teacher_trajectories(env: RolloutEnv, idx: torch.Tensor, max_actions: int,
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Follow the teacher; collect the speaker's input.

    Returns ``actions [B, T, F]`` (chosen candidate feature per step, STOP = zeros),
    ``panos [B, T, 36, F]`` and ``step_mask [B, T]`` (True up to and including STOP).
    """
    obs = env.reset(idx)
    ended = obs.done.clone()
    acts, panos, masks = [], [], []
    for _ in range(max_actions):
        action = torch.where(ended, obs.stop, obs.teacher)
        acts.append(chosen_view(obs.cand, action))
        panos.append(as_joined(obs.pano))
        masks.append(~ended)
        ended = ended | (action == obs.stop)
        obs, _ = env.step(action)
        if bool(ended.all()):  # speaker data: one sync per step (not a follower rollout)
            break
    return torch.stack(acts, 1), torch.stack(panos, 1), torch.stack(masks, 1)


# ------------------------------------------------------------------------------------------
# The run


@dataclass
class TrainResult:
    """What a finished (or interrupted) run produced."""

    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path
    iterations: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> summary
    best_score: float | None = None
    interrupted: bool = False
    curve_png: Path | None = None


#: what the progress lines show and curves.png draws (the ones a run has; others are skipped)
REPORT_KEYS = ("loss", "il_loss", "rl_loss", "aug_il_loss", "aug_rl_loss", "speaker_loss", "reward",
               "val_seen/success", "val_seen/spl", "val_unseen/success", "val_unseen/spl", "val_unseen/ndtw",
               "val_seen/bleu", "val_unseen/bleu")


class Run(Task):
    """One VLN training run as a :class:`vln_clip.train.Task`: data, models, environments, losses.

    The run's updates go through :class:`vln_clip.train.Trainer` (one RMSprop optimizer for
    the follower, Adam for the speaker; gradient clipping ``grad_clip``; constant learning
    rates as in EnvDrop); ``follower_iteration()`` / ``speaker_iteration()`` do one such
    update directly (tests, benchmarks), :func:`train` runs the whole loop. Training batches
    come from :class:`vln_clip.train.DataOrder` objects over one generator seeded with
    ``cfg.seed`` (real and augmented batches draw from the same stream).
    """

    supports_distributed = False  # the follower is driven through encode/step, not forward
    checkpoint_converters = CONVERTERS

    def __init__(self, cfg: TrainConfig, resume: dict[str, Any] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.paths = resolve_paths(cfg)
        self.graphs = GraphStore(self.paths.connectivity)
        self.episodes = {s: read_split(p, cfg) for s, p in self.paths.splits.items()}
        if not self.episodes["train"]:
            raise DataError(f"{self.paths.splits['train']}: no training episodes"
                            + (f" in language {cfg.language}" if cfg.dataset == "rxr" else ""))
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.vocab = Vocab(resume["extra"]["vocab"]) if resume else build_vocab(self.episodes["train"], cfg)
        self.features = self._open_features()
        self.feature_dim = 0 if self.features is None else int(self.features.dim)
        if cfg.eval_max_episodes:
            for s in ("val_seen", "val_unseen"):
                self.episodes[s] = self.episodes[s][: cfg.eval_max_episodes]
        self.tokens = {s: encode_instructions(eps, self.vocab, cfg.max_instr_len, cfg.tokenizer_dataset).to(self.device)
                       for s, eps in self.episodes.items()}
        # lengths stay on the CPU: trimming a batch to its longest instruction costs no device sync
        self.lengths = {s: (t != self.vocab.pad).sum(1).cpu() for s, t in self.tokens.items()}
        self.envs: dict[str, RolloutEnv] = {}
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.train_order = DataOrder(len(self.episodes["train"]), cfg.batch_size, generator=self.order_gen)
        self.follower: Follower | None = None
        self.speaker: Speaker | None = None
        self.aug: list[Episode] = []
        self._graphed: dict[str, list[Callable[..., tuple[torch.Tensor, ...]]]] = {}
        self._trainer: Trainer | None = None
        if cfg.cuda_graphs and self.device.type != "cuda":
            raise DataError("cuda_graphs needs a CUDA device (--device cuda); on CPU the rollouts run eagerly")
        self._build_models()

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "speaker" if self.cfg.agent == "speaker" else "follower"

    # -- set-up ----------------------------------------------------------------------------
    def _open_features(self) -> Any:
        if self.paths.features is None:
            return None
        store = FeatureStore(self.paths.features)
        enc = store.encoder
        if enc not in ("unknown", self.cfg.encoder) and not self.cfg.features:
            raise DataError(f"{self.paths.features}: made by encoder {enc}, not {self.cfg.encoder}; "
                            "extract features for this encoder or pass --encoder " + enc)
        return store

    def follower_model(self) -> Follower:
        c = self.cfg
        drop = c.bt_feat_dropout if c.agent == "bt" else c.feat_dropout
        return Follower(len(self.vocab), self.feature_dim, c.embed_dim, c.hidden_dim, c.angle_embed_dim,
                        c.dropout, drop, self.vocab.pad).to(self.device)

    def speaker_model(self) -> Speaker:
        c = self.cfg
        return Speaker(len(self.vocab), self.feature_dim, c.embed_dim, c.hidden_dim, c.dropout,
                       c.feat_dropout, self.vocab.pad).to(self.device)

    def _build_models(self) -> None:
        c = self.cfg
        if c.agent in ("follower", "bt"):
            self.follower = self.follower_model()
        if c.agent in ("speaker", "bt"):
            self.speaker = self.speaker_model()
        if c.agent == "bt":
            self._load_bt_inputs()

    def _load_bt_inputs(self) -> None:
        c = self.cfg
        if not c.speaker_checkpoint or not c.aug_paths:
            raise DataError("back-translation needs --speaker-checkpoint (a trained speaker), --aug-paths "
                            "(from `vln-clip data aug-paths`) and normally --follower-checkpoint (the "
                            "follower's best.pt)")
        sp = load_checkpoint(c.speaker_checkpoint, self.device)
        if sp["extra"]["vocab"] != self.vocab.itos:
            # the follower must read the speaker's words: adopt the speaker's vocabulary
            self.vocab = Vocab(sp["extra"]["vocab"])
            self.tokens = {s: encode_instructions(e, self.vocab, c.max_instr_len, c.tokenizer_dataset).to(self.device)
                           for s, e in self.episodes.items()}
            self.lengths = {s: (t != self.vocab.pad).sum(1).cpu() for s, t in self.tokens.items()}
            self.follower = self.follower_model()
            self.speaker = self.speaker_model()
        assert self.speaker is not None and self.follower is not None
        self.speaker.load_state_dict(sp["models"]["speaker"])
        self.speaker.eval()
        if c.follower_checkpoint:
            fo = load_checkpoint(c.follower_checkpoint, self.device)
            if fo["extra"]["vocab"] != self.vocab.itos:
                raise DataError(f"{c.follower_checkpoint}: its vocabulary differs from the speaker's "
                                f"({c.speaker_checkpoint}); train both on the same dataset and split")
            self.follower.load_state_dict(fo["models"]["follower"])
        self.aug = read_aug_paths(c.aug_paths)
        known = set(self.graphs.scans)
        self.aug = [e for e in self.aug if e.scan in known]
        if not self.aug:
            raise DataError(f"{c.aug_paths}: no augmented path is in a scan of {self.paths.connectivity}")
        self.aug_order = DataOrder(len(self.aug), c.batch_size, generator=self.order_gen)

    def env(self, split: str) -> RolloutEnv:
        if split not in self.envs:
            eps = self.aug if split == "aug" else self.episodes[split]
            self.envs[split] = RolloutEnv(self.graphs, eps, self.features, self.vocab, self.cfg.batch_size,
                                          self.device, self.cfg.max_actions, self.cfg.max_instr_len)
        return self.envs[split]

    # -- the Task interface ----------------------------------------------------------------
    def models(self) -> dict[str, torch.nn.Module]:
        """The trained models: the follower (follower, bt) or the speaker; bt's speaker is frozen."""
        out: dict[str, torch.nn.Module] = {}
        if self.follower is not None:
            out["follower"] = self.follower
        if self.speaker is not None and self.cfg.agent != "bt":
            out["speaker"] = self.speaker
        return out

    def optimizers(self) -> dict[str, tuple[Any, OptimizerConfig]]:
        """EnvDrop: RMSprop (lr 1e-4) for the follower, Adam for the speaker, both clipped at 40."""
        c = self.cfg
        if c.agent == "speaker":
            assert self.speaker is not None
            return {"speaker": (self.speaker.parameters(),
                                OptimizerConfig("adam", lr=c.speaker_lr, grad_clip=c.grad_clip))}
        assert self.follower is not None
        return {"follower": (self.follower.parameters(),
                             OptimizerConfig("rmsprop", lr=c.lr, grad_clip=c.grad_clip))}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        return self.speaker_loss() if self.cfg.agent == "speaker" else self.follower_loss()

    def extra_state(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab.itos), "feature_dim": self.feature_dim}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("vocab") is not None and list(state["vocab"]) != list(self.vocab.itos):
            raise DataError("the checkpoint's vocabulary differs from this run's; resume with the same "
                            "training split (the vocabulary is rebuilt from it) or build the Run from the checkpoint")

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()

    def loop_config(self, progress: bool = True) -> LoopConfig:
        """The loop settings of this run (its TrainConfig's schedule, selection, output)."""
        c = self.cfg
        key = "bleu" if c.agent == "speaker" else c.selection_metric
        # seed=None: the run seeded itself when built (model init); bf16=False keeps the VLN
        # numbers (and CUDA-graph capture) in fp32 as in EnvDrop.
        return LoopConfig(out_dir=c.out_dir, iters=c.iters, eval_every=c.eval_every, log_every=c.log_every,
                          save_every=c.save_every, seed=None, device=c.device, best_metric=f"val_unseen/{key}",
                          best_mode="max", bf16=False, progress="auto" if progress else "off",
                          report_keys=REPORT_KEYS)

    def trainer(self, loop: LoopConfig | None = None) -> Trainer:
        """The run's :class:`vln_clip.train.Trainer` (built on first use)."""
        if self._trainer is None:
            self._trainer = Trainer(self, loop or self.loop_config(progress=False))
        return self._trainer

    @property
    def iteration(self) -> int:
        return self.trainer().step

    def state(self) -> dict[str, Any]:
        """The checkpoint payload of the run as it is now."""
        return self.trainer().state_dict()

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.trainer().load_state_dict(ckpt)

    # -- batches ---------------------------------------------------------------------------
    def next_batch(self, n: int | None = None) -> torch.Tensor:
        """Next ``batch_size`` training indices (CPU); reshuffled every epoch from the run's generator."""
        return self.train_order.next()

    def aug_batch(self) -> torch.Tensor:
        return self.aug_order.next()

    def batch_tokens(self, split: str, idx: torch.Tensor) -> torch.Tensor:
        """Instruction ids of ``idx`` (CPU indices), cut to the batch's longest instruction.

        Cutting saves the encoder most of the 80/160 padded steps; with CUDA graphs the shapes
        must stay static, so the full width is kept.
        """
        tok = self.tokens[split][idx.to(self.device)]
        if self.cfg.cuda_graphs:
            return tok
        return tok[:, : int(self.lengths[split][idx].max())]

    # -- losses of one update --------------------------------------------------------------
    def follower_loss(self) -> dict[str, torch.Tensor]:
        """IL (+ A2C) on real batches (+ the augmented batch for bt); ``loss`` is their weighted sum."""
        c, m = self.cfg, self.follower
        assert m is not None
        env = self.env("train")
        idx = self.next_batch()
        il = il_rollout(m, env, idx.to(self.device), self.batch_tokens("train", idx), c.max_actions,
                        steps=self.graphed("il", len(idx), env))
        loss = c.ml_weight * il
        logs = {"il_loss": il}
        if c.use_rl:
            idx2 = self.next_batch()
            rl, stats = rl_rollout(m, env, idx2.to(self.device), self.batch_tokens("train", idx2),
                                   c.max_actions, c.gamma, c.entropy_weight, steps=self.graphed("rl", len(idx2), env))
            loss = loss + rl
            logs.update(rl_loss=rl, **stats)
        if c.agent == "bt":
            aug_loss, aug_logs = self.aug_loss()
            loss = loss + aug_loss
            logs.update(aug_logs)
        logs["loss"] = loss
        return logs

    def follower_iteration(self) -> dict[str, float]:
        """One follower update (through the run's Trainer); the logged floats."""
        return self.trainer().update()

    def aug_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Augmented batch: speaker instructions + follower losses under one environmental mask."""
        c, m, sp = self.cfg, self.follower, self.speaker
        assert m is not None and sp is not None
        env = self.env("aug")
        idx = self.aug_batch()
        dev_idx = idx.to(self.device)
        env_mask = m.env_dropout_mask(len(idx), c.bt_feat_dropout, device=self.device)
        acts, panos, smask = teacher_trajectories(env, dev_idx, c.max_actions)
        words = sp.generate(acts, panos, smask, self.vocab.bos, self.vocab.eos, c.max_decode_len, env_mask)
        width = c.max_instr_len if c.cuda_graphs else min(c.max_instr_len, max(len(w) for w in words) + 2)
        tokens = ids_to_tensor(words, self.vocab, width).to(self.device)
        il = il_rollout(m, env, dev_idx, tokens, c.max_actions, env_mask,
                        steps=self.graphed("aug_il", len(idx), env, env_mask is not None))
        loss = c.bt_ml_weight * il
        logs: dict[str, torch.Tensor] = {"aug_il_loss": il}
        if c.use_rl:
            rl, _ = rl_rollout(m, env, dev_idx, tokens, c.max_actions, c.gamma, c.entropy_weight, env_mask,
                               steps=self.graphed("aug_rl", len(idx), env, env_mask is not None))
            loss = loss + rl
            logs["aug_rl_loss"] = rl
        return loss, logs

    def graphed(self, kind: str, batch: int, env: RolloutEnv,
                with_env_mask: bool = False) -> list[Callable[..., tuple[torch.Tensor, ...]]] | None:
        """The captured decoder steps of one rollout kind (``cuda_graphs`` only; built once)."""
        if not self.cfg.cuda_graphs:
            return None
        if kind not in self._graphed:
            assert self.follower is not None
            self._graphed[kind] = capture_steps(self.follower, batch, int(env.env.K), self.cfg.max_instr_len,
                                                self.cfg.max_actions, with_env_mask, self.device)
        return self._graphed[kind]

    def speaker_loss(self) -> dict[str, torch.Tensor]:
        """Teacher-forced cross-entropy of the speaker on a batch of teacher paths."""
        sp = self.speaker
        assert sp is not None
        idx = self.next_batch()
        acts, panos, smask = teacher_trajectories(self.env("train"), idx.to(self.device), self.cfg.max_actions)
        loss = sp.loss(acts, panos, smask, self.batch_tokens("train", idx), self.vocab.pad)
        return {"speaker_loss": loss, "loss": loss}

    def speaker_iteration(self) -> dict[str, float]:
        """One speaker update (through the run's Trainer); the logged floats."""
        return self.trainer().update()

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, split: str | None = None) -> dict[str, float]:  # type: ignore[override]
        """Greedy follower metrics (eval.metrics) or speaker BLEU; RNG untouched.

        ``split`` given: that split's metrics (``success``, ``spl``, ... or ``bleu``). None (what
        the training loop calls): both validation splits as ``val_seen/success``, ...
        """
        if split is None:
            return {f"{s}/{k}": v for s in ("val_seen", "val_unseen") for k, v in self.evaluate(s).items()}
        with fork_rng(self.device):
            if self.cfg.agent == "speaker":
                return {"bleu": self.speaker_bleu(split)}
            return self.follower_metrics(split)

    def follower_metrics(self, split: str) -> dict[str, float]:
        m = self.follower
        assert m is not None
        m.eval()
        eps = self.episodes[split]
        env = self.env(split)
        paths: dict[str, list[str]] = {}
        for start in range(0, len(eps), self.cfg.batch_size):
            idx = torch.arange(start, min(start + self.cfg.batch_size, len(eps)))
            dev = idx.to(self.device)
            for i, p in zip(idx.tolist(), greedy_paths(m, env, dev, self.batch_tokens(split, idx), self.cfg.max_actions)):
                paths[eps[i].instr_id] = p
        summary = score_paths(paths, eps, self.graphs).summary(by_language=False)
        return {k: float(v) for k, v in summary.items() if isinstance(v, (int, float))}

    def speaker_bleu(self, split: str) -> float:
        sp = self.speaker
        assert sp is not None
        sp.eval()
        eps = self.episodes[split]
        # one hypothesis per path, all of its instructions as references
        first: dict[str, int] = {}
        refs: dict[str, list[list[str]]] = {}
        for i, e in enumerate(eps):
            first.setdefault(e.path_id, i)
            refs.setdefault(e.path_id, []).append(tokenize(e.instruction, e.language, self.cfg.tokenizer_dataset))
        path_ids = list(first)
        hyps: list[list[str]] = []
        env = self.env(split)
        for start in range(0, len(path_ids), self.cfg.batch_size):
            idx = torch.tensor([first[p] for p in path_ids[start: start + self.cfg.batch_size]])
            acts, panos, smask = teacher_trajectories(env, idx.to(self.device), self.cfg.max_actions)
            for row in sp.generate(acts, panos, smask, self.vocab.bos, self.vocab.eos, self.cfg.max_decode_len):
                hyps.append(self.vocab.decode(row))
        return corpus_bleu(hyps, [refs[p] for p in path_ids])


def _by_split(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"val_unseen/success": v}`` -> ``{"val_unseen": {"success": v}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, v in metrics.items():
        split, _, name = key.partition("/")
        out.setdefault(split, {})[name] = v
    return out


def train(config: TrainConfig, resume: str | os.PathLike[str] | bool | None = None,
          progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train ``config.agent`` for ``config.iters`` iterations in total (counting resumed ones).

    ``resume``: a checkpoint path, or True for ``out_dir/last.pt`` (old ``vln-clip-agent-1``
    files resume too). Through :meth:`vln_clip.train.Trainer.fit`: ``last.pt`` every
    ``save_every`` iterations and on Ctrl-C, ``best.pt`` when the val-unseen selection metric
    (SR for R2R/synthetic, nDTW for RxR, BLEU for the speaker) improves, TensorBoard scalars
    under ``out_dir/tb``, ``curves.png``, progress on stderr (a bar on a terminal, plain lines
    otherwise). ``stop_after`` ends the call after that many iterations of this call.
    """
    cfg = config
    out = Path(cfg.out_dir)
    ckpt = None
    rpath: Path | None = None
    if resume:
        rpath = out / "last.pt" if resume is True else Path(resume)
        ckpt = load_checkpoint(rpath, cfg.device)
        saved = TrainConfig.from_dict(ckpt["config"])
        # the saved run defines the model; the caller may extend iters and change logging/paths
        for keep in ("iters", "log_every", "eval_every", "save_every", "out_dir", "device", "data_dir", "features"):
            setattr(saved, keep, getattr(cfg, keep))
        cfg = saved
    run = Run(cfg, ckpt)
    trainer = run.trainer(run.loop_config(progress))
    if ckpt is not None:
        trainer.load_state_dict(ckpt, str(rpath))
    res = trainer.fit(stream=sys.stderr, stop_after=stop_after)
    return TrainResult(res.out_dir, res.best_checkpoint, res.last_checkpoint, res.step, _by_split(res.metrics),
                       res.best_score, res.interrupted, res.curves)
