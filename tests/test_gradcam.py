"""Grad-CAM: the map lands on the region that holds the named object (constructed encoder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from open_clip.modified_resnet import AttentionPool2d
from torch import nn

from vln_clip.encoders import CLIP_MEAN, CLIP_STD, Encoder, EncoderSpec
from vln_clip.study.gradcam import gradcam, gradcam_from_grid, overlay, text_similarity

SIZE = 128  # 4 x 4 grid at stride 32


class _ColourStem(nn.Module):
    """Channel 0 fires on red pixels, channel 1 on blue ones; one cell per 32x32 block."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
        with torch.no_grad():
            # undo the CLIP normalisation so the detectors read raw RGB in [0, 1]
            w = torch.tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0]])
            self.conv.weight.copy_((w * std[None]).view(2, 3, 1, 1))
            self.conv.bias.copy_((w * mean[None]).sum(1) - 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(torch.relu(self.conv(x)), 32)


def _toy_encoder() -> Encoder:
    backbone = nn.Module()
    backbone.stem = _ColourStem()
    for name in ("layer1", "layer2", "layer3", "layer4"):
        setattr(backbone, name, nn.Identity())
    pool = AttentionPool2d(SIZE // 32, 2, 1, 2)
    with torch.no_grad():  # uniform attention, identity values: pooled = mean of the cells
        for lin in (pool.q_proj, pool.k_proj):
            lin.weight.zero_()
            lin.bias.zero_()
        for lin in (pool.v_proj, pool.c_proj):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
        pool.positional_embedding.zero_()
    backbone.attnpool = pool
    spec = EncoderSpec("toy_rn", "open_clip", "RN-toy", SIZE, CLIP_MEAN, CLIP_STD, 2, 2, 32,
                       "none", "", "toy")
    return Encoder(spec, backbone, "constructed", False).eval().requires_grad_(False)


def _two_squares() -> torch.Tensor:
    img = np.full((SIZE, SIZE, 3), 128, np.uint8)
    img[40:88, 8:56] = (230, 20, 20)      # red on the left
    img[40:88, 72:120] = (20, 20, 230)    # blue on the right
    return torch.from_numpy(img).permute(2, 0, 1)[None]


def test_cam_highlights_named_object():
    enc = _toy_encoder()
    img = _two_squares()
    red = gradcam(enc, img, text_similarity(torch.tensor([1.0, 0.0])))
    blue = gradcam(enc, img, text_similarity(torch.tensor([0.0, 1.0])))
    for res, (hit, miss) in ((red, (slice(8, 56), slice(72, 120))), (blue, (slice(72, 120), slice(8, 56)))):
        cam = res.cam[0]
        assert cam.shape == (SIZE, SIZE)
        assert float(cam.max()) == pytest.approx(1.0)
        inside = float(cam[40:88, hit].mean())
        outside = float(cam[40:88, miss].mean())
        assert inside > 0.5 > outside + 0.3
        assert float(res.grid_cam[0].min()) >= 0.0
    # the encoder's parameters got no gradient and stay frozen
    assert all(p.grad is None and not p.requires_grad for p in enc.parameters())


def test_grid_cam_matches_hand_computation():
    """On stored grids, Grad-CAM of a linear score is relu(sum_c w_c A_c) with w the score's weights."""
    g = torch.rand(1, 3, 5, 4)
    w = torch.tensor([0.5, -1.0, 2.0, 0.0])
    res = gradcam_from_grid(g, lambda x: (x.mean(dim=(1, 2)) * w).sum(-1), (30, 25))
    hand = torch.relu((g * (w / 15.0)).sum(-1))
    assert torch.allclose(res.grid_cam, hand, atol=1e-6)
    assert res.cam.shape == (1, 30, 25)


def test_vit_cam_uses_final_block_input():
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None, force_image_size=64)
    spec = EncoderSpec("tiny_vit", "open_clip", "ViT-toy", 64, CLIP_MEAN, CLIP_STD, 512, 768, 32,
                       "none", "", "toy")
    enc = Encoder(spec, model.visual, "random", False).eval().requires_grad_(False)
    torch.manual_seed(0)
    img = (torch.rand(2, 3, 64, 64) * 255).to(torch.uint8)
    res = gradcam(enc, img, text_similarity(torch.randn(512)))
    assert res.grid_cam.shape == (2, 2, 2)
    assert float(res.grid_cam.sum()) > 0  # the ln_post patch tokens would give an all-zero map


def test_overlay_keeps_shape_and_blends():
    img = np.zeros((8, 8, 3), np.uint8)
    cam = np.zeros((8, 8))
    cam[:4] = 1.0
    out = overlay(img, cam, alpha=0.5)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[:4, :, 0].mean() > 50 > out[:4, :, 2].mean()   # hot = red end of jet
    assert out[4:, :, 2].mean() > 50 > out[4:, :, 0].mean()   # cold = blue end
