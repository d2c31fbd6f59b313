"""CLIP-ViL_p pre-training and fine-tuning as tasks of the shared training core.

Both tasks train one model (:class:`~vln_clip.pretraining.model.CLIPViLp`) with two optimizers
(the paper's appendix): the CLIP backbone with SGD + momentum and a step decay, the transformer
(embeddings, layers, heads) with AdamW under linear warm-up and decay. ``freeze_backbone``
drops the SGD optimizer and runs the backbone without gradients (Table 8's frozen arm).

Pre-training (:class:`PretrainTask`) per batch: pick mismatched sentences (ITM, p=0.5), mask
15% of the words (MLM), sample 100 grid cells per image, and sum the MLM, ITM and -- from
``qa_from_epoch`` on -- the QA loss. Fine-tuning (:class:`FinetuneTask`) puts a classifier on
the pooled output over *all* grid cells: BCE on VQA soft scores, cross entropy for SNLI-VE and
GQA. All random draws of a step come from a task-owned generator kept in the checkpoint, so
``--resume`` reproduces an uninterrupted run bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vln_clip.errors import DataError
from vln_clip.eval.vqa_accuracy import vqa_accuracy
from vln_clip.io import atomic_path
from vln_clip.train import DataOrder, OptimizerConfig, Task, TaskContext, load_checkpoint

from .backbone import BackboneConfig, build_backbone, calibrate_batchnorm
from .data import (PretrainExample, TaskData, TaskExample, image_dir, load_task, lxmert_path, pretrain_examples,
                   qa_answer_vocab, qa_targets)
from .images import ImageSource, ResizeRule, collate_images
from .masking import IGNORE, MASK_PROB, MISMATCH_PROB, PRETRAIN_PATCHES, mask_words, mismatch_indices
from .model import (TRANSFORMER_PRESETS, CLIPViLp, TransformerConfig, calibrate_cells, load_bert_state,
                    transfer_answer_head)
from .tokenizer import VOCAB_FILE, WordPieceTokenizer, train_wordpiece


def _nested(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (possibly nested) config dataclass from ``asdict`` output, ignoring unknown keys."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        if f.name == "backbone" and isinstance(v, dict):
            v = _nested(BackboneConfig, v)
            if v.layers is not None:
                v = dataclasses.replace(v, layers=tuple(v.layers))
        elif f.name == "model" and isinstance(v, dict):
            v = _nested(ModelSetup, v)
        elif f.name.endswith("_optim") and isinstance(v, dict):
            v = OptimizerConfig.from_dict(v)
        elif isinstance(v, list) and f.name.endswith(("epochs", "splits")):
            v = tuple(v)
        values[f.name] = v
    return cls(**values)


@dataclass
class ModelSetup:
    """Model and input settings shared by pre-training and fine-tuning from scratch."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transformer: str = "base"  # TRANSFORMER_PRESETS name
    hidden: int | None = None  # overrides of the preset
    layers: int | None = None
    heads: int | None = None
    weight_init: str | None = None  # model.WEIGHT_INITS; None = the preset's
    vocab: str | None = None  # a WordPiece vocab.txt; None = train one on the training text
    vocab_size: int = 8000
    text_init: str | None = None  # a local Hugging Face BERT checkpoint (folder or file)
    short_side: int = 384
    long_side: int = 640
    max_text_len: int = 20  # LXMERT's sentence length
    max_grid: int = 64
    dropout: float = 0.1
    cache_images: bool = False
    threads: int = 2
    bn_calibration_images: int = 256  # random-weight backbones only (see calibrate_batchnorm)
    cell_calibration_images: int = 256  # grid-cell standardisation (see model.calibrate_cells); 0 = none

    def transformer_config(self, vocab_size: int, visual_dim: int) -> TransformerConfig:
        if self.transformer not in TRANSFORMER_PRESETS:
            raise DataError(f"unknown transformer preset {self.transformer!r}; choose one of "
                            f"{', '.join(TRANSFORMER_PRESETS)}")
        sizes = dict(TRANSFORMER_PRESETS[self.transformer])
        for k in ("hidden", "layers", "heads", "weight_init"):
            if getattr(self, k) is not None:
                sizes[k] = getattr(self, k)
        if self.hidden is not None:
            sizes["intermediate"] = 4 * self.hidden
        return TransformerConfig(vocab_size=vocab_size, visual_dim=visual_dim, max_grid=self.max_grid,
                                 dropout=self.dropout, **sizes)


