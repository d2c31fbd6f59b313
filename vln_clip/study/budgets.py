"""How much each stage of the encoder study trains (no heavy imports: the CLI reads it to list
the choices without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Updates, batch sizes and resolutions of every stage of one study.

    ``test`` is for the test suite (minutes on 2 cores, numbers meaningless); ``cpu`` is the
    one docs/study.md measured (about an hour of 2 shared CPU cores: small, but every encoder
    is trained until its own quality measures beat chance clearly); ``small`` fits an afternoon
    on 2 idle CPU cores; ``full`` wants a GPU.
    """

    encoder_iters: int
    encoder_batch: int
    image_size: int
    grid_short: int
    grid_long: int
    vln_iters: int
    vln_batch: int
    vqa_iters: int
    vqa_preset: str
    caption_iters: int
    caption_preset: str
    eval_every: int
    vln_eval_limit: int | None = None  # validation episodes during VLN training (None = all)


BUDGETS: dict[str, Budget] = {
    "test": Budget(12, 16, 64, 64, 96, 12, 8, 12, "tiny", 12, "tiny", 6, vln_eval_limit=16),
    "cpu": Budget(1500, 32, 64, 96, 160, 1000, 32, 600, "tiny", 600, "tiny", 250),
    "small": Budget(1500, 64, 128, 128, 224, 1500, 32, 1500, "tiny", 1500, "tiny", 250),
    "full": Budget(20000, 256, 224, 384, 640, 20000, 64, 20000, "small", 20000, "recipe", 1000),
}

#: one line per budget for ``--help``
BUDGET_HELP = ("test: minutes, numbers meaningless; cpu: about an hour on 2 CPU cores (docs/study.md's table); "
               "small: an afternoon on 2 idle CPU cores; full: a GPU")
