"""The one visual-encoder registry: CLIP ResNets/ViT (open_clip) and the ImageNet ResNet-152 baseline.

The CLIP-ViL study's core move is swapping the visual encoder, so every task (VLN features,
VQA grids, captioning grids, pre-training) asks this module for an encoder by name and gets
the same two outputs:

- ``pooled``: ``[B, D]`` -- CLIP's attention-pooled, projected embedding for the ResNets, the
  projected CLS token for ViT, the global average pool for the ImageNet ResNet. This is the
  per-view VLN feature (optionally L2-normalized).
- ``grid``: ``[B, C, h, w]`` -- the last feature map (ResNet ``layer4``) or the ViT patch
  tokens after ``ln_post`` reshaped to a map, with ``h, w`` following the input size (VQA uses
  600x1000 inputs, captioning 448x448, pre-training 384x640). For non-native sizes the
  positional embeddings (attention pool / ViT) are bicubically interpolated.

Weights come from open_clip's cache (looked up locally, never downloaded: an offline machine
must not wait on the network), a local checkpoint file, or are random -- but only when asked
for explicitly (``random_weights=True``), and that is recorded as ``weights="random"``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import DataError, MissingResourceError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_ENV = "VLN_CLIP_WEIGHTS"
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class EncoderSpec:
    """Everything a caller needs to know about an encoder without building it."""

    name: str
    family: str  # "open_clip" or "torchvision"
    arch: str  # open_clip model name or torchvision constructor name
    input_size: int  # native square input resolution
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pooled_dim: int
    grid_channels: int
    stride: int  # input pixels per grid cell (32 for all entries)
    default_weights: str  # open_clip pretrained tag / torchvision weights enum name
    weights_file: str  # file name of the original checkpoint (what to drop in $VLN_CLIP_WEIGHTS)
    paper_name: str

    @property
    def is_vit(self) -> bool:
        """A vision transformer (patch tokens) rather than a ResNet (feature map)."""
        return self.family in ("open_clip", "checkpoint") and self.arch.startswith("ViT")


ENCODERS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        EncoderSpec("clip_res50", "open_clip", "RN50", 224, CLIP_MEAN, CLIP_STD, 1024, 2048, 32,
                    "openai", "RN50.pt", "CLIP-Res50"),
        EncoderSpec("clip_res101", "open_clip", "RN101", 224, CLIP_MEAN, CLIP_STD, 512, 2048, 32,
                    "openai", "RN101.pt", "CLIP-Res101"),
        EncoderSpec("clip_res50x4", "open_clip", "RN50x4", 288, CLIP_MEAN, CLIP_STD, 640, 2560, 32,
                    "openai", "RN50x4.pt", "CLIP-Res50x4"),
        EncoderSpec("clip_vit_b32", "open_clip", "ViT-B-32", 224, CLIP_MEAN, CLIP_STD, 512, 768, 32,
                    "openai", "ViT-B-32.pt", "CLIP-ViT-B/32"),
        EncoderSpec("imagenet_res152", "torchvision", "resnet152", 224, IMAGENET_MEAN, IMAGENET_STD,
                    2048, 2048, 32, "IMAGENET1K_V1", "resnet152-394f9c45.pth", "ImageNet-Res152"),
    )
}


def encoder_names() -> list[str]:
    return list(ENCODERS)


def get_spec(name: str | os.PathLike[str]) -> EncoderSpec:
    """The registry entry for ``name``; an encoder checkpoint path (``vln-clip encoders
    pretrain``) gives the spec recorded in it; an unknown name lists the valid ones."""
    if str(name) in ENCODERS:
        return ENCODERS[str(name)]
    if is_encoder_checkpoint(name):
        return checkpoint_spec(name)
    if str(name).endswith((".pt", ".pth")):  # a checkpoint path that is not there
        read_encoder_checkpoint(name)  # raises its "not found; make one with ..." error
    raise DataError(f"unknown encoder {str(name)!r}; choose one of: {', '.join(ENCODERS)}, or pass an encoder "
                    "checkpoint file made by `vln-clip encoders pretrain` (--encoder-checkpoint ENC.pt)") from None


def grid_size(name: str, height: int, width: int) -> tuple[int, int]:
    """Grid ``(h, w)`` an encoder produces for an input of ``height x width`` pixels."""
    spec = get_spec(name)
    if spec.is_vit:
        return height // spec.stride, width // spec.stride
    # ResNets: stride-2 stem conv (pad 1), then four 2x reductions (avgpool/strided conv).
    h, w = height, width
    h, w = (h + 1) // 2, (w + 1) // 2  # stem conv1, stride 2, padding 1, k=3
    for _ in range(4):
        h, w = h // 2, w // 2
    return h, w


# ---------------------------------------------------------------------------------------
# Weights


def weights_help(spec: EncoderSpec) -> str:
    where = []
    if spec.family == "open_clip":
        where.append(f"open_clip's cache (~/.cache/clip/{spec.weights_file}, or the Hugging Face cache "
                     f"entry of the '{spec.default_weights}' tag)")
    else:
        where.append(f"torch hub's cache ({Path(torch.hub.get_dir()) / 'checkpoints' / spec.weights_file})")
    where.append(f"${WEIGHTS_ENV}/{spec.weights_file} or ${WEIGHTS_ENV}/{spec.name}.pt")
    return (f"no weights for encoder {spec.name} on this machine. Put the checkpoint in "
            + " or ".join(where)
            + ", or pass --weights PATH (Python: weights=PATH); to run without pretrained weights pass "
              "--random-weights (random_weights=True), which is recorded as weights='random' in every output")


def _cached_pretrained(spec: EncoderSpec, tag: str) -> Path | None:
    """A local file holding weights ``tag`` for ``spec``, found without touching the network."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        for fname in (spec.weights_file, f"{spec.name}.pt", f"{spec.name}-{tag}.pt"):
            cand = Path(env) / fname
            if cand.is_file():
                return cand
    if spec.family == "torchvision":
        cand = Path(torch.hub.get_dir()) / "checkpoints" / spec.weights_file
        return cand if cand.is_file() else None
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.arch, tag) or {}
    if not cfg:
        return None
    url = cfg.get("url", "")
    if url:
        cand = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if cand.is_file():
            return cand
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
            return None
        repo, fname = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [fname] if fname else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    return None


