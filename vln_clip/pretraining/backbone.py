"""The trainable CLIP visual tower of CLIP-ViL_p, taken from the one encoder registry.

Unlike the VQA/captioning pipelines (frozen grid features in a store), pre-training updates
the backbone itself, so the model holds the :class:`vln_clip.encoders.Encoder` module and
calls it on pixels every step. Three ways to get one:

- a registry name with its weights (``--weights`` / ``--random-weights``), as everywhere;
- an encoder checkpoint written by ``vln-clip encoders pretrain`` (``--encoder-checkpoint``),
  which the registry takes in place of a name;
- a *scaled-down* CLIP ResNet (same ModifiedResNet architecture, fewer channels and blocks,
  random weights) for CPU-sized experiments and tests: a full RN50 trains at about 2 images/s
  on this 2-core machine, the width-16 one-block-per-stage version at about 20.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from vln_clip.encoders import RANDOM_WEIGHTS_SEED, Encoder, get_spec, load_encoder
from vln_clip.errors import DataError

SCALED_CONFIG_DIR_ENV = "VLN_CLIP_SCALED_CONFIGS"


@dataclass(frozen=True)
class BackboneConfig:
    """Which visual tower to train. ``width``/``layers`` set (both) build a scaled-down CLIP ResNet."""

    encoder: str = "clip_res50"
    weights: str | None = None
    random_weights: bool = False
    encoder_checkpoint: str | None = None
    width: int | None = None  # ModifiedResNet stem width (RN50: 64)
    layers: tuple[int, int, int, int] | None = None  # blocks per stage (RN50: 3, 4, 6, 3)

    @property
    def scaled(self) -> bool:
        return self.width is not None or self.layers is not None

    @property
    def grid_name(self) -> str:
        """What the registry's grid geometry (``grid_size``) is asked with: the checkpoint or the name."""
        return self.encoder_checkpoint or self.encoder

    def label(self) -> str:
        """How outputs name the backbone (random weights always say so)."""
        if self.scaled:
            return f"{self.encoder}-w{self.width}-l{''.join(map(str, self.layers or ()))} (random weights)"
        if self.encoder_checkpoint:
            return f"encoder checkpoint {self.encoder_checkpoint}"
        if self.random_weights:
            return f"{self.encoder} (random weights)"
        return f"{self.encoder} ({self.weights or 'default weights'})"


def _scaled_arch(cfg: BackboneConfig) -> str:
    """Register an open_clip model config for the scaled ResNet (public ``add_model_config``)."""
    import open_clip

    spec = get_spec(cfg.encoder)
    base = open_clip.get_model_config(spec.arch)
    if spec.family != "open_clip" or base is None or base["vision_cfg"].get("patch_size"):
        raise DataError(f"--backbone-width/--backbone-layers scale CLIP ResNets only; {cfg.encoder} is not one")
    if cfg.width is None or cfg.layers is None or len(cfg.layers) != 4 or cfg.width % 2 or cfg.width < 2:
        raise DataError("a scaled backbone needs both --backbone-width (even, e.g. 16) and --backbone-layers "
                        "(four stage depths, e.g. 1,1,1,1)")
    arch = f"{spec.arch}-w{cfg.width}-l{''.join(map(str, cfg.layers))}"
    if open_clip.get_model_config(arch) is None:
        vision = dict(base["vision_cfg"], width=cfg.width, layers=list(cfg.layers))
        model_cfg = {"embed_dim": max(cfg.width, 32), "vision_cfg": vision,
                     # the text tower is dropped right away; make it as small as open_clip allows
                     "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 1, "layers": 1}}
        folder = Path(os.environ.get(SCALED_CONFIG_DIR_ENV) or tempfile.mkdtemp(prefix="vln_clip_scaled_"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{arch}.json").write_text(json.dumps(model_cfg))
        open_clip.add_model_config(folder / f"{arch}.json")
    return arch


def build_backbone(cfg: BackboneConfig) -> Encoder:
    """The visual tower as a trainable module (gradients on; the caller may freeze it)."""
    if cfg.scaled:
        if cfg.weights is not None or cfg.encoder_checkpoint is not None:
            raise DataError("a scaled-down backbone has random weights only; drop --weights/--encoder-checkpoint")
        import logging

        import open_clip

        arch = _scaled_arch(cfg)
        spec = get_spec(cfg.encoder)
        channels = cfg.width * 32  # ModifiedResNet: layer4 has width * 8 * 4 channels
        spec = replace(spec, name=f"{cfg.encoder}-w{cfg.width}-l{''.join(map(str, cfg.layers))}", arch=arch,
                       grid_channels=channels, pooled_dim=max(cfg.width, 32))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            logging.disable(logging.WARNING)  # "initialized randomly" is what we asked for
            try:
                visual = open_clip.create_model(arch, pretrained=None, force_quick_gelu=True).visual
            finally:
                logging.disable(logging.NOTSET)
        enc = Encoder(spec, visual, "random", l2_normalize=False)
    elif cfg.encoder_checkpoint is not None:
        # The registry resolves an encoder checkpoint path as an encoder name of its own.
        enc = load_encoder(cfg.encoder_checkpoint)
    else:
        enc = load_encoder(cfg.encoder, weights=cfg.weights, random_weights=cfg.random_weights)
    enc.requires_grad_(True)
    # The pooled embedding is not an input of CLIP-ViL_p (the grid is): its head gets no gradient,
    # so it is frozen rather than left to DDP's unused-parameter search and the optimizer.
    for head in ("attnpool", "proj"):
        mod = getattr(enc.backbone, head, None)
        if isinstance(mod, torch.nn.Module):
            mod.requires_grad_(False)
        elif isinstance(mod, torch.nn.Parameter):
            mod.requires_grad_(False)
    return enc


def calibrate_batchnorm(enc: Encoder, batches: "list[torch.Tensor]") -> int:
    """Estimate BatchNorm statistics of a randomly initialised backbone on training images.

    A random init carries running mean 0 / variance 1, so in eval mode (how the backbone runs:
    batches of a few images cannot estimate statistics) every BatchNorm is the identity and the
    activations shrink by orders of magnitude down to ``layer4``, leaving grid features of
    ~1e-4 that barely differ between images. Re-estimating the statistics (a cumulative average
    over ``batches``, no gradient, weights untouched) gives the random network normalised
    activations, as trained weights would have. Returns the number of BatchNorm layers set.
    """
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or not batches:
        return 0
    was_training = enc.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    enc.eval()
    for m in bns:
        m.train()
    with torch.no_grad():
        for images in batches:
            enc(images)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    enc.train(was_training)
    for m in bns:
        m.train(was_training)
    return len(bns)
