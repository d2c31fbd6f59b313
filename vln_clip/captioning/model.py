"""Transformer captioner over grid features (encoder over grid cells, decoder over words).

The sizes of the public recipe (self-critical.pytorch's ``transformer.yml``, which the
CLIP-ViL captioning experiments build on): 6 encoder and 6 decoder layers, d_model 512,
8 heads, feed-forward 2048, dropout 0.1; a ``tiny`` preset trains on a CPU in minutes.

Architecture, and why:

* Grid cells are LayerNorm-ed over their channels, then projected ``Linear -> ReLU ->
  Dropout`` to d_model (self-critical's ``att_embed``; its ``use_bn`` option normalises the
  input the same way). The normalisation makes the model indifferent to the feature scale:
  random-weight encoders give cells of standard deviation about 1e-3, which a default-init
  projection turns into a signal a thousand times weaker than the position embeddings (the
  first synthetic XE run, without it, learned a language model that ignored the image:
  docs/captioning.md). Plus learned row and column embeddings: unlike a bag of detector regions,
  a grid has a layout, and the store gives each item's ``(H', W')``. Padded cells (images of
  other aspect ratios in one batch) are masked out of every attention.
* Pre-norm layers (LayerNorm before each sub-layer, a final LayerNorm), as the Annotated
  Transformer that self-critical.pytorch uses; words are embedded times sqrt(d_model) plus
  sinusoidal positions.
* ``next_logprobs`` re-runs the decoder on the whole prefix: with captions of at most 16
  words this is cheap, and it keeps decoding code (greedy, sampling, beam) independent of
  the model (:mod:`vln_clip.captioning.decoding` needs only :meth:`encode` and
  :meth:`next_logprobs`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .vocab import MAX_LEN, PAD


@dataclass
class CaptionerConfig:
    """Model sizes (``vocab_size`` and ``feat_dim`` are filled from the data)."""

    feat_dim: int = 2048
    vocab_size: int = 0
    d_model: int = 512
    heads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    ff_dim: int = 2048
    dropout: float = 0.1
    max_len: int = MAX_LEN
    max_grid: int = 64  # largest grid side with a learned row/column embedding

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaptionerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: ``recipe``: self-critical.pytorch's transformer; ``tiny``: a CPU-sized model.
PRESETS: dict[str, dict[str, Any]] = {
    "recipe": dict(d_model=512, heads=8, enc_layers=6, dec_layers=6, ff_dim=2048, dropout=0.1),
    "tiny": dict(d_model=64, heads=4, enc_layers=1, dec_layers=2, ff_dim=128, dropout=0.1),
}


def preset(name: str, **overrides: Any) -> CaptionerConfig:
    if name not in PRESETS:
        raise ValueError(f"model preset must be one of {sorted(PRESETS)}, got {name!r}")
    return CaptionerConfig(**{**PRESETS[name], **overrides})


def sinusoid(length: int, dim: int) -> torch.Tensor:
    """The fixed sinusoidal position table of Vaswani et al. (``[length, dim]``)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * rate)
    table[:, 1::2] = torch.cos(pos * rate[: dim // 2])
    return table


class TransformerCaptioner(nn.Module):
    """Grid features ``[B, L, C]`` (+ mask, + grid shapes) -> word logits."""

    def __init__(self, cfg: CaptionerConfig) -> None:
        super().__init__()
        if cfg.vocab_size < 5:
            raise ValueError("CaptionerConfig.vocab_size must be set from the vocabulary")
        self.cfg = cfg
        d = cfg.d_model
        self.feat_proj = nn.Sequential(nn.LayerNorm(cfg.feat_dim), nn.Linear(cfg.feat_dim, d), nn.ReLU(),
                                       nn.Dropout(cfg.dropout))
        self.row_embed = nn.Embedding(cfg.max_grid, d)
        self.col_embed = nn.Embedding(cfg.max_grid, d)
        enc_layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc_layer, cfg.enc_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.word_embed = nn.Embedding(cfg.vocab_size, d, padding_idx=PAD)
        self.register_buffer("positions", sinusoid(cfg.max_len + 2, d), persistent=False)
        self.embed_drop = nn.Dropout(cfg.dropout)
        dec_layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.ff_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.dec_layers, norm=nn.LayerNorm(d))
        self.out = nn.Linear(d, cfg.vocab_size)

    def grid_positions(self, mask: torch.Tensor, shapes: torch.Tensor | None) -> torch.Tensor:
        """``[B, L, d]`` row + column embeddings of row-major cells (zeros when shapes are unknown)."""
        b, n = mask.shape
        if shapes is None:
            return torch.zeros(b, n, self.cfg.d_model, device=mask.device)
        idx = torch.arange(n, device=mask.device)[None, :]
        w = shapes[:, 1:2].clamp(min=1)
        row = (idx // w).clamp(max=self.cfg.max_grid - 1)
        col = (idx % w).clamp(max=self.cfg.max_grid - 1)
        return self.row_embed(row) + self.col_embed(col)

    def encode(self, feats: torch.Tensor, mask: torch.Tensor, shapes: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(memory ``[B, L, d]``, padding mask ``[B, L]`` True = padded cell)."""
        pad = ~mask.bool()
        x = self.feat_proj(feats) + self.grid_positions(mask, shapes)
        return self.encoder(x, src_key_padding_mask=pad), pad

    def decode(self, memory: torch.Tensor, mem_pad: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, T, V]`` for every prefix of ``tokens`` ``[N, T]`` (BOS first)."""
        t = tokens.shape[1]
        x = self.word_embed(tokens) * math.sqrt(self.cfg.d_model) + self.positions[:t]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=tokens.device), diagonal=1)  # True = hidden
        h = self.decoder(self.embed_drop(x), memory, tgt_mask=causal, tgt_key_padding_mask=tokens == PAD,
                         memory_key_padding_mask=mem_pad)
        return self.out(h)

    def next_logprobs(self, memory: torch.Tensor, mem_pad: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[N, V]`` of the word after ``prefix`` ``[N, t]``."""
        return torch.log_softmax(self.decode(memory, mem_pad, prefix)[:, -1].float(), dim=-1)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor, shapes: torch.Tensor | None,
                tokens: torch.Tensor, per_image: int = 1) -> torch.Tensor:
        """Teacher-forced logits; each image's memory serves ``per_image`` consecutive captions."""
        memory, pad = self.encode(feats, mask, shapes)
        if per_image > 1:
            memory, pad = memory.repeat_interleave(per_image, 0), pad.repeat_interleave(per_image, 0)
        return self.decode(memory, pad, tokens)