def resolve_weights(spec: EncoderSpec, weights: str | os.PathLike[str] | None,
                    random_weights: bool) -> tuple[Path | None, str]:
    """(checkpoint file or None for random, label recorded in outputs)."""
    if random_weights:
        if weights is not None:
            raise DataError("pass either weights or random_weights=True (--weights or --random-weights), not both")
        return None, "random"
    if weights is not None and (Path(weights).is_file() or os.sep in str(weights) or str(weights).endswith(
            (".pt", ".pth", ".bin", ".safetensors"))):
        path = Path(weights)
        if not path.is_file():
            raise MissingResourceError(f"{path}: weights file not found. " + weights_help(spec))
        return path, f"file:{path.resolve()}"
    tag = str(weights) if weights is not None else spec.default_weights
    hit = _cached_pretrained(spec, tag)
    if hit is None:
        raise MissingResourceError(weights_help(spec) + f" (looked for tag {tag!r})")
    return hit, f"{tag}:{hit}"


# ---------------------------------------------------------------------------------------
# Modules


class Encoder(nn.Module):
    """A visual encoder with one calling convention for every task.

    ``forward(images)`` takes ``[B, 3, H, W]`` RGB images, uint8 (0-255) or float in [0, 1],
    applies the encoder's normalization, and returns ``{"pooled": [B, D], "grid": [B, C, h, w]}``.
    Pass ``normalized=True`` for inputs that are already mean/std normalized.
    """

    def __init__(self, spec: EncoderSpec, backbone: nn.Module, weights: str, l2_normalize: bool) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        self.weights = weights
        self.l2_normalize = l2_normalize
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def pooled_dim(self) -> int:
        return self.spec.pooled_dim

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, images: torch.Tensor, normalized: bool = False, grid: bool = True,
                pooled: bool = True) -> dict[str, torch.Tensor]:
        """``grid=False`` / ``pooled=False`` leave that output out; grid-only extraction skips
        the CLIP ResNets' attention pool (about a fifth of RN50's work at 600x1000)."""
        if not (grid or pooled):
            raise ValueError("ask for at least one of grid and pooled")
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"encoder {self.name}: expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        if images.shape[-1] < self.spec.stride or images.shape[-2] < self.spec.stride:
            raise DataError(f"encoder {self.name}: images must be at least {self.spec.stride}x{self.spec.stride} "
                            f"pixels, got {images.shape[-2]}x{images.shape[-1]}")
        x = images if normalized else self.normalize(images)
        emb, fmap = self._encode(x, want_pooled=pooled)
        out = {}
        if pooled:
            if self.l2_normalize:
                emb = F.normalize(emb.float(), dim=-1).to(emb.dtype)
            out["pooled"] = emb
        if grid:
            out["grid"] = fmap
        return out

    def _encode(self, x: torch.Tensor, want_pooled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.family == "torchvision":
            return _torchvision_resnet(self.backbone, x)
        if self.spec.is_vit:
            return _clip_vit(self.backbone, x)
        return _clip_resnet(self.backbone, x, want_pooled)


def _clip_resnet(v: nn.Module, x: torch.Tensor, want_pooled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    fmap = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))
    return (_attention_pool(v.attnpool, fmap) if want_pooled else fmap.new_zeros(0)), fmap


