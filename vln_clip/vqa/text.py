"""Question text: openvqa's tokenisation, the question vocabulary and GloVe word vectors.

Questions are tokenised the way openvqa does it (lower-case, a fixed set of punctuation
characters removed, hyphens and slashes split words, at most 14 tokens), so that a vocabulary
or word-vector table built for openvqa's MCAN lines up with ours. The vocabulary itself is the
project's one word map, :class:`vln_clip.tokenizers.Vocab` (PAD = 0, UNK = 1); VQA questions
use it without BOS/EOS because both models read the question as a bag of positions with a mask.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vln_clip.errors import DataError
from vln_clip.tokenizers import Vocab

MAX_QUESTION_TOKENS = 14  # openvqa's MAX_TOKEN for VQA v2
_DROP = re.compile(r"[.,'!?\"()*#:;]")
_SPLIT = re.compile(r"[-/]")


def vqa_tokenize(question: str) -> list[str]:
    """openvqa's question tokens: lower-case, drop ``.,'!?"()*#:;``, split on space, ``-`` and ``/``."""
    text = _SPLIT.sub(" ", _DROP.sub("", question.lower()))
    return text.split()


def build_question_vocab(questions: Iterable[str], min_count: int = 1) -> Vocab:
    """Every training word seen ``min_count`` times (openvqa keeps all of them)."""
    return Vocab.build((vqa_tokenize(q) for q in questions), min_count=min_count)


def encode_question(vocab: Vocab, question: str, max_tokens: int = MAX_QUESTION_TOKENS) -> list[int]:
    """Word ids of the first ``max_tokens`` tokens (unknown words map to UNK; no padding)."""
    ids = [vocab.stoi.get(t, vocab.unk) for t in vqa_tokenize(question)][:max_tokens]
    return ids or [vocab.unk]  # an empty question still needs one position to attend to


def pad_questions(rows: Sequence[Sequence[int]], max_tokens: int = MAX_QUESTION_TOKENS) -> np.ndarray:
    """``[N, max_tokens]`` int64, right-padded with PAD (= 0)."""
    out = np.zeros((len(rows), max_tokens), dtype=np.int64)
    for i, r in enumerate(rows):
        r = list(r)[:max_tokens]
        out[i, : len(r)] = r
    return out


def read_glove(path: str | os.PathLike[str], vocab: Vocab, dim: int | None = None,
               seed: int = 0) -> tuple[np.ndarray, int]:
    """Word vectors for ``vocab`` from a GloVe text file (``word v1 v2 ...`` per line).

    Words missing from the file keep a small random vector (seeded), PAD is zero. Returns the
    ``[len(vocab), dim]`` float32 table and how many vocabulary words the file covered. A line
    whose width differs from the first one is an error naming the line: a truncated download
    or a file in another format (word2vec binary, a header line) otherwise poisons training
    silently.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such word-vector file; pass a GloVe text file "
                        "(e.g. glove.6B.300d.txt) to --word-vectors or leave it out to learn them")
    table: np.ndarray | None = None
    found = 0
    with open(path, encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) < 2:
                if not line.strip():
                    continue
                raise DataError(f"{path}:{lineno}: expected `word v1 v2 ...` (GloVe text format), got "
                                f"{line[:60]!r}; convert the file to GloVe text format")
            width = len(parts) - 1
            if table is None:
                if dim is not None and width != dim:
                    raise DataError(f"{path}:{lineno}: vectors have {width} dimensions but the model "
                                    f"expects {dim}; pass --embed-dim {width} or another file")
                dim = width
                rng = np.random.default_rng(seed)
                table = (rng.standard_normal((len(vocab), dim)) * 0.1).astype(np.float32)
                table[vocab.pad] = 0.0
            elif width != dim:
                raise DataError(f"{path}:{lineno}: {width} numbers where line 1 had {dim}; the file is "
                                "truncated or not in GloVe text format (no header line allowed)")
            idx = vocab.stoi.get(parts[0])
            if idx is None or idx == vocab.pad:
                continue
            try:
                table[idx] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError as exc:
                raise DataError(f"{path}:{lineno}: non-numeric vector for {parts[0]!r} ({exc}); "
                                "the file is not in GloVe text format") from exc
            found += 1
    if table is None:
        raise DataError(f"{path}: empty word-vector file; pass a GloVe text file")
    return table, found
