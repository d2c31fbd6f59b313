"""The two VQA models of the paper's Table 2 over CLIP grid features, and their presets.

Both read a batch of questions ``tokens [B, T]`` (PAD = 0) and of grid features
``grid [B, N, C]`` with ``grid_mask [B, N]`` (True = a real cell; images of different aspect
ratios give grids of different sizes, so a batch is padded to its largest grid), and return
answer logits ``[B, A]`` plus the attention over the grid cells ``[B, G, N]`` (for pictures).

* :class:`Pythia` (Jiang et al. 2018, MMF's ``pythia``): word embeddings, a GRU and a
  self-attention over the words (several glimpses); top-down attention over the grid cells,
  each cell scored by a multi-modal factorised bilinear (MFB) fusion with the question; the
  attended image and the question fused again by MFB, or by its two-block cascade MFH
  (Yu et al. 2017/2018); a two-layer classifier over the answer vocabulary.
* :class:`MCAN` (Yu et al. 2019, openvqa): an LSTM over the words; an encoder-decoder stack of
  modular co-attention layers (self-attention on the words; self-attention then
  question-guided attention on the grid cells); attentional reduction of both sides to one
  vector each, summed and layer-normalised (the fusion); a linear classifier.

``question_only=True`` builds the same family without the image (the question-only baseline
of the paper's sanity checks): Pythia keeps its question encoder and classifier, MCAN keeps
its LSTM, word self-attention and reduction.

Preset sizes are the published ones (``large``/``small`` from openvqa's ``mcan_large.yml`` and
``mcan_small.yml``; Pythia's ``base`` from MMF's ``configs/models/pythia`` with openvqa's
``mfb.yml``/``mfh.yml`` fusion sizes) plus a ``tiny`` one that trains in seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MODEL_FAMILIES = ("pythia", "mcan")


@dataclass
class PythiaConfig:
    """Pythia sizes. ``base``: MMF's Pythia (300-d words, 1024-d recurrent state, 2 question
    glimpses through a 512-wide attention MLP) with openvqa's MFB/MFH sizes (k = 5 factors,
    o = 1000 outputs, 2 image glimpses)."""

    embed_dim: int = 300
    rnn_dim: int = 1024
    q_att_dim: int = 512
    q_glimpses: int = 2
    img_glimpses: int = 2
    mfb_factors: int = 5
    mfb_out: int = 1000
    fusion: str = "mfh"  # "mfb" | "mfh"
    classifier_dim: int = 2048
    dropout: float = 0.1
    question_only: bool = False


@dataclass
class MCANConfig:
    """MCAN sizes; ``small``/``large`` are openvqa's (6 layers, 8 heads, dropout 0.1)."""

    embed_dim: int = 300
    hidden: int = 512
    layers: int = 6
    heads: int = 8
    ff: int = 2048
    flat_mlp: int = 512
    flat_glimpses: int = 1
    flat_out: int = 1024
    dropout: float = 0.1
    question_only: bool = False


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "pythia": {
        "base": {},
        "small": dict(rnn_dim=512, q_att_dim=256, mfb_out=500, classifier_dim=1024),
        "tiny": dict(embed_dim=64, rnn_dim=128, q_att_dim=64, mfb_factors=3, mfb_out=128,
                     classifier_dim=256, dropout=0.0),
    },
    "mcan": {
        "large": dict(hidden=1024, ff=4096, flat_out=2048),
        "small": {},
        "tiny": dict(embed_dim=64, hidden=128, layers=2, heads=4, ff=256, flat_mlp=128, flat_out=256,
                     dropout=0.0),
    },
}
DEFAULT_PRESET = {"pythia": "base", "mcan": "small"}


