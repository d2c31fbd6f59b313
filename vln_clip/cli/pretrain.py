"""``vln-clip pretrain`` and ``vln-clip finetune``: CLIP-ViL_p pre-training and fine-tuning."""

from __future__ import annotations

import argparse


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Registers ``pretrain`` and ``finetune`` (filled in by the pre-training work)."""
