"""Training the captioner on the shared training core: cross-entropy, then SCST.

Stage 1 (``xe``): teacher forcing on every reference of each image (5 captions per image
share one encoding, self-critical.pytorch's ``seq_per_img``), cross-entropy with optional
label smoothing. Stage 2 (``scst``, started from a stage-1 checkpoint with ``scst_from``):
5 sampled captions per image, CIDEr-D reward against the image's training references,
"new self-critical" mean-of-others baseline or the greedy baseline (:mod:`.scst`).

SCST samples and re-scores with the network in eval mode (no dropout), so the sampled
captions and the log-probabilities that get the gradient come from one and the same policy;
sampling runs without gradients and one teacher-forced pass gives the log-probabilities.

Validation (``evaluate``): greedy captions of the val images, CIDEr-D against their
references with document frequencies over the val references (what coco-caption does over
an evaluated split), reported as ``val/CIDEr`` (pycocoevalcap's scale: 1.0 = 100 in papers).
Checkpoints, resume, TensorBoard (``train/loss``, ``train/reward``, ``val/CIDEr``) and
progress are the training core's (:func:`vln_clip.train.fit`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from vln_clip.datasets.coco import read_karpathy
from vln_clip.errors import DataError
from vln_clip.eval.cider import CiderD
from vln_clip.train import DataOrder, FitResult, LoopConfig, OptimizerConfig, Task, TaskContext, fit, load_checkpoint

from .data import CaptionSplit, GridFeatures, karpathy_path, load_split
from .decoding import greedy, sample, sequence_logprobs
from .model import CaptionerConfig, TransformerCaptioner, preset
from .scst import CiderReward, mean_of_others, scst_loss
from .vocab import MAX_LEN, MIN_COUNT, PAD, CaptionVocab

KIND = "captioner"
STAGES = ("xe", "scst")
BASELINES = ("mean", "greedy")


@dataclass
class CaptionTrainConfig:
    """What a captioning run trains on and how (the loop's settings are a :class:`LoopConfig`)."""

    data: str = ""
    features: str = ""
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's sizes
    scst_from: str | None = None  # a stage-1 checkpoint: this run is stage 2 (SCST)
    batch_size: int = 32  # images per update
    seq_per_img: int = 5  # XE: references per image per update
    label_smoothing: float = 0.0
    scst_samples: int = 5
    scst_baseline: str = "mean"
    temperature: float = 1.0
    max_len: int = MAX_LEN
    min_count: int = MIN_COUNT
    val_images: int | None = None  # evaluate on the first N val images (None = all)
    preload: bool = True
    data_seed: int = 0  # the order of training images (its state is checkpointed)
    optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", lr=5e-4, betas=(0.9, 0.98),
                                                                            grad_clip=0.1))

    @property
    def stage(self) -> str:
        return "scst" if self.scst_from else "xe"

    def validate(self) -> None:
        if self.scst_baseline not in BASELINES:
            raise ValueError(f"scst_baseline must be one of {BASELINES}, got {self.scst_baseline!r}")
        if self.scst_baseline == "mean" and self.scst_samples < 2:
            raise ValueError("the mean-of-others baseline needs scst_samples >= 2")
        if self.batch_size < 1 or self.seq_per_img < 1 or self.max_len < 1:
            raise ValueError("batch_size, seq_per_img and max_len must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CaptionTrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if isinstance(values.get("optim"), dict):
            values["optim"] = OptimizerConfig.from_dict(values["optim"])
        return cls(**values)


def load_captioner(path: str | Path, map_location: str = "cpu") -> tuple[TransformerCaptioner, CaptionVocab, dict[str, Any]]:
    """Model (eval mode), vocabulary and checkpoint of a captioning run's ``best.pt``/``last.pt``."""
    ckpt = load_checkpoint(path, map_location=map_location)
    if ckpt.get("kind") != KIND:
        raise DataError(f"{path}: a {ckpt.get('kind')!r} checkpoint, not a captioner; pass RUN/best.pt of "
                        f"`vln-clip caption train`")
    extra = ckpt["extra"]
    model = TransformerCaptioner(CaptionerConfig.from_dict(extra["model_config"]))
    model.load_state_dict(ckpt["models"]["captioner"])
    model.eval()
    return model, CaptionVocab.from_state(extra["vocab"]), ckpt


def require_same_features(features: GridFeatures, ckpt: dict[str, Any]) -> None:
    """Refuse a grid store made by another encoder or weights than the checkpoint was trained on."""
    rec = ckpt.get("extra", {}).get("features")
    if rec:
        features.store.require(encoder=rec["encoder"], weights=rec["weights"])


class CaptionTask(Task):
    """The captioning task the training core drives (one model ``captioner``)."""

    kind = KIND

    def __init__(self, config: CaptionTrainConfig) -> None:
        config.validate()
        self.config = config

    # -- setup -----------------------------------------------------------------------------
    def setup(self, ctx: TaskContext) -> None:
        c = self.config
        self.device = ctx.device
        images = read_karpathy(karpathy_path(c.data))
        self.train = load_split(c.data, "train", images)
        self.val = load_split(c.data, "val", images)
        if c.val_images:
            self.val = CaptionSplit("val", self.val.keys[: c.val_images], self.val.image_ids[: c.val_images],
                                    self.val.captions[: c.val_images])
        self.features = GridFeatures(c.features, self.train.keys + self.val.keys, preload=c.preload)
        start = None
        if c.scst_from:
            model, vocab, start = load_captioner(c.scst_from)
            self.vocab = vocab
            self.model_config = model.cfg
            self.model = model.to(ctx.device)
        else:
            self.vocab = CaptionVocab.build((t for caps in self.train.captions for t in caps), c.min_count)
            self.model_config = preset(c.preset, **c.model, feat_dim=self.features.dim, vocab_size=len(self.vocab),
                                       max_len=c.max_len)
            self.model = TransformerCaptioner(self.model_config).to(ctx.device)
        if start is not None:
            require_same_features(self.features, start)
        if self.features.dim != self.model_config.feat_dim:
            raise DataError(f"{c.features}: features have {self.features.dim} channels but the model of "
                            f"{c.scst_from} was trained on {self.model_config.feat_dim}; use the same store")
        self.scst_start = None if start is None else {"checkpoint": str(c.scst_from), "step": start.get("step")}
        # Targets of every reference, padded: [images, refs, max_len + 2].
        n_refs = max(len(caps) for caps in self.train.captions)
        self.targets = torch.full((len(self.train), n_refs, c.max_len + 2), PAD, dtype=torch.long)
        self.n_refs = torch.tensor([len(caps) for caps in self.train.captions])
        for i, caps in enumerate(self.train.captions):
            self.targets[i, : len(caps)] = self.vocab.targets(caps, c.max_len)
        self.order = DataOrder(len(self.train), c.batch_size, seed=c.data_seed)
        if c.stage == "scst":
            self.reward = CiderReward(self.train.refs())
        self.val_cider = CiderD(self.val.refs())

    def models(self) -> dict[str, torch.nn.Module]:
        return {"captioner": self.model}

    def optimizers(self) -> dict[str, tuple[Any, OptimizerConfig]]:
        return {"captioner": (self.model.parameters(), self.config.optim)}

    # -- training --------------------------------------------------------------------------
    def _pick_refs(self, idx: torch.Tensor) -> torch.Tensor:
        """``seq_per_img`` references per image (cycling when an image has fewer)."""
        k = self.config.seq_per_img
        pos = torch.arange(k)[None, :] % self.n_refs[idx][:, None]
        return self.targets[idx[:, None], pos].reshape(len(idx) * k, -1)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        idx = self.order.next()
        keys = [self.train.keys[i] for i in idx.tolist()]
        feats, mask, shapes = self.features.batch(keys, self.device)
        if self.config.stage == "xe":
            return self._xe_step(idx, feats, mask, shapes)
        return self._scst_step(keys, feats, mask, shapes)

    def _xe_step(self, idx, feats, mask, shapes) -> dict[str, torch.Tensor]:
        c = self.config
        seqs = self._pick_refs(idx).to(self.device)
        logits = self.module("captioner")(feats, mask, shapes, seqs[:, :-1], per_image=c.seq_per_img)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), seqs[:, 1:].reshape(-1),
                               ignore_index=PAD, label_smoothing=c.label_smoothing)
        return {"loss": loss, "xe": loss.detach()}

    def _scst_step(self, keys, feats, mask, shapes) -> dict[str, torch.Tensor]:
        c = self.config
        model = self.model
        model.eval()  # one policy for sampling and scoring: no dropout (module docstring)
        n = c.scst_samples
        memory, pad = model.encode(feats, mask, shapes)
        with torch.no_grad():
            samples = sample(model, memory.detach(), pad, n=n, temperature=c.temperature, max_len=c.max_len)
        captions = [self.vocab.decode(s) for s in samples.tolist()]
        rep_keys = [k for k in keys for _ in range(n)]
        rewards = torch.as_tensor(self.reward(captions, rep_keys), dtype=torch.float32).reshape(len(keys), n)
        if c.scst_baseline == "mean":
            baseline = mean_of_others(rewards)
        else:
            with torch.no_grad():
                g = greedy(model, memory.detach(), pad, max_len=c.max_len)
            greedy_r = torch.as_tensor(self.reward([self.vocab.decode(s) for s in g.tolist()], keys),
                                       dtype=torch.float32)
            baseline = greedy_r[:, None].expand_as(rewards)
        advantage = (rewards - baseline).reshape(-1).to(self.device)
        logp, tok_mask = sequence_logprobs(model, memory.repeat_interleave(n, 0), pad.repeat_interleave(n, 0),
                                           samples)
        loss = scst_loss(logp, tok_mask, advantage)
        return {"loss": loss, "reward": rewards.mean(), "baseline": baseline.mean()}

    # -- validation ------------------------------------------------------------------------
    def caption_keys(self, keys: list[str], batch: int = 64) -> list[str]:
        out: list[str] = []
        for i in range(0, len(keys), batch):
            feats, mask, shapes = self.features.batch(keys[i: i + batch], self.device)
            memory, pad = self.model.encode(feats, mask, shapes)
            out.extend(self.vocab.decode(s) for s in greedy(self.model, memory, pad, self.config.max_len).tolist())
        return out

    def evaluate(self) -> dict[str, float]:
        caps = self.caption_keys(self.val.keys)
        scores = self.val_cider.scores(caps, self.val.keys)
        return {"val/CIDEr": float(np.mean(scores)),
                "val/mean_words": float(np.mean([len(s.split()) for s in caps]))}

    def extra_state(self) -> dict[str, Any]:
        store = self.features.store
        return {"vocab": self.vocab.state(), "model_config": self.model_config.to_dict(),
                "scst_start": self.scst_start,
                "features": {"encoder": store.encoder, "weights": store.weights, "path": str(self.config.features)}}


def train_captioner(config: CaptionTrainConfig, loop: LoopConfig) -> FitResult:
    """Run one stage (XE, or SCST when ``config.scst_from`` is set) with the training core."""
    if loop.best_metric is None:
        loop = dataclasses.replace(loop, best_metric="val/CIDEr", best_mode="max")
    return fit(CaptionTask(config), loop)