def _clip_vit(v: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = v.conv1(x)  # [B, width, gh, gw]
    b, c, gh, gw = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    cls = v.class_embedding.to(tokens.dtype).view(1, 1, -1).expand(b, 1, c)
    x = torch.cat([cls, tokens], dim=1) + _vit_pos_embed(v.positional_embedding, gh, gw).to(tokens.dtype)
    x = v.ln_pre(x)
    x = v.transformer(x)
    x = v.ln_post(x)
    pooled = x[:, 0]
    if v.proj is not None:
        pooled = pooled @ v.proj
    fmap = x[:, 1:].transpose(1, 2).reshape(b, c, gh, gw)
    return pooled, fmap


def _torchvision_resnet(v: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = v.maxpool(v.relu(v.bn1(v.conv1(x))))
    fmap = v.layer4(v.layer3(v.layer2(v.layer1(x))))
    return fmap.mean(dim=(2, 3)), fmap


def _interp_grid_embed(grid: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bicubically resize an ``[S*S, C]`` positional embedding to ``[h*w, C]``."""
    side = int(round(math.sqrt(grid.shape[0])))
    g = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    g = F.interpolate(g, size=(h, w), mode="bicubic", align_corners=False)
    return g.permute(0, 2, 3, 1).reshape(h * w, -1).to(grid.dtype)


def _vit_pos_embed(pos: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    side = int(round(math.sqrt(pos.shape[0] - 1)))
    if (gh, gw) == (side, side):
        return pos
    return torch.cat([pos[:1], _interp_grid_embed(pos[1:], gh, gw)], dim=0)


def _attention_pool(pool: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """CLIP's attention pooling for any grid size; only the mean-token query is computed.

    Equal to ``AttentionPool2d.forward`` at the native size (the other queries' outputs are
    discarded there anyway), with the spatial positional embedding interpolated otherwise.
    """
    b, c, h, w = fmap.shape
    x = fmap.flatten(2).permute(2, 0, 1)  # (HW)BC
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    pos = pool.positional_embedding
    side = int(round(math.sqrt(pos.shape[0] - 1)))
    if (h, w) != (side, side):
        pos = torch.cat([pos[:1], _interp_grid_embed(pos[1:], h, w)], dim=0)
    x = x + pos[:, None, :].to(x.dtype)
    out, _ = F.multi_head_attention_forward(
        query=x[:1], key=x, value=x, embed_dim_to_check=c, num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
        in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
        out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False)
    return out[0]


def _uses_quick_gelu(spec: EncoderSpec, tag: str | None) -> bool:
    """QuickGELU is part of the OpenAI architecture (the registry's default, random weights and
    checkpoint files); tags trained with plain GELU (e.g. LAION's) say so in open_clip's table."""
    if tag is None or tag == "openai":
        return True
    import open_clip

    return bool((open_clip.get_pretrained_cfg(spec.arch, tag) or {}).get("quick_gelu", False))


def _build_open_clip(spec: EncoderSpec, checkpoint: Path | None, quick_gelu: bool = True) -> nn.Module:
    """The vision tower of open_clip's public ``create_model`` (the text tower is dropped at once).

    Only public open_clip API is used, so an open_clip release that reorganises its internals
    keeps working; building the text tower costs about a second, paid once per process.
    """
    import open_clip

    logging.disable(logging.WARNING)  # "initialized randomly": we load or record the weights ourselves
    try:
        visual = open_clip.create_model(spec.arch, pretrained=None, force_quick_gelu=quick_gelu).visual
    finally:
        logging.disable(logging.NOTSET)
    if checkpoint is not None:
        from open_clip.factory import load_state_dict

        try:
            state = load_state_dict(str(checkpoint))
        except Exception as exc:  # truncated download, not a checkpoint
            raise DataError(f"{checkpoint}: not a readable checkpoint ({exc}); re-download it") from exc
        vis = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        if not vis:
            raise DataError(f"{checkpoint}: no 'visual.*' weights inside; expected an OpenAI/open_clip "
                            f"{spec.arch} checkpoint")
        try:
            visual.load_state_dict(vis, strict=True)
        except RuntimeError as exc:
            raise DataError(f"{checkpoint}: does not fit {spec.arch} ({str(exc).splitlines()[0]}); check "
                            f"that the file holds {spec.name}'s weights") from exc
    return visual


def _build_torchvision(spec: EncoderSpec, checkpoint: Path | None) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, spec.arch)(weights=None)
    if checkpoint is not None:
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise DataError(f"{checkpoint}: cannot load as {spec.arch} weights for {spec.name} ({exc}); "
                            "check that the file is torchvision's resnet152 checkpoint") from exc
    model.fc = nn.Identity()
    return model


def load_encoder(name: str, weights: str | os.PathLike[str] | None = None, random_weights: bool = False,
                 device: str | torch.device | None = None, l2_normalize: bool = False) -> Encoder:
    """Build encoder ``name`` in eval mode on ``device``.

    ``weights``: ``None`` (the entry's default tag from the local cache), an open_clip tag such
    as ``"openai"``, or a checkpoint path. ``random_weights=True`` builds an untrained model on
    purpose (tests, pipelines without the weights) and records ``weights="random"``; the
    initialization is seeded (:data:`RANDOM_WEIGHTS_SEED`), so every process builds the same one.
    Raises :class:`MissingResourceError` saying where to put the file when nothing is found.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = get_spec(name)
    if spec.family == "checkpoint":
        if weights is not None or random_weights:
            raise DataError(f"{name}: an encoder checkpoint carries its own weights; drop --weights/--random-weights")
        enc = Encoder(spec, build_clip_from_checkpoint(name).visual, f"file:{Path(name).resolve()}", l2_normalize)
        enc.eval().requires_grad_(False)
        return enc.to(device) if device is not None else enc
    checkpoint, label = resolve_weights(spec, weights, random_weights)
    # Random weights are seeded: every torchrun rank and every resumed run gets the same network.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        if spec.family == "open_clip":
            tag = None if random_weights or label.startswith("file:") else label.split(":", 1)[0]
            backbone = _build_open_clip(spec, checkpoint, _uses_quick_gelu(spec, tag))
        else:
            backbone = _build_torchvision(spec, checkpoint)
    enc = Encoder(spec, backbone, label, l2_normalize)
    enc.eval().requires_grad_(False)
    if device is not None:
        enc.to(device)
    return enc


def describe(name: str) -> dict[str, Any]:
    """A plain-dict view of a registry entry (for ``vln-clip features encoders``)."""
    spec = get_spec(name)
    h, w = grid_size(name, spec.input_size, spec.input_size)
    return {"name": spec.name, "paper": spec.paper_name, "arch": spec.arch, "family": spec.family,
            "input": spec.input_size, "pooled_dim": spec.pooled_dim, "grid_channels": spec.grid_channels,
            "native_grid": f"{h}x{w}", "weights_file": spec.weights_file}


# ---------------------------------------------------------------------------------------
# Encoder checkpoints trained here (vln-clip encoders pretrain)

#: Format tag of the encoder checkpoints written by :mod:`vln_clip.study.encoder_pretrain`: the
#: open_clip model config (``model_cfg``, open_clip's JSON schema), the full CLIP ``state_dict``,
#: the ``objective`` (contrastive | classification) and what it was trained on.
ENCODER_CHECKPOINT_FORMAT = "vln-clip-encoder-1"
_CHECKPOINT_CACHE: dict[tuple[str, float], dict[str, Any]] = {}


def is_encoder_checkpoint(name: str | os.PathLike[str]) -> bool:
    """True for an existing ``.pt`` file (any path that is not a registry name)."""
    return str(name).endswith((".pt", ".pth")) and Path(name).is_file()


def read_encoder_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's payload (cached per file and modification time), or a clear error."""
    p = Path(path).resolve()
    if not p.is_file():
        raise MissingResourceError(f"{path}: encoder checkpoint not found; make one with "
                                   "`vln-clip encoders pretrain --objective contrastive --data DIR --out ENC.pt`")
    key = (str(p), p.stat().st_mtime)
    if key not in _CHECKPOINT_CACHE:
        try:
            ckpt = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:  # truncated file, not a torch file
            raise DataError(f"{path}: not a readable encoder checkpoint ({exc}); re-run `vln-clip encoders pretrain`") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != ENCODER_CHECKPOINT_FORMAT:
            raise DataError(f"{path}: not a vln-clip encoder checkpoint (format {ENCODER_CHECKPOINT_FORMAT}); "
                            "pass a file written by `vln-clip encoders pretrain`, or a registry name")
        _CHECKPOINT_CACHE[key] = ckpt
    return _CHECKPOINT_CACHE[key]


def checkpoint_spec(path: str | os.PathLike[str]) -> EncoderSpec:
    """The :class:`EncoderSpec` of an encoder checkpoint; its ``name`` is the resolved path, so
    stores made from it record which file made them."""
    ckpt = read_encoder_checkpoint(path)
    cfg = ckpt["model_cfg"]
    vision = cfg["vision_cfg"]
    vit = vision.get("patch_size") is not None
    arch = ("ViT-" if vit else "RN-") + str(ckpt.get("arch", "custom"))
    channels = int(vision["width"]) if vit else int(vision["width"]) * 32
    return EncoderSpec(str(Path(path).resolve()), "checkpoint", arch, int(vision["image_size"]), CLIP_MEAN, CLIP_STD,
                       int(cfg["embed_dim"]), channels, int(vision["patch_size"]) if vit else 32, "checkpoint",
                       Path(path).name, f"{ckpt.get('objective', 'custom')} {arch} ({Path(path).stem})")


def build_clip_from_config(model_cfg: dict[str, Any]) -> nn.Module:
    """An untrained open_clip :class:`open_clip.CLIP` (image and text towers) from a model config
    in open_clip's JSON schema (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``)."""
    import open_clip

    return open_clip.CLIP(embed_dim=int(model_cfg["embed_dim"]), vision_cfg=dict(model_cfg["vision_cfg"]),
                          text_cfg=dict(model_cfg["text_cfg"]), quick_gelu=bool(model_cfg.get("quick_gelu", False)),
                          output_dict=True)


def build_clip_from_checkpoint(path: str | os.PathLike[str]) -> nn.Module:
    """The full CLIP model (both towers) of an encoder checkpoint, weights loaded, eval mode."""
    ckpt = read_encoder_checkpoint(path)
    model = build_clip_from_config(ckpt["model_cfg"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit the recorded model config ({str(exc).splitlines()[0]}); "
                        "re-run `vln-clip encoders pretrain`") from None
    return model.eval()


def load_clip(name: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None, random_weights: bool = False,
              device: str | torch.device = "cpu") -> tuple[nn.Module, Any, Any, str]:
    """A CLIP model with both towers (zero-shot scoring, Grad-CAM of image-text similarity):
    ``(model, tokenizer, eval image transform, weights label)`` for a registry CLIP encoder or an
    encoder checkpoint trained here. The model has open_clip's ``encode_image``/``encode_text``."""
    import open_clip

    spec = get_spec(name)
    if spec.family == "checkpoint":
        if weights is not None or random_weights:
            raise DataError(f"{name}: an encoder checkpoint carries its own weights; drop --weights/--random-weights")
        model = build_clip_from_checkpoint(name)
        ctx = int(read_encoder_checkpoint(name)["model_cfg"]["text_cfg"]["context_length"])
        tokenizer: Any = open_clip.SimpleTokenizer(context_length=ctx)
        label = f"file:{Path(name).resolve()}"
    elif spec.family == "open_clip":
        checkpoint, label = resolve_weights(spec, weights, random_weights)
        tag = None if random_weights or label.startswith("file:") else label.split(":", 1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            logging.disable(logging.WARNING)  # "initialized randomly": recorded as weights="random" instead
            try:
                model = open_clip.create_model(spec.arch, pretrained=str(checkpoint) if checkpoint else None,
                                               force_quick_gelu=_uses_quick_gelu(spec, tag))
            except RuntimeError as exc:
                raise DataError(f"{checkpoint}: does not fit {spec.arch} ({str(exc).splitlines()[0]})") from None
            finally:
                logging.disable(logging.NOTSET)
        tokenizer = open_clip.get_tokenizer(spec.arch)
    else:
        raise DataError(f"encoder {spec.name} has no text tower; image-text scoring needs a CLIP encoder "
                        f"({', '.join(n for n, s in ENCODERS.items() if s.family == 'open_clip')}) or an encoder "
                        "checkpoint trained with --objective contrastive")
    model.to(device).eval()
    transform = open_clip.image_transform(spec.input_size, is_train=False, mean=spec.mean, std=spec.std)
    return model, tokenizer, transform, label
