"""Pre-training the study's visual encoders on the synthetic V&L world: contrastive vs classification.

The paper's thesis compares an encoder trained contrastively on image-text pairs (CLIP) with
encoders trained on human labels (ImageNet classes, Visual Genome boxes). No pretrained
weights can be fetched here, so this module makes both kinds from the same images, with the
same visual architecture and the same compute budget (images, batch size, updates):

* ``contrastive``: CLIP's symmetric InfoNCE over (image, caption) pairs, with open_clip's own
  model class, tokenizer and loss (:class:`open_clip.loss.ClipLoss`). The model is a small
  open_clip config (``vln_clip/study/model_configs/*.json``, open_clip's JSON schema, so the
  architecture is open_clip's ModifiedResNet or VisionTransformer, not a re-implementation).
  Each update pairs every image with one of its five captions, drawn from the run's data
  stream (so a resumed run draws the same captions).
* ``classification``: the same visual tower trained with cross-entropy on the labels an
  annotator would give the image -- its room type (single label, ImageNet-style) and the object
  classes it shows (multi-label, binary cross-entropy) -- read from the scene descriptions.
  This arm never reads a caption.

The exported checkpoint (``format: vln-clip-encoder-1``) holds the open_clip model config and
weights, so :func:`vln_clip.encoders.load_encoder` builds it wherever an encoder name is taken
(pooled and grid features, zero-shot scoring, Grad-CAM, the CLIP-ViL_p backbone).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vln_clip.datasets.coco import read_karpathy
from vln_clip.encoders import (CLIP_MEAN, CLIP_STD, ENCODER_CHECKPOINT_FORMAT, build_clip_from_checkpoint,
                               build_clip_from_config, checkpoint_spec, read_encoder_checkpoint)
from vln_clip.errors import DataError
from vln_clip.io import atomic_path, read_json
from vln_clip.train import DataOrder, LoopConfig, OptimizerConfig, Task, TaskContext, fit, load_checkpoint

from .probe import linear_probe

OBJECTIVES = ("contrastive", "classification")
MODEL_CONFIG_DIR = Path(__file__).with_name("model_configs")
#: Short names of the shipped open_clip configs (``--arch``).
ARCHS = {"rn-tiny": "vlnclip-synth-rn-tiny", "vit-tiny": "vlnclip-synth-vit-tiny"}
#: Zero-shot room prompts (the synthetic captions name the room this way).
ROOM_PROMPTS = ("a photo of a {room}.", "a {room}.", "the {room}.")


def model_config(arch: str) -> dict[str, Any]:
    """The open_clip model config (JSON data) of a shipped architecture."""
    name = ARCHS.get(arch, arch)
    path = MODEL_CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise DataError(f"unknown encoder architecture {arch!r}; choose one of: {', '.join(ARCHS)}")
    return json.loads(path.read_text())


def room_words(room_type: str) -> str:
    return room_type.replace("_", " ")


# ------------------------------------------------------------------------------------------
# Data


@dataclass
class LabelSpace:
    """Room types (single label) and object classes (multi-label) seen in the training scenes."""

    rooms: list[str]
    objects: list[str]

    def room_index(self, room: str) -> int:
        return self.rooms.index(room) if room in self.rooms else -1

    def object_vector(self, types: Sequence[str]) -> np.ndarray:
        v = np.zeros(len(self.objects), np.float32)
        for t in types:
            if t in self.objects:
                v[self.objects.index(t)] = 1.0
        return v


def _description(entry: dict[str, Any]) -> dict[str, Any]:
    """A scenes.json entry's scene description (older worlds nest it under ``description``)."""
    return entry.get("description", entry)


def scene_labels(entry: dict[str, Any]) -> tuple[str, list[str]]:
    """(room type, sorted object classes) of one scenes.json entry: what an annotator would tag."""
    desc = _description(entry)
    try:
        room = str(desc["room"]["type"])
        objects = sorted({str(o["type"]) for o in desc.get("objects", [])})
    except (KeyError, TypeError) as exc:
        raise DataError(f"scenes.json entry without room/objects ({exc}); regenerate with "
                        "`vln-clip data synth-vl`") from None
    return room, objects


def scene_colour(entry: dict[str, Any]) -> str | None:
    """Colour of the largest object of the image's own room (None when it shows none): the
    attribute the colour probe of :func:`encoder_quality` reads off the pooled feature."""
    objs = [o for o in _description(entry).get("objects", []) if o.get("in_room", True) and o.get("colour")]
    if not objs:
        return None
    return str(max(objs, key=lambda o: float(o.get("area", 0.0)))["colour"])


