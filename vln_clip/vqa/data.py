"""VQA split files, grid features per image and padded batches.

A split is read with the project's one VQA reader (:func:`vln_clip.datasets.vqa.read_vqa`)
from either layout: the synthetic V&L world (``DIR/vqa/v2_OpenEnded_mscoco_<split>_questions.json``,
``DIR/vqa/v2_mscoco_<split>_annotations.json``) or a folder of the official VQA v2 files (the
same names with ``<split>`` = ``train2014``, ``val2014``, ``test2015``...).

Grid features come from the feature store (:mod:`vln_clip.features.store`), one entry per
image key, ``[h, w, C]`` for ResNets or ``[N, C]`` for ViT tokens. Images of different aspect
ratios give grids of different sizes, so :class:`GridBank` keeps each image's cells flat and a
batch is padded to its largest grid with a mask (True = a real cell). Small sets (the synthetic
world) are held in memory as float16; large ones (VQA v2 at 600x1000 is ~2 MB per image) are
read from the store per batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vln_clip.datasets.vqa import AnswerVocab, VQAItem, read_vqa
from vln_clip.errors import DataError

from .text import MAX_QUESTION_TOKENS, encode_question, pad_questions

#: Hold a split's grids in memory (float16) below this many bytes; read per batch above.
PRELOAD_LIMIT_BYTES = 4 << 30


def split_paths(data_dir: str | os.PathLike[str], split: str) -> tuple[Path, Path]:
    """(questions, annotations) of ``split`` under ``data_dir`` or ``data_dir/vqa``."""
    data_dir = Path(data_dir)
    q_name = f"v2_OpenEnded_mscoco_{split}_questions.json"
    a_name = f"v2_mscoco_{split}_annotations.json"
    for folder in (data_dir / "vqa", data_dir):
        if (folder / q_name).exists():
            return folder / q_name, folder / a_name
    raise DataError(f"{data_dir}: no {q_name} here or under vqa/; pass the folder made by "
                    "`vln-clip data synth-vl --out DIR` or the folder of the official VQA v2 files "
                    "(and --train-split/--val-split naming their subtype, e.g. train2014)")


def read_split(data_dir: str | os.PathLike[str], split: str, annotated: bool = True) -> list[VQAItem]:
    """The items of one split; ``annotated=True`` requires its annotation file."""
    q, a = split_paths(data_dir, split)
    if annotated and not a.exists():
        raise DataError(f"{a}: annotation file missing for split {split!r}; training and validation "
                        "need the annotations")
    return read_vqa(q, a if a.exists() else None)


class GridBank:
    """Grid cells of a set of images, batched with padding and a mask.

    ``store`` is a grid :class:`~vln_clip.features.store.FeatureStore` (or anything with its
    ``get_item`` / ``grid_shape`` / ``get_many``). With ``preload`` (default: when the whole set
    fits in :data:`PRELOAD_LIMIT_BYTES`) every grid is read once and kept as float16; otherwise
    each batch is read with the store's ``get_many`` (which pads and masks the same way).
    """

    def __init__(self, store: Any, keys: Sequence[str], preload: bool | None = None,
                 path: str = "feature store") -> None:
        self.store = store
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.keys = list(dict.fromkeys(keys))
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.path = path
        if not self.keys:
            raise DataError(f"{path}: no images to read features for")
        missing = [k for k in self.keys if k not in store]
        if missing:
            raise DataError(f"{path}: no grid features for {len(missing)} image(s) (first: {missing[0]}); "
                            "extract them for this data (`vln-clip features grid --images DIR/images "
                            "--out FILE.h5`, it resumes)")
        self.dim = int(store.dim)
        self.shapes = [tuple(int(v) for v in store.grid_shape(k)) for k in self.keys]
        if preload is None:
            cells = sum(h * w for h, w in self.shapes)
            preload = cells * self.dim * 2 <= PRELOAD_LIMIT_BYTES
        self.preloaded = bool(preload)
        self._grids: list[torch.Tensor] = []
        if self.preloaded:
            for k in self.keys:
                g = store.get_item(k, dtype=np.float16)
                self._grids.append(torch.from_numpy(np.ascontiguousarray(g.reshape(-1, self.dim))))

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and standard deviation over every cell of this bank (float64 sums).

        Channels that never vary get std 1, so standardising leaves them at zero.
        """
        total = torch.zeros(self.dim, dtype=torch.float64)
        sq = torch.zeros(self.dim, dtype=torch.float64)
        n = 0
        for k in self.keys:
            g = self._grids[self.index[k]].double() if self.preloaded else \
                torch.from_numpy(self.store.get_item(k).reshape(-1, self.dim)).double()
            total += g.sum(0)
            sq += (g * g).sum(0)
            n += g.shape[0]
        mean = total / n
        std = (sq / n - mean * mean).clamp_min(0).sqrt()
        std[std < 1e-8] = 1.0
        return mean.float(), std.float()

    def standardize(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Serve ``(cell - mean) / std`` from now on (padding stays zero)."""
        self.mean, self.std = mean.float(), std.float()

    def grid_shape(self, key: str) -> tuple[int, int]:
        """``(h, w)`` of one image's grid."""
        return self.shapes[self.index[key]]  # type: ignore[return-value]

    def batch(self, keys: Sequence[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``grid [B, Nmax, C]`` float32 (zeros past each image's cells) and ``mask [B, Nmax]`` bool."""
        if not self.preloaded:
            b = self.store.get_many(list(keys))
            out, mask = torch.from_numpy(b.features), torch.from_numpy(b.mask)
        else:
            grids = [self._grids[self.index[k]] for k in keys]
            n = max(g.shape[0] for g in grids)
            out = torch.zeros(len(grids), n, self.dim, dtype=torch.float32)
            mask = torch.zeros(len(grids), n, dtype=torch.bool)
            for i, g in enumerate(grids):
                out[i, : g.shape[0]] = g.float()
                mask[i, : g.shape[0]] = True
        if self.mean is not None and self.std is not None:
            out = (out - self.mean) / self.std * mask.unsqueeze(-1)
        return out.to(device), mask.to(device)


@dataclass
class EncodedSplit:
    """A split as tensors: question ids, padded word ids, image keys, sparse soft targets."""

    items: list[VQAItem]
    tokens: torch.Tensor              # [N, T] int64, PAD = 0
    image_keys: list[str]
    target_idx: list[np.ndarray]      # per question: vocabulary indices with a score
    target_val: list[np.ndarray]      # per question: their soft scores

    def __len__(self) -> int:
        return len(self.items)

    def targets(self, rows: Sequence[int], num_answers: int) -> torch.Tensor:
        """Dense ``[len(rows), num_answers]`` soft scores of ``rows``."""
        out = torch.zeros(len(rows), num_answers)
        for i, r in enumerate(rows):
            idx = self.target_idx[r]
            if len(idx):
                out[i, torch.from_numpy(idx)] = torch.from_numpy(self.target_val[r])
        return out


def encode_split(items: Sequence[VQAItem], qvocab: Any, answers: AnswerVocab | None,
                 soft_score: str = "mmf", max_tokens: int = MAX_QUESTION_TOKENS) -> EncodedSplit:
    """Word ids of every question and, when ``answers`` is given, their soft targets."""
    items = list(items)
    tokens = torch.from_numpy(pad_questions([encode_question(qvocab, it.question, max_tokens) for it in items],
                                            max_tokens))
    idx: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for it in items:
        scores = answers.soft_scores(it.answers, soft_score) if answers is not None and it.answers else {}
        keys = sorted(scores)
        idx.append(np.asarray(keys, dtype=np.int64))
        val.append(np.asarray([scores[k] for k in keys], dtype=np.float32))
    return EncodedSplit(items, tokens, [it.image_key for it in items], idx, val)
