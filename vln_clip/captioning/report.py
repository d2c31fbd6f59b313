"""A picture of example images with their greedy and beam-search captions (docs/captioning.md)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from vln_clip.datasets.coco import read_karpathy  # noqa: E402
from vln_clip.errors import DataError  # noqa: E402
from vln_clip.io import atomic_path  # noqa: E402

from .data import GridFeatures, karpathy_path  # noqa: E402
from .decoding import beam_search, greedy  # noqa: E402
from .train import load_captioner  # noqa: E402


def example_picture(checkpoint: str | Path, features: str | Path, data: str | Path, out: str | Path,
                    split: str = "val", count: int = 6, beam: int = 5) -> Path:
    """The first ``count`` images of ``split`` with one reference, the greedy and the beam caption."""
    kpath = karpathy_path(data)
    ims = [im for im in read_karpathy(kpath) if im.split == split][:count]
    if not ims:
        raise DataError(f"{kpath}: no {split!r} images")
    root = kpath.parent.parent if kpath.parent.name == "coco" else kpath.parent
    model, vocab, _ = load_captioner(checkpoint)
    feats = GridFeatures(features, [im.image_key for im in ims], preload=False)
    with torch.no_grad():
        memory, pad = model.encode(*feats.batch([im.image_key for im in ims]))
        g = [vocab.decode(r) for r in greedy(model, memory, pad, model.cfg.max_len).tolist()]
        b = [vocab.decode(r) for r in beam_search(model, memory, pad, beam, model.cfg.max_len)[0].tolist()]
    cols = min(3, len(ims))
    rows = (len(ims) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, im, gc, bc in zip(axes.ravel(), ims, g, b):
        path = root / (im.filepath or "images") / im.filename
        if not path.exists():
            path = root / "images" / im.filename
        if not path.exists():
            raise DataError(f"{path}: image not found; pass --data the folder that holds images/")
        ax.imshow(Image.open(path).convert("RGB"))
        ref = im.sentences[0].raw if im.sentences else ""
        text = "\n".join(textwrap.fill(s, 44) for s in (f"greedy: {gc}", f"beam {beam}: {bc}", f"ref: {ref}"))
        ax.set_title(text, fontsize=7, loc="left")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=72, format="png")
    plt.close(fig)
    return out
