"""Training Pythia / MCAN (and the question-only variants) on the shared training core.

The loss is binary cross-entropy between the answer logits and the VQA soft scores
(:meth:`vln_clip.datasets.vqa.AnswerVocab.soft_scores`), summed over the answer vocabulary and
averaged over the batch (MMF's ``logit_bce``; openvqa sums over the batch too, which Adam's
scale invariance makes the same update up to ``eps``). Validation is the official accuracy
(:func:`vln_clip.eval.vqa_accuracy.score_items`) of the arg-max answers, overall and per answer
type; ``best.pt`` is the best ``val/accuracy``.

Default hyper-parameters follow the public grid/region-feature recipes, with their schedule
*shapes* kept and their *lengths* scaled to the run (so a short CPU run on the synthetic world
still warms up and decays at the same fractions of training):

* MCAN (openvqa ``configs/vqa/mcan_small.yml`` / ``mcan_large.yml``): Adam, betas (0.9, 0.98),
  eps 1e-9, lr 1e-4 (small) / 7e-5 (large), batch 64, 13 epochs, warm-up over the first 3
  epochs, x0.2 at epochs 10 and 12, no gradient clipping.
* Pythia (MMF ``projects/pythia/configs/vqa2/defaults.yaml``): batch 512, 22,000 updates,
  warm-up over the first 1,000, x0.1 at 15k/18k/20k/21k, gradient L2 norm clipped at 0.25.
  MMF uses Adamax at lr 0.01; the training core has no Adamax, so the default here is Adam at
  lr 1e-3 (pass ``--lr`` to change it).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from vln_clip.datasets.vqa import ANSWER_TYPES, AnswerVocab, VQAItem
from vln_clip.errors import DataError
from vln_clip.eval.vqa_accuracy import score_items
from vln_clip.tokenizers import Vocab
from vln_clip.train import DataOrder, FitResult, LoopConfig, OptimizerConfig, Task, TaskContext, Trainer
from vln_clip.train import load_checkpoint, save_checkpoint
from vln_clip.io import write_json

from .baselines import PriorBaseline
from .data import EncodedSplit, GridBank, encode_split, read_split
from .models import MCANConfig, PythiaConfig, build_model, config_from_dict, model_config
from .text import build_question_vocab, read_glove

TASK_KIND = "vqa"
PRIOR_KIND = "vqa-prior"
MODEL_CHOICES = ("pythia", "mcan", "prior")
FEATURE_NORMS = ("none", "standardize")


@dataclass(frozen=True)
class Recipe:
    """A published training recipe: optimizer, batch, length, and schedule as fractions of the run."""

    source: str
    optimizer: str
    lr: float
    betas: tuple[float, float]
    eps: float
    grad_clip: float | None
    batch_size: int
    epochs: int | None
    iters: int | None
    warmup_frac: float
    milestone_fracs: tuple[float, ...]
    gamma: float


RECIPES: dict[str, Recipe] = {
    "mcan": Recipe("openvqa configs/vqa/mcan_small.yml", "adam", 1e-4, (0.9, 0.98), 1e-9, None, 64, 13, None,
                   3 / 13, (10 / 13, 12 / 13), 0.2),
    "mcan-large": Recipe("openvqa configs/vqa/mcan_large.yml", "adam", 7e-5, (0.9, 0.98), 1e-9, None, 64, 13,
                         None, 3 / 13, (10 / 13, 12 / 13), 0.2),
    "pythia": Recipe("MMF projects/pythia/configs/vqa2/defaults.yaml (Adamax 0.01 -> Adam 1e-3)", "adam", 1e-3,
                     (0.9, 0.999), 1e-8, 0.25, 512, None, 22000, 1000 / 22000,
                     (15 / 22, 18 / 22, 20 / 22, 21 / 22), 0.1),
}


def recipe_for(model: str, preset: str | None) -> Recipe:
    if model == "mcan" and preset == "large":
        return RECIPES["mcan-large"]
    return RECIPES[model]


@dataclass
class VQATrainConfig:
    """One VQA run: data, features, model, and the overrides of the model's recipe.

    ``None`` fields take the recipe's value (see :data:`RECIPES`). ``question_only`` trains the
    same family without the image (no feature store needed). ``max_train`` / ``max_val`` keep the
    first questions of a split (smoke tests). ``feature_norm="standardize"`` subtracts the
    per-channel mean of the training cells and divides by their standard deviation (stored in
    the checkpoint and applied again by ``predict``): the published recipes feed raw features,
    but features of unusual scale (random-weight encoders: std ~1e-3) otherwise leave the input
    projections' biases dominating for many epochs.
    """

    data: str = "data/vl"
    features: str | None = None
    model: str = "mcan"
    preset: str | None = None
    question_only: bool = False
    train_split: str = "train"
    val_split: str = "val"
    answer_min_count: int = 9
    soft_score: str = "mmf"
    word_vectors: str | None = None
    embed_dim: int | None = None
    dropout: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    grad_clip: float | None = None
    feature_norm: str = "none"  # "none" | "standardize" (per channel, training-cell statistics)
    eval_batch_size: int = 256
    preload: bool | None = None
    max_train: int | None = None
    max_val: int | None = None
    data_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VQATrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        if self.model not in MODEL_CHOICES:
            raise DataError(f"--model {self.model!r}: choose one of {', '.join(MODEL_CHOICES)}")
        if self.feature_norm not in FEATURE_NORMS:
            raise DataError(f"--feature-norm {self.feature_norm!r}: choose one of {', '.join(FEATURE_NORMS)}")
        if self.model != "prior" and not self.question_only and not self.features:
            raise DataError("--features FILE.h5 is required (grid features from `vln-clip features grid`); "
                            "pass --question-only to train without the image")


def store_meta(store: Any) -> dict[str, str]:
    """What a checkpoint records of its feature store, to refuse another encoder's features later."""
    meta = {"encoder": store.encoder, "weights": store.weights, "kind": store.kind}
    for key in ("short_side", "long_side"):
        if store.attrs.get(key) is not None:
            meta[key] = store.attrs[key]
    return meta


