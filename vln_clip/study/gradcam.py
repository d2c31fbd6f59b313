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
  (:func:`gradcam_from_grid`). For a trained VQA checkpoint (:class:`VQAExplainer`,
  :func:`explain_vqa`, ``vln-clip gradcam --checkpoint``) the grid is recomputed from the image
  with the encoder, weights, resolution rule and preprocessing its feature store recorded, so
  the map is over exactly the cells the model read in training (the last conv stage of a
  CLIP-ResNet, the final patch tokens of a ViT); the score is the logit of one answer.

The score is any differentiable function of the pooled embedding, usually the cosine
similarity with a text embedding (:func:`text_similarity`). The maps are returned at the
image's resolution in [0, 1] per image (all zeros when the score has no positive evidence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from vln_clip.encoders import Encoder, encoder_names, get_spec, load_clip, load_encoder
from vln_clip.errors import DataError, MissingResourceError
from vln_clip.features.grid import ResolutionRule, default_rule, resize_image
from vln_clip.features.store import FeatureStore
from vln_clip.io import atomic_path
from vln_clip.train import load_checkpoint
from vln_clip.vqa.text import encode_question, pad_questions
from vln_clip.vqa.training import PRIOR_KIND, TASK_KIND, LoadedModel, load_vqa_checkpoint

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


# ------------------------------------------------------------------------------------------
# Grad-CAM of a trained VQA model's answer score (the paper's Figure 4)

ImageInput = Any  # an image file, an [H, W, 3] uint8 array or a PIL image


@dataclass
class VQACam:
    """Grad-CAM of one answer's logit for one (image, question).

    ``image``: the ``[H, W, 3]`` uint8 pixels the encoder saw (the store's resolution rule);
    ``grid``: the recomputed grid ``[1, h, w, C]`` the model read (rounded like the store);
    ``top``: the model's five most likely answers with their probabilities (sigmoid of the
    logits: the models are trained with binary cross-entropy).
    """

    question: str
    answer: str
    answer_index: int
    score: float
    top: list[tuple[str, float]]
    cam: CamResult
    image: np.ndarray
    grid: torch.Tensor


def _check_explainable(path: Path, ckpt: dict) -> None:
    """A VQA checkpoint whose model reads grid features, or a DataError saying what to pass instead."""
    if ckpt.get("kind") == PRIOR_KIND:
        raise DataError(f"{path}: the answer-prior baseline reads no image, so there is nothing to explain; pass "
                        "a Pythia or MCAN checkpoint (`vln-clip vqa train --model mcan|pythia --features ...`)")
    if (ckpt.get("config") or {}).get("question_only"):
        raise DataError(f"{path}: a question-only VQA model (--question-only) ignores the image, so its Grad-CAM "
                        "over the grid is zero everywhere; pass a model trained with --features")


def _read_vqa_checkpoint(path: Path) -> dict:
    """The raw checkpoint of a VQA model, or an error that says which file ``--checkpoint`` takes."""
    try:
        return load_checkpoint(path, "cpu", kind=(TASK_KIND, PRIOR_KIND))
    except DataError as exc:
        raise DataError(f"{exc}. `vln-clip gradcam --checkpoint` takes a VQA model (RUN/best.pt of `vln-clip vqa "
                        "train`); for an encoder checkpoint of `vln-clip encoders pretrain` use --encoder-checkpoint "
                        "ENC.pt with --text") from None


def _store_attrs(ckpt: dict, features: dict) -> dict:
    """Attributes of the VQA model's training store when it is still there and is the same store
    (same encoder and weights), else the subset the checkpoint itself recorded."""
    path = (ckpt.get("config") or {}).get("features")
    if path and Path(path).is_file():
        try:
            with FeatureStore(path) as store:
                attrs = dict(store.attrs)
        except DataError:
            attrs = {}
        if attrs.get("encoder") == features.get("encoder") and attrs.get("weights") == features.get("weights"):
            return attrs
    return dict(features)


