"""Grid (and pooled) features of any image set, keyed by file stem: the input of VQA, captioning
and V&L pre-training.

What the paper's V&L models read is the last feature map of the CLIP encoder at a large input
size, not the 224 px pooled embedding: CLIP-ResNet ``layer4`` before the attention pool (2048
channels for RN50/RN101, 2560 for RN50x4), the CLIP-ViT patch tokens of the final layer
(after ``ln_post``) in grid order, or ImageNet-ResNet-152's C5. The resolution follows the
grid-feature recipe of Jiang et al. (2020): shorter side 600, longer side at most 1000 for VQA
and captioning; 384 / 640 for pre-training; aspect ratio kept.

Pipeline:

1. Every image's header gives its size; :class:`ResolutionRule` gives the encoder input
   (both sides snapped *down* to a multiple of the stride, 32, which gives the same grid the
   un-snapped size would: 18 x 31 for 600 x 1000). Images with the same input shape form a
   bucket, so a batch is one tensor and no padding ever reaches the encoder.
2. DataLoader workers decode and resize (PIL bicubic, antialiased when shrinking) while the
   device encodes, channels-last; on GPU under bf16 autocast with the copy back overlapped,
   ``batch_size`` images per forward (on CPU one: batching measured slower there).
3. Finished batches go to the crash-safe journal (:class:`~.store.FeatureJournal`); at the end
   the journal becomes one HDF5 store (:mod:`.store`) in an atomic rename.

Resuming after ``kill -9``: the batches are planned from the full image list (not from what is
left), and a batch is journaled whole or not at all, so a resumed run skips exactly the
finished batches and computes the others with the same composition as an uninterrupted run:
the store is the same. Sharding: under ``torchrun`` every rank takes every ``WORLD_SIZE``-th
image and appends to the same journal; rank 0 waits for the others (with a stall limit, as
:mod:`.extract` does) and builds the store.

``pooled=True`` stores the ``[D]`` embedding per image instead (nearest-neighbour caption
baselines, linear probes); its default rule is CLIP's own preprocessing (shorter side to the
encoder's input size, centre crop).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import torch

from vln_clip import __version__
from vln_clip.encoders import get_spec
from vln_clip.errors import DataError

from .extract import autocast_context, check_counts, dist_info, pick_device, prepare_merge, ready_encoder, wait_for_ranks
from .store import FeatureJournal, FeatureStore, build_store, journal_dir, read_part_keys

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: ``(short side, long side)`` of the paper's recipes.
RESOLUTION_PRESETS = {"vqa": (600, 1000), "captioning": (600, 1000), "pretrain": (384, 640)}
RESIZE = "PIL bicubic (antialiased when shrinking)"
DEFAULT_GPU_BATCH = 8


@dataclass(frozen=True)
class ResolutionRule:
    """How an image of ``height x width`` becomes the encoder input.

    Scale so the shorter side is ``short_side``, unless the longer side would then exceed
    ``long_side`` (``None``: no limit), in which case the longer side is ``long_side``; then
    snap both sides down to a multiple of ``stride`` (at least one stride). With ``crop``, the
    resized image is centre-cropped to a ``short_side`` square instead (CLIP's preprocessing).
    """

    short_side: int = 600
    long_side: int | None = 1000
    stride: int = 32
    crop: bool = False

    def validate(self) -> "ResolutionRule":
        if self.short_side < self.stride:
            raise DataError(f"--short-side {self.short_side}: must be at least the encoder stride {self.stride}")
        if self.long_side is not None and self.long_side < self.short_side:
            raise DataError(f"--long-side {self.long_side}: must be at least --short-side {self.short_side} "
                            "(0 = no limit)")
        return self

    def _snap(self, n: float) -> int:
        return max(self.stride, int(math.floor(n + 1e-6)) // self.stride * self.stride)

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """Size after resizing (before snapping / cropping)."""
        scale = self.short_side / min(height, width)
        if not self.crop and self.long_side is not None and max(height, width) * scale > self.long_side:
            scale = self.long_side / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` the encoder sees for an image of ``height x width`` pixels."""
        if self.crop:
            s = self._snap(self.short_side)
            return s, s
        h, w = self.resized(height, width)
        return self._snap(h), self._snap(w)

    def attrs(self) -> dict[str, Any]:
        return {"short_side": self.short_side, "long_side": self.long_side or 0, "stride": self.stride,
                "crop": "center" if self.crop else "none"}


def default_rule(encoder: str, pooled: bool) -> ResolutionRule:
    """Grids: the VQA / captioning recipe (600 / 1000). Pooled: CLIP's own centre crop at the
    encoder's input size (the embedding CLIP was trained to produce)."""
    spec = get_spec(encoder)
    if pooled:
        return ResolutionRule(spec.input_size, None, spec.stride, crop=True)
    return ResolutionRule(*RESOLUTION_PRESETS["vqa"], stride=spec.stride)


def resize_image(img: Any, rule: ResolutionRule) -> np.ndarray:
    """A PIL image -> ``[H, W, 3]`` uint8 RGB at ``rule.input_size`` (the one preprocessing path)."""
    from PIL import Image

    img = img.convert("RGB")
    h, w = img.height, img.width
    th, tw = rule.input_size(h, w)
    if rule.crop:
        rh, rw = rule.resized(h, w)
        img = img.resize((rw, rh), Image.BICUBIC)
        top, left = (rh - th) // 2, (rw - tw) // 2
        img = img.crop((left, top, left + tw, top + th))
    elif (th, tw) != (h, w):
        img = img.resize((tw, th), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def list_images(folder: str | os.PathLike[str], keys: list[str] | None = None) -> dict[str, Path]:
    """``image key (file stem) -> path`` of the images directly in ``folder``, sorted by key."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder; pass --images DIR holding the .jpg/.png files")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        if p.stem in found:
            raise DataError(f"{p}: two images have the key {p.stem!r} ({found[p.stem].name} and {p.name}); "
                            "keys are file stems, so keep one of them")
        found[p.stem] = p
    if not found:
        raise DataError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder (sub-folders are "
                        "not searched); pass the folder that holds the image files")
    if keys is not None:
        missing = [k for k in keys if k not in found]
        if missing:
            raise DataError(f"{folder}: no image for key {missing[0]!r} ({len(missing)} of {len(keys)} keys "
                            f"missing); expected {folder}/{missing[0]}.jpg")
        found = {k: found[k] for k in sorted(set(keys))}
    return found


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header (no decode); a broken file is a DataError."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception as exc:
        raise DataError(f"{path}: not a readable image ({exc}); replace or delete the file") from exc


def plan_batches(sizes: dict[str, tuple[int, int]], rule: ResolutionRule,
                 batch_size: int) -> list[tuple[tuple[int, int], list[str]]]:
    """Images grouped by input shape, each group cut into batches of ``batch_size``.

    Deterministic in the image list alone, so a resumed run plans the same batches.
    """
    buckets: dict[tuple[int, int], list[str]] = {}
    for key in sorted(sizes):
        buckets.setdefault(rule.input_size(*sizes[key]), []).append(key)
    return [(shape, keys[i: i + batch_size]) for shape, keys in sorted(buckets.items())
            for i in range(0, len(keys), batch_size)]


@dataclass
class GridConfig:
    """One grid (or pooled) extraction; the CLI maps its flags onto this."""

    encoder: str = "clip_res50"
    images: Path = Path("images")
    out: Path = Path("grid.h5")
    rule: ResolutionRule | None = None  # None: default_rule(encoder, pooled)
    weights: str | None = None
    random_weights: bool = False
    pooled: bool = False
    l2_normalize: bool = False  # pooled mode only
    batch_size: int | None = None  # images per forward pass (one shape bucket); None: 8 on GPU, 1 on CPU
    keys: list[str] | None = None  # only these image keys
    limit: int | None = None  # only the first N images (trials, benchmarks)
    device: str | None = None
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    workers: int | None = None  # decoding processes (default: cores - 1, at most 8)
    dtype: str = "float16"
    progress: bool = True
    progress_stream: TextIO | None = None  # default stderr
    extra_attrs: dict[str, Any] = field(default_factory=dict)  # recorded in the store as they are


def store_attrs(cfg: GridConfig, encoder: Any, rule: ResolutionRule) -> dict[str, Any]:
    """What a grid / pooled store records (and what a resumed run must match)."""
    spec = encoder.spec
    attrs: dict[str, Any] = {
        "kind": "pooled" if cfg.pooled else "grid", "encoder": encoder.name, "weights": encoder.weights,
        **rule.attrs(),
        "preprocessing": json.dumps({"mean": list(spec.mean), "std": list(spec.std), "resize": RESIZE,
                                     "channels": "RGB", "snap": f"down to a multiple of {rule.stride}"}),
        "image_dir": str(Path(cfg.images).resolve()), "vln_clip_version": __version__, **cfg.extra_attrs}
    if cfg.pooled:
        attrs["l2_normalized"] = str(bool(cfg.l2_normalize))
    else:
        attrs["grid_layout"] = "nc" if spec.is_vit else "hwc"
    return attrs


class _Progress:
    """A tqdm bar on a terminal; otherwise a plain line every ``every_s`` seconds and at the end
    (logs, CI, nohup): ``grid features 120/5000 images (2%) 3.41 img/s eta 23:50``."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool, stream: TextIO | None,
                 every_s: float = 30.0) -> None:
        self.stream = stream or sys.stderr
        self.total, self.done, self.desc, self.every_s = total, initial, desc, every_s
        self.start_done, self.t0, self.last = initial, time.perf_counter(), 0.0
        self.enabled = enabled
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="img", desc=desc, file=self.stream,
                            dynamic_ncols=True)

    def rate(self) -> float:
        return (self.done - self.start_done) / max(time.perf_counter() - self.t0, 1e-9)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(f"{self.rate():.2f} img/s", refresh=False)
        elif self.enabled and (time.perf_counter() - self.last >= self.every_s or self.done >= self.total):
            self.last = time.perf_counter()
            rate = self.rate()
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            self.write(f"{self.desc} {self.done}/{self.total} images ({100 * self.done / max(self.total, 1):.0f}%) "
                       f"{rate:.3g} img/s eta {_duration(eta)}")

    def write(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Batches(torch.utils.data.Dataset):
    """One planned batch per item, decoded and resized in a worker; errors travel as messages."""

    def __init__(self, batches: list[tuple[tuple[int, int], list[str]]], paths: dict[str, Path],
                 rule: ResolutionRule) -> None:
        self.batches, self.paths, self.rule = batches, paths, rule

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from PIL import Image

        shape, keys = self.batches[i]
        arrays, sizes = [], []
        for key in keys:
            path = self.paths[key]
            try:
                with Image.open(path) as img:
                    sizes.append((img.height, img.width))
                    arr = resize_image(img, self.rule)
            except Exception as exc:
                return {"error": f"{path}: not a readable image ({exc}); replace or delete the file"}
            if arr.shape[:2] != shape:  # the header said another size than the pixels
                return {"error": f"{path}: decoded to {arr.shape[1]}x{arr.shape[0]} input, planned "
                                 f"{shape[1]}x{shape[0]}; the file changed during extraction, re-run"}
            arrays.append(arr)
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return {"keys": keys, "images": images, "image_hw": np.asarray(sizes, dtype=np.int64)}


@torch.no_grad()
def encode_images(encoder: Any, images: torch.Tensor, pooled: bool, device: torch.device,
                  precision: str = "auto") -> tuple[torch.Tensor, tuple[int, int] | None]:
    """uint8 ``[B, 3, H, W]`` -> (features float32 on ``device``, grid ``(H', W')`` or None).

    Features: pooled ``[B, D]``, a ResNet grid ``[B, H', W', C]`` or ViT patch tokens
    ``[B, H'*W', C]`` in row-major order (the store's ``hwc`` / ``nc`` layouts).
    """
    x = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    with autocast_context(device, precision):
        out = encoder(x, grid=not pooled, pooled=pooled)
    if pooled:
        return out["pooled"].float(), None
    g = out["grid"].float()
    hw = (int(g.shape[-2]), int(g.shape[-1]))
    if encoder.spec.is_vit:
        return g.flatten(2).transpose(1, 2), hw
    return g.permute(0, 2, 3, 1), hw


def extract_grid(cfg: GridConfig, on_batch: Callable[[int], None] | None = None, encoder: Any = None) -> Path:
    """Extract (or finish extracting) ``cfg.out``; returns its path.

    ``on_batch(n)`` is called after each journaled batch with the number of images done in
    this run (progress hooks; tests use it to simulate a kill). ``encoder``: an already built
    :class:`vln_clip.encoders.Encoder` of ``cfg.encoder`` (benchmarks, repeated runs).
    """
    spec = get_spec(cfg.encoder)  # unknown names fail before any file work
    rule = (cfg.rule or default_rule(cfg.encoder, cfg.pooled)).validate()
    if rule.stride != spec.stride:
        raise DataError(f"resolution rule stride {rule.stride} differs from {spec.name}'s stride {spec.stride}")
    check_counts(("--batch-size", cfg.batch_size, 1), ("--limit", cfg.limit, 1), ("--workers", cfg.workers, 0))
    if cfg.l2_normalize and not cfg.pooled:
        raise DataError("--l2-normalize applies to --pooled embeddings only (grids are stored as computed)")
    rank, world, local_rank = dist_info()
    out = Path(cfg.out)
    paths = list_images(cfg.images, cfg.keys)
    keys = list(paths)[: cfg.limit] if cfg.limit is not None else list(paths)
    mine = keys[rank::world]
    device = pick_device(cfg.device, local_rank)
    encoder = ready_encoder(encoder, cfg.encoder, cfg.weights, cfg.random_weights, cfg.l2_normalize, device,
                            "extract_grid")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # few distinct shapes thanks to the buckets
    encoder.to(memory_format=torch.channels_last)  # GPU, and ~5% on CPU too (docs/features.md)
    # On CPU a 600x1000 image already keeps a core busy and larger batches only add cache
    # misses (batch 8 was ~25% slower per image than batch 1 here), so batches are for the GPU.
    batch_size = cfg.batch_size or (DEFAULT_GPU_BATCH if device.type == "cuda" else 1)
    attrs = store_attrs(cfg, encoder, rule)
    dim = spec.pooled_dim if cfg.pooled else spec.grid_channels
    jdir = journal_dir(out)
    done: set[str] = set()
    for part in sorted(jdir.glob("part-*.npz")) if jdir.exists() else []:
        done.update(read_part_keys(part))
    if out.exists():
        with FeatureStore(out) as existing:
            if len(existing):
                existing.require(kind=attrs["kind"], encoder=attrs["encoder"], weights=attrs["weights"],
                                 short_side=rule.short_side, long_side=rule.long_side or 0, crop=attrs["crop"],
                                 preprocessing=json.loads(attrs["preprocessing"]), dim=dim)
            done |= set(existing.keys())
    sizes = {k: image_size(paths[k]) for k in mine}  # every header, before any model work
    batches = [b for b in plan_batches(sizes, rule, batch_size) if not all(k in done for k in b[1])]
    journal = FeatureJournal(jdir, dim, {**attrs, "dtype": cfg.dtype}, rank=rank)
    todo = sum(len(b[1]) for b in batches)
    _extract_loop(cfg, encoder, device, rule, journal, batches, paths, len(mine) - todo, on_batch)
    (journal.folder / f"done-r{rank:03d}-of-{world:03d}").write_text(str(len(mine)))
    if rank != 0:
        return out
    wait_for_ranks(journal.folder, world)
    prepare_merge(out, [journal.folder])  # stale temporaries removed, room for the copy checked
    build_store(out, [journal.folder], attrs, dtype=cfg.dtype, remove_sources=True)
    return out


def _extract_loop(cfg: GridConfig, encoder: Any, device: torch.device, rule: ResolutionRule,
                  journal: FeatureJournal, batches: list[tuple[tuple[int, int], list[str]]],
                  paths: dict[str, Path], skipped: int, on_batch: Callable[[int], None] | None) -> None:
    total = skipped + sum(len(b[1]) for b in batches)
    progress = _Progress(total, skipped, f"{encoder.name} {'pooled' if cfg.pooled else 'grid'} features",
                         cfg.progress, cfg.progress_stream)
    if not batches:
        progress.close()
        return
    cuda = device.type == "cuda"
    workers = cfg.workers if cfg.workers is not None else min(8, max(1, (os.cpu_count() or 2) - 1))
    loader = torch.utils.data.DataLoader(
        _Batches(batches, paths, rule), batch_size=None, shuffle=False, num_workers=workers,
        pin_memory=cuda, prefetch_factor=4 if workers else None)
    out_dtype = torch.float16 if cfg.dtype == "float16" else torch.float32
    n, first = 0, True
    Item = tuple[list[str], torch.Tensor, dict[str, np.ndarray], Any]
    pending: Item | None = None

    def finish(item: Item) -> None:
        nonlocal n
        keys, host, extra, event = item
        if event is not None:
            event.synchronize()
        journal.append(keys, host.numpy(), extra)
        n += len(keys)
        progress.update(len(keys))
        if on_batch is not None:
            on_batch(n)

    try:
        for batch in loader:
            if "error" in batch:
                raise DataError(batch["error"])
            t0 = time.perf_counter()
            images = batch["images"]
            feats, hw = encode_images(encoder, images, cfg.pooled, device, cfg.precision)
            b = len(batch["keys"])
            extra = {"image_hw": batch["image_hw"]}
            if hw is not None:
                extra["input_hw"] = np.tile(np.asarray(images.shape[-2:]), (b, 1))
                extra["grid_hw"] = np.tile(np.asarray(hw), (b, 1))
            feats = feats.to(out_dtype)
            if not cuda:
                finish((batch["keys"], feats, extra, None))
                if first:
                    _estimate(progress, time.perf_counter() - t0, images, batches, total - skipped)
                first = False
                continue
            # GPU: copy back asynchronously and journal the previous batch while this one computes.
            host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
            host.copy_(feats, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            if pending is not None:
                item, pending = pending, None
                finish(item)
            pending = (batch["keys"], host, extra, event)
        if pending is not None:
            item, pending = pending, None
            finish(item)
    except BaseException:
        if pending is not None:  # keep the finished batch in flight (never a partial one)
            with contextlib.suppress(Exception):
                finish(pending)
        raise
    finally:
        progress.close()


def _estimate(progress: _Progress, seconds: float, images: torch.Tensor,
              batches: list[tuple[tuple[int, int], list[str]]], todo: int) -> None:
    """On CPU, say up front how long the whole run will take (cost ~ pixels), from the first batch."""
    pixels = sum(shape[0] * shape[1] * len(keys) for shape, keys in batches)
    rate = images.shape[0] * images.shape[-1] * images.shape[-2] / max(seconds, 1e-9)
    expected = pixels / rate
    progress.write(f"expected time on cpu: about {_duration(expected)} for {todo} images "
                   f"({rate / 1e6:.2f} Mpixel/s on the first batch of {images.shape[0]} at "
                   f"{images.shape[-2]}x{images.shape[-1]})"
                   + ("; a GPU (--device cuda) is ~100x faster" if expected > 600 else ""))
