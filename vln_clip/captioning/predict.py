"""Captions for a split in the COCO results format: a trained captioner or a baseline.

Baselines through the same results files and the same ``vln-clip caption eval``:

* ``nearest``: copy a training caption of the training image whose pooled feature is most
  similar (cosine) to the test image's (Devlin et al. 2015's nearest-neighbour baseline).
  Of the neighbour's references, the one with the highest CIDEr-D against the neighbour's
  own references (its consensus caption) is copied. Pooled features come from a ``pooled``
  store (``vln-clip features grid --pooled``) or are the mean of the grid cells.
* ``constant``: one caption for every image, the most frequent training caption (ties:
  the first in the file): what a model that ignores the image can do at best by copying.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vln_clip.datasets.coco import read_captions
from vln_clip.errors import DataError
from vln_clip.eval.cider import CiderD
from vln_clip.features.store import FeatureStore

from .data import CaptionSplit, GridFeatures, load_split
from .decoding import beam_search, greedy, sample
from .train import load_captioner, require_same_features

DECODERS = ("beam", "greedy", "sample")
BASELINES = ("nearest", "constant")


@dataclass
class Target:
    """Which images to caption: keys with their COCO image ids."""

    keys: list[str]
    image_ids: list[int]


def target_images(images_from: str, data: str | None = None) -> Target:
    """A Karpathy split name (with ``data``) or a COCO captions file."""
    if images_from.endswith(".json") or Path(images_from).is_file():
        ims = read_captions(images_from)
        return Target([im.image_key for im in ims], [im.image_id for im in ims])
    if data is None:
        raise DataError(f"--images-from {images_from}: a split name needs --data DIR (the Karpathy file); or pass "
                        f"a COCO captions file")
    split = load_split(data, images_from)
    return Target(split.keys, split.image_ids)


def predict_captions(checkpoint: str | Path, features: str | Path, target: Target, decoder: str = "beam",
                     beam: int = 5, length_norm: float = 0.0, temperature: float = 1.0, batch_size: int = 32,
                     seed: int = 0) -> dict[int, str]:
    """``{image_id: caption}`` from a captioning checkpoint."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    model, vocab, ckpt = load_captioner(checkpoint)
    feats_store = GridFeatures(features, target.keys, preload=False)
    require_same_features(feats_store, ckpt)
    if feats_store.dim != model.cfg.feat_dim:
        raise DataError(f"{features}: {feats_store.dim} channels, the checkpoint was trained on "
                        f"{model.cfg.feat_dim}; use the feature store it was trained with")
    gen = torch.Generator().manual_seed(seed)
    out: dict[int, str] = {}
    with torch.no_grad():
        for i in range(0, len(target.keys), batch_size):
            keys = target.keys[i: i + batch_size]
            memory, pad = model.encode(*feats_store.batch(keys))
            if decoder == "beam":
                tokens, _ = beam_search(model, memory, pad, beam=beam, max_len=model.cfg.max_len,
                                        length_norm=length_norm)
            elif decoder == "greedy":
                tokens = greedy(model, memory, pad, model.cfg.max_len)
            else:
                tokens = sample(model, memory, pad, 1, temperature, model.cfg.max_len, generator=gen)
            for image_id, row in zip(target.image_ids[i: i + batch_size], tokens.tolist()):
                out[image_id] = vocab.decode(row)
    return out


def consensus_captions(split: CaptionSplit) -> list[str]:
    """Per training image, its reference with the highest CIDEr-D against its own references."""
    refs = split.refs()
    scorer = CiderD(refs)
    flat = [r for k in split.keys for r in refs[k]]
    owner = [k for k in split.keys for _ in refs[k]]
    scores = scorer.scores(flat, owner)
    out, j = [], 0
    for k in split.keys:
        n = len(refs[k])
        out.append(refs[k][int(np.argmax(scores[j: j + n]))])
        j += n
    return out


def pooled_features(path: str | Path, keys: Sequence[str]) -> np.ndarray:
    """``[N, D]`` pooled features: a pooled store as stored, a grid store averaged over its cells."""
    store = FeatureStore(path)
    if store.kind == "pooled":
        missing = [k for k in keys if k not in store]
        if missing:
            raise DataError(f"{path}: no pooled feature for {len(missing)} images (first {missing[0]}); extract "
                            f"them with `vln-clip features grid --pooled --images DIR/images --out {path}`")
        return store.get_many(keys).features.astype(np.float32)
    return GridFeatures(path, keys, preload=False).pooled(keys)


def baseline_captions(kind: str, data: str, features: str | Path, target: Target) -> dict[int, str]:
    """``{image_id: caption}`` of a baseline (module docstring) trained on the Karpathy train split."""
    if kind not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")
    train = load_split(data, "train")
    if kind == "constant":
        counts = Counter(" ".join(t) for caps in train.captions for t in caps)
        best = max(counts.values())
        caption = next(c for c in (" ".join(t) for caps in train.captions for t in caps) if counts[c] == best)
        return {i: caption for i in target.image_ids}
    train_f = pooled_features(features, train.keys)
    test_f = pooled_features(features, target.keys)
    train_f /= np.linalg.norm(train_f, axis=1, keepdims=True).clip(min=1e-12)
    test_f /= np.linalg.norm(test_f, axis=1, keepdims=True).clip(min=1e-12)
    chosen = consensus_captions(train)
    out: dict[int, str] = {}
    for i in range(0, len(target.keys), 1024):
        nearest = np.argmax(test_f[i: i + 1024] @ train_f.T, axis=1)
        for image_id, j in zip(target.image_ids[i: i + 1024], nearest):
            out[image_id] = chosen[int(j)]
    return out
