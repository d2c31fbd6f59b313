"""One dataclass describes a training run; it is saved inside every checkpoint.

There is no global argument object (EnvDrop's ``args``): every component receives the
config (or the few numbers it needs) explicitly, so a checkpoint alone is enough to rebuild
its model and continue its run. Presets hold the paper settings:

* ``r2r``: EnvDrop on R2R (ml_weight 0.2, 80 tokens, 80k iterations).
* ``rxr``: CLIP-ViL on RxR (ml_weight 0.4, 160 tokens, 200k iterations).
* ``synthetic``: the same model and losses, sized for the synthetic world on a laptop CPU
  (learning rates 1e-3 for schedules of hundreds, not tens of thousands, of iterations).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vln_clip.task import MAX_ACTIONS

DATASETS = ("r2r", "rxr", "synthetic")
AGENTS = ("follower", "speaker", "bt")
LANGUAGES = ("en", "hi", "te", "multi")


@dataclass
class TrainConfig:
    """Everything a run needs; field defaults are EnvDrop's R2R settings."""

    # what and where
    dataset: str = "r2r"
    agent: str = "follower"
    encoder: str = "clip_res50"
    language: str = "en"  # RxR only: en | hi | te | multi
    data_dir: str = "data"
    out_dir: str = "runs/follower"
    features: str | None = None  # explicit feature store; None = DATA/features/<encoder>.h5
    no_vision: bool = False  # vision-free follower: angle features only
    device: str = "cpu"
    seed: int = 0

    # schedule
    iters: int = 80_000
    batch_size: int = 64
    log_every: int = 100
    eval_every: int = 1_000
    save_every: int = 1_000
    eval_max_episodes: int | None = None  # cap per validation split (None = all)

    # follower (EnvDrop)
    lr: float = 1e-4
    ml_weight: float = 0.2
    max_instr_len: int = 80
    max_actions: int = MAX_ACTIONS
    gamma: float = 0.9
    entropy_weight: float = 0.01
    grad_clip: float = 40.0
    embed_dim: int = 256
    hidden_dim: int = 512
    angle_embed_dim: int = 64
    dropout: float = 0.5
    feat_dropout: float = 0.3
    min_word_count: int = 5
    use_rl: bool = True  # A2C sampled rollout after the teacher-forced one
    cuda_graphs: bool = False  # capture the rollouts as CUDA graphs (GPU only)

    # speaker
    speaker_lr: float = 1e-4
    max_decode_len: int = 120

    # back-translation
    aug_paths: str | None = None  # R2R-format file from `vln-clip data aug-paths`
    speaker_checkpoint: str | None = None
    follower_checkpoint: str | None = None  # start from the follower's best checkpoint
    bt_ml_weight: float = 0.6
    bt_feat_dropout: float = 0.4

    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """The paper setting for ``name`` (r2r, rxr, synthetic), then ``overrides``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if self.agent not in AGENTS:
            raise ValueError(f"agent must be one of {AGENTS}, got {self.agent!r}")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}, got {self.language!r}")
        if self.batch_size < 1 or self.iters < 0 or self.max_actions < 1:
            raise ValueError("batch_size and max_actions must be >= 1 and iters >= 0")

    @property
    def selection_metric(self) -> str:
        """RxR selects by val-unseen nDTW, R2R and synthetic by val-unseen SR."""
        return "ndtw" if self.dataset == "rxr" else "success"

    @property
    def tokenizer_dataset(self) -> str:
        return "rxr" if self.dataset == "rxr" else "r2r"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


PRESETS: dict[str, dict[str, Any]] = {
    "r2r": dict(dataset="r2r", ml_weight=0.2, max_instr_len=80, iters=80_000, feat_dropout=0.3),
    "rxr": dict(dataset="rxr", ml_weight=0.4, max_instr_len=160, iters=200_000, feat_dropout=0.3,
                language="multi", encoder="clip_res50x4"),
    # Same model and losses; a schedule that fits CPU minutes on the synthetic world. Learning
    # rates are 10x the paper's (1e-3): with a few hundred iterations instead of 80k, 1e-4
    # leaves the speaker at BLEU 0 and the follower near the untrained agent (docs/training.md).
    "synthetic": dict(dataset="synthetic", ml_weight=0.2, max_instr_len=80, iters=1_500, lr=1e-3,
                      speaker_lr=1e-3, log_every=50, eval_every=250, save_every=250, min_word_count=5),
}
