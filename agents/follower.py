"""The EnvDrop follower: instruction encoder, attentive LSTM decoder, bilinear candidate scoring.

Shapes (B batch, L words, K candidates incl. STOP, F = visual dim D + 128 angle dims):

* ``encode(tokens [B, L], mask [B, L])`` -> ``ctx [B, L, 512]``, ``(h0, c0)`` each ``[B, 512]``.
  Embedding 256 with dropout 0.5, a bidirectional LSTM with 2 x 256 units; the decoder state
  starts at ``h0 = tanh(Linear(max-pool ctx))`` (padding excluded from the max) and
  ``c0 = max-pool ctx``.
* ``step(prev_angle [B, 128], pano [B, 36, F], cand [B, K, F], cand_mask [B, K], state, ctx,
  ctx_mask)``: ``pano`` and ``cand`` are joined ``[visual, angle]`` tensors or their two parts
  (:class:`vln_clip.envs.feature_table.Views`, what the training path gathers from the device
  feature table by index); the model computes on the parts either way, so both give the same
  numbers to the bit. The previous action's angle feature goes through ``tanh(Linear(128 -> 64))``;
  the hidden state attends over the 36 panorama views (soft-dot); the LSTMCell (512) reads
  ``[angle embedding, attended panorama]``; the new state attends over the instruction and
  gives ``h_tilde = tanh(Linear([attended words, h]))``; candidate logits are bilinear
  ``cand . W h_tilde``; masked candidates get a large negative logit.

Feature dropout (0.3) touches only the visual part of every view and candidate: the angle
features always survive. In back-translation one *environmental* dropout mask over feature
channels ([B, D]) is shared by all views and all steps of a rollout; pass it as ``env_mask``
and the per-element dropout is skipped. With ``feature_dim = 0`` the follower is vision-free:
the panorama and candidates hold angle features only.

Every operation is a tensor op with static shapes, so a whole rollout can be captured as a
CUDA graph (see :mod:`vln_clip.agents.trainer`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vln_clip.envs.feature_table import Views, as_views
from vln_clip.geometry import ANGLE_FEATURE_SIZE

NEG_INF = -1e9  # finite, so a fully masked row never produces NaN in softmax


class SoftDotAttention(nn.Module):
    """Luong-style attention: score = context . Linear(query); optional tilde output."""

    def __init__(self, query_dim: int, ctx_dim: int, tilde: bool) -> None:
        super().__init__()
        self.linear_in = nn.Linear(query_dim, ctx_dim, bias=False)
        self.linear_out = nn.Linear(query_dim + ctx_dim, query_dim, bias=False) if tilde else None

    def forward(self, query: torch.Tensor, context: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        target = self.linear_in(query).unsqueeze(2)  # [B, C, 1]
        scores = torch.bmm(context, target).squeeze(2)  # [B, N]
        if mask is not None:
            scores = scores.masked_fill(~mask, NEG_INF)
        attn = F.softmax(scores, dim=1)
        weighted = torch.bmm(attn.unsqueeze(1), context).squeeze(1)  # [B, C]
        return self._output(weighted, query, attn)

    def over_views(self, query: torch.Tensor, views: Views) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` over a context given as its visual and angle parts (no concatenation).

        The dot products are split at the visual/angle boundary, so the result equals
        :meth:`forward` on the joined context up to float rounding, and is the same to the bit
        whether the parts were gathered from the feature table or sliced from a joined tensor.
        """
        target = self.linear_in(query)  # [B, D + 128]
        attn = F.softmax(view_scores(views, target), dim=1)
        a = attn.unsqueeze(1)  # [B, 1, N]
        weighted = torch.bmm(a, views.angle).squeeze(1)
        if views.visual.shape[-1]:
            weighted = torch.cat([torch.bmm(a, views.visual).squeeze(1), weighted], 1)
        return self._output(weighted, query, attn)

    def _output(self, weighted: torch.Tensor, query: torch.Tensor,
                attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.linear_out is None:
            return weighted, attn
        return torch.tanh(self.linear_out(torch.cat([weighted, query], 1))), attn


def view_scores(views: Views, weight: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` dot products of each view ``[visual, angle]`` with ``weight`` ``[B, D + 128]``."""
    d = views.visual.shape[-1]
    scores = torch.bmm(views.angle, weight[:, d:].unsqueeze(2)).squeeze(2)
    if d:
        scores = torch.bmm(views.visual, weight[:, :d].unsqueeze(2)).squeeze(2) + scores
    return scores


def drop_visual(x: torch.Tensor, feature_dim: int, dropout: nn.Dropout,
                env_mask: torch.Tensor | None) -> torch.Tensor:
    """Dropout on the first ``feature_dim`` channels only; the angle channels pass untouched.

    ``env_mask`` ([B, D], already scaled by 1/(1-p)) replaces the per-element dropout: the same
    channels vanish in every view and every step (environmental dropout).
    """
    if feature_dim == 0:
        return x
    visual = drop_visual_part(x[..., :feature_dim], dropout, env_mask)
    return torch.cat([visual, x[..., feature_dim:]], dim=-1)


def drop_visual_part(visual: torch.Tensor, dropout: nn.Dropout, env_mask: torch.Tensor | None) -> torch.Tensor:
    """The visual channels ``[B, ..., D]`` under feature dropout or the environmental mask."""
    if visual.shape[-1] == 0:
        return visual
    if env_mask is not None:
        shape = (env_mask.shape[0],) + (1,) * (visual.dim() - 2) + (visual.shape[-1],)
        return visual * env_mask.view(shape)
    return dropout(visual)


class Follower(nn.Module):
    """EnvDrop's speaker-follower 'follower' with an A2C critic."""

    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 256, hidden_dim: int = 512,
                 angle_embed_dim: int = 64, dropout: float = 0.5, feat_dropout: float = 0.3,
                 padding_idx: int = 0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.feature_dim = feature_dim
        self.hidden_dim = hidden_dim
        self.view_dim = feature_dim + ANGLE_FEATURE_SIZE
        # encoder
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.LSTM(embed_dim, hidden_dim // 2, batch_first=True, bidirectional=True)
        self.encoder2decoder = nn.Linear(hidden_dim, hidden_dim)
        # decoder
        self.drop_env = nn.Dropout(feat_dropout)
        self.angle_embedding = nn.Linear(ANGLE_FEATURE_SIZE, angle_embed_dim)
        self.feat_attention = SoftDotAttention(hidden_dim, self.view_dim, tilde=False)
        self.lstm = nn.LSTMCell(angle_embed_dim + self.view_dim, hidden_dim)
        self.word_attention = SoftDotAttention(hidden_dim, hidden_dim, tilde=True)
        self.candidate_attention = nn.Linear(hidden_dim, self.view_dim, bias=False)
        self.critic = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
                                    nn.Linear(hidden_dim, 1))

    # ---------------------------------------------------------------------------------
    def encode(self, tokens: torch.Tensor,
               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode padded instructions; ``mask`` is True on real tokens.

        Padding is handled by masking rather than packing so that the shapes stay static
        (CUDA-graph friendly); the backward direction therefore also reads the padding
        embeddings (zeros, ``padding_idx``), which the attention mask then ignores.
        """
        emb = self.drop(self.embedding(tokens))
        ctx, _ = self.encoder(emb)
        pooled = ctx.masked_fill(~mask.unsqueeze(2), NEG_INF).max(dim=1).values
        h0 = torch.tanh(self.encoder2decoder(pooled))
        c0 = pooled
        return self.drop(ctx), h0, c0

    def step(self, prev_angle: torch.Tensor, pano: torch.Tensor | Views, cand: torch.Tensor | Views,
             cand_mask: torch.Tensor, h: torch.Tensor, c: torch.Tensor, ctx: torch.Tensor,
             ctx_mask: torch.Tensor, env_mask: torch.Tensor | None = None,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoding step -> ``(logits, h, c, h_tilde, word_attn, view_attn)``.

        ``pano`` / ``cand``: joined ``[B, N, D + 128]`` tensors or :class:`Views` (module docstring).
        """
        pano, cand = as_views(pano, self.feature_dim), as_views(cand, self.feature_dim)
        pano = Views(drop_visual_part(pano.visual, self.drop_env, env_mask), pano.angle)
        cand = Views(drop_visual_part(cand.visual, self.drop_env, env_mask), cand.angle)
        angle = torch.tanh(self.angle_embedding(prev_angle))
        attended, view_attn = self.feat_attention.over_views(self.drop(h), pano)
        h, c = self.lstm(torch.cat([angle, attended], 1), (h, c))
        h_tilde, word_attn = self.word_attention(self.drop(h), ctx, ctx_mask)
        query = self.candidate_attention(self.drop(h_tilde))  # [B, F]
        logits = view_scores(cand, query).masked_fill(~cand_mask, NEG_INF)
        return logits, h, c, h_tilde, word_attn, view_attn

    def value(self, h_tilde: torch.Tensor) -> torch.Tensor:
        return self.critic(h_tilde).squeeze(1)

    def env_dropout_mask(self, batch: int, p: float, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> torch.Tensor | None:
        """One environmental dropout mask over feature channels per episode ([B, D], scaled)."""
        if self.feature_dim == 0 or p <= 0:
            return None
        keep = torch.rand(batch, self.feature_dim, generator=generator, device=device) >= p
        return keep.float() / (1.0 - p)