def load_scenes(data: Path) -> dict[str, dict[str, Any]]:
    path = data / "scenes.json"
    scenes = read_json(path, "scene descriptions of the synthetic V&L world")
    if not isinstance(scenes, dict):
        raise DataError(f"{path}: expected an object image_key -> description; regenerate with "
                        "`vln-clip data synth-vl`")
    return scenes


def load_square_image(path: Path, size: int, grayscale: bool = False) -> np.ndarray:
    """CLIP's evaluation transform without normalisation: shorter side to ``size`` (bicubic),
    centre crop, ``[3, size, size]`` uint8. ``grayscale``: PIL's luminance (ITU-R 601-2) copied
    to all three channels, so a model trained on it sees no colour but keeps RGB input."""
    try:
        with Image.open(path) as im:
            im = im.convert("L").convert("RGB") if grayscale else im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, np.uint8).transpose(2, 0, 1).copy()
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc}); regenerate the V&L world") from None


@dataclass
class ImageSet:
    """One split's images (uint8, square), labels and -- for the contrastive arm only -- captions."""

    keys: list[str]
    images: torch.Tensor  # [N, 3, S, S] uint8
    rooms: torch.Tensor  # [N] long (-1 = a room type unseen in training)
    objects: torch.Tensor  # [N, K] float multi-hot
    colours: list[str | None]  # colour of the largest in-room object (None: no object)
    captions: list[list[str]] | None = None


def load_split(data: Path, split: str, size: int, labels: LabelSpace | None, with_captions: bool,
               limit: int | None = None, grayscale: bool = False) -> tuple[ImageSet, LabelSpace]:
    """Images of one Karpathy split; the label space is built from it when ``labels`` is None."""
    scenes = load_scenes(data)
    kar = read_karpathy(data / "coco" / "dataset_coco.json")
    rows = [im for im in kar if (im.split in ("train", "restval") if split == "train" else im.split == split)]
    rows = rows[:limit] if limit else rows
    if not rows:
        raise DataError(f"{data / 'coco' / 'dataset_coco.json'}: no images in split {split!r}; "
                        "generate the V&L world with `vln-clip data synth-vl`")
    tags = []
    for im in rows:
        if im.image_key not in scenes:
            raise DataError(f"{data / 'scenes.json'}: no description of image {im.image_key}; regenerate the world")
        tags.append(scene_labels(scenes[im.image_key]))
    colours = [scene_colour(scenes[im.image_key]) for im in rows]
    if labels is None:
        labels = LabelSpace(sorted({r for r, _ in tags}), sorted({o for _, objs in tags for o in objs}))
    images = np.stack([load_square_image(data / "images" / f"{im.image_key}.jpg", size, grayscale) for im in rows])
    return ImageSet(
        keys=[im.image_key for im in rows],
        images=torch.from_numpy(images),
        rooms=torch.tensor([labels.room_index(r) for r, _ in tags], dtype=torch.long),
        objects=torch.from_numpy(np.stack([labels.object_vector(o) for _, o in tags])),
        colours=colours,
        captions=[[s.raw for s in im.sentences] for im in rows] if with_captions else None,
    ), labels


# ------------------------------------------------------------------------------------------
# Task