PRETRAIN_OBJECTIVES = ("mlm", "itm", "qa")


@dataclass
class PretrainConfig:
    """Pre-training run (paper appendix defaults: 20 epochs, QA in the last 11, batch 512)."""

    data: str = ""
    model: ModelSetup = field(default_factory=ModelSetup)
    train_splits: tuple[str, ...] = ("train",)
    eval_split: str = "val"
    batch_size: int = 512
    eval_batch_size: int = 64
    eval_examples: int = 2048
    epochs: int = 20
    qa_from_epoch: int = 9  # QA loss from this (0-based) epoch on: the last 11 of 20
    objectives: tuple[str, ...] = PRETRAIN_OBJECTIVES  # a subset for ablations (LXMERT's --taskMaskLM etc.)
    # a pre-training checkpoint to continue from (a second phase with other data or objectives,
    # as LXMERT's --loadLXMERT): its model sizes, backbone, vocabulary and weights; fresh optimizers
    init: str | None = None
    # sentence sources (``sentf`` keys, e.g. mscoco) that MLM and ITM read; None = every sentence.
    # The other sentences (questions) then feed QA only: no masks, never mismatched, no ITM loss
    lm_sources: tuple[str, ...] | None = None
    patches: int = PRETRAIN_PATCHES
    mask_prob: float = MASK_PROB
    mismatch_prob: float = MISMATCH_PROB
    qa_min_count: int = 1
    max_train_examples: int | None = None  # a seeded random subset (CPU budgets); None = all
    freeze_backbone: bool = False
    # the backbone's learning rate is 0 before this (0-based) epoch: the randomly initialised
    # transformer first trains on fixed grid features (docs/pretraining.md, round 7)
    unfreeze_backbone_epoch: int = 0
    backbone_decay_epochs: tuple[int, ...] = (12, 17)
    warmup_fraction: float = 0.05
    backbone_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        "sgd", lr=3e-3, momentum=0.9, schedule="step", gamma=0.1, grad_clip=5.0))
    transformer_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        "adamw", lr=1e-4, weight_decay=0.01, schedule="linear", grad_clip=5.0))
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PretrainConfig":
        return _nested(cls, data)


@dataclass
class FinetuneConfig:
    """Fine-tuning run (appendix: AdamW 5e-5 + SGD 1e-3 decayed after epoch 3; SNLI-VE 2 epochs)."""

    task: str = "vqa"
    data: str = ""
    init: str = "scratch"  # "scratch" or a pre-training checkpoint (RUN/best.pt)
    model: ModelSetup = field(default_factory=ModelSetup)  # used as is for scratch; sizes come from init
    train_split: str = "train"
    eval_splits: tuple[str, ...] = ("val",)
    batch_size: int = 256
    eval_batch_size: int = 64
    epochs: int = 5
    min_answer_count: int = 1
    max_train_examples: int | None = None  # a seeded random subset (CPU budgets); None = all
    freeze_backbone: bool = False
    load_qa_head: bool = False  # VQA/GQA from a checkpoint: start from its QA head (LXMERT --loadLXMERTQA)
    unfreeze_backbone_epoch: int = 0  # as in PretrainConfig: backbone lr 0 before this epoch
    backbone_decay_epochs: tuple[int, ...] = (3,)
    warmup_fraction: float = 0.1
    backbone_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        "sgd", lr=1e-3, momentum=0.9, schedule="step", gamma=0.1, grad_clip=5.0))
    transformer_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        "adamw", lr=5e-5, weight_decay=0.01, schedule="linear", grad_clip=5.0))
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        return _nested(cls, data)


# ---------------------------------------------------------------------------------------


def _check_unfreeze(epoch: int, epochs: int, frozen: bool) -> None:
    """``--unfreeze-backbone-epoch`` must leave the backbone some epochs and cannot meet a frozen one."""
    if epoch == 0:
        return
    if frozen:
        raise DataError("--unfreeze-backbone-epoch with --freeze-backbone: the backbone never trains when frozen; "
                        "drop one of the two")
    if not 0 < epoch < epochs:
        raise DataError(f"--unfreeze-backbone-epoch {epoch}: must be between 1 and {epochs - 1} (the run has "
                        f"{epochs} epochs); use --freeze-backbone for a backbone that never trains")


