"""The random parts of the pre-training inputs: word masking, mismatched captions, grid patches.

All three draw from an explicit :class:`torch.Generator`, so a run's inputs depend on its seed
and on the generator state saved in checkpoints (bit-exact resume), never on the global RNG.

- :func:`mask_words`: BERT/LXMERT masked language modelling over *words*: each word is chosen
  with probability 0.15 and all of its word pieces are then replaced by ``[MASK]`` (80%), by
  random tokens (10%) or kept (10%); the labels hold the original ids at the chosen pieces and
  ``IGNORE`` elsewhere.
- :func:`mismatch_indices`: image-text matching as LXMERT: with probability 0.5 an example's
  sentence is replaced by the sentence of another example showing a different image.
- :func:`sample_patches`: PixelBERT's random subset of grid cells per image (100 during
  pre-training), which regularises and cuts the sequence length; fine-tuning keeps all cells.
"""

from __future__ import annotations

from typing import Sequence

import torch

IGNORE = -100  # label of positions without a target (what torch's cross entropy skips)
MASK_PROB = 0.15
MASK_SPLIT = (0.8, 0.1, 0.1)  # [MASK] / random token / keep, for a chosen word
MISMATCH_PROB = 0.5
PRETRAIN_PATCHES = 100


def mask_words(input_ids: torch.Tensor, word_ids: torch.Tensor, mask_id: int, candidate_ids: torch.Tensor,
               generator: torch.Generator, prob: float = MASK_PROB,
               split: Sequence[float] = MASK_SPLIT) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-word masking of a padded batch.

    ``input_ids``/``word_ids``: ``[B, L]``; ``word_ids`` is the word index of each token within its
    sentence and ``-1`` at ``[CLS]``, ``[SEP]`` and padding (never masked). ``candidate_ids``: the
    ids a "random token" replacement draws from (the vocabulary without special tokens).
    Returns ``(masked_ids, labels)``.
    """
    b, length = input_ids.shape
    is_word = word_ids >= 0
    n_words = int(word_ids.max().item()) + 1 if is_word.any() else 0
    if n_words == 0:
        return input_ids.clone(), torch.full_like(input_ids, IGNORE)
    # One draw per (sentence, word): every piece of a word shares the word's decision.
    chosen_u = torch.rand((b, n_words), generator=generator)
    action_u = torch.rand((b, n_words), generator=generator)
    random_tok = candidate_ids[torch.randint(len(candidate_ids), (b, length), generator=generator)]
    w = word_ids.clamp(min=0)
    chosen = (chosen_u.gather(1, w) < prob) & is_word
    action = action_u.gather(1, w)
    to_mask = chosen & (action < split[0])
    to_random = chosen & (action >= split[0]) & (action < split[0] + split[1])
    out = input_ids.clone()
    out[to_mask] = mask_id
    out[to_random] = random_tok[to_random]
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    return out, labels


def mismatch_indices(image_keys: Sequence[str], batch: Sequence[int], generator: torch.Generator,
                     prob: float = MISMATCH_PROB, max_tries: int = 10) -> tuple[list[int], torch.Tensor]:
    """For each example index in ``batch``, the index whose *sentence* it is paired with.

    With probability ``prob`` that is a uniformly drawn example of the whole dataset showing a
    different image (redrawn up to ``max_tries`` times; a dataset of one image cannot mismatch),
    else the example itself. Returns ``(sentence_indices, matched)`` with ``matched`` a ``[B]``
    float tensor (1 = the true caption), the ITM target.
    """
    n = len(image_keys)
    swap = torch.rand(len(batch), generator=generator) < prob
    picks = torch.randint(n, (len(batch), max_tries), generator=generator)
    sentence_of: list[int] = []
    matched = torch.ones(len(batch))
    for i, idx in enumerate(batch):
        chosen = idx
        if bool(swap[i]):
            for j in picks[i].tolist():
                if image_keys[j] != image_keys[idx]:
                    chosen = j
                    break
        sentence_of.append(chosen)
        matched[i] = float(chosen == idx)
    return sentence_of, matched


def sample_patches(valid: torch.Tensor, n: int | None, generator: torch.Generator | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick grid cells per image: ``n`` distinct valid cells at random, or all of them.

    ``valid``: ``[B, h, w]`` bool (cells inside each image; images of a batch are padded to the
    largest). Returns ``(index, keep)``: ``index`` ``[B, K]`` flat cell indices (row = index // w,
    column = index % w) and ``keep`` ``[B, K]`` bool, false for padding where an image has fewer
    than ``K`` valid cells. ``n=None`` keeps every cell in raster order (fine-tuning).
    """
    b, h, w = valid.shape
    flat = valid.reshape(b, h * w)
    if n is None:
        index = torch.arange(h * w).expand(b, h * w).clone()
        return index, flat.clone()
    k = min(n, h * w)
    scores = torch.rand((b, h * w), generator=generator)
    scores = torch.where(flat, scores, torch.full_like(scores, -1.0))  # invalid cells sort last
    index = scores.topk(k, dim=1).indices
    keep = flat.gather(1, index)
    return index, keep
