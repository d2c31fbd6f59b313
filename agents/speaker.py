"""The EnvDrop speaker (trajectory -> instruction) and corpus BLEU-4 for its model selection.

Encoder: a bidirectional LSTM (2 x 256) over the features of the views the trajectory chose
at each step ([B, T, F]; visual part under feature dropout), then at every step the encoder
state attends over that step's 36-view panorama (soft-dot attention with a tanh output),
and a second bidirectional LSTM reads the attended sequence. Decoder: word embedding 256,
an LSTM with 512 units, soft-dot attention over the encoded steps, a linear projection to
the vocabulary. Trained with teacher forcing (cross-entropy, padding ignored); decoding is
greedy, up to 120 tokens, stopping at <EOS>.

BLEU: :func:`corpus_bleu` is the standard corpus-level BLEU-4 (clipped n-gram precisions
summed over the corpus, geometric mean of n = 1..4 with uniform weights, brevity penalty
against the reference length closest to each hypothesis), the score EnvDrop selects its
speaker by on val unseen.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vln_clip.geometry import ANGLE_FEATURE_SIZE

from .follower import SoftDotAttention, drop_visual


class Speaker(nn.Module):
    """Trajectory encoder + instruction decoder."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 256, hidden_dim: int = 512,
                 dropout: float = 0.5, feat_dropout: float = 0.3, padding_idx: int = 0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.feature_dim = feature_dim
        self.hidden_dim = hidden_dim
        self.view_dim = feature_dim + ANGLE_FEATURE_SIZE
        self.drop = nn.Dropout(dropout)
        self.drop_env = nn.Dropout(feat_dropout)
        self.enc_lstm = nn.LSTM(self.view_dim, hidden_dim // 2, batch_first=True, bidirectional=True)
        self.pano_attention = SoftDotAttention(hidden_dim, self.view_dim, tilde=True)
        self.post_lstm = nn.LSTM(hidden_dim, hidden_dim // 2, batch_first=True, bidirectional=True)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.dec_lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.ctx_attention = SoftDotAttention(hidden_dim, hidden_dim, tilde=True)
        self.projection = nn.Linear(hidden_dim, vocab_size)

    def encode(self, actions: torch.Tensor, panos: torch.Tensor,
               env_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``actions [B, T, F]`` chosen-view features, ``panos [B, T, 36, F]`` -> ``[B, T, H]``."""
        b, t = actions.shape[:2]
        x = drop_visual(actions, self.feature_dim, self.drop_env, env_mask)
        ctx, _ = self.enc_lstm(x)
        ctx = self.drop(ctx)
        panos = drop_visual(panos, self.feature_dim, self.drop_env, env_mask)
        att, _ = self.pano_attention(ctx.reshape(b * t, -1), panos.reshape(b * t, panos.shape[2], -1))
        att = self.drop(att.view(b, t, -1))
        out, _ = self.post_lstm(att)
        return self.drop(out)

    def decode(self, words: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor,
               state: tuple[torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Logits ``[B, N, V]`` for the next word after each of ``words [B, N]``."""
        b, n = words.shape
        if state is None:
            zeros = ctx.new_zeros(1, b, self.hidden_dim)
            state = (zeros, zeros)
        emb = self.drop(self.embedding(words))
        out, state = self.dec_lstm(emb, state)
        out = self.drop(out)
        flat = out.reshape(b * n, -1)
        rep_ctx = ctx.unsqueeze(1).expand(b, n, *ctx.shape[1:]).reshape(b * n, *ctx.shape[1:])
        rep_mask = ctx_mask.unsqueeze(1).expand(b, n, ctx_mask.shape[1]).reshape(b * n, -1)
        tilde, _ = self.ctx_attention(flat, rep_ctx, rep_mask)
        logits = self.projection(self.drop(tilde)).view(b, n, -1)
        return logits, state

    def loss(self, actions: torch.Tensor, panos: torch.Tensor, step_mask: torch.Tensor,
             tokens: torch.Tensor, pad: int, env_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced cross-entropy; ``tokens`` = BOS w1 .. wn EOS PAD..."""
        ctx = self.encode(actions, panos, env_mask)
        logits, _ = self.decode(tokens[:, :-1], ctx, step_mask)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                               ignore_index=pad)

    @torch.no_grad()
    def generate(self, actions: torch.Tensor, panos: torch.Tensor, step_mask: torch.Tensor,
                 bos: int, eos: int, max_len: int = 120,
                 env_mask: torch.Tensor | None = None) -> list[list[int]]:
        """Greedy decoding: word ids without BOS/EOS, at most ``max_len`` words each."""
        ctx = self.encode(actions, panos, env_mask)
        b = actions.shape[0]
        word = torch.full((b, 1), bos, dtype=torch.long, device=actions.device)
        state = None
        out = torch.zeros(b, max_len, dtype=torch.long, device=actions.device)
        ended = torch.zeros(b, dtype=torch.bool, device=actions.device)
        steps = 0
        for i in range(max_len):
            logits, state = self.decode(word, ctx, step_mask, state)
            word = logits[:, -1].argmax(-1, keepdim=True)
            out[:, i] = word[:, 0]
            ended = ended | (word[:, 0] == eos)
            steps = i + 1
            if bool(ended.all()):  # one host sync per generated word, outside training rollouts
                break
        result = []
        for row in out[:, :steps].tolist():
            result.append(row[: row.index(eos)] if eos in row else row)
        return result


# -------------------------------------------------------------------------------------------
# BLEU


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]],
                max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` in [0, 1]; each hypothesis has one or more references.

    Counts are clipped by the maximum count of each n-gram in any one reference; the
    brevity penalty uses, per hypothesis, the reference length closest to it (shorter wins
    ties). No smoothing: a corpus with no matching 4-gram scores 0.
    """
    if len(hypotheses) != len(references):
        raise ValueError("one list of references per hypothesis")
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        if not refs:
            raise ValueError("every hypothesis needs at least one reference")
        hyp_len += len(hyp)
        ref_len += min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            counts = _ngrams(hyp, n)
            best: Counter = Counter()
            for r in refs:
                best |= _ngrams(r, n)
            matches[n - 1] += sum(min(c, best[g]) for g, c in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(log_p)
