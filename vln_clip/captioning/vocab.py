"""The caption vocabulary: words of the Karpathy training split seen at least 5 times.

Why this rule: it is the one of self-critical.pytorch's ``prepro_labels.py`` (and of
Karpathy's neuraltalk2) that every COCO captioning paper since uses (9,487 words on COCO);
rarer words become ``UNK``. Captions are the Karpathy ``tokens`` (lower-cased, punctuation
split off), cut to ``max_len`` words (16 in the recipe).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from vln_clip.errors import DataError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "UNK")
#: the recipe's vocabulary threshold and caption length
MIN_COUNT = 5
MAX_LEN = 16


@dataclass
class CaptionVocab:
    """Word <-> id; ids 0..3 are ``<pad>``, ``<bos>``, ``<eos>``, ``UNK``."""

    words: list[str]

    def __post_init__(self) -> None:
        if tuple(self.words[: len(SPECIALS)]) != SPECIALS:
            raise DataError(f"caption vocabulary must start with {SPECIALS}; rebuild it from the training split")
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[Sequence[str]], min_count: int = MIN_COUNT) -> "CaptionVocab":
        """From tokenised training captions: words with count >= ``min_count``, most frequent first."""
        counts = Counter(w for toks in captions for w in toks)
        kept = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                      key=lambda w: (-counts[w], w))
        if not kept:
            raise DataError(f"no training word occurs {min_count} times or more; lower min_count or check the split")
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Sequence[str], max_len: int = MAX_LEN) -> list[int]:
        """Word ids of the first ``max_len`` tokens (unknown words -> UNK), without BOS/EOS."""
        return [self.index.get(w, UNK) for w in tokens[:max_len]]

    def targets(self, captions: Sequence[Sequence[str]], max_len: int = MAX_LEN) -> torch.Tensor:
        """``[N, max_len + 2]`` long: BOS, words, EOS, then PAD (teacher forcing input and target)."""
        out = torch.full((len(captions), max_len + 2), PAD, dtype=torch.long)
        for i, toks in enumerate(captions):
            ids = [BOS] + self.encode(toks, max_len) + [EOS]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first EOS (BOS/PAD skipped), joined by spaces."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            words.append(self.words[i])
        return " ".join(words)

    def state(self) -> dict[str, Any]:
        return {"words": list(self.words)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "CaptionVocab":
        return cls(list(state["words"]))