PRETRAIN_KIND = "clipvil-pretrain"
CORE_PREFIXES = ("backbone.", "embeddings.", "visual_embeddings.", "encoder.", "pooler.")


def read_pretrained(path: str | Path) -> dict[str, Any]:
    """A pre-training checkpoint (``RUN/best.pt`` or ``last.pt``) with a clear error otherwise."""
    ckpt = load_checkpoint(path, "cpu")
    if ckpt.get("kind") != PRETRAIN_KIND:
        raise DataError(f"{path}: a {ckpt.get('kind')!r} checkpoint, not a CLIP-ViL_p pre-training one "
                        "(vln-clip pretrain writes RUN/best.pt); or pass --from scratch")
    return ckpt


def pretrained_setup(pretrained: dict[str, Any], local: ModelSetup) -> ModelSetup:
    """The model of a pre-training checkpoint (backbone, sizes, image rule, text length), with this
    run's machine settings (image cache, threads): a later run cannot change the architecture."""
    pre = PretrainConfig.from_dict(pretrained["config"])
    return dataclasses.replace(pre.model, vocab=None, text_init=None, cache_images=local.cache_images,
                               threads=local.threads)


def _check_init_options(setup: ModelSetup, source: str) -> None:
    """Options that would change a pre-trained model are refused rather than silently ignored."""
    given = [flag for flag, v in (("--vocab", setup.vocab), ("--text-init", setup.text_init)) if v]
    if given:
        raise DataError(f"{' and '.join(given)} with {source}: the checkpoint brings its own vocabulary and "
                        f"weights; drop {' and '.join(given)}")


