"""CLIP-ViL_p's single-stream transformer: WordPiece tokens and CLIP grid cells in one BERT.

Input sequence: ``[CLS] w_1 .. w_n [SEP] v_1 .. v_K``. Text tokens are embedded as in BERT
(word + position + type 0); each visual token is a grid cell of the CLIP visual tower's last
feature map (before pooling), projected to the hidden size and given a 2-D position (a learned
row embedding plus a learned column embedding) and type 1. The backbone runs on pixels every
step, so it is trained together with the transformer (or frozen, for Table 8's comparison).

Module names of the transformer follow Hugging Face's BERT (``embeddings.word_embeddings``,
``encoder.layer.N.attention.self.query``, ``cls.predictions.transform``...), so a local BERT
checkpoint maps onto it by a short, explicit name table (:func:`load_bert_state`); the
``transformers`` package is not needed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vln_clip.encoders import Encoder
from vln_clip.errors import DataError, MissingResourceError

from .masking import sample_patches


@dataclass(frozen=True)
class TransformerConfig:
    """BERT sizes. ``base`` is BERT-base (the paper); ``small``/``tiny`` are CPU presets."""

    vocab_size: int = 30522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_text_len: int = 512  # BERT's position table
    type_vocab: int = 2
    dropout: float = 0.1
    max_grid: int = 64  # rows/columns of the 2-D visual position tables
    visual_dim: int = 2048  # grid channels of the backbone (set from the encoder)
    weight_init: str = "bert"  # WEIGHT_INITS: how the Linear layers start (see init_weights)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TRANSFORMER_PRESETS: dict[str, dict[str, int | str]] = {
    "base": dict(hidden=768, layers=12, heads=12, intermediate=3072, weight_init="bert"),
    "small": dict(hidden=256, layers=4, heads=4, intermediate=1024, weight_init="fan_in"),
    "tiny": dict(hidden=128, layers=2, heads=2, intermediate=512, weight_init="fan_in"),
}
#: ``bert``: every Linear and Embedding weight normal(0, 0.02), BERT's ``initializer_range``
#: (what a BERT-base trained from scratch uses). ``fan_in``: Linear weights normal(0, 1/sqrt(fan_in))
#: (embeddings still 0.02). Why the CPU presets use ``fan_in``: 0.02 is tuned for width 768; at
#: width 128 it makes query.key products about 19x smaller than fan-in scaling, attention stays
#: uniform, and from scratch the model sat at chance on image-text matching for 900 updates
#: (captions only, frozen backbone) while ``fan_in`` reached 92.5% -- docs/pretraining.md.
WEIGHT_INITS = ("bert", "fan_in")
#: weight of each batch in the running grid-cell statistics while the backbone trains: about a
#: 100-update memory, short against the drift it follows (cells x500 over 2,156 updates)
CELL_STATS_MOMENTUM = 0.01


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        if cfg.hidden % cfg.heads:
            raise DataError(f"hidden size {cfg.hidden} is not a multiple of {cfg.heads} heads")
        self.heads = cfg.heads
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, h // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                             attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, h)


class AddNorm(nn.Module):
    """BERT's "output" block: dense, dropout, residual, LayerNorm."""

    def __init__(self, d_in: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        setattr(self, "self", SelfAttention(cfg))  # HF's name for the attention proper
        self.output = AddNorm(cfg.hidden, cfg.hidden, cfg.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(getattr(self, "self")(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = AddNorm(cfg.intermediate, cfg.hidden, cfg.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class Stack(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, bias)
        return x


class TextEmbeddings(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.max_text_len, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None] + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class VisualEmbeddings(nn.Module):
    """Grid cell -> token: per-channel standardisation, linear projection + LayerNorm, plus row,
    column and type embeddings.

    Why the standardisation: CLIP-ResNet grid cells are large, all-positive activations with a
    strong component shared by every cell. Projected and LayerNorm'ed as they are, every cell
    of every image became one shared vector plus small deviations (norm 11.6 against 0.68 on
    the synthetic world), and the fine-tuned models answered the same with blank images
    (docs/pretraining.md). ``cell_mean``/``cell_std`` are buffers (saved in checkpoints), set
    from training images by :func:`calibrate_cells`; identity until then, and for checkpoints
    written before they existed.

    While the backbone trains they also follow it (``update_stats``: an exponential moving
    average with :data:`CELL_STATS_MOMENTUM` over the batch's kept cells, then used at once):
    an SGD-trained backbone's cells grew 500x in magnitude over 2,156 pre-training updates, the
    calibration statistics went stale, and every visual token became the same vector again.
    Following them keeps the tokens at unit scale but cannot keep the features meaningful: the
    growth itself came from a backbone learning rate too high for batch 16 (docs/pretraining.md,
    rounds 3b and 4), which is why the cpu preset's backbone rates are small.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.register_buffer("cell_mean", torch.zeros(cfg.visual_dim))
        self.register_buffer("cell_std", torch.ones(cfg.visual_dim))
        self.register_load_state_dict_pre_hook(self._identity_stats_if_absent)
        self.proj = nn.Linear(cfg.visual_dim, cfg.hidden)
        self.proj_norm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.row_embeddings = nn.Embedding(cfg.max_grid, cfg.hidden)
        self.col_embeddings = nn.Embedding(cfg.max_grid, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.dropout = nn.Dropout(cfg.dropout)
        self.max_grid = cfg.max_grid

    def forward(self, cells: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                type_embedding: torch.Tensor, keep: torch.Tensor | None = None,
                update_stats: bool = False) -> torch.Tensor:
        if int(rows.max()) >= self.max_grid or int(cols.max()) >= self.max_grid:
            raise DataError(f"image grid larger than the model's {self.max_grid}x{self.max_grid} position "
                            "tables; use smaller images (--short-side/--long-side) or a larger max_grid")
        if update_stats:
            self._follow(cells.detach() if keep is None else cells.detach()[keep])
        x = self.proj_norm(self.proj((cells - self.cell_mean) / self.cell_std))
        x = x + self.row_embeddings(rows) + self.col_embeddings(cols) + type_embedding
        return self.dropout(self.LayerNorm(x))

    @torch.no_grad()
    def _follow(self, x: torch.Tensor) -> None:
        if x.shape[0] < 2:
            return
        x = x.double()
        m = CELL_STATS_MOMENTUM
        self.cell_mean.mul_(1 - m).add_(m * x.mean(0).to(self.cell_mean.dtype))
        std = x.std(0)
        std = torch.where(std > 1e-6, std, self.cell_std.double())
        self.cell_std.mul_(1 - m).add_(m * std.to(self.cell_std.dtype))

    def _identity_stats_if_absent(self, module: nn.Module, state_dict: dict[str, Any], prefix: str,
                                  *args: Any) -> None:
        """A checkpoint from before the standardisation loads as identity (what it was trained with)."""
        if prefix + "proj.weight" in state_dict:
            state_dict.setdefault(prefix + "cell_mean", torch.zeros_like(self.cell_mean))
            state_dict.setdefault(prefix + "cell_std", torch.ones_like(self.cell_std))


@torch.no_grad()
def calibrate_cells(model: "CLIPViLp", batches: list[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Set the visual embeddings' per-channel mean and std from the grid cells inside the images
    of ``batches`` (``(images, valid)`` pairs as :func:`collate_images` makes them); channels that
    never vary get std 1. Returns the number of cells used (0: nothing set)."""
    cells = []
    for images, valid in batches:
        fmap = model.backbone(images)["grid"]  # [B, C, h, w]
        keep = valid.to(fmap.device).reshape(fmap.shape[0], -1)
        cells.append(fmap.flatten(2).transpose(1, 2)[keep].double())
    if not cells:
        return 0
    x = torch.cat(cells)
    ve = model.visual_embeddings
    ve.cell_mean.copy_(x.mean(0).to(ve.cell_mean.dtype))
    std = x.std(0) if x.shape[0] > 1 else torch.ones_like(x[0])
    ve.cell_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).to(ve.cell_std.dtype))
    return int(x.shape[0])


class Pooler(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class MLMHead(nn.Module):
    """BERT's prediction head; the output matrix is the (tied) word embedding table."""

    def __init__(self, cfg: TransformerConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(cfg.hidden, cfg.hidden)
        self.transform.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.word_embeddings = [word_embeddings]  # a list: tied, not a second registered copy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.transform.LayerNorm(F.gelu(self.transform.dense(x)))
        return x @ self.word_embeddings[0].weight.t() + self.bias


class AnswerHead(nn.Module):
    """LXMERT's answer classifier on the pooled output: Linear, GELU, LayerNorm, Linear."""

    def __init__(self, hidden: int, n_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden * 2), nn.GELU(), nn.LayerNorm(hidden * 2, eps=1e-12),
                                 nn.Linear(hidden * 2, n_out))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


def transfer_answer_head(head: AnswerHead, state: dict[str, torch.Tensor], prefix: str,
                         source_answers: Sequence[str], target_answers: Sequence[str]) -> dict[str, int]:
    """Start a fine-tuning answer head from the pre-training QA head (LXMERT's ``--loadLXMERTQA``).

    Why: pre-training's QA objective already learnt to answer from the pooled output; a fresh head
    throws that away and the pre-trained transformer then starts no better than a random one.
    The hidden layers (Linear, LayerNorm) are copied whole; of the output layer, the row and bias
    of every target answer that the pre-training table has (same string) are copied, and the
    other answers keep their fresh initialisation. ``state`` is the pre-training model's state
    dict, its QA head under ``prefix`` (``"qa."``). Returns ``{"copied": n, "new": m}``.
    """
    names = ("net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "net.3.weight", "net.3.bias")
    missing = [n for n in names if prefix + n not in state]
    if missing:
        raise DataError(f"the pre-training checkpoint has no QA head ({prefix}{missing[0]} missing); "
                        "drop --load-qa-head")
    ours = dict(head.named_parameters())
    if tuple(state[prefix + "net.3.weight"].shape) != (len(source_answers), ours["net.3.weight"].shape[1]):
        raise DataError(f"the pre-training QA head has shape {tuple(state[prefix + 'net.3.weight'].shape)}, "
                        f"which fits neither its {len(source_answers)} answers nor this model's hidden size")
    source = {a: i for i, a in enumerate(source_answers)}
    pairs = [(j, source[a]) for j, a in enumerate(target_answers) if a in source]
    with torch.no_grad():
        for n in names[:4]:
            ours[n].copy_(state[prefix + n])
        if pairs:
            dst = torch.tensor([j for j, _ in pairs])
            src = torch.tensor([i for _, i in pairs])
            ours["net.3.weight"][dst] = state[prefix + "net.3.weight"][src].to(ours["net.3.weight"])
            ours["net.3.bias"][dst] = state[prefix + "net.3.bias"][src].to(ours["net.3.bias"])
    return {"copied": len(pairs), "new": len(target_answers) - len(pairs)}


class CLIPViLp(nn.Module):
    """Backbone + single-stream transformer, with the pre-training heads or a task head.

    ``heads``: ``"pretrain"`` (MLM, ITM and -- when ``n_answers`` > 0 -- QA) or a fine-tuning
    head name with its number of outputs (``{"vqa": n}``). ``backbone`` parameters live under
    ``backbone.``; everything else is the transformer side (the two optimizer groups).
    """

    def __init__(self, backbone: Encoder, cfg: TransformerConfig, pretrain_answers: int | None = None,
                 classes: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        self.embeddings = TextEmbeddings(cfg)
        self.visual_embeddings = VisualEmbeddings(cfg)
        self.encoder = Stack(cfg)
        self.pooler = Pooler(cfg)
        self.frozen_backbone = False
        if pretrain_answers is not None:
            self.cls = nn.Module()
            self.cls.predictions = MLMHead(cfg, self.embeddings.word_embeddings)
            self.itm = nn.Linear(cfg.hidden, 2)
            self.qa = AnswerHead(cfg.hidden, max(pretrain_answers, 1))
        if classes is not None:
            self.classifier = AnswerHead(cfg.hidden, classes)
        if cfg.weight_init not in WEIGHT_INITS:
            raise DataError(f"unknown weight init {cfg.weight_init!r}; choose one of {', '.join(WEIGHT_INITS)}")
        for name, child in self.named_children():
            if name != "backbone":  # the backbone keeps the registry's weights
                child.apply(lambda m: init_weights(m, cfg.weight_init))

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Frozen: no parameter of the backbone requires a gradient and it runs under no_grad."""
        self.frozen_backbone = frozen
        if frozen:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> "CLIPViLp":
        super().train(mode)
        # BatchNorm statistics stay as loaded: batches of a few images per device cannot estimate
        # them (the detector-style "frozen BN"); the affine parameters are still trained.
        self.backbone.eval()
        return self

    def backbone_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def transformer_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("backbone.") and p.requires_grad]

    def grid(self, images: torch.Tensor) -> torch.Tensor:
        if self.frozen_backbone:
            with torch.no_grad():
                return self.backbone(images)["grid"]
        return self.backbone(images)["grid"]

    def forward(self, images: torch.Tensor, valid: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                patches: int | None = None, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
        """Encode a batch; returns ``hidden`` ``[B, L+K, H]``, ``pooled`` ``[B, H]`` and ``text_len``.

        ``images`` ``[B, 3, H, W]`` (padded to the batch's largest), ``valid`` ``[B, h, w]`` the
        grid cells inside each image, ``text`` / ``text_mask`` ``[B, L]``; ``patches``: sample
        that many cells per image (pre-training) or ``None`` for all (fine-tuning).
        """
        fmap = self.grid(images)  # [B, C, h, w]
        b, c, h, w = fmap.shape
        if valid.shape[1:] != (h, w):
            raise DataError(f"valid-cell mask {tuple(valid.shape[1:])} does not match the backbone's grid "
                            f"{(h, w)}; compute it with the same encoder and image sizes")
        index, keep = sample_patches(valid.cpu(), patches, generator)
        index, keep = index.to(fmap.device), keep.to(fmap.device)
        cells = fmap.flatten(2).transpose(1, 2).gather(1, index[..., None].expand(-1, -1, c))
        vis = self.visual_embeddings(cells, index // w, index % w, self.embeddings.token_type_embeddings.weight[1],
                                     keep=keep, update_stats=self.training and not self.frozen_backbone)
        txt = self.embeddings(text)
        x = torch.cat([txt, vis], dim=1)
        mask = torch.cat([text_mask.bool(), keep], dim=1)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, float("-inf"))
        hidden = self.encoder(x, bias[:, None, None, :])
        return {"hidden": hidden, "pooled": self.pooler(hidden), "text_len": torch.tensor(text.shape[1]),
                "patch_index": index, "patch_keep": keep}


def init_weights(m: nn.Module, rule: str = "bert") -> None:
    """One module's initial weights under ``rule`` (:data:`WEIGHT_INITS`): normal weights (std
    0.02, or 1/sqrt(fan_in) for Linear layers under ``fan_in``), zero biases, unit LayerNorms."""
    if isinstance(m, (nn.Linear, nn.Embedding)):
        std = m.weight.shape[1] ** -0.5 if rule == "fan_in" and isinstance(m, nn.Linear) else 0.02
        nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------
# Hugging Face BERT checkpoints


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A BERT state dict from a file or a Hugging Face model folder (safetensors or .bin)."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise MissingResourceError(f"{path}: no model.safetensors or pytorch_model.bin inside; --text-init "
                                       "takes a Hugging Face BERT folder (e.g. bert-base-uncased downloaded "
                                       "elsewhere and copied here) or one of those files")
    if not path.is_file():
        raise MissingResourceError(f"{path}: no such BERT checkpoint; --text-init takes a Hugging Face BERT "
                                   "folder or its model.safetensors / pytorch_model.bin")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable checkpoint ({exc}); re-download it") from exc
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def bert_name(hf: str) -> str | None:
    """Our parameter name for a Hugging Face BERT one, or None when we have no such part.

    Handles the ``bert.`` prefix of ``BertForPreTraining`` and the old TensorFlow-port
    LayerNorm names ``gamma``/``beta``. Dropped: NSP head, position ids buffer, the MLM decoder
    weight (tied to the word embeddings here).
    """
    name = hf[len("bert."):] if hf.startswith("bert.") else hf
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    if name.startswith(("embeddings.word_embeddings", "embeddings.position_embeddings",
                        "embeddings.token_type_embeddings", "embeddings.LayerNorm", "encoder.layer.",
                        "pooler.dense")):
        return name
    if name.startswith("cls.predictions.transform.") or name == "cls.predictions.bias":
        return name
    return None


def load_bert_state(model: CLIPViLp, path: str | os.PathLike[str]) -> dict[str, int]:
    """Copy a local BERT checkpoint into the transformer; returns counts of what was loaded.

    Every transformer tensor of the encoder stack and the text embeddings must be present with
    the right shape (else a DataError naming the first problem): a silent partial load would
    pass for "BERT-initialised". Position embeddings longer than the checkpoint's are refused.
    """
    state = read_state_dict(path)
    ours = dict(model.named_parameters())
    loaded, skipped = 0, 0
    with torch.no_grad():
        for hf, tensor in state.items():
            name = bert_name(hf)
            if name is None or name not in ours:
                skipped += 1
                continue
            if tuple(ours[name].shape) != tuple(tensor.shape):
                raise DataError(f"{path}: {hf} has shape {tuple(tensor.shape)}, the model expects "
                                f"{tuple(ours[name].shape)} for {name}; use --transformer base (BERT-base) and "
                                "the checkpoint's vocab.txt (--vocab)")
            ours[name].copy_(tensor)
            loaded += 1
    required = [n for n in ours if n.startswith(("embeddings.", "encoder.layer."))]
    got = {bert_name(k) for k in state}
    missing = [n for n in required if n not in got]
    if missing:
        raise DataError(f"{path}: not a BERT checkpoint for this transformer: {len(missing)} tensors missing, "
                        f"e.g. {missing[0]} (expected Hugging Face BERT names such as "
                        "bert.encoder.layer.0.attention.self.query.weight)")
    return {"loaded": loaded, "skipped": skipped}