@dataclass
class EncoderPretrainConfig:
    """One encoder pre-training run. Both objectives share every field but ``objective``, so the
    two arms get the same images, batch size and number of updates."""

    data: str = "data/synthetic-vl"
    objective: str = "contrastive"
    arch: str = "rn-tiny"
    image_size: int = 128
    batch_size: int = 64
    optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(
        "adamw", lr=5e-4, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-6, schedule="cosine", warmup_steps=50,
        grad_clip=1.0))
    object_weight: float = 1.0  # classification: weight of the multi-label object loss
    # Train (and validate) on luminance only: an encoder pre-trained on an image domain without
    # colour, for the CLIP-ViL_p question of what training the backbone adds (docs/pretraining.md).
    grayscale: bool = False
    limit: int | None = None  # cap on training images (tests)

    def validate(self) -> None:
        if self.objective not in OBJECTIVES:
            raise DataError(f"--objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.batch_size < 2:
            raise DataError("--batch-size must be at least 2 (the contrastive loss needs negatives)")
        model_config(self.arch)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class EncoderPretrainTask(Task):
    """Trains ``clip`` (an open_clip CLIP; the classification arm adds ``heads``)."""

    kind = "encoder-pretrain"

    def __init__(self, config: EncoderPretrainConfig) -> None:
        config.validate()
        self.config = config
        self.model_cfg = model_config(config.arch)
        self.model_cfg["vision_cfg"]["image_size"] = config.image_size
        # The contrastive arm calls CLIP's forward (DDP-safe; ClipLoss gathers features across
        # ranks). The classification arm calls the visual tower alone, which a DDP wrapper hides.
        self.supports_distributed = config.objective == "contrastive"

    def setup(self, ctx: TaskContext) -> None:
        c = self.config
        self.device = ctx.device
        contrastive = c.objective == "contrastive"
        self.train, self.labels = load_split(Path(c.data), "train", c.image_size, None, contrastive, c.limit,
                                             c.grayscale)
        self.val, _ = load_split(Path(c.data), "val", c.image_size, self.labels, False, grayscale=c.grayscale)
        self.clip = build_clip_from_config(self.model_cfg).to(ctx.device)
        self.heads = nn.ModuleDict({
            "room": nn.Linear(self.model_cfg["embed_dim"], len(self.labels.rooms)),
            "objects": nn.Linear(self.model_cfg["embed_dim"], len(self.labels.objects)),
        }).to(ctx.device)
        self.tokenizer = _tokenizer(self.model_cfg)
        self.loss = open_clip.loss.ClipLoss(rank=ctx.rank, world_size=ctx.world_size)
        self.order = DataOrder(len(self.train.keys), c.batch_size, seed=0)
        self.mean = torch.tensor(CLIP_MEAN, device=ctx.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=ctx.device).view(1, 3, 1, 1)

    def models(self) -> dict[str, nn.Module]:
        if self.config.objective == "contrastive":
            return {"clip": self.clip}
        return {"clip": self.clip, "heads": self.heads}

    def optimizers(self) -> dict[str, tuple[Any, OptimizerConfig]]:
        if self.config.objective == "contrastive":
            params = list(self.clip.parameters())
        else:  # only the visual tower and the heads learn; the text tower stays at its init
            params = list(self.clip.visual.parameters()) + list(self.heads.parameters())
        return {"model": (params, self.config.optim)}

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        return (images.to(self.device).float() / 255.0 - self.mean) / self.std

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        idx = self.order.next()
        x = self._pixels(self.train.images[idx])
        if self.config.objective == "contrastive":
            assert self.train.captions is not None
            pick = torch.randint(0, 5, (len(idx),), generator=self.order.generator)
            texts = [self.train.captions[int(i)][int(p) % len(self.train.captions[int(i)])] for i, p in zip(idx, pick)]
            clip = self.module("clip")
            out = clip(x, self.tokenizer(texts).to(self.device))
            loss = self.loss(out["image_features"], out["text_features"], out["logit_scale"])
            return {"loss": loss, "logit_scale": out["logit_scale"].detach()}
        pooled = self.clip.visual(x)  # single process only (supports_distributed is False)
        rooms = self.train.rooms[idx].to(self.device)
        room_loss = F.cross_entropy(self.heads["room"](pooled), rooms, ignore_index=-1)
        obj_loss = F.binary_cross_entropy_with_logits(self.heads["objects"](pooled),
                                                      self.train.objects[idx].to(self.device))
        return {"loss": room_loss + self.config.object_weight * obj_loss, "room_loss": room_loss.detach(),
                "object_loss": obj_loss.detach()}

    @torch.no_grad()
    def _pooled(self, images: torch.Tensor, normalise: bool) -> torch.Tensor:
        out = []
        for i in range(0, len(images), 128):
            f = self.clip.visual(self._pixels(images[i: i + 128]))
            out.append(F.normalize(f, dim=-1) if normalise else f)
        return torch.cat(out)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.config.objective == "contrastive":
            feats = self._pooled(self.val.images, True)
            acc = zero_shot_rooms(self.clip, self.tokenizer, feats, self.val.rooms, self.labels.rooms, self.device)
            return {"val/zero_shot_room": acc}
        pooled = self._pooled(self.val.images, False)
        room = self.heads["room"](pooled).argmax(1).cpu()
        known = self.val.rooms >= 0
        obj = (self.heads["objects"](pooled) > 0).float().cpu()
        return {"val/room_accuracy": float((room[known] == self.val.rooms[known]).float().mean()),
                "val/object_f1": _micro_f1(obj, self.val.objects)}

    def extra_state(self) -> dict[str, Any]:
        return {"labels": dataclasses.asdict(self.labels), "model_cfg": self.model_cfg}


def _tokenizer(model_cfg: dict[str, Any]) -> Any:
    """open_clip's BPE tokenizer at the config's context length (ships in the package, offline)."""
    return open_clip.SimpleTokenizer(context_length=int(model_cfg["text_cfg"]["context_length"]))


def _micro_f1(pred: torch.Tensor, gold: torch.Tensor) -> float:
    tp = float((pred * gold).sum())
    denom = float(pred.sum() + gold.sum())
    return 2 * tp / denom if denom else 1.0


@torch.no_grad()
def room_text_features(clip: nn.Module, tokenizer: Any, rooms: Sequence[str], device: torch.device) -> torch.Tensor:
    """One normalised text embedding per room: the mean over :data:`ROOM_PROMPTS` (CLIP's prompt ensembling)."""
    out = []
    for r in rooms:
        t = clip.encode_text(tokenizer([p.format(room=room_words(r)) for p in ROOM_PROMPTS]).to(device))
        out.append(F.normalize(F.normalize(t, dim=-1).mean(0), dim=-1))
    return torch.stack(out)


def zero_shot_rooms(clip: nn.Module, tokenizer: Any, image_feats: torch.Tensor, gold: torch.Tensor,
                    rooms: Sequence[str], device: torch.device) -> float:
    text = room_text_features(clip, tokenizer, rooms, device)
    pred = (image_feats.to(device) @ text.T).argmax(1).cpu()
    known = gold >= 0
    return float((pred[known] == gold[known]).float().mean())


def _colour_probe(ft: torch.Tensor, train_colours: Sequence[str | None], fv: torch.Tensor,
                  val_colours: Sequence[str | None]) -> dict[str, float]:
    """Linear-probe accuracy of the largest object's colour, over images that show an object
    of a colour seen in training (empty when the world has no coloured objects)."""
    index = {c: k for k, c in enumerate(sorted({c for c in train_colours if c is not None}))}
    ti = [i for i, c in enumerate(train_colours) if c is not None]
    vi = [i for i, c in enumerate(val_colours) if c in index]
    if len(index) < 2 or not vi:
        return {}
    probe = linear_probe(ft[ti].numpy(), np.array([index[train_colours[i]] for i in ti]),
                         fv[vi].numpy(), np.array([index[val_colours[i]] for i in vi]))
    return {"probe_colour": probe.accuracy, "probe_colour_majority": probe.majority, "colours": len(index),
            "colour_images": len(vi)}


# ------------------------------------------------------------------------------------------
# Running, exporting, judging


def pretrain_encoder(config: EncoderPretrainConfig, loop: LoopConfig, out: str | Path) -> dict[str, Any]:
    """Train one arm, export ``out`` (the registry's encoder checkpoint) from the best
    validation checkpoint and return its quality report (:func:`encoder_quality`)."""
    t0 = time.time()
    if loop.best_metric is None:
        loop.best_metric = "val/zero_shot_room" if config.objective == "contrastive" else "val/room_accuracy"
    task = EncoderPretrainTask(config)
    result = fit(task, loop)
    ckpt = load_checkpoint(result.best_checkpoint or result.last_checkpoint)
    payload = {
        "format": ENCODER_CHECKPOINT_FORMAT,
        "objective": config.objective,
        "arch": config.arch,
        "model_cfg": ckpt["extra"]["model_cfg"] if "extra" in ckpt else task.model_cfg,
        "state_dict": ckpt["models"]["clip"],
        "labels": dataclasses.asdict(task.labels),
        "heads": ckpt["models"].get("heads"),
        "config": config.to_dict(),
        "step": ckpt.get("step"),
        "train_seconds": round(time.time() - t0, 1),
        "data": str(Path(config.data).resolve()),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    report = encoder_quality(str(out), config.data, config.image_size)
    report.update({"objective": config.objective, "arch": config.arch, "updates": payload["step"],
                   "trained_updates": result.step,  # "updates": the exported (best-validation) one
                   "train_seconds": payload["train_seconds"]})
    return report


def random_encoder(arch: str, image_size: int, out: str | Path, seed: int = 0) -> Path:
    """The third arm as a checkpoint: the same architecture at its seeded random initialisation,
    so every downstream command takes it exactly like a trained encoder."""
    cfg = model_config(arch)
    cfg["vision_cfg"]["image_size"] = image_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = build_clip_from_config(cfg)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save({"format": ENCODER_CHECKPOINT_FORMAT, "objective": "random", "arch": arch, "model_cfg": cfg,
                    "state_dict": clip.state_dict(), "seed": seed, "step": 0}, tmp)
    return out


@torch.no_grad()
def encoder_quality(encoder: str, data: str | Path, image_size: int | None = None, random_arch: str = "rn-tiny",
                    device: str = "cpu") -> dict[str, Any]:
    """An encoder's own quality on the V&L world's val images (houses unseen in training):

    * ``probe_room``: linear-probe accuracy of the room type from the pooled feature (every arm);
    * ``probe_colour``: the same for the colour of the image's largest object (images showing
      one), the attribute half of the GQA and a third of the SNLI-VE questions turn on;
    * ``zero_shot_room``: CLIP zero-shot room classification (contrastive checkpoints);
    * ``room_accuracy`` / ``object_f1``: the classifier's own heads on held-out images.

    ``encoder`` is an encoder checkpoint path, or ``random`` for the third arm (``random_arch``
    with random weights, same architecture as the trained arms). A checkpoint fixes its own input
    size (an attention-pooled ResNet only accepts the grid it was built for), so ``image_size``
    is only needed for the random arm (default 128); given with a checkpoint it must agree.
    """
    data = Path(data)
    dev = torch.device(device)
    if encoder == "random":
        image_size = image_size or EncoderPretrainConfig.image_size  # the trained arms' default
        cfg = model_config(random_arch)
        cfg["vision_cfg"]["image_size"] = image_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            clip = build_clip_from_config(cfg)
        ckpt: dict[str, Any] = {"objective": "random", "model_cfg": cfg}
    else:
        ckpt = read_encoder_checkpoint(encoder)
        trained_size = checkpoint_spec(encoder).input_size
        if image_size is not None and image_size != trained_size:
            raise DataError(f"{encoder}: this encoder was trained on {trained_size}px images (model_cfg.vision_cfg."
                            f"image_size) and cannot measure {image_size}px ones; leave out --image-size or pass "
                            f"--image-size {trained_size}")
        image_size = trained_size
        clip = build_clip_from_checkpoint(encoder)
    train, labels = load_split(data, "train", image_size, None, False)
    val, _ = load_split(data, "val", image_size, labels, False)
    clip.to(dev).eval()

    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)

    def pooled(images: torch.Tensor) -> torch.Tensor:
        out = [clip.visual(((images[i: i + 128].float() / 255.0 - mean) / std).to(dev)).cpu()
               for i in range(0, len(images), 128)]
        return torch.cat(out)

    ft, fv = pooled(train.images), pooled(val.images)
    known_t, known_v = train.rooms >= 0, val.rooms >= 0
    probe = linear_probe(ft[known_t].numpy(), train.rooms[known_t].numpy(), fv[known_v].numpy(),
                         val.rooms[known_v].numpy())
    report: dict[str, Any] = {"encoder": encoder, "objective": ckpt.get("objective"), "val_images": len(val.keys),
                              "probe_room": probe.accuracy, "probe_room_majority": probe.majority,
                              "rooms": len(labels.rooms), "chance_room": 1.0 / len(labels.rooms)}
    report.update(_colour_probe(ft, train.colours, fv, val.colours))
    if ckpt.get("objective") == "contrastive":
        report["zero_shot_room"] = zero_shot_rooms(clip, _tokenizer(ckpt["model_cfg"]), F.normalize(fv, dim=-1),
                                                   val.rooms, labels.rooms, dev)
    if ckpt.get("objective") == "classification" and ckpt.get("heads"):
        heads = nn.ModuleDict({"room": nn.Linear(fv.shape[1], len(labels.rooms)),
                               "objects": nn.Linear(fv.shape[1], len(labels.objects))})
        heads.load_state_dict(ckpt["heads"])
        room = heads["room"](fv).argmax(1)
        report["room_accuracy"] = float((room[known_v] == val.rooms[known_v]).float().mean())
        report["object_f1"] = _micro_f1((heads["objects"](fv) > 0).float(), val.objects)
    return report
