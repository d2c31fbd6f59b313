"""Grad-CAM of an image-text score (the paper's Figures 3-4), for CLIP-ResNets and CLIP-ViTs.

Grad-CAM (Selvaraju et al.) weights each channel of a feature map by the spatial mean of the
score's gradient with respect to it, sums the weighted channels and keeps the positive part:
``cam = relu(sum_c mean_hw(d score / d A_c) * A_c)``. Which feature map matters:

* CLIP-ResNet: the output of the last convolutional stage (``layer4``), the map the attention
  pool reads; that is the grid every V&L task of the paper consumes.
* CLIP-ViT: the patch tokens entering the final transformer block. The tokens *after* the last
  block (what the grid features store) do not feed the pooled embedding (only the class token
  does), so their gradient is zero; the final block's input is the last place where every patch
  still reaches the class token, which is the usual choice for ViT Grad-CAM.
* A model that reads stored grid features (a VQA model): the grid input itself
  (:func:`gradcam_from_grid`).

The score is any differentiable function of the pooled embedding, usually the cosine
similarity with a text embedding (:func:`text_similarity`). The maps are returned at the
image's resolution in [0, 1] per image (all zeros when the score has no positive evidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from vln_clip.encoders import Encoder, get_spec, load_clip
from vln_clip.errors import DataError
from vln_clip.io import atomic_path

Score = Callable[[torch.Tensor], torch.Tensor]  # pooled [B, D] -> per-image score [B]


@dataclass
class CamResult:
    """Grad-CAM maps ``[B, H, W]`` at image resolution in [0, 1], the raw grid maps ``[B, h, w]``
    (before upsampling and normalisation) and the scores ``[B]`` that were explained."""

    cam: torch.Tensor
    grid_cam: torch.Tensor
    score: torch.Tensor


def text_similarity(text_features: torch.Tensor) -> Score:
    """Score = cosine similarity between each image's pooled embedding and its text embedding
    (``[B, D]``, or ``[D]`` for one text shared by every image)."""
    t = F.normalize(text_features.float(), dim=-1)

    def score(pooled: torch.Tensor) -> torch.Tensor:
        p = F.normalize(pooled.float(), dim=-1)
        return (p * (t if t.ndim == 2 else t[None])).sum(-1)

    return score


def _cam_from(fmap: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM on a channels-first map ``[B, C, h, w]`` and its gradient."""
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * fmap).sum(dim=1))