def encoder_of_store(features: dict, where: str | Path = "VQA checkpoint") -> Encoder:
    """Rebuild the encoder a feature store records (``encoder`` and ``weights`` attributes).

    The store's features are only reproducible with the same network and the same weights, so
    anything that cannot be rebuilt exactly (a moved encoder checkpoint, weights not on this
    machine, features converted from TSV files) is an error naming what is missing.
    """
    name = str(features.get("encoder") or "")
    weights = str(features.get("weights") or "")
    if not name or name == "unknown":
        raise DataError(f"{where}: its feature store records no encoder, so its grid cannot be recomputed from an "
                        "image; retrain the VQA model on a store made by `vln-clip features grid`")
    if name not in encoder_names() and not Path(name).is_file():
        raise MissingResourceError(
            f"{where}: its grid features were made by encoder {name!r}, which is not available here (neither a "
            "registry name nor an existing encoder checkpoint file); put the encoder checkpoint back at that path "
            "(Grad-CAM must recompute the very features the model was trained on) or retrain the VQA model on "
            "features of an encoder you have")
    spec = get_spec(name)
    tag, _, location = weights.partition(":")
    try:
        if spec.family == "checkpoint":
            return load_encoder(name)
        if weights == "random":
            return load_encoder(name, random_weights=True)
        if tag == "file":
            return load_encoder(name, weights=location)
        if not tag or tag in ("unknown", "tsv"):
            raise DataError(f"{where}: its features were made by {name} with weights {weights!r} (converted or "
                            "unrecorded), which cannot be rebuilt to recompute the grid; retrain the VQA model on a "
                            "store made by `vln-clip features grid`")
        return load_encoder(name, weights=tag)
    except MissingResourceError as exc:
        raise MissingResourceError(f"{where}: the encoder of its feature store ({name}, weights {weights!r}) is not "
                                   f"available here: {exc}") from None


def _rule_of(attrs: dict, encoder: Encoder) -> ResolutionRule:
    """The resolution rule a grid store recorded (older stores without one: the VQA default)."""
    if attrs.get("short_side") is None:
        return default_rule(encoder.spec.name, pooled=False)
    long_side = int(attrs.get("long_side") or 0) or None
    return ResolutionRule(int(attrs["short_side"]), long_side, int(attrs.get("stride") or encoder.spec.stride),
                          crop=str(attrs.get("crop", "none")) == "center").validate()


def _to_pil(image: ImageInput) -> object:
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except OSError as exc:
            raise DataError(f"{image}: not a readable image ({exc}); pass a JPEG or PNG file") from None
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"expected an [H, W, 3] uint8 image array, got {image.dtype} {list(image.shape)}")
        return Image.fromarray(image)
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    raise DataError(f"expected an image file, an [H, W, 3] uint8 array or a PIL image, got {type(image).__name__}")


