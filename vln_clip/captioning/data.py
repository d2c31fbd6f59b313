"""Captioning data: Karpathy splits, reference captions and grid features by image key.

``--data DIR`` is a folder with ``coco/dataset_coco.json`` (the layout of the synthetic V&L
world and of a real COCO download arranged as README says) or the Karpathy file itself.
Training captions are the Karpathy ``tokens``; references for CIDEr-D are those tokens
joined by spaces (the Karpathy tokens are lower-cased with punctuation removed, close to
what the PTB tokenizer gives; leaderboard numbers come from ``vln-clip caption eval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vln_clip.datasets.coco import KarpathyImage, karpathy_split, read_karpathy
from vln_clip.errors import DataError
from vln_clip.features.store import FeatureStore


def karpathy_path(data: str | Path) -> Path:
    """The Karpathy split file of ``--data`` (a folder or the file)."""
    p = Path(data)
    if p.is_file():
        return p
    for cand in (p / "coco" / "dataset_coco.json", p / "dataset_coco.json"):
        if cand.exists():
            return cand
    raise DataError(f"{p}: no coco/dataset_coco.json (the Karpathy split file) in this folder; pass --data "
                    f"a synthetic V&L world (`vln-clip data synth-vl`) or the folder holding dataset_coco.json")


@dataclass
class CaptionSplit:
    """The images of one split with their tokenised references."""

    name: str
    keys: list[str]
    image_ids: list[int]
    captions: list[list[list[str]]]  # per image, per reference: tokens

    def refs(self) -> dict[str, list[str]]:
        """``{image_key: [reference string, ...]}`` for CIDEr-D."""
        return {k: [" ".join(t) for t in caps] for k, caps in zip(self.keys, self.captions)}

    def __len__(self) -> int:
        return len(self.keys)


def image_id_of(im: KarpathyImage) -> int:
    """The COCO image id of a Karpathy image (``cocoid``; the results format needs it)."""
    if im.cocoid is None:
        raise DataError(f"Karpathy image {im.filename!r} (imgid {im.imgid}) has no 'cocoid'; the COCO results "
                        f"format needs the COCO image id: use the COCO dataset_coco.json")
    return int(im.cocoid)


def load_split(data: str | Path, split: str, images: Sequence[KarpathyImage] | None = None) -> CaptionSplit:
    """One Karpathy split (``train`` includes ``restval``, as in every Karpathy-split paper)."""
    path = karpathy_path(data)
    images = read_karpathy(path) if images is None else images
    chosen = karpathy_split(images, split)
    if not chosen:
        raise DataError(f"{path}: split {split!r} has no images; check the split name (train, val, test)")
    return CaptionSplit(split, [im.image_key for im in chosen], [image_id_of(im) for im in chosen],
                        [[list(s.tokens) for s in im.sentences] for im in chosen])


class GridFeatures:
    """Grid features of keyed images as padded torch batches (features, mask, grid shapes).

    Reads through :meth:`FeatureStore.get_many`; with ``preload`` every needed item is read
    once into memory (float16), which is what small stores (the synthetic world) want.
    """

    def __init__(self, path: str | Path, keys: Sequence[str], preload: bool = True) -> None:
        self.store = FeatureStore(path)
        self.store.require(kind="grid")
        missing = [k for k in keys if k not in self.store]
        if missing:
            raise DataError(f"{path}: {len(missing)} of {len(keys)} images have no grid features (first: "
                            f"{missing[0]}); extract them with `vln-clip features grid --images DIR/images "
                            f"--out {path}`")
        self.dim = int(self.store.dim)
        self.cache: dict[str, tuple[np.ndarray, tuple[int, int]]] | None = None
        if preload:
            self.cache = {}
            keys = list(dict.fromkeys(keys))
            for i in range(0, len(keys), 256):
                batch = self.store.get_many(keys[i: i + 256], dtype=np.float16)
                for j, k in enumerate(batch.keys):
                    n = int(batch.mask[j].sum())
                    self.cache[k] = (batch.features[j, :n].copy(), tuple(int(x) for x in batch.shapes[j]))

    def batch(self, keys: Sequence[str], device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``feats [B, L, C]`` float32, ``mask [B, L]`` bool (True = real cell), ``shapes [B, 2]``."""
        if self.cache is None:
            b = self.store.get_many(keys)
            return (torch.from_numpy(b.features).to(device), torch.from_numpy(b.mask).to(device),
                    torch.from_numpy(b.shapes).to(device))
        items = [self.cache[k] for k in keys]
        longest = max(len(f) for f, _ in items)
        feats = np.zeros((len(keys), longest, self.dim), dtype=np.float32)
        mask = np.zeros((len(keys), longest), dtype=bool)
        for i, (f, _) in enumerate(items):
            feats[i, : len(f)] = f
            mask[i, : len(f)] = True
        shapes = np.array([s for _, s in items], dtype=np.int64)
        return torch.from_numpy(feats).to(device), torch.from_numpy(mask).to(device), torch.from_numpy(shapes).to(device)

    def pooled(self, keys: Sequence[str]) -> np.ndarray:
        """Mean over each image's grid cells (``[N, C]`` float32): the pooled feature of a grid store."""
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        for i in range(0, len(keys), 256):
            f, m, _ = self.batch(keys[i: i + 256])
            m = m.float()[:, :, None]
            out[i: i + len(f)] = ((f * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
        return out