def _finish(grid_cam: torch.Tensor, size: tuple[int, int], score: torch.Tensor) -> CamResult:
    up = F.interpolate(grid_cam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = up.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    norm = torch.where(hi > lo, (flat - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(flat))
    return CamResult(norm.view_as(up).detach(), grid_cam.detach(), score.detach())


def gradcam(encoder: Encoder, images: torch.Tensor, score_fn: Score) -> CamResult:
    """Grad-CAM of ``score_fn(pooled)`` for a batch of images ``[B, 3, H, W]`` (uint8 or [0, 1]).

    Works on the registry's encoders (CLIP-ResNet, CLIP-ViT, ImageNet ResNet), whatever their
    ``requires_grad`` state: the gradient is taken with respect to the feature map only, so the
    encoder's parameters are never touched.
    """
    if images.ndim != 4:
        raise DataError(f"gradcam: expected images [B, 3, H, W], got {tuple(images.shape)}")
    x = encoder.normalize(images.to(encoder.mean.device)).detach().requires_grad_(True)
    size = (images.shape[-2], images.shape[-1])
    with torch.enable_grad():
        if encoder.spec.family == "open_clip" and encoder.spec.arch.startswith("ViT"):
            captured: dict[str, torch.Tensor] = {}
            block = encoder.backbone.transformer.resblocks[-1]

            def keep_input(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                captured["tokens"] = args[0]

            handle = block.register_forward_pre_hook(keep_input)
            try:
                out = encoder(x, normalized=True, grid=True)
            finally:
                handle.remove()
            tokens = captured["tokens"]  # [B, 1 + h*w, C] (batch first)
            score = score_fn(out["pooled"])
            (grad,) = torch.autograd.grad(score.sum(), tokens)
            b, _, c = tokens.shape
            h, w = out["grid"].shape[-2:]
            fmap = tokens[:, 1:].transpose(1, 2).reshape(b, c, h, w)
            gmap = grad[:, 1:].transpose(1, 2).reshape(b, c, h, w)
        else:
            out = encoder(x, normalized=True, grid=True)
            fmap = out["grid"]
            score = score_fn(out["pooled"])
            (gmap,) = torch.autograd.grad(score.sum(), fmap)
    return _finish(_cam_from(fmap.detach(), gmap), size, score)


def gradcam_from_grid(grid: torch.Tensor, score_fn: Callable[[torch.Tensor], torch.Tensor],
                      image_size: tuple[int, int]) -> CamResult:
    """Grad-CAM over stored grid features ``[B, h, w, C]`` for a model that reads them
    (``score_fn(grid) -> [B]``, e.g. a VQA model's logit of its answer)."""
    g = grid.detach().float().requires_grad_(True)
    with torch.enable_grad():
        score = score_fn(g)
        (grad,) = torch.autograd.grad(score.sum(), g)
    fmap = g.detach().permute(0, 3, 1, 2)
    return _finish(_cam_from(fmap, grad.permute(0, 3, 1, 2)), image_size, score)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``[H, W]`` map in [0, 1] over an ``[H, W, 3]`` uint8 image with a jet colour map."""
    from matplotlib import colormaps

    heat = (colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3] * 255.0).astype(np.float32)
    out = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def load_image(path: str | Path, short_side: int, stride: int = 32) -> torch.Tensor:
    """``[1, 3, H, W]`` uint8: shorter side ``short_side``, aspect kept, both sides multiples of ``stride``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = short_side / min(w, h)
            nw, nh = (max(stride, int(round(w * s / stride)) * stride), max(stride, int(round(h * s / stride)) * stride))
            arr = np.asarray(im.resize((nw, nh), Image.BICUBIC), np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc}); pass a JPEG or PNG file") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


def explain_image_text(encoder: str, image: str | Path, texts: list[str], out: str | Path,
                       weights: str | None = None, random_weights: bool = False,
                       short_side: int | None = None) -> dict[str, float]:
    """Grad-CAM of the image-text similarity for each text, saved side by side as one PNG.

    ``encoder``: a registry CLIP name or an encoder checkpoint (``vln-clip encoders pretrain``).
    Returns ``{text: cosine similarity}``.
    """
    from matplotlib import pyplot as plt

    model, tokenizer, _, label = load_clip(encoder, weights=weights, random_weights=random_weights)
    spec = get_spec(encoder)
    enc = Encoder(spec, model.visual, label, False).eval().requires_grad_(False)
    img = load_image(image, short_side or spec.input_size, spec.stride)
    with torch.no_grad():
        text_feats = model.encode_text(tokenizer(texts))
    base = img[0].permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(1, len(texts) + 1, figsize=(3.2 * (len(texts) + 1), 3.4), squeeze=False)
    axes[0, 0].imshow(base)
    axes[0, 0].set_title("image", fontsize=9)
    scores: dict[str, float] = {}
    for i, (text, feat) in enumerate(zip(texts, text_feats)):
        res = gradcam(enc, img, text_similarity(feat))
        scores[text] = float(res.score[0])
        axes[0, i + 1].imshow(overlay(base, res.cam[0].numpy()))
        axes[0, i + 1].set_title(f"{text[:40]}\ncos {scores[text]:.3f}", fontsize=9)
    for ax in axes[0]:
        ax.axis("off")
    fig.suptitle(f"Grad-CAM, {spec.paper_name} ({'random weights' if label == 'random' else label[:60]})", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return scores
