"""PNG and GIF encoding with atomic writes (a killed run never leaves half a picture)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vln_clip.io import atomic_path


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr[..., :3]


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an HxWx3 uint8 image (lossless so tests can read exact colours back)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_as_rgb(image)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def encode_gif(frames: Sequence[np.ndarray], duration_s: float = 0.8, loop: int = 0) -> bytes:
    """Animated GIF bytes, one frame per entry, all frames padded to the first frame's size.

    Each frame is quantised with an adaptive palette; the map's few flat colours survive
    exactly, so the agent-path colour can be checked in the decoded frames.
    """
    from PIL import Image

    if not frames:
        raise ValueError("a GIF needs at least one frame")
    rgb = [_as_rgb(f) for f in frames]
    h, w = rgb[0].shape[:2]
    images = []
    for f in rgb:
        if f.shape[:2] != (h, w):
            canvas = np.full((h, w, 3), 255, np.uint8)
            hh, ww = min(h, f.shape[0]), min(w, f.shape[1])
            canvas[:hh, :ww] = f[:hh, :ww]
            f = canvas
        images.append(Image.fromarray(f).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    buf = io.BytesIO()
    # disposal=1 and no optimisation: every frame is stored whole, so frame k can be read alone.
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=int(duration_s * 1000), loop=loop, optimize=False, disposal=1)
    return buf.getvalue()


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_png(image))
    return path


def write_gif(path: str | os.PathLike[str], frames: Sequence[np.ndarray], duration_s: float = 0.8) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_gif(frames, duration_s))
    return path


def read_gif_frames(path_or_bytes: str | os.PathLike[str] | bytes) -> list[np.ndarray]:
    """Decode every frame of a GIF to HxWx3 uint8 (for tests and for people checking a file)."""
    from PIL import Image, ImageSequence

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(im)]