def model_config(family: str, preset: str | None = None, **overrides: Any) -> PythiaConfig | MCANConfig:
    """The config of ``family`` at ``preset`` (its default when None), with field overrides."""
    if family not in PRESETS:
        raise ValueError(f"unknown VQA model {family!r}; choose one of {', '.join(MODEL_FAMILIES)}")
    preset = preset or DEFAULT_PRESET[family]
    if preset not in PRESETS[family]:
        raise ValueError(f"unknown preset {preset!r} for {family}; choose one of "
                         f"{', '.join(PRESETS[family])}")
    cls = PythiaConfig if family == "pythia" else MCANConfig
    return cls(**{**PRESETS[family][preset], **{k: v for k, v in overrides.items() if v is not None}})


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim`` where ``mask`` is False gets exactly zero weight."""
    logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return torch.softmax(logits, dim=dim) * mask.to(logits.dtype)


class MFB(nn.Module):
    """Multi-modal factorised bilinear pooling: project both inputs to ``k*o``, multiply, sum
    each group of ``k``, signed square root, L2 normalisation (Yu et al. 2017).

    ``forward`` also returns the pre-pooling product so that MFH can chain a second block on it.
    """

    def __init__(self, x_dim: int, y_dim: int, factors: int, out: int, dropout: float) -> None:
        super().__init__()
        self.factors, self.out = factors, out
        self.proj_x = nn.Linear(x_dim, factors * out)
        self.proj_y = nn.Linear(y_dim, factors * out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor,
                prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        joint = self.proj_x(x) * self.proj_y(y)
        if prev is not None:
            joint = joint * prev
        joint = self.drop(joint)
        z = joint.view(*joint.shape[:-1], self.out, self.factors).sum(-1)
        # Signed square root with a floor under |z|: its gradient stays finite at z = 0.
        z = torch.sign(z) * torch.sqrt(z.abs() + 1e-8)
        return F.normalize(z, dim=-1), joint


class Fusion(nn.Module):
    """MFB, or MFH (two MFB blocks, the second multiplied by the first's product, outputs concatenated)."""

    def __init__(self, x_dim: int, y_dim: int, factors: int, out: int, dropout: float, kind: str) -> None:
        super().__init__()
        if kind not in ("mfb", "mfh"):
            raise ValueError(f"fusion must be mfb or mfh, not {kind!r}")
        self.blocks = nn.ModuleList([MFB(x_dim, y_dim, factors, out, dropout)
                                     for _ in range(2 if kind == "mfh" else 1)])
        self.out_dim = out * len(self.blocks)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outs, prev = [], None
        for block in self.blocks:
            z, prev = block(x, y, prev)
            outs.append(z)
        return torch.cat(outs, dim=-1)


class Pythia(nn.Module):
    """Pythia over grid cells (see the module docstring)."""

    def __init__(self, cfg: PythiaConfig, vocab_size: int, num_answers: int, feat_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.rnn = nn.GRU(cfg.embed_dim, cfg.rnn_dim, batch_first=True)
        self.q_att = nn.Sequential(nn.Linear(cfg.rnn_dim, cfg.q_att_dim), nn.ReLU(),
                                   nn.Linear(cfg.q_att_dim, cfg.q_glimpses))
        q_dim = cfg.rnn_dim * cfg.q_glimpses
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.question_only:
            joint_dim = q_dim
        else:
            self.img_att_fusion = MFB(feat_dim, q_dim, cfg.mfb_factors, cfg.mfb_out, cfg.dropout)
            self.img_att = nn.Linear(cfg.mfb_out, cfg.img_glimpses)
            self.fusion = Fusion(feat_dim * cfg.img_glimpses, q_dim, cfg.mfb_factors, cfg.mfb_out,
                                 cfg.dropout, cfg.fusion)
            joint_dim = self.fusion.out_dim
        self.classifier = nn.Sequential(nn.Linear(joint_dim, cfg.classifier_dim), nn.ReLU(),
                                        nn.Dropout(cfg.dropout), nn.Linear(cfg.classifier_dim, num_answers))

    def encode_question(self, tokens: torch.Tensor) -> torch.Tensor:
        words = tokens != 0
        h, _ = self.rnn(self.drop(self.embed(tokens)))                      # [B, T, H]
        att = masked_softmax(self.q_att(h), words.unsqueeze(-1), dim=1)     # [B, T, g]
        return torch.einsum("btg,bth->bgh", att, h).flatten(1)              # [B, g*H]

    def forward(self, tokens: torch.Tensor, grid: torch.Tensor | None = None,
                grid_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = self.encode_question(tokens)
        if self.cfg.question_only:
            return self.classifier(q), None
        assert grid is not None and grid_mask is not None
        n = grid.shape[1]
        z, _ = self.img_att_fusion(grid, q.unsqueeze(1).expand(-1, n, -1))  # [B, N, o]
        att = masked_softmax(self.img_att(z), grid_mask.unsqueeze(-1), dim=1)  # [B, N, g]
        v = torch.einsum("bng,bnc->bgc", att, grid).flatten(1)             # [B, g*C]
        joint = self.fusion(v, q)
        return self.classifier(joint), att.transpose(1, 2)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with ``heads`` heads; ``mask [B, K]`` True = attend."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, hidden // heads
        self.q, self.k, self.v = (nn.Linear(hidden, hidden) for _ in range(3))
        self.merge = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b = query.shape[0]

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(query)), split(self.k(key)), split(self.v(key))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        att = self.drop(masked_softmax(scores, mask[:, None, None, :], dim=-1))
        return self.merge((att @ v).transpose(1, 2).reshape(b, -1, self.heads * self.head_dim))


class FeedForward(nn.Sequential):
    def __init__(self, hidden: int, ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(hidden, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, hidden))


class SelfAttentionLayer(nn.Module):
    """MCAN's SA unit: self-attention and feed-forward, each with a residual and LayerNorm."""

    def __init__(self, cfg: MCANConfig) -> None:
        super().__init__()
        self.att = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout)
        self.ff = FeedForward(cfg.hidden, cfg.ff, cfg.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.hidden), nn.LayerNorm(cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.att(x, x, mask)))
        return self.norm2(x + self.drop(self.ff(x)))


