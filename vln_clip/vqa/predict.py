"""Answers from a trained VQA checkpoint: the EvalAI submission and attention pictures.

A checkpoint records the encoder and weights of the feature store it was trained on; a store
made by another encoder (or the same encoder with other weights) has features in another
space, and answers from it would be silently wrong, so :func:`predict_vqa` refuses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vln_clip.datasets.results import read_vqa_results, write_vqa_results
from vln_clip.datasets.vqa import VQAItem, read_vqa
from vln_clip.errors import DataError
from vln_clip.io import atomic_path

from .data import GridBank, encode_split
from .training import LoadedModel, load_vqa_checkpoint, open_grid_store, predict_logits
from .zero_shot import find_image


@dataclass
class PredictConfig:
    """``vln-clip vqa predict``: checkpoint, questions, features, output, optional pictures."""

    checkpoint: str
    questions: str
    out: str
    features: str | None = None
    attention_png: str | None = None
    attention_count: int = 8
    images: str | None = None
    batch_size: int = 256
    device: str = "cpu"


def check_store_matches(saved: dict[str, Any], feat_dim: int, store: Any) -> None:
    """Refuse a feature store made by another encoder, weights or resolution than the training store."""
    store.require(kind="grid", encoder=saved.get("encoder"), weights=saved.get("weights"),
                  short_side=saved.get("short_side"), long_side=saved.get("long_side"), dim=feat_dim)


def check_submission(preds: str | Path, questions: str | Path) -> int:
    """Validate an EvalAI VQA submission against a question file; number of answers when valid."""
    items = read_vqa(questions)
    return len(read_vqa_results(preds, [it.question_id for it in items]))


def predict_vqa(cfg: PredictConfig) -> dict[str, Any]:
    """Write the submission for every question of ``cfg.questions``; returns a short report."""
    t0 = time.perf_counter()
    device = torch.device(cfg.device)
    loaded = load_vqa_checkpoint(cfg.checkpoint, device)
    items = read_vqa(cfg.questions)
    if loaded.prior is not None:
        answers = loaded.prior.predict(items)
    else:
        answers = _model_answers(loaded, items, cfg, device)
    write_vqa_results(cfg.out, {it.question_id: answers[it.question_id] for it in items})
    return {"out": cfg.out, "n_questions": len(items), "model": loaded.family,
            "seconds": time.perf_counter() - t0}


def _model_answers(loaded: LoadedModel, items: Sequence[VQAItem], cfg: PredictConfig,
                   device: torch.device) -> dict[int, str]:
    assert loaded.model is not None and loaded.qvocab is not None
    split = encode_split(items, loaded.qvocab, None)
    bank = None
    if not loaded.question_only:
        if not cfg.features:
            raise DataError(f"{cfg.checkpoint}: this model reads grid features; pass --features FILE.h5 made "
                            f"with encoder {loaded.features.get('encoder')!r} "
                            f"(weights {loaded.features.get('weights')!r})")
        store = open_grid_store(cfg.features)
        check_store_matches(loaded.features, loaded.feat_dim, store)
        bank = GridBank(store, split.image_keys, path=cfg.features)
        if loaded.feature_stats is not None:
            bank.standardize(*loaded.feature_stats)
    want_att = bool(cfg.attention_png) and bank is not None
    logits, atts = predict_logits(loaded.model, split, bank, device, cfg.batch_size, want_attention=want_att)
    best = logits.argmax(-1).tolist()
    answers = {it.question_id: loaded.answers[b] for it, b in zip(items, best)}
    if want_att and bank is not None:
        write_attention_pngs(Path(str(cfg.attention_png)), items[: cfg.attention_count],
                             atts[: cfg.attention_count], bank, answers,
                             Path(cfg.images) if cfg.images else None)
    return answers


def attention_map(att: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """``[G, N]`` attention (padded cells included) as one ``[h, w]`` map, glimpses averaged."""
    h, w = hw
    return att[:, : h * w].mean(0).reshape(h, w).numpy()


def write_attention_pngs(out_dir: Path, items: Sequence[VQAItem], atts: Sequence[torch.Tensor | None],
                         bank: GridBank, answers: dict[int, str], images: Path | None = None) -> list[Path]:
    """One PNG per question: the model's attention over the grid cells (over the image when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for item, att in zip(items, atts):
        if att is None:
            continue
        amap = attention_map(att, bank.grid_shape(item.image_key))
        fig, ax = plt.subplots(figsize=(4.5, 3.6))
        if images is not None:
            from PIL import Image

            with Image.open(find_image(images, item.image_key)) as im:
                pic = np.asarray(im.convert("RGB"))
            ax.imshow(pic)
            ax.imshow(amap, cmap="jet", alpha=0.45, interpolation="nearest",
                      extent=(0, pic.shape[1], pic.shape[0], 0))
        else:
            ax.imshow(amap, cmap="viridis", interpolation="nearest")
        ax.set_title(f"{item.question}\n-> {answers[item.question_id]}", fontsize=8)
        ax.axis("off")
        fig.tight_layout()
        path = out_dir / f"q{item.question_id}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
        plt.close(fig)
        written.append(path)
    return written
