"""Panoramic CLIP features for every viewpoint: fast, resumable, shardable.

Pipeline per batch of panoramas (``batch_panoramas`` of them, i.e. 36x that many images per
forward pass):

1. DataLoader workers decode the skybox JPEGs (or equirects) in parallel with the model work
   (JPEG DCT-domain downscaling to MatterSim's 512-pixel faces when reading full faces).
2. :mod:`.views` renders the 36 discretized views with one ``grid_sample`` per panorama
   chunk, then applies CLIP's preprocessing (shorter side to the encoder's input size with
   antialiased bicubic resizing, center crop) -- or, with ``render="crop"``, renders the
   surviving center window directly at the input size. On GPU this runs on the device; on
   CPU the workers do it too, so it overlaps the encoder.
3. The encoder runs under autocast (bf16, or fp16 where bf16 is missing) on GPU and writes
   ``pooled`` features to a crash-safe journal (:class:`~.store.FeatureJournal`); at the end
   the journal becomes the HDF5 store in one atomic rename.

Resuming: finished viewpoints (in the journal or an existing ``out``) are skipped, so a
killed run continues where it stopped. Sharding: under ``torchrun`` every rank takes every
``WORLD_SIZE``-th panorama and appends to the same journal; rank 0 waits for all ranks and
builds the store (``vln-clip features merge`` does the same by hand).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vln_clip import __version__
from vln_clip.encoders import get_spec, load_encoder
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore, pose_rotation, read_connectivity
from vln_clip.io import remove_stale_temps, require_free_space

from .store import FeatureJournal, FeatureStore, build_store, feature_key, journal_dir, read_part_keys
from .views import (EQUIRECT_SUBDIR, FACE_TEMPLATE, MATTERSIM_FACE_SIZE, STRIP_TEMPLATE, ViewSpec,
                    discretized_rays, equirect_path, faces_to_strip, load_equirect, load_skybox,
                    make_mattersim, mattersim_views, render_equirect, render_skybox, skybox_folder)

SOURCES = ("skybox", "equirect", "mattersim")


@dataclass
class ExtractConfig:
    """Everything one extraction run needs (the CLI maps its flags onto this)."""

    encoder: str = "clip_res50x4"
    skybox_dir: Path | None = None
    connectivity_dir: Path | None = None
    out: Path = Path("features.h5")
    source: str = "skybox"
    weights: str | None = None
    random_weights: bool = False
    batch_panoramas: int = 8
    image_size: int | None = None  # encoder input; default: the encoder's native size
    view: ViewSpec = field(default_factory=ViewSpec)
    bgr: bool = False  # feed channel-swapped views, like the published CLIP-ViL features
    render: str = "full"  # "full": 640x480 views then CLIP preprocessing; "crop": render the crop directly
    face_size: int | None = MATTERSIM_FACE_SIZE  # faces resized to what MatterSim reads; None keeps them
    scans: list[str] | None = None
    limit: int | None = None  # only the first N panoramas (trials, benchmarks)
    device: str | None = None
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    workers: int | None = None
    l2_normalize: bool = False
    dtype: str = "float16"
    progress: bool = True


@dataclass
class Task:
    scan: str
    viewpoint: str
    rotation: np.ndarray

    @property
    def key(self) -> str:
        return feature_key(self.scan, self.viewpoint)


def list_tasks(connectivity_dir: str | os.PathLike[str], scans: list[str] | None = None) -> list[Task]:
    """Included panoramas of the chosen scans (``scans.txt`` order), with their pose rotations.

    The scans are listed by :attr:`vln_clip.graph.GraphStore.scans` and the files parsed by
    :func:`vln_clip.graph.read_connectivity`: one reader of the connectivity format, whose checks
    (a 16-number pose, the included flag) every consumer gets.
    """
    root = Path(connectivity_dir)
    if scans is None:
        scans = GraphStore(root).scans
        if not scans:
            raise DataError(f"{root}: no scans.txt and no <scan>_connectivity.json files; "
                            "pass --connectivity pointing at Matterport's connectivity folder")
    tasks = []
    for scan in scans:
        for item in read_connectivity(root / f"{scan}_connectivity.json"):
            if item["included"]:
                tasks.append(Task(scan, str(item["image_id"]), pose_rotation(item["pose"])))
    return tasks


def check_inputs(cfg: ExtractConfig, tasks: list[Task]) -> None:
    """Fail before any model work when panorama files are missing (names the first one)."""
    if cfg.source == "mattersim":
        return
    missing = []
    for t in tasks:
        if cfg.source == "skybox":
            folder = skybox_folder(cfg.skybox_dir or ".", t.scan)
            if (folder / STRIP_TEMPLATE.format(pano=t.viewpoint)).exists():
                continue
            for i in range(6):
                p = folder / FACE_TEMPLATE.format(pano=t.viewpoint, i=i)
                if not p.exists():
                    missing.append(p)
                    break
        elif not equirect_path(cfg.skybox_dir or ".", t.scan, t.viewpoint).exists():
            missing.append(equirect_path(cfg.skybox_dir or ".", t.scan, t.viewpoint))
    if missing:
        where = (f"<skybox-dir>/<scan>/matterport_skybox_images/ (the {STRIP_TEMPLATE.format(pano='<pano>')} "
                 f"strip or the six {FACE_TEMPLATE.format(pano='<pano>', i='<i>')} faces)"
                 if cfg.source == "skybox" else f"<skybox-dir>/<scan>/{EQUIRECT_SUBDIR}/<pano>.jpg")
        raise DataError(f"{missing[0]}: not found ({len(missing)} of {len(tasks)} panoramas lack their "
                        f"images); expected {where}. Download them or restrict --scans")


class _PanoramaData(torch.utils.data.Dataset):
    """Decodes one panorama per item in a worker; errors travel back as messages."""

    def __init__(self, cfg: ExtractConfig, tasks: list[Task], renderer: "ViewRenderer | None" = None) -> None:
        self.cfg, self.tasks = cfg, tasks
        self.renderer = renderer  # CPU extraction: workers also render and preprocess
        self._sim: Any = None

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor | None, np.ndarray, str | None]:
        t = self.tasks[i]
        try:
            if self.cfg.source == "skybox":
                img = load_skybox(self.cfg.skybox_dir or ".", t.scan, t.viewpoint, self.cfg.face_size)
                tensor = torch.from_numpy(img).permute(0, 3, 1, 2)  # [6, 3, S, S]
            elif self.cfg.source == "equirect":
                tensor = torch.from_numpy(load_equirect(self.cfg.skybox_dir or ".", t.scan, t.viewpoint))
                tensor = tensor.permute(2, 0, 1)
            else:
                if self._sim is None:
                    self._sim = make_mattersim(self.cfg.skybox_dir or ".", self.cfg.connectivity_dir or ".",
                                               self.cfg.view)
                views = mattersim_views(self.cfg.skybox_dir or ".", self.cfg.connectivity_dir or ".", t.scan,
                                        t.viewpoint, self.cfg.view, sim=self._sim)
                tensor = torch.from_numpy(views[..., ::-1].copy()).permute(0, 3, 1, 2)  # RGB [36, 3, H, W]
            rotation = t.rotation.astype(np.float32)
            if self.renderer is not None:
                with torch.no_grad():
                    tensor = self.renderer.views(tensor[None], torch.from_numpy(rotation)[None])
            return t.key, tensor.contiguous(), rotation, None
        except DataError as exc:
            return t.key, None, t.rotation.astype(np.float32), str(exc)


def _collate(items: list[tuple[str, torch.Tensor | None, np.ndarray, str | None]]) -> dict[str, Any]:
    for _, _, _, err in items:
        if err:
            return {"error": err}
    shapes = {tuple(it[1].shape) for it in items}  # type: ignore[union-attr]
    if len(shapes) != 1:
        raise DataError(f"panoramas in one batch have different image sizes {sorted(shapes)}; "
                        "use one face size for all skyboxes (the default resizes to 512)")
    return {"keys": [it[0] for it in items], "images": torch.stack([it[1] for it in items]),  # type: ignore[misc]
            "rotations": torch.from_numpy(np.stack([it[2] for it in items]))}


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 otherwise)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    return torch.device("cpu")


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    if precision == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


class ViewRenderer:
    """Panoramas -> 36 preprocessed views each, on ``device`` (the GPU, or a CPU worker process)."""

    def __init__(self, cfg: ExtractConfig, size: int, device: torch.device) -> None:
        if cfg.render not in ("full", "crop"):
            raise DataError(f"render must be 'full' or 'crop', got {cfg.render!r}")
        self.cfg, self.size, self.device = cfg, size, device
        self.chunk = 4 if device.type == "cuda" else 1  # panoramas rendered at once (memory bound)
        self._rays: torch.Tensor | None = None

    def __getstate__(self) -> dict[str, Any]:  # sent to DataLoader workers: rays are rebuilt there
        return {**self.__dict__, "_rays": None}

    @property
    def rays(self) -> torch.Tensor:
        if self._rays is None:
            spec = self.cfg.view
            if self.cfg.render == "crop":
                self._rays = discretized_rays(spec, spec.center_square(), (self.size, self.size), self.device)
            else:
                self._rays = discretized_rays(spec, device=self.device)
        return self._rays

    def preprocess(self, views: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` float 0-255 -> ``[N, 3, s, s]`` float 0-1 (CLIP resize + center crop)."""
        n, c, h, w = views.shape
        s = self.size
        if (h, w) != (s, s):
            if h <= w:
                nh, nw = s, int(s * w / h)
            else:
                nh, nw = int(s * h / w), s
            views = F.interpolate(views, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
            top, left = int(round((nh - s) / 2.0)), int(round((nw - s) / 2.0))
            views = views[..., top: top + s, left: left + s]
        return (views / 255.0).clamp_(0.0, 1.0)

    def views(self, images: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
        """Preprocessed views ``[B*36, 3, s, s]`` (RGB, or BGR with ``cfg.bgr``)."""
        images = images.to(self.device, non_blocking=True)
        rotations = rotations.to(self.device, non_blocking=True)
        out = []
        for i in range(0, images.shape[0], self.chunk):
            img = images[i: i + self.chunk]
            if self.cfg.source == "skybox":
                v = render_skybox(faces_to_strip(img).float(), rotations[i: i + self.chunk], self.rays)
            elif self.cfg.source == "equirect":
                v = render_equirect(img.float(), rotations[i: i + self.chunk], self.rays)
            else:
                v = img.float()  # MatterSim frames [b, 36, 3, H, W]
            out.append(self.preprocess(v.flatten(0, 1)))
        x = torch.cat(out)
        if self.cfg.bgr:
            x = x.flip(1)
        return x


class ViewPipeline:
    """Views (rendered here, or already by the CPU workers) -> pooled features on the device."""

    def __init__(self, cfg: ExtractConfig, encoder: Any, device: torch.device) -> None:
        self.cfg, self.encoder, self.device = cfg, encoder, device
        self.size = cfg.image_size or encoder.input_size
        self.renderer = ViewRenderer(cfg, self.size, device)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, panoramas: int) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(self.device, self.cfg.precision):
            pooled = self.encoder(x, grid=False)["pooled"]
        return pooled.float().reshape(panoramas, 36, -1)

    @torch.no_grad()
    def features(self, images: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
        return self.encode(self.renderer.views(images, rotations), images.shape[0])


def store_attrs(cfg: ExtractConfig, encoder: Any, size: int) -> dict[str, Any]:
    return {"encoder": encoder.name, "weights": encoder.weights, "image_size": size,
            "view_width": cfg.view.width, "view_height": cfg.view.height, "vfov": cfg.view.vfov_deg,
            "bgr": str(bool(cfg.bgr)), "source": cfg.source, "render": cfg.render,
            "l2_normalized": str(bool(cfg.l2_normalize)), "face_size": cfg.face_size or 0,
            "vln_clip_version": __version__}


def check_counts(*options: tuple[str, int | None, int]) -> None:
    """Each ``(flag, value, least)`` given (not None) is an integer of at least ``least``.

    Why: these values become slice bounds, tensor sizes and worker counts; ``--limit -1``
    would silently extract all panoramas but the last, ``--image-size -5`` or ``--workers -1``
    would end in a traceback deep inside torch.
    """
    for flag, value, least in options:
        if value is not None and value < least:
            what = "a positive integer" if least == 1 else f"an integer >= {least}"
            raise DataError(f"{flag} {value}: must be {what}")


def run_extraction(cfg: ExtractConfig, on_batch: Callable[[int], None] | None = None,
                   encoder: Any = None) -> Path:
    """Extract (or finish extracting) ``cfg.out``; returns its path.

    ``on_batch(n)`` is called after each journaled batch with the number of panoramas done
    in this run (progress hooks; tests use it to simulate a kill). ``encoder``: an already
    built :class:`vln_clip.encoders.Encoder` of ``cfg.encoder`` (benchmarks, repeated runs).
    """
    if cfg.source not in SOURCES:
        raise DataError(f"unknown --source {cfg.source!r}; choose one of {', '.join(SOURCES)}")
    if cfg.connectivity_dir is None:
        raise DataError("extraction needs --connectivity DIR (the panorama list and pose rotations)")
    if cfg.source != "mattersim" and cfg.skybox_dir is None:
        raise DataError("--skybox-dir DIR is required: the folder holding <scan>/matterport_skybox_images")
    check_counts(("--batch-panoramas", cfg.batch_panoramas, 1), ("--image-size", cfg.image_size, 1),
                 ("--limit", cfg.limit, 1), ("--workers", cfg.workers, 0), ("--face-size", cfg.face_size, 0))
    get_spec(cfg.encoder)  # unknown names fail before any file work
    rank, world, local_rank = dist_info()
    out = Path(cfg.out)
    tasks = list_tasks(cfg.connectivity_dir, cfg.scans)
    if cfg.limit is not None:
        tasks = tasks[: cfg.limit]
    device = pick_device(cfg.device, local_rank)
    encoder = ready_encoder(encoder, cfg.encoder, cfg.weights, cfg.random_weights, cfg.l2_normalize, device,
                            "run_extraction")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        encoder.to(memory_format=torch.channels_last)
    pipeline = ViewPipeline(cfg, encoder, device)
    attrs = store_attrs(cfg, encoder, pipeline.size)
    jdir = journal_dir(out)
    done: set[str] = set()
    for part in sorted(jdir.glob("part-*.npz")) if jdir.exists() else []:
        done.update(read_part_keys(part))
    if out.exists():
        with FeatureStore(out) as existing:
            if len(existing) and (existing.encoder != encoder.name or existing.dim != encoder.pooled_dim):
                raise DataError(f"{out}: holds {existing.encoder} features (dim {existing.dim}), this run "
                                f"extracts {encoder.name} (dim {encoder.pooled_dim}); choose another --out")
            for name in ("weights", "bgr", "image_size"):
                if len(existing) and name in existing.attrs and str(existing.attrs[name]) != str(attrs[name]):
                    raise DataError(f"{out}: was extracted with {name}={existing.attrs[name]!r}, this run has "
                                    f"{name}={attrs[name]!r}; use the same settings or another --out")
            done |= set(existing.keys())
    mine = tasks[rank::world]
    todo = [t for t in mine if t.key not in done]
    check_inputs(cfg, todo)
    journal = FeatureJournal(jdir, encoder.pooled_dim, {**attrs, "dtype": cfg.dtype}, rank=rank)
    _extract_loop(cfg, pipeline, journal, todo, len(mine) - len(todo), on_batch)
    marker = journal.folder / f"done-r{rank:03d}-of-{world:03d}"
    marker.write_text(str(len(mine)))
    if rank != 0:
        return out
    wait_for_ranks(journal.folder, world)
    prepare_merge(out, [journal.folder])
    build_store(out, [journal.folder], attrs, dtype=cfg.dtype, remove_sources=True)
    return out



def ready_encoder(encoder: Any, name: str, weights: Any, random_weights: bool, l2_normalize: bool,
                  device: torch.device, caller: str) -> Any:
    """The encoder an extraction runs: built from the config, or a given one checked against it
    (by registry spec, so an encoder checkpoint named by another path still matches)."""
    if encoder is None:
        return load_encoder(name, weights=weights, random_weights=random_weights, device=device,
                            l2_normalize=l2_normalize)
    if encoder.name != get_spec(name).name:
        raise DataError(f"{caller} got a {encoder.name} encoder for encoder={name}")
    encoder.to(device)
    encoder.l2_normalize = l2_normalize  # the store records the config's choice
    return encoder

def prepare_merge(out: Path, sources: list[Path]) -> None:
    """Before the journal becomes the HDF5 store: drop temporaries of dead runs, check the disk.

    HDF5 crashes the process (a segfault while closing) when the disk fills during the merge,
    and a killed merge leaves its temporary file behind; so a merge removes the stale
    temporaries of ``out`` first and refuses, with the sizes, to start without room for the
    copy (journal parts + the existing store, plus a margin for the HDF5 index).
    """
    remove_stale_temps(out)
    size = out.stat().st_size if out.exists() else 0
    for src in sources:
        if src.is_dir():
            size += sum(f.stat().st_size for f in src.glob("part-*.npz"))
        elif src.exists():
            size += src.stat().st_size
    require_free_space(out, int(size * 1.1) + 2**20, "feature store")


def _extract_loop(cfg: ExtractConfig, pipeline: ViewPipeline, journal: FeatureJournal, todo: list[Task],
                  skipped: int, on_batch: Callable[[int], None] | None) -> None:
    from tqdm import tqdm

    if not todo:
        return
    cuda = pipeline.device.type == "cuda"
    workers = cfg.workers if cfg.workers is not None else (
        0 if cfg.source == "mattersim" else min(8, max(1, (os.cpu_count() or 2) - 1)))
    # On CPU the workers render and preprocess too, so that work overlaps the encoder's;
    # on GPU they only decode (rendering there is cheaper than shipping 36 views per panorama).
    in_workers = pipeline.device.type == "cpu" and workers > 0
    data = _PanoramaData(cfg, todo, pipeline.renderer if in_workers else None)
    loader = torch.utils.data.DataLoader(
        data, batch_size=cfg.batch_panoramas, shuffle=False, num_workers=workers,
        collate_fn=_collate, pin_memory=cuda, prefetch_factor=4 if workers else None,
        persistent_workers=False)
    bar = tqdm(total=len(todo) + skipped, initial=skipped, unit="pano", disable=not cfg.progress,
               desc=f"{pipeline.encoder.name} features", dynamic_ncols=True)
    start, n = time.perf_counter(), 0
    pending: tuple[list[str], torch.Tensor, Any] | None = None

    def finish(item: tuple[list[str], torch.Tensor, Any]) -> None:
        nonlocal n
        keys, host, event = item
        if event is not None:
            event.synchronize()
        journal.append(keys, host.numpy())
        first = n == 0
        n += len(keys)
        if first and len(todo) > n:
            _print_estimate(pipeline, n, time.perf_counter() - start, len(todo) - n)
        bar.update(len(keys))
        bar.set_postfix_str(f"{36 * n / max(time.perf_counter() - start, 1e-9):.1f} img/s")
        if on_batch is not None:
            on_batch(n)

    try:
        for batch in loader:
            if "error" in batch:
                raise DataError(batch["error"])
            if in_workers:
                images = batch["images"]  # [B, 36, 3, s, s] preprocessed views
                feats = pipeline.encode(images.flatten(0, 1), images.shape[0])
            else:
                feats = pipeline.features(batch["images"], batch["rotations"])
            if not cuda:
                finish((batch["keys"], feats, None))
                continue
            # GPU: copy back asynchronously and journal the previous batch while this one computes.
            host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
            host.copy_(feats, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            if pending is not None:
                item, pending = pending, None
                finish(item)
            pending = (batch["keys"], host, event)
        if pending is not None:
            item, pending = pending, None
            finish(item)
    except BaseException:
        if pending is not None:  # keep the finished batch in flight (never a partial one)
            with contextlib.suppress(Exception):
                pending[2].synchronize()
                journal.append(pending[0], pending[1].numpy())
        raise
    finally:
        bar.close()


def _print_estimate(pipeline: ViewPipeline, done: int, seconds: float, remaining: int) -> None:
    """After the first batch: the measured cost per panorama and the expected time of the rest.

    Why: a large encoder on a CPU (RN50x4: about 20 s a panorama) turns a full extraction into
    hours; saying so after the first batch, always on stderr (also without a progress bar and
    when stderr is not a terminal), lets the user stop and choose a GPU, a smaller encoder or
    ``--image-size`` before the hours are spent.
    """
    per = seconds / max(done, 1)
    total = per * remaining
    when = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.1f} min" if total >= 60 else f"{total:.0f} s"
    print(f"{pipeline.encoder.name} on {pipeline.device.type}: {per:.1f} s per panorama (36 views) in the first "
          f"batch; about {when} for the remaining {remaining} panoramas (the first batch includes warm-up)",
          file=sys.stderr, flush=True)


RANK_STALL_S = 1800.0  # a rank that journals nothing for this long is taken for dead


def wait_for_ranks(folder: Path, world: int, poll_s: float = 2.0, stall_s: float | None = None) -> None:
    """Rank 0 waits until every rank has written its ``done`` marker.

    Why a file barrier: ranks share only the journal folder (no process group is needed to
    extract). Why a stall limit: a rank killed by the OOM killer never writes its marker, and
    waiting on it forever would hang rank 0 too. Every live rank appends a journal part every
    few batches, so rank 0 gives up only when *no* missing rank has written anything for
    ``stall_s`` seconds (``$VLN_CLIP_RANK_STALL_S``, default 30 minutes), naming the ranks.
    The journal keeps everything finished: the same command, rerun, resumes.
    """
    if world == 1:
        return
    if stall_s is None:
        stall_s = float(os.environ.get("VLN_CLIP_RANK_STALL_S", RANK_STALL_S))
    want = {r: f"done-r{r:03d}-of-{world:03d}" for r in range(world)}
    last_seen: dict[int, float] = {r: time.time() for r in want}
    while True:
        names = {p.name for p in folder.glob("done-r*")}
        missing = [r for r, name in want.items() if name not in names]
        if not missing:
            return
        now = time.time()
        for r in missing:
            for part in folder.glob(f"part-r{r:03d}-*.npz"):
                try:
                    last_seen[r] = max(last_seen[r], part.stat().st_mtime)
                except OSError:
                    pass
        if all(now - last_seen[r] > stall_s for r in missing):
            raise DataError(f"{folder}: rank(s) {', '.join(map(str, missing))} of {world} wrote nothing for "
                            f"{stall_s:.0f} s and did not finish (killed or hung); rerun the same command: "
                            "the journal keeps every finished panorama")
        time.sleep(poll_s)


def extract_features(encoder: str, skybox_dir: str | os.PathLike[str], connectivity_dir: str | os.PathLike[str],
                     out: str | os.PathLike[str], random_weights: bool = False, batch_panoramas: int = 8,
                     image_size: int | None = None, **options: Any) -> Path:
    """Python entry point (the demo uses it): extract ``encoder`` features into ``out``.

    ``options`` are further :class:`ExtractConfig` fields (``source``, ``weights``, ``bgr``,
    ``render``, ``scans``, ``device``, ``workers``, ``view`` ...).
    """
    cfg = ExtractConfig(encoder=encoder, skybox_dir=Path(skybox_dir), connectivity_dir=Path(connectivity_dir),
                        out=Path(out), random_weights=random_weights, batch_panoramas=batch_panoramas,
                        image_size=image_size)
    unknown = set(options) - set(ExtractConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown extraction options {sorted(unknown)}")
    cfg = replace(cfg, **options)
    return run_extraction(cfg)


def merge(out: str | os.PathLike[str], inputs: list[str | os.PathLike[str]] | None = None) -> int:
    """Build ``out`` from its journal folder (an unfinished/sharded run) and any shard stores."""
    sources = list(inputs or [])
    jd = journal_dir(out)
    if jd.exists() and jd not in [Path(s) for s in sources]:
        sources.append(jd)
    if not sources and not Path(out).exists():
        raise DataError(f"{out}: nothing to merge (no {jd.name} journal and no input stores)")
    prepare_merge(out, [Path(s) for s in sources])
    return build_store(out, sources, remove_sources=True)
