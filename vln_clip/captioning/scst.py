"""Self-critical sequence training (Rennie et al. 2017) with the CIDEr-D reward.

REINFORCE with a baseline: for sampled captions ``w^s`` of an image,
``grad L = -(r(w^s) - b) * grad log p(w^s)``. Baselines:

* ``mean`` (default; Luo 2020, "A Better Variant of Self-Critical Sequence Training", the
  "new self-critical" that CLIP-ViL follows): 5 samples per image, each sample's baseline is
  the mean reward of the *other* 4 samples of the same image (no extra decoding, and the
  baseline does not depend on the sample it judges, so the estimate stays unbiased);
* ``greedy`` (the original SCST): the reward of the greedy caption of the same image.

The loss is averaged over the counted tokens of all samples (self-critical.pytorch's
``RewardCriterion``). The reward is CIDEr-D against the image's training references with
the document frequencies of the whole training set (:class:`vln_clip.eval.cider.CiderD`,
built once); like self-critical.pytorch, an ``<eos>`` word is appended to candidates and
references, so ending a caption early or late is part of what is rewarded.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch

from vln_clip.eval.cider import CiderD

EOS_WORD = "<eos>"


class CiderReward:
    """CIDEr-D of decoded captions against cached training references."""

    def __init__(self, refs: Mapping[Hashable, Sequence[str]], append_eos: bool = True) -> None:
        self.append_eos = append_eos
        tail = f" {EOS_WORD}" if append_eos else ""
        self.scorer = CiderD({k: [r + tail for r in v] for k, v in refs.items()})

    def __call__(self, captions: Sequence[str], keys: Sequence[Hashable]) -> np.ndarray:
        tail = f" {EOS_WORD}" if self.append_eos else ""
        return self.scorer.scores([c + tail for c in captions], keys)


def mean_of_others(rewards: torch.Tensor) -> torch.Tensor:
    """Baseline ``[B, n]``: for each sample, the mean reward of the other ``n - 1`` samples."""
    n = rewards.shape[1]
    if n < 2:
        raise ValueError("the mean-of-others baseline needs at least 2 samples per image")
    return (rewards.sum(dim=1, keepdim=True) - rewards) / (n - 1)


def scst_loss(token_logp: torch.Tensor, mask: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
    """``-sum(advantage * log p(token)) / number of counted tokens`` over a batch of samples."""
    return -(advantage.detach()[:, None] * token_logp * mask).sum() / mask.sum().clamp(min=1)