class GuidedAttentionLayer(nn.Module):
    """MCAN's SGA unit: self-attention on the cells, then attention from the cells to the words."""

    def __init__(self, cfg: MCANConfig) -> None:
        super().__init__()
        self.self_att = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout)
        self.guided_att = MultiHeadAttention(cfg.hidden, cfg.heads, cfg.dropout)
        self.ff = FeedForward(cfg.hidden, cfg.ff, cfg.dropout)
        self.norms = nn.ModuleList([nn.LayerNorm(cfg.hidden) for _ in range(3)])
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, y: torch.Tensor,
                y_mask: torch.Tensor) -> torch.Tensor:
        x = self.norms[0](x + self.drop(self.self_att(x, x, x_mask)))
        x = self.norms[1](x + self.drop(self.guided_att(x, y, y_mask)))
        return self.norms[2](x + self.drop(self.ff(x)))


class AttentionalReduction(nn.Module):
    """MCAN's AttFlat: an MLP scores each position, softmax over positions, weighted sums
    (one per glimpse) concatenated and projected to ``flat_out``. Returns the weights too."""

    def __init__(self, cfg: MCANConfig) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(cfg.hidden, cfg.flat_mlp), nn.ReLU(), nn.Dropout(cfg.dropout),
                                   nn.Linear(cfg.flat_mlp, cfg.flat_glimpses))
        self.merge = nn.Linear(cfg.hidden * cfg.flat_glimpses, cfg.flat_out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        att = masked_softmax(self.score(x), mask.unsqueeze(-1), dim=1)     # [B, N, g]
        return self.merge(torch.einsum("bng,bnh->bgh", att, x).flatten(1)), att


class MCAN(nn.Module):
    """MCAN, encoder-decoder variant, over grid cells (see the module docstring)."""

    def __init__(self, cfg: MCANConfig, vocab_size: int, num_answers: int, feat_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden, batch_first=True)
        self.encoder = nn.ModuleList([SelfAttentionLayer(cfg) for _ in range(cfg.layers)])
        self.flat_lang = AttentionalReduction(cfg)
        if not cfg.question_only:
            self.img_proj = nn.Linear(feat_dim, cfg.hidden)
            self.decoder = nn.ModuleList([GuidedAttentionLayer(cfg) for _ in range(cfg.layers)])
            self.flat_img = AttentionalReduction(cfg)
        self.norm = nn.LayerNorm(cfg.flat_out)
        self.classifier = nn.Linear(cfg.flat_out, num_answers)

    def forward(self, tokens: torch.Tensor, grid: torch.Tensor | None = None,
                grid_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        words = tokens != 0
        lang, _ = self.lstm(self.embed(tokens))
        for layer in self.encoder:
            lang = layer(lang, words)
        lang_vec, _ = self.flat_lang(lang, words)
        if self.cfg.question_only:
            return self.classifier(self.norm(lang_vec)), None
        assert grid is not None and grid_mask is not None
        img = self.img_proj(grid)
        for layer in self.decoder:
            img = layer(img, grid_mask, lang, words)
        img_vec, att = self.flat_img(img, grid_mask)
        return self.classifier(self.norm(lang_vec + img_vec)), att.transpose(1, 2)


def build_model(family: str, cfg: PythiaConfig | MCANConfig, vocab_size: int, num_answers: int,
                feat_dim: int) -> nn.Module:
    """The model of ``family`` with config ``cfg`` (see :func:`model_config`)."""
    if family == "pythia":
        assert isinstance(cfg, PythiaConfig)
        return Pythia(cfg, vocab_size, num_answers, feat_dim)
    if family == "mcan":
        assert isinstance(cfg, MCANConfig)
        return MCAN(cfg, vocab_size, num_answers, feat_dim)
    raise ValueError(f"unknown VQA model {family!r}; choose one of {', '.join(MODEL_FAMILIES)}")


def config_from_dict(family: str, d: dict[str, Any]) -> PythiaConfig | MCANConfig:
    """Rebuild a config saved with ``dataclasses.asdict`` (checkpoints)."""
    cls = PythiaConfig if family == "pythia" else MCANConfig
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})
