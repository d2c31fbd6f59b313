"""Pixels for the trainable backbone: the resize rule, loading, and batch padding.

CLIP-ViL_p feeds whole images (not a feature store) to the CLIP visual tower: the shorter side
is scaled to 384 and the longer side capped at 640, aspect ratio kept (:class:`ResizeRule`; the
CPU presets use much smaller sides). Images of a batch are padded to the largest one; the grid
cells that lie inside each image are marked ``valid`` so that padding never becomes a visual
token (:func:`collate_images`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vln_clip.encoders import grid_size
from vln_clip.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ResizeRule:
    """Scale so the shorter side is ``short_side`` unless the longer would exceed ``long_side``."""

    short_side: int = 384
    long_side: int = 640

    def size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.short_side / min(height, width)
        if max(height, width) * scale > self.long_side:
            scale = self.long_side / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))


class ImageSource:
    """Loads ``<image_dir>/<image_key>.<jpg|png>`` resized by ``rule`` as ``uint8 [3, H, W]`` tensors.

    ``cache=True`` keeps every resized image in memory (the synthetic world and the CPU presets:
    decoding dominates otherwise); ``threads`` decodes a batch's images in parallel (PIL releases
    the GIL while decoding).
    """

    def __init__(self, image_dir: str | Path, rule: ResizeRule, cache: bool = False, threads: int = 2) -> None:
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: no such image folder; expected the images as <image key>.jpg "
                            "(e.g. DIR/images/COCO_synth_000000000001.jpg)")
        self.rule = rule
        self.cache: dict[str, torch.Tensor] | None = {} if cache else None
        self.threads = max(1, threads)

    def path(self, key: str) -> Path:
        for suffix in IMAGE_SUFFIXES:
            cand = self.image_dir / f"{key}{suffix}"
            if cand.is_file():
                return cand
        raise DataError(f"{self.image_dir}: no image for key {key!r} (looked for {key}.jpg/.jpeg/.png); "
                        "check that the dataset and the image folder belong together")

    def load(self, key: str) -> torch.Tensor:
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        from PIL import Image

        path = self.path(key)
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                h, w = self.rule.size(im.height, im.width)
                im = im.resize((w, h), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"{path}: not a readable image ({exc}); re-download or remove it") from exc
        t = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
        if self.cache is not None:
            self.cache[key] = t
        return t

    def batch(self, keys: Sequence[str]) -> list[torch.Tensor]:
        if self.threads == 1 or len(keys) == 1:
            return [self.load(k) for k in keys]
        with ThreadPoolExecutor(self.threads) as pool:
            return list(pool.map(self.load, keys))


def collate_images(images: Sequence[torch.Tensor], encoder: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``[3, H_i, W_i]`` images to one ``[B, 3, H, W]`` uint8 batch; ``valid`` ``[B, h, w]``.

    ``encoder`` is the registry name whose grid geometry applies (cell ``(r, c)`` of image ``i``
    is valid when it lies within that image's own grid).
    """
    hmax = max(int(im.shape[1]) for im in images)
    wmax = max(int(im.shape[2]) for im in images)
    gh, gw = grid_size(encoder, hmax, wmax)
    batch = torch.zeros((len(images), 3, hmax, wmax), dtype=torch.uint8)
    valid = torch.zeros((len(images), gh, gw), dtype=torch.bool)
    for i, im in enumerate(images):
        batch[i, :, : im.shape[1], : im.shape[2]] = im
        h, w = grid_size(encoder, int(im.shape[1]), int(im.shape[2]))
        valid[i, :h, :w] = True
    return batch, valid
