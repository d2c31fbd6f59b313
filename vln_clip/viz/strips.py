"""A strip of the views an agent faced: one captioned thumbnail per step, side by side."""

from __future__ import annotations

from typing import Sequence

import numpy as np

CAPTION_HEIGHT = 14


def _fit(image: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3]
    h, w = arr.shape[:2]
    width = max(1, round(w * height / h))
    if (h, w) == (height, width):
        return arr
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.BILINEAR))


def view_strip(images: Sequence[np.ndarray], captions: Sequence[str] | None = None, height: int = 96,
               gap: int = 4, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Thumbnails of ``images`` scaled to ``height`` and laid left to right with a caption row.

    Returns HxWx3 uint8. Thumbnail ``k`` occupies columns ``[k * (w + gap), k * (w + gap) + w)``
    when all images share one aspect ratio (the 36 views do), which lets tests find each step.
    """
    from PIL import Image, ImageDraw

    if not images:
        raise ValueError("a view strip needs at least one image")
    thumbs = [_fit(im, height) for im in images]
    total_w = sum(t.shape[1] for t in thumbs) + gap * (len(thumbs) - 1)
    cap_h = CAPTION_HEIGHT if captions else 0
    canvas = np.empty((height + cap_h, total_w, 3), np.uint8)
    canvas[:] = background
    x = 0
    offsets = []
    for t in thumbs:
        canvas[:height, x:x + t.shape[1]] = t
        offsets.append(x)
        x += t.shape[1] + gap
    if captions:
        pil = Image.fromarray(canvas)
        draw = ImageDraw.Draw(pil)
        for off, t, cap in zip(offsets, thumbs, captions):
            draw.text((off + 2, height + 1), str(cap)[: max(1, t.shape[1] // 6)], fill=(0, 0, 0))
        canvas = np.asarray(pil).copy()
    return canvas