def open_grid_store(path: str) -> Any:
    """The grid feature store at ``path`` (refusing pooled or panorama stores)."""
    from vln_clip.features.store import FeatureStore

    return FeatureStore(path).require(kind="grid")


def predict_logits(model: torch.nn.Module, split: EncodedSplit, bank: GridBank | None, device: torch.device,
                   batch_size: int, rows: Sequence[int] | None = None,
                   want_attention: bool = False) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Logits ``[N, A]`` of ``rows`` (all by default), in eval mode without gradients."""
    model.eval()
    rows = list(range(len(split))) if rows is None else list(rows)
    outs: list[torch.Tensor] = []
    atts: list[torch.Tensor | None] = []
    with torch.no_grad():
        for s in range(0, len(rows), batch_size):
            r = rows[s: s + batch_size]
            tokens = split.tokens[r].to(device)
            if bank is None:
                logits, att = model(tokens)
            else:
                grid, mask = bank.batch([split.image_keys[i] for i in r], device)
                logits, att = model(tokens, grid, mask)
            outs.append(logits.float().cpu())
            if want_attention:
                atts.extend([None] * len(r) if att is None else list(att.float().cpu()))
    return torch.cat(outs) if outs else torch.zeros(0), atts


def accuracy_metrics(items: Sequence[VQAItem], answers: dict[int, str], prefix: str = "val") -> dict[str, float]:
    """``{prefix}/accuracy`` and ``{prefix}/accuracy_<type>`` (percentages, official rules)."""
    report = score_items(list(items), answers).as_dict()
    out = {f"{prefix}/accuracy": float(report["overall"])}
    for t in ANSWER_TYPES:
        v = report["per_answer_type"].get(t)
        if v is not None:
            out[f"{prefix}/accuracy_{t.replace('/', '_')}"] = float(v)
    return out


class VQATask(Task):
    """Pythia or MCAN on grid features (or question-only), driven by :func:`vln_clip.train.fit`."""

    kind = TASK_KIND

    def __init__(self, config: VQATrainConfig, loop: LoopConfig) -> None:
        config.validate()
        if config.model == "prior":
            raise DataError("the prior baseline is not trained; use train_prior()")
        self.config = config
        self.loop = loop
        self.recipe = recipe_for(config.model, config.preset)

    # -- data and model ---------------------------------------------------------------------
    def setup(self, ctx: TaskContext) -> None:
        c = self.config
        self.device = ctx.device
        train_items = read_split(c.data, c.train_split)[: c.max_train]
        val_items = read_split(c.data, c.val_split)[: c.max_val]
        self.answers = AnswerVocab.build(train_items, min_count=c.answer_min_count)
        if len(self.answers) == 0:
            raise DataError(f"{c.data}: no answer is the consensus answer of >= {c.answer_min_count} "
                            "training questions; lower --answer-min-count")
        self.qvocab = build_question_vocab(it.question for it in train_items)
        self.train = encode_split(train_items, self.qvocab, self.answers, c.soft_score)
        self.val = encode_split(val_items, self.qvocab, None)
        self.feature_meta: dict[str, str] = {}
        self.feature_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self.train_bank = self.val_bank = None
        feat_dim = 1
        if not c.question_only:
            store = open_grid_store(str(c.features))
            self.feature_meta = store_meta(store)
            self.train_bank = GridBank(store, self.train.image_keys, c.preload, str(c.features))
            self.val_bank = GridBank(store, self.val.image_keys, c.preload, str(c.features))
            feat_dim = self.train_bank.dim
            if c.feature_norm == "standardize":
                self.feature_stats = self.train_bank.channel_stats()
                self.train_bank.standardize(*self.feature_stats)
                self.val_bank.standardize(*self.feature_stats)
        self.feat_dim = feat_dim
        overrides = {"question_only": c.question_only, "embed_dim": c.embed_dim, "dropout": c.dropout}
        self.model_cfg = model_config(c.model, c.preset, **overrides)
        self.model = build_model(c.model, self.model_cfg, len(self.qvocab), len(self.answers), feat_dim)
        if c.word_vectors:
            table, found = read_glove(c.word_vectors, self.qvocab, self.model_cfg.embed_dim)
            self.model.embed.weight.data.copy_(torch.from_numpy(table))
            self.word_vectors_found = found
        self.model.to(ctx.device)
        batch = c.batch_size or self.recipe.batch_size
        self.train_order = DataOrder(len(self.train), batch, seed=c.data_seed)

    def models(self) -> dict[str, torch.nn.Module]:
        return {"vqa": self.model}

    def total_steps(self) -> int:
        if self.loop.iters is not None:
            return int(self.loop.iters)
        return int(self.loop.epochs or 0) * self.steps_per_epoch()

    def optimizer_config(self) -> OptimizerConfig:
        r, c = self.recipe, self.config
        total = max(self.total_steps(), 1)
        milestones = tuple(sorted({max(1, round(f * total)) for f in r.milestone_fracs}))
        return OptimizerConfig(r.optimizer, lr=c.lr or r.lr, betas=r.betas, eps=r.eps,
                               grad_clip=c.grad_clip if c.grad_clip is not None else r.grad_clip,
                               schedule="step", warmup_steps=int(round(r.warmup_frac * total)),
                               milestones=milestones, gamma=r.gamma)

    def optimizers(self) -> dict[str, tuple[Any, OptimizerConfig]]:
        return {"vqa": (self.model.parameters(), self.optimizer_config())}

    # -- steps --------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        rows = self.train_order.next().tolist()
        tokens = self.train.tokens[rows].to(self.device)
        target = self.train.targets(rows, len(self.answers)).to(self.device)
        model = self.module("vqa")
        if self.train_bank is None:
            logits, _ = model(tokens)
        else:
            grid, mask = self.train_bank.batch([self.train.image_keys[i] for i in rows], self.device)
            logits, _ = model(tokens, grid, mask)
        loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="sum") / len(rows)
        return {"loss": loss}

    def answers_for(self, split: EncodedSplit, bank: GridBank | None) -> dict[int, str]:
        logits, _ = predict_logits(self.model, split, bank, self.device, self.config.eval_batch_size)
        best = logits.argmax(-1).tolist()
        return {it.question_id: self.answers.answers[b] for it, b in zip(split.items, best)}

    def evaluate(self) -> dict[str, float]:
        return accuracy_metrics(self.val.items, self.answers_for(self.val, self.val_bank))

    # -- checkpoint ---------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def extra_state(self) -> dict[str, Any]:
        return {"question_vocab": list(self.qvocab.itos), "answers": list(self.answers.answers),
                "answer_counts": self.answers.counts, "feat_dim": self.feat_dim,
                "features": dict(self.feature_meta), "model_family": self.config.model,
                "feature_stats": None if self.feature_stats is None else [t.clone() for t in self.feature_stats],
                "model_config": dataclasses.asdict(self.model_cfg), "recipe": dataclasses.asdict(self.recipe)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("question_vocab") != list(self.qvocab.itos) or state.get("answers") != self.answers.answers:
            raise DataError("the checkpoint was trained on other questions or answers than this run reads; "
                            "resume with the same --data, splits and --answer-min-count")
        saved = state.get("features") or {}
        for key in ("encoder", "weights"):
            if saved.get(key) != self.feature_meta.get(key):
                raise DataError(f"the checkpoint was trained on features with {key}={saved.get(key)!r}, "
                                f"--features has {self.feature_meta.get(key)!r}; resume with the same store")


def train_vqa(config: VQATrainConfig, loop: LoopConfig) -> FitResult:
    """Train (or resume) one VQA model; ``best.pt`` is the best ``val/accuracy``.

    ``loop.eval_every`` / ``loop.save_every`` of 0 mean once per epoch here (the epoch length
    is known once the training split is read), as the public recipes evaluate.
    """
    if loop.best_metric is None:
        loop = dataclasses.replace(loop, best_metric="val/accuracy", best_mode="max")
    task = VQATask(config, loop)
    trainer = Trainer(task, loop)
    epoch = task.steps_per_epoch()
    trainer.cfg.eval_every = trainer.cfg.eval_every or epoch
    trainer.cfg.save_every = trainer.cfg.save_every or trainer.cfg.eval_every
    return trainer.fit()


def default_length(config: VQATrainConfig) -> dict[str, int]:
    """The recipe's run length: ``{"epochs": n}`` or ``{"iters": n}``."""
    r = recipe_for(config.model, config.preset)
    return {"epochs": r.epochs} if r.epochs is not None else {"iters": int(r.iters or 0)}


