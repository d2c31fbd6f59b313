"""Using a trained follower: batch predictions for evaluation, a step-by-step policy for rollouts.

* :func:`predict_trajectories` runs greedy decoding over a split file with the batched
  environment and returns R2R-format predictions ``{"instr_id", "trajectory": [[viewpoint,
  heading, elevation], ...]}`` (start state + one entry per move), what ``vln-clip eval`` scores
  and ``vln-clip submit`` exports.
* :func:`load_policy` returns a :class:`FollowerPolicy` that acts on single
  :class:`vln_clip.envs.NavEnv` observations: ``reset(obs)`` encodes the instruction, ``step(obs)``
  returns the greedy action with the candidate probabilities and the attention over words and
  over the 36 views, ``overrule(action)`` tells it that someone else chose the step (a person or
  the teacher in ``vln-clip rollout``), so the next previous-action input is the one really taken.

Instruction ids: the policy reads ``obs["instruction"]`` as ids of *its* vocabulary, so create the
environment with ``vocab=policy.vocab`` (and ``max_instr_len=policy.max_instr_len``); or pass the
raw text to ``reset(obs, instruction=...)`` and the policy tokenizes it itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from vln_clip.episodes import Episode, read_episodes
from vln_clip.envs.feature_table import Views
from vln_clip.errors import DataError
from vln_clip.features.store import FeatureStore
from vln_clip.geometry import ANGLE_FEATURE_SIZE
from vln_clip.graph import GraphStore
from vln_clip.tokenizers import Vocab, tokenize

from .checkpoint import load_checkpoint
from .config import TrainConfig
from .follower import Follower
from .trainer import RolloutEnv, chosen_angle, encode_instructions


def _follower_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device) -> tuple[Follower, TrainConfig, Vocab]:
    if "follower" not in ckpt.get("models", {}):
        raise DataError("this checkpoint holds a speaker, not a follower; pass a follower or "
                        "back-translation checkpoint (DIR/best.pt of `vln-clip train --agent follower|bt`)")
    cfg = TrainConfig.from_dict(ckpt["config"])
    vocab = Vocab(ckpt["extra"]["vocab"])
    model = Follower(len(vocab), int(ckpt["extra"]["feature_dim"]), cfg.embed_dim, cfg.hidden_dim, cfg.angle_embed_dim,
                     cfg.dropout, cfg.feat_dropout, vocab.pad)
    model.load_state_dict(ckpt["models"]["follower"])
    model.to(device).eval()
    return model, cfg, vocab


def _open_features(features: Any, feature_dim: int, checkpoint: Any) -> Any:
    if feature_dim == 0:
        return None
    if features is None:
        raise DataError(f"{checkpoint}: this follower was trained with {feature_dim}-d visual features; "
                        "pass the same encoder's feature store (features=... / --features FILE.h5)")
    if isinstance(features, (str, os.PathLike)):
        features = FeatureStore(features)
    if int(features.dim) != feature_dim:
        raise DataError(f"{getattr(features, 'path', features)}: features have dimension {features.dim} but "
                        f"{checkpoint} was trained on {feature_dim}-d features; use the same encoder")
    return features


@torch.no_grad()
def predict_trajectories(checkpoint: str | os.PathLike[str], split_file: str | os.PathLike[str],
                         connectivity_dir: str | os.PathLike[str], features: Any = None, batch_size: int = 64,
                         device: str = "cpu", episodes: Sequence[Episode] | None = None) -> list[dict[str, Any]]:
    """Greedy trajectories of a follower for every instruction of ``split_file`` (R2R format)."""
    ckpt = load_checkpoint(checkpoint, device)
    model, cfg, vocab = _follower_from_checkpoint(ckpt, device)
    feats = _open_features(features, int(ckpt["extra"]["feature_dim"]), checkpoint)
    if episodes is None:
        langs = None if cfg.dataset != "rxr" or cfg.language == "multi" else [cfg.language]
        episodes = read_episodes(split_file, langs)
    episodes = list(episodes)
    if not episodes:
        raise DataError(f"{split_file}: no episodes to predict")
    dev = torch.device(device)
    tokens = encode_instructions(episodes, vocab, cfg.max_instr_len, cfg.tokenizer_dataset).to(dev)
    env = RolloutEnv(GraphStore(connectivity_dir), episodes, feats, vocab, batch_size, dev, cfg.max_actions,
                     cfg.max_instr_len)
    out: list[dict[str, Any]] = []
    for start in range(0, len(episodes), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(episodes)))
        tok = tokens[idx.to(dev)]
        mask = tok != 0
        ctx, h, c = model.encode(tok, mask)
        obs = env.reset(idx)
        prev = torch.zeros(len(idx), ANGLE_FEATURE_SIZE, device=dev)
        ended = obs.done.clone()
        for _ in range(cfg.max_actions):
            logits, h, c, _, _, _ = model.step(prev, obs.pano, obs.cand, obs.cand_mask, h, c, ctx, mask)
            action = torch.where(ended, obs.stop, logits.argmax(1))
            prev = chosen_angle(obs.cand, action, model.feature_dim)
            ended = ended | (action == obs.stop)
            obs, _ = env.step(action)
            if bool(ended.all()):
                break
        for i, traj in zip(idx.tolist(), env.trajectories()):
            out.append({"instr_id": episodes[i].instr_id,
                        "trajectory": [[vp, float(hd), float(el)] for vp, hd, el in traj]})
    return out


# ------------------------------------------------------------------------------------------
# Single-episode policy


@dataclass
class PolicyStep:
    """One decision: the greedy action, probabilities over the K slots, attention weights."""

    action: int
    probs: np.ndarray  # [K]; 0 on padding slots
    word_attention: np.ndarray  # [L] over the instruction ids (BOS ... EOS)
    view_attention: np.ndarray  # [36]


class FollowerPolicy:
    """A follower acting on one :class:`vln_clip.envs.NavEnv` observation at a time."""

    def __init__(self, model: Follower, config: TrainConfig, vocab: Vocab, device: str | torch.device = "cpu") -> None:
        self.model = model.eval()
        self.config = config
        self.vocab = vocab
        self.device = torch.device(device)
        self.max_instr_len = config.max_instr_len
        self.feature_dim = model.feature_dim
        self._state: tuple[torch.Tensor, ...] | None = None
        self._last_cand: torch.Tensor | None = None

    def _t(self, x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device).unsqueeze(0)

    @torch.no_grad()
    def reset(self, obs: dict[str, Any], instruction: str | None = None, language: str = "en") -> None:
        """Encode the episode's instruction (``obs["instruction"]`` ids, or ``instruction`` text)."""
        if instruction is not None:
            ids = self.vocab.encode(tokenize(instruction, language, self.config.tokenizer_dataset), self.max_instr_len)
        else:
            ids = [int(i) for i in np.asarray(obs["instruction"]).reshape(-1)]
            while ids and ids[-1] == self.vocab.pad:
                ids.pop()
            if not ids:
                raise DataError("the observation has an empty instruction; pass instruction=<text> to reset()")
            if max(ids) >= len(self.vocab):
                raise DataError("the observation's instruction ids are not this policy's vocabulary: create the "
                                "environment with vocab=policy.vocab, or pass instruction=<text> to reset()")
        tok = torch.tensor([ids], dtype=torch.long, device=self.device)
        mask = tok != self.vocab.pad
        ctx, h, c = self.model.encode(tok, mask)
        prev = torch.zeros(1, ANGLE_FEATURE_SIZE, device=self.device)
        self._state = (ctx, mask, h, c, prev)
        self._last_cand = None

    @torch.no_grad()
    def step(self, obs: dict[str, Any]) -> PolicyStep:
        if self._state is None:
            raise RuntimeError("call reset(obs) at the start of the episode before step(obs)")
        ctx, mask, h, c, prev = self._state
        visual = np.asarray(obs["panorama"], dtype=np.float32)
        if visual.shape[-1] != self.feature_dim:
            raise DataError(f"observation features have dimension {visual.shape[-1]} but the policy was trained "
                            f"on {self.feature_dim}-d features (0 = vision-free); use the matching feature store")
        pano = Views(self._t(visual), self._t(obs["panorama_angles"]))
        cand = self._t(obs["candidates"])
        cmask = self._t(obs["candidate_mask"], torch.bool)
        logits, h, c, _, word_attn, view_attn = self.model.step(prev, pano, cand, cmask, h, c, ctx, mask)
        probs = torch.softmax(logits, 1)
        action = int(probs.argmax(1))
        self._last_cand = cand
        prev = chosen_angle(cand, torch.tensor([action], device=self.device), self.feature_dim)
        self._state = (ctx, mask, h, c, prev)
        return PolicyStep(action, probs[0].cpu().numpy(), word_attn[0].cpu().numpy(), view_attn[0].cpu().numpy())

    def overrule(self, action: int) -> None:
        """The step just decided was replaced by ``action``: remember its direction instead."""
        if self._state is None or self._last_cand is None:
            return
        ctx, mask, h, c, _ = self._state
        prev = chosen_angle(self._last_cand, torch.tensor([int(action)], device=self.device), self.feature_dim)
        self._state = (ctx, mask, h, c, prev)


def load_policy(checkpoint: str | os.PathLike[str], device: str = "cpu") -> FollowerPolicy:
    """A :class:`FollowerPolicy` from a follower (or back-translation) checkpoint."""
    ckpt = load_checkpoint(checkpoint, device)
    model, cfg, vocab = _follower_from_checkpoint(ckpt, device)
    return FollowerPolicy(model, cfg, vocab, device)