class VQAExplainer:
    """A trained VQA model (Pythia / MCAN over grid features) with the encoder of its feature store,
    ready to explain answers on new images: ``VQAExplainer(ckpt).explain(image, question)``.

    The grid is recomputed from the image exactly as ``vln-clip features grid`` made the training
    store (same encoder and weights, resolution rule, preprocessing, float16 rounding, and the
    checkpoint's feature standardisation), so the top answer is the one ``vln-clip vqa predict``
    gives from the store, and the map is over the cells the model reads.
    """

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "cpu") -> None:
        self.path = Path(checkpoint)
        self.device = torch.device(device)
        # Read twice (here for the kind and the training config, which holds the store's path;
        # load_vqa_checkpoint for the model): LoadedModel does not carry the config.
        ckpt = _read_vqa_checkpoint(self.path)
        _check_explainable(self.path, ckpt)
        self.loaded: LoadedModel = load_vqa_checkpoint(self.path, self.device)
        if self.loaded.model is None or self.loaded.qvocab is None or self.loaded.question_only:
            raise DataError(f"{self.path}: this VQA checkpoint has no model over grid features to explain")
        self.model = self.loaded.model.eval().requires_grad_(False)
        attrs = _store_attrs(ckpt, self.loaded.features)
        if str(attrs.get("kind", "grid")) != "grid":
            raise DataError(f"{self.path}: trained on a {attrs.get('kind')} store, not grid features")
        self.encoder = encoder_of_store(self.loaded.features, self.path).to(self.device)
        if self.encoder.spec.grid_channels != self.loaded.feat_dim:
            raise DataError(f"{self.path}: the model reads {self.loaded.feat_dim}-channel grids but encoder "
                            f"{self.encoder.name} makes {self.encoder.spec.grid_channels}; the store's encoder "
                            "was replaced after training, retrain the VQA model")
        pre = attrs.get("preprocessing")
        if pre:
            recorded = json.loads(pre) if isinstance(pre, str) else dict(pre)
            for key, ours in (("mean", self.encoder.spec.mean), ("std", self.encoder.spec.std)):
                if key in recorded and not np.allclose(recorded[key], ours):
                    raise DataError(f"{self.path}: the feature store was made with {key} {recorded[key]} but "
                                    f"encoder {self.encoder.name} normalises with {list(ours)}; re-extract the store "
                                    "and retrain, or pass the VQA model of this encoder")
        self.rule = _rule_of(attrs, self.encoder)
        self.half = str(attrs.get("dtype", "float16")) == "float16"
        self.answers = list(self.loaded.answers)
        self._index = {a: i for i, a in enumerate(self.answers)}

    def grid(self, image: ImageInput) -> tuple[np.ndarray, torch.Tensor]:
        """``(pixels [H, W, 3] uint8, grid [1, h, w, C] float32)``: the image after the store's
        resolution rule and its grid, rounded to the store's dtype (what the model trained on)."""
        pixels = resize_image(_to_pil(image), self.rule)
        x = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1)[None].to(self.device)
        with torch.no_grad():
            fmap = self.encoder(x, grid=True, pooled=False)["grid"].float()  # [1, C, h, w] (ViT tokens as a map)
        grid = fmap.permute(0, 2, 3, 1).contiguous()
        if self.half:
            grid = grid.half().float()
        return pixels, grid

    def answer_index(self, answer: str) -> int:
        """Row of ``answer`` in the model's answer vocabulary (a DataError listing some otherwise)."""
        if answer not in self._index:
            shown = ", ".join(repr(a) for a in self.answers[:20])
            raise DataError(f"answer {answer!r} is not in {self.path}'s answer vocabulary ({len(self.answers)} "
                            f"answers: {shown}{', ...' if len(self.answers) > 20 else ''})")
        return self._index[answer]

    def _tokens(self, question: str) -> torch.Tensor:
        assert self.loaded.qvocab is not None
        return torch.from_numpy(pad_questions([encode_question(self.loaded.qvocab, question)])).to(self.device)

    def _logits(self, tokens: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """All answer logits ``[B, A]`` on full (unpadded) grids ``[B, h, w, C]``, after the
        checkpoint's feature standardisation, as ``vqa predict`` runs the model."""
        b, h, w, c = grid.shape
        cells = grid.reshape(b, h * w, c)
        stats = self.loaded.feature_stats
        if stats is not None:
            cells = (cells - stats[0].to(cells)) / stats[1].to(cells)
        mask = torch.ones(b, h * w, dtype=torch.bool, device=cells.device)
        logits, _ = self.model(tokens.expand(b, -1), cells, mask)
        return logits.float()

    def score_fn(self, question: str, answer_index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``grid [B, h, w, C] -> logit of the answer [B]``: what Grad-CAM differentiates."""
        tokens = self._tokens(question)
        return lambda grid: self._logits(tokens, grid)[:, answer_index]

    def logits(self, grid: torch.Tensor, question: str) -> torch.Tensor:
        """Answer logits ``[A]`` of one recomputed grid ``[1, h, w, C]``."""
        with torch.no_grad():
            return self._logits(self._tokens(question), grid)[0]

    def explain(self, image: ImageInput, question: str, answer: str | None = None) -> VQACam:
        """Grad-CAM of ``answer``'s logit (default: the model's top answer on this image)."""
        pixels, grid = self.grid(image)
        logits = self.logits(grid, question)
        probs = torch.sigmoid(logits)
        order = torch.argsort(logits, descending=True).tolist()
        index = order[0] if answer is None else self.answer_index(answer)
        res = gradcam_from_grid(grid, self.score_fn(question, index), (pixels.shape[0], pixels.shape[1]))
        top = [(self.answers[i], float(probs[i])) for i in order[:5]]
        return VQACam(question, self.answers[index], index, float(res.score[0]), top, res, pixels, grid)


def explain_vqa(checkpoint: str | Path, image: str | Path, question: str, out: str | Path,
                answers: list[str] | None = None, device: str = "cpu") -> dict[str, object]:
    """Grad-CAM of a VQA model's answers for one image and question, saved as one PNG (the
    image, then one overlay per answer: the model's top answer when ``answers`` is empty).

    Returns what the CLI prints: the top answers with probabilities and each explained
    answer's logit.
    """
    from matplotlib import pyplot as plt

    explainer = VQAExplainer(checkpoint, device)
    cams = [explainer.explain(image, question, a) for a in (answers or [None])]  # type: ignore[list-item]
    base = cams[0].image
    fig, axes = plt.subplots(1, len(cams) + 1, figsize=(3.4 * (len(cams) + 1), 3.6), squeeze=False)
    axes[0, 0].imshow(base)
    axes[0, 0].set_title("top: " + ", ".join(f"{a} {p:.2f}" for a, p in cams[0].top[:3]), fontsize=8)
    for ax, cam in zip(axes[0, 1:], cams):
        ax.imshow(overlay(base, cam.cam.cam[0].cpu().numpy()))
        ax.set_title(f"{question[:48]}\n-> {cam.answer} (logit {cam.score:.2f})", fontsize=8)
    for ax in axes[0]:
        ax.axis("off")
    enc = explainer.encoder
    fig.suptitle(f"Grad-CAM of the answer score, {explainer.loaded.family} over {enc.spec.paper_name} grids "
                 f"({'random weights' if enc.weights == 'random' else Path(enc.weights.partition(':')[2]).name})",
                 fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return {"out": str(out), "question": question, "top_answers": cams[0].top,
            "explained": {c.answer: c.score for c in cams}, "grid": list(cams[0].grid.shape[1:3])}