@dataclass
class PriorResult:
    out_dir: Path
    checkpoint: Path
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def train_prior(config: VQATrainConfig, out_dir: str | Path) -> PriorResult:
    """Fit the prior baseline on the training split, score it on validation, save it as a checkpoint.

    The checkpoint (``OUT/best.pt`` = ``OUT/last.pt``, kind ``vqa-prior``) goes through the same
    ``vln-clip vqa predict`` as the trained models.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    train_items = read_split(config.data, config.train_split)[: config.max_train]
    val_items = read_split(config.data, config.val_split)[: config.max_val]
    prior = PriorBaseline.fit(train_items)
    metrics = accuracy_metrics(val_items, prior.predict(val_items))
    payload = {"kind": PRIOR_KIND, "config": config.to_dict(), "models": {}, "step": 0,
               "metrics": metrics, "best_score": metrics["val/accuracy"], "extra": {"prior": prior.to_dict()}}
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "last.pt", payload)
    save_checkpoint(out / "best.pt", payload)
    write_json(out / "metrics.json", metrics, indent=1)
    return PriorResult(out, out / "best.pt", metrics, time.perf_counter() - t0)


@dataclass
class LoadedModel:
    """A trained VQA model rebuilt from its checkpoint, with what it needs to answer."""

    family: str
    model: torch.nn.Module | None
    qvocab: Vocab | None
    answers: list[str]
    features: dict[str, str]
    question_only: bool
    feat_dim: int = 0
    feature_stats: tuple[torch.Tensor, torch.Tensor] | None = None
    prior: PriorBaseline | None = None


def load_vqa_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A model (or the prior) from ``RUN/best.pt`` / ``RUN/last.pt``."""
    ckpt = load_checkpoint(path, "cpu", kind=(TASK_KIND, PRIOR_KIND))
    if ckpt["kind"] == PRIOR_KIND:
        return LoadedModel("prior", None, None, [], {}, True, prior=PriorBaseline.from_dict(ckpt["extra"]["prior"]))
    extra = ckpt["extra"]
    family = extra["model_family"]
    cfg: PythiaConfig | MCANConfig = config_from_dict(family, extra["model_config"])
    qvocab = Vocab(extra["question_vocab"])
    model = build_model(family, cfg, len(qvocab), len(extra["answers"]), int(extra["feat_dim"]))
    model.load_state_dict(ckpt["models"]["vqa"])
    model.to(device).eval()
    return LoadedModel(family, model, qvocab, list(extra["answers"]), dict(extra.get("features") or {}),
                       bool(cfg.question_only), int(extra["feat_dim"]),
                       tuple(extra["feature_stats"]) if extra.get("feature_stats") else None)  # type: ignore[arg-type]