class _VLTask(Task):
    """What both tasks share: tokenizer, images, the model and its two optimizers."""

    model_setup: ModelSetup
    tokenizer: WordPieceTokenizer
    model: CLIPViLp
    freeze: bool

    def _build_inputs(self, ctx: TaskContext, data: str) -> None:
        m = self.model_setup
        self.device = ctx.device
        self.images = ImageSource(image_dir(data), ResizeRule(m.short_side, m.long_side), m.cache_images, m.threads)
        self.grid_encoder = m.backbone.grid_name
        specials = self.tokenizer.special_ids
        self.candidate_ids = torch.tensor([i for i in range(self.tokenizer.vocab_size) if i not in specials])

    def _build_model(self, image_keys: Sequence[str], pretrain_answers: int | None = None,
                     classes: int | None = None, calibrate: bool = True) -> None:
        """The model on the device, with statistics from the first distinct training images (in
        file order): BatchNorm statistics of a random-weight backbone (``bn_calibration_images``)
        and the grid-cell standardisation (``cell_calibration_images``).

        ``calibrate=False`` when the statistics will be loaded anyway (a resumed run, or a
        pre-trained core that brings its own): computing them costs a backbone pass over 256
        images. The images are decoded once for both.
        """
        m = self.model_setup
        backbone = build_backbone(m.backbone)
        keys = list(dict.fromkeys(image_keys))
        loaded: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

        def first(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
            if n not in loaded:
                head = keys[:n]
                loaded[n] = [collate_images(self.images.batch(head[i: i + 32]), self.grid_encoder)
                             for i in range(0, len(head), 32)]
            return loaded[n]

        if calibrate and backbone.weights == "random" and m.bn_calibration_images > 0:
            calibrate_batchnorm(backbone, [images for images, _ in first(m.bn_calibration_images)])
        tcfg = m.transformer_config(self.tokenizer.vocab_size, backbone.spec.grid_channels)
        self.model = CLIPViLp(backbone, tcfg, pretrain_answers=pretrain_answers, classes=classes)
        if calibrate and m.cell_calibration_images > 0:
            backbone.eval()
            calibrate_cells(self.model, first(m.cell_calibration_images))
        if self.freeze:
            self.model.freeze_backbone()
        self.model.to(self.device)

    def _pretrained_tokenizer(self, ctx: TaskContext, pretrained: dict[str, Any]) -> WordPieceTokenizer:
        """The vocabulary the checkpoint was trained with, written to the run folder (kept on resume)."""
        path = ctx.out_dir / VOCAB_FILE
        if not (ctx.resuming and path.is_file()):
            ctx.out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text("\n".join(pretrained["extra"]["vocab"]) + "\n", encoding="utf-8")
        return WordPieceTokenizer(path)

    def _load_pretrained(self, state: dict[str, torch.Tensor], prefixes: tuple[str, ...], source: str) -> None:
        """Every tensor of the checkpoint under ``prefixes`` into the model; any mismatch is an error."""
        part = {k: v for k, v in state.items() if k.startswith(prefixes)}
        missing, unexpected = self.model.load_state_dict(part, strict=False)
        missing = [k for k in missing if k.startswith(prefixes)]
        if missing or unexpected:
            raise DataError(f"{source}: does not fit the model (missing {missing[:3]}, unexpected "
                            f"{list(unexpected)[:3]}); start from a checkpoint of vln-clip pretrain")

    def models(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def backbone_metrics(self) -> dict[str, float]:
        """The mean followed std of the grid cells, logged with every evaluation: it stays at
        its calibration value for a frozen backbone and shows drift of a training one at once
        (at 5x the paper's backbone rate it grew 450x in 250 updates, docs/pretraining.md)."""
        return {"backbone/cell_std": float(self.model.visual_embeddings.cell_std.mean())}

    def _optimizers(self, backbone: OptimizerConfig, transformer: OptimizerConfig, decay_epochs: Sequence[int],
                    warmup_fraction: float, epochs: int, unfreeze_epoch: int) -> dict[str, tuple[Any, OptimizerConfig]]:
        steps = self.steps_per_epoch()
        total = max(epochs * steps, 1)
        tcfg = dataclasses.replace(transformer, warmup_steps=transformer.warmup_steps or int(warmup_fraction * total))
        out: dict[str, tuple[Any, OptimizerConfig]] = {"transformer": (self.model.transformer_parameters(), tcfg)}
        if not self.freeze:
            bcfg = dataclasses.replace(backbone, milestones=backbone.milestones or tuple(e * steps for e in decay_epochs),
                                       hold_steps=backbone.hold_steps or unfreeze_epoch * steps)
            out["backbone"] = (self.model.backbone_parameters(), bcfg)
        return out

    def encode_text(self, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = self.tokenizer.encode(texts, max_len)
        length = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), length), self.tokenizer.pad_id, dtype=torch.long)
        words = torch.full((len(rows), length), -1, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for i, (t, w) in enumerate(rows):
            ids[i, : len(t)] = torch.tensor(t)
            words[i, : len(w)] = torch.tensor(w)
            mask[i, : len(t)] = True
        return ids, mask, words

    def image_batch(self, keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        images, valid = collate_images(self.images.batch(keys), self.grid_encoder)
        return images.to(self.device), valid

    def vocab_state(self) -> dict[str, Any]:
        return {"vocab": self.tokenizer.vocab_path.read_text(encoding="utf-8").splitlines()}

    def check_vocab_state(self, state: dict[str, Any]) -> None:
        if "vocab" in state and state["vocab"] != self.vocab_state()["vocab"]:
            raise DataError(f"the checkpoint's WordPiece vocabulary differs from {self.tokenizer.vocab_path}; "
                            "resume in the run folder the checkpoint came from")


def subsample(rows: list, n: int | None, seed: int) -> list:
    """``n`` rows drawn without replacement by a seeded permutation, in their original order."""
    if n is None or n >= len(rows):
        return rows
    keep = sorted(torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n].tolist())
    return [rows[i] for i in keep]


def _tokenizer_for(out_dir: Path, setup: ModelSetup, texts: Sequence[str], resuming: bool) -> WordPieceTokenizer:
    """The run's vocabulary: kept on resume, else copied from ``--vocab`` or trained on ``texts``."""
    path = out_dir / VOCAB_FILE
    if resuming and path.is_file():
        return WordPieceTokenizer(path)
    if setup.vocab:
        tok = WordPieceTokenizer(setup.vocab)
        tok.save(out_dir)
        return WordPieceTokenizer(path)
    return train_wordpiece(texts, out_dir, vocab_size=setup.vocab_size)


class PretrainTask(_VLTask):
    """MLM + ITM (+ QA late in the schedule) on the LXMERT mix."""

    kind = PRETRAIN_KIND

    def __init__(self, config: PretrainConfig) -> None:
        unknown = [o for o in config.objectives if o not in PRETRAIN_OBJECTIVES]
        if unknown or not config.objectives:
            raise DataError(f"pre-training objectives {list(config.objectives)}: choose one or more of "
                            f"{', '.join(PRETRAIN_OBJECTIVES)} (e.g. --objectives mlm,itm)")
        self.freeze = config.freeze_backbone
        _check_unfreeze(config.unfreeze_backbone_epoch, config.epochs, config.freeze_backbone)
        self.pretrained: dict[str, Any] | None = None
        self.qa_head_report: dict[str, int] | None = None
        if config.init:
            _check_init_options(config.model, f"--init {config.init}")
            self.pretrained = read_pretrained(config.init)
            config = dataclasses.replace(config, model=pretrained_setup(self.pretrained, config.model))
        self.config = config
        self.model_setup = config.model

    def setup(self, ctx: TaskContext) -> None:
        c = self.config
        val_path = lxmert_path(c.data, c.eval_split)
        val = pretrain_examples([val_path]) if val_path.exists() else []
        held_out = {ex.image_key for ex in val}
        self.train = subsample(pretrain_examples([lxmert_path(c.data, s) for s in c.train_splits],
                                                 exclude_keys=held_out), c.max_train_examples, c.seed)
        order = torch.randperm(len(val), generator=torch.Generator().manual_seed(1234)).tolist()
        self.val = [val[i] for i in order[: c.eval_examples]]
        self.train_keys = [ex.image_key for ex in self.train]
        self.qa_vocab = qa_answer_vocab(self.train, c.qa_min_count)
        if self.pretrained is not None:
            self.tokenizer = self._pretrained_tokenizer(ctx, self.pretrained)
        else:
            self.tokenizer = _tokenizer_for(ctx.out_dir, c.model, [ex.sentence for ex in self.train], ctx.resuming)
        self._build_inputs(ctx, c.data)
        self._build_model(self.train_keys, pretrain_answers=len(self.qa_vocab),
                          calibrate=self.pretrained is None and not ctx.resuming)
        if self.pretrained is not None:
            if not ctx.resuming:  # a resumed run loads its own last.pt over all of this
                self._init_from_pretrained(self.pretrained)
        elif c.model.text_init:
            self.text_init_report = load_bert_state(self.model, c.model.text_init)
        self.order = DataOrder(len(self.train), c.batch_size, seed=c.seed)
        self.generator = torch.Generator().manual_seed(10_007 * (c.seed + 1) + ctx.rank)
        self.qa_from_step = c.qa_from_epoch * self.order.batches_per_epoch
        if c.lm_sources is not None:
            sources = {ex.source for ex in self.train}
            if not sources & set(c.lm_sources):
                raise DataError(f"--lm-sources {','.join(c.lm_sources)}: no training sentence has these sources "
                                f"(the mix has {', '.join(sorted(sources))}); name some of them")
        # per pool (train, val): the indices of the sentences MLM and ITM read, and each one's position
        self._lm_pools = {id(pool): self._lm_index(pool) for pool in (self.train, self.val)}

    def _init_from_pretrained(self, pretrained: dict[str, Any]) -> None:
        """Core, MLM and ITM heads as they were; the QA head keeps the rows of the answers both
        answer tables share (a phase on other QA data has its own table), the rest fresh."""
        state = pretrained["models"]["model"]
        self._load_pretrained(state, CORE_PREFIXES + ("cls.", "itm."), str(self.config.init))
        answers = pretrained["extra"].get("qa_answers", [])
        if answers:
            self.qa_head_report = transfer_answer_head(self.model.qa, state, "qa.", answers,
                                                       list(self.qa_vocab.answers))
        else:
            self.qa_head_report = {"copied": 0, "new": len(self.qa_vocab.answers)}

    def optimizers(self) -> dict[str, tuple[Any, OptimizerConfig]]:
        c = self.config
        return self._optimizers(c.backbone_optim, c.transformer_optim, c.backbone_decay_epochs, c.warmup_fraction,
                                c.epochs, c.unfreeze_backbone_epoch)

    def _lm_index(self, pool: Sequence[PretrainExample]) -> tuple[list[int], dict[int, int]] | None:
        if self.config.lm_sources is None:
            return None
        chosen = [i for i, ex in enumerate(pool) if ex.source in self.config.lm_sources]
        return chosen, {j: k for k, j in enumerate(chosen)}

    def batch_inputs(self, indices: Sequence[int], pool: Sequence[PretrainExample], keys: Sequence[str],
                     generator: torch.Generator) -> dict[str, torch.Tensor | list[int]]:
        """The text side of a batch: which sentence each image is paired with (ITM), the masked
        ids and their labels (MLM), and ``lm`` (the rows MLM and ITM apply to, see ``lm_sources``)."""
        c = self.config
        # an objective left out is neither trained nor applied to the input: no mismatches without
        # ITM, no masked words without MLM
        on = {o: o in c.objectives for o in PRETRAIN_OBJECTIVES}
        prob = c.mismatch_prob if on["itm"] else 0.0
        lm_pool = None if c.lm_sources is None else (self._lm_pools.get(id(pool)) or self._lm_index(pool))
        if lm_pool is None:
            sent_of, matched = mismatch_indices(keys, list(indices), generator, prob)
            lm = torch.ones(len(indices), dtype=torch.bool)
        else:  # mismatches only among the lm rows, drawn from the lm sentences of the pool
            chosen, position = lm_pool
            lm = torch.tensor([j in position for j in indices], dtype=torch.bool)
            rows = [i for i, j in enumerate(indices) if j in position]
            sub, sub_matched = mismatch_indices([keys[j] for j in chosen], [position[indices[i]] for i in rows],
                                                generator, prob)
            sent_of, matched = list(indices), torch.ones(len(indices))
            for r, k, m in zip(rows, sub, sub_matched.tolist()):
                sent_of[r], matched[r] = chosen[k], m
        ids, mask, words = self.encode_text([pool[j].sentence for j in sent_of], c.model.max_text_len)
        words[~lm] = -1  # never masked
        masked, labels = mask_words(ids, words, self.tokenizer.mask_id, self.candidate_ids, generator,
                                    c.mask_prob if on["mlm"] else 0.0)
        return {"sent_of": sent_of, "matched": matched, "ids": ids, "mask": mask, "masked": masked,
                "labels": labels, "lm": lm}

    def batch_losses(self, examples: Sequence[PretrainExample], indices: Sequence[int], pool: Sequence[PretrainExample],
                     keys: Sequence[str], generator: torch.Generator, with_qa: bool, model: torch.nn.Module
                     ) -> dict[str, torch.Tensor]:
        """Losses and accuracies of one batch (``pool``/``keys``: where mismatched sentences come from)."""
        c = self.config
        on = {o: o in c.objectives for o in PRETRAIN_OBJECTIVES}
        text = self.batch_inputs(indices, pool, keys, generator)
        ids, mask, masked, labels = text["ids"], text["mask"], text["masked"], text["labels"]
        matched, lm = text["matched"], text["lm"]
        images, valid = self.image_batch([ex.image_key for ex in examples])
        dev = self.device
        out = model(images, valid, masked.to(dev), mask.to(dev), patches=c.patches, generator=generator)
        heads = self.model
        text_h = out["hidden"][:, : ids.shape[1]]
        labels = labels.to(dev)
        sel = labels != IGNORE
        mlm_logits = heads.cls.predictions(text_h[sel])
        n_masked = int(sel.sum())
        mlm_loss = F.cross_entropy(mlm_logits, labels[sel], reduction="sum") / max(n_masked, 1)
        lm_rows = lm.to(dev)
        itm_logits = heads.itm(out["pooled"])[lm_rows]
        target = matched.long().to(dev)[lm_rows]
        itm_loss = F.cross_entropy(itm_logits, target) if len(target) else itm_logits.sum() * 0.0
        qa_logits = heads.qa(out["pooled"])
        qa_rows = [i for i, ex in enumerate(examples) if ex.label is not None and bool(matched[i])]
        soft = torch.zeros(len(examples), qa_logits.shape[1], device=dev)
        for i in qa_rows:
            for k, s in qa_targets(examples[i].label, self.qa_vocab).items():
                soft[i, k] = s
        if qa_rows:
            r = torch.tensor(qa_rows, device=dev)
            qa_loss = F.binary_cross_entropy_with_logits(qa_logits[r], soft[r]) * qa_logits.shape[1]
            qa_acc = soft[r].gather(1, qa_logits[r].argmax(1, keepdim=True)).mean()
        else:
            qa_loss = qa_logits.sum() * 0.0
            qa_acc = torch.tensor(float("nan"))
        # zero-weighted before qa_from (or when left out): every head still gets a gradient (DDP)
        weight = 1.0 if with_qa and on["qa"] else 0.0
        loss = float(on["mlm"]) * mlm_loss + float(on["itm"]) * itm_loss + weight * qa_loss
        return {"loss": loss, "mlm_loss": mlm_loss.detach(),
                "itm_loss": itm_loss.detach(), "qa_loss": qa_loss.detach(),
                "mlm_acc": (mlm_logits.argmax(1) == labels[sel]).float().mean() if n_masked else torch.tensor(float("nan")),
                "itm_acc": (itm_logits.argmax(1) == target).float().mean() if len(target) else torch.tensor(float("nan")),
                "qa_acc": qa_acc, "n_masked": torch.tensor(float(n_masked)), "n_qa": torch.tensor(float(len(qa_rows))),
                "n_itm": torch.tensor(float(len(target)))}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        idx = self.order.next().tolist()
        logs = self.batch_losses([self.train[i] for i in idx], idx, self.train, self.train_keys, self.generator,
                                 step >= self.qa_from_step, self.module("model"))
        # the losses logged: the total and those of the objectives trained (a left-out head's is noise)
        trained = {f"{o}_loss" for o in self.config.objectives}
        return {k: v for k, v in logs.items() if k == "loss" or k in trained}

    def evaluate(self) -> dict[str, float]:
        """Masked-word, matching and QA accuracy on a fixed subset of the held-out images
        (a fixed generator: the same masks and mismatches at every evaluation)."""
        if not self.val:
            return {}
        c = self.config
        gen = torch.Generator().manual_seed(4321)
        keys = [ex.image_key for ex in self.val]
        sums = {"mlm": [0.0, 0.0], "itm": [0.0, 0.0], "qa": [0.0, 0.0]}
        for start in range(0, len(self.val), c.eval_batch_size):
            idx = list(range(start, min(start + c.eval_batch_size, len(self.val))))
            logs = self.batch_losses([self.val[i] for i in idx], idx, self.val, keys, gen, True, self.model)
            for name, count in (("mlm", logs["n_masked"]), ("itm", logs["n_itm"]), ("qa", logs["n_qa"])):
                n = float(count)
                if n:
                    sums[name][0] += float(logs[f"{name}_acc"]) * n
                    sums[name][1] += n
        metrics = {f"val/{k}_acc": v[0] / v[1] for k, v in sums.items() if v[1] and k in c.objectives}
        metrics["val/score"] = float(np.mean(list(metrics.values())))
        return {**metrics, **self.backbone_metrics()}

    def extra_state(self) -> dict[str, Any]:
        return {**self.vocab_state(), "qa_answers": list(self.qa_vocab.answers),
                "generator": self.generator.get_state(), "backbone": self.model_setup.backbone.label()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.check_vocab_state(state)
        if "generator" in state:
            self.generator.set_state(state["generator"])


# ---------------------------------------------------------------------------------------


QA_HEAD_TASKS = ("vqa", "gqa")  # tasks whose labels are answers, as in the pre-training QA table


class FinetuneTask(_VLTask):
    """A classifier over the pooled output for VQA, SNLI-VE or GQA."""

    kind = "clipvil-finetune"

    def __init__(self, config: FinetuneConfig) -> None:
        self.config = config
        self.freeze = config.freeze_backbone
        self.pretrained: dict[str, Any] | None = None
        self.qa_head_report: dict[str, int] | None = None
        self.model_setup = config.model
        _check_unfreeze(config.unfreeze_backbone_epoch, config.epochs, config.freeze_backbone)
        if config.load_qa_head and (config.init == "scratch" or config.task not in QA_HEAD_TASKS):
            raise DataError(f"--load-qa-head starts the answer head from a pre-training checkpoint's QA head: it "
                            f"needs --from RUN/best.pt and --task {' or '.join(QA_HEAD_TASKS)} (got --from "
                            f"{config.init}, --task {config.task}); drop it otherwise")
        if config.init != "scratch":
            self.pretrained = read_pretrained(config.init)
            self.model_setup = pretrained_setup(self.pretrained, config.model)
            self.config = dataclasses.replace(config, model=self.model_setup)

    def setup(self, ctx: TaskContext) -> None:
        c = self.config
        self.data: TaskData = load_task(c.data, c.task, c.eval_splits, c.train_split, c.min_answer_count)
        self.data.train = subsample(self.data.train, c.max_train_examples, c.seed)
        self.latest: dict[str, tuple[list[TaskExample], list[str], np.ndarray]] = {}
        if self.pretrained is not None:
            self.tokenizer = self._pretrained_tokenizer(ctx, self.pretrained)
        else:
            self.tokenizer = _tokenizer_for(ctx.out_dir, self.model_setup, [ex.text for ex in self.data.train],
                                            ctx.resuming)
        self._build_inputs(ctx, c.data)
        self._build_model([ex.image_key for ex in self.data.train], classes=len(self.data.classes),
                          calibrate=self.pretrained is None and not ctx.resuming)
        if self.pretrained is not None:
            self._load_pretrained(self.pretrained["models"]["model"], CORE_PREFIXES, c.init)
            if c.load_qa_head:
                self.qa_head_report = transfer_answer_head(
                    self.model.classifier, self.pretrained["models"]["model"], "qa.",
                    self.pretrained["extra"].get("qa_answers", []), self.data.classes)
                if not self.qa_head_report["copied"]:
                    raise DataError(f"{c.init}: none of the {len(self.data.classes)} {c.task} answers is in the "
                                    "pre-training QA table; drop --load-qa-head")
        elif self.model_setup.text_init:
            load_bert_state(self.model, self.model_setup.text_init)
        self.order = DataOrder(len(self.data.train), c.batch_size, seed=c.seed)

    def optimizers(self) -> dict[str, tuple[Any, OptimizerConfig]]:
        c = self.config
        return self._optimizers(c.backbone_optim, c.transformer_optim, c.backbone_decay_epochs, c.warmup_fraction,
                                c.epochs, c.unfreeze_backbone_epoch)

    def logits(self, examples: Sequence[TaskExample], model: torch.nn.Module) -> torch.Tensor:
        ids, mask, _ = self.encode_text([ex.text for ex in examples], self.model_setup.max_text_len)
        images, valid = self.image_batch([ex.image_key for ex in examples])
        out = model(images, valid, ids.to(self.device), mask.to(self.device), patches=None)
        return self.model.classifier(out["pooled"])

    def loss(self, logits: torch.Tensor, examples: Sequence[TaskExample]) -> torch.Tensor:
        if self.config.task == "vqa":
            soft = torch.zeros_like(logits)
            for i, ex in enumerate(examples):
                for k, s in (ex.target or {}).items():  # type: ignore[union-attr]
                    soft[i, k] = s
            # LXMERT/CLIP-ViL: BCE averaged over answers times the number of answers
            return F.binary_cross_entropy_with_logits(logits, soft) * logits.shape[1]
        target = torch.tensor([int(ex.target) for ex in examples], device=logits.device)  # type: ignore[arg-type]
        return F.cross_entropy(logits, target)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        examples = [self.data.train[i] for i in self.order.next().tolist()]
        return {"loss": self.loss(self.logits(examples, self.module("model")), examples)}

    def predict(self, split: str) -> tuple[list[TaskExample], list[str], np.ndarray]:
        """Predicted answer strings and per-question scores (VQA accuracy in [0, 1], else 0/1)."""
        examples = self.data.evals[split]
        preds: list[str] = []
        for start in range(0, len(examples), self.config.eval_batch_size):
            batch = examples[start: start + self.config.eval_batch_size]
            preds.extend(self.data.classes[int(i)] for i in self.logits(batch, self.model).argmax(1).tolist())
        if self.config.task == "vqa":
            scored = [i for i, ex in enumerate(examples) if ex.answers]
            scores = np.full(len(examples), np.nan)
            if scored:
                scores[scored] = vqa_accuracy([examples[i].answers for i in scored], [preds[i] for i in scored])
        else:
            scores = np.array([np.nan if ex.answer is None else float(p == ex.answer) for ex, p in zip(examples, preds)])
        return examples, preds, scores

    def evaluate(self) -> dict[str, float]:
        out = {}
        for split in self.data.evals:
            self.latest[split] = self.predict(split)
            scores = self.latest[split][2]
            if np.isfinite(scores).any():
                out[f"{split}/accuracy"] = float(np.nanmean(scores) * 100.0)
        return {**out, **self.backbone_metrics()}

    def extra_state(self) -> dict[str, Any]:
        return {**self.vocab_state(), "classes": list(self.data.classes), "task": self.config.task,
                "init": self.config.init}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.check_vocab_state(state)
        if state.get("classes") and list(state["classes"]) != list(self.data.classes):
            raise DataError("the checkpoint's label space differs from the one built on this training split; "
                            "resume with the same --data and --min-answer-count")

