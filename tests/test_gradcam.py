"""Grad-CAM: the map lands on the region that holds the named object (constructed encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from open_clip.modified_resnet import AttentionPool2d
from torch import nn

from vln_clip.encoders import CLIP_MEAN, CLIP_STD, Encoder, EncoderSpec
from vln_clip.errors import DataError
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


# --- Grad-CAM of a trained VQA model's answer score ------------------------------------------

VQA_COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
VQA_SIZE = (128, 192)  # H, W: a 4 x 6 grid at stride 32


def _vqa_image(colour: str, left: bool) -> np.ndarray:
    img = np.full((*VQA_SIZE, 3), 120, np.uint8)
    x0 = 16 if left else 112
    img[32:96, x0:x0 + 64] = VQA_COLOURS[colour]
    return img


@pytest.fixture(scope="module")
def vqa_setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A random-weight encoder checkpoint, a grid store of six constructed images, and a tiny MCAN
    trained on colour / side questions about them (standardised features, as random encoders need)."""
    from PIL import Image

    from vln_clip.datasets.vqa import VQAItem, coco_image_key, write_vqa
    from vln_clip.features.grid import GridConfig, ResolutionRule, extract_grid
    from vln_clip.study.encoder_pretrain import random_encoder
    from vln_clip.train import LoopConfig
    from vln_clip.vqa.training import VQATrainConfig, train_vqa

    root = tmp_path_factory.mktemp("vqa_cam")
    enc = random_encoder("rn-tiny", 64, root / "enc.pt", seed=0)
    (root / "images").mkdir()
    items, k = [], 0
    for colour in VQA_COLOURS:
        for left in (True, False):
            k += 1
            key = coco_image_key("synth", k)
            Image.fromarray(_vqa_image(colour, left)).save(root / "images" / f"{key}.png")
            items.append(VQAItem(10 * k, k, key, "What color is the square?", "what color is the", "other",
                                 [colour] * 10, colour))
            side = "yes" if left else "no"
            items.append(VQAItem(10 * k + 1, k, key, "Is the square on the left?", "is the", "yes/no",
                                 [side] * 10, side))
    for split in ("train", "val"):
        write_vqa(root / "vqa" / f"v2_OpenEnded_mscoco_{split}_questions.json",
                  root / "vqa" / f"v2_mscoco_{split}_annotations.json", items, data_subtype="synth")
    store = extract_grid(GridConfig(encoder=str(enc), images=root / "images", out=root / "grid.h5",
                                    rule=ResolutionRule(128, 192, 32), workers=0, progress=False))
    cfg = VQATrainConfig(data=str(root), features=str(store), model="mcan", preset="tiny", answer_min_count=1,
                         batch_size=12, lr=3e-3, feature_norm="standardize")
    loop = LoopConfig(out_dir=str(root / "run"), iters=30, eval_every=30, save_every=30, log_every=10, seed=0,
                      progress="off")
    train_vqa(cfg, loop)
    return {"root": root, "enc": enc, "store": store, "ckpt": root / "run" / "best.pt", "items": items,
            "image": root / "images" / f"{coco_image_key('synth', 1)}.png"}


def test_vqa_cam_recomputes_the_store_grid_and_is_a_valid_map(vqa_setup: dict):
    from vln_clip.features.store import FeatureStore
    from vln_clip.study.gradcam import VQAExplainer
    from vln_clip.vqa.predict import PredictConfig, predict_vqa

    explainer = VQAExplainer(vqa_setup["ckpt"])
    preds_path = vqa_setup["root"] / "preds.json"
    predict_vqa(PredictConfig(str(vqa_setup["ckpt"]), str(vqa_setup["root"] / "vqa" /
                                                         "v2_OpenEnded_mscoco_val_questions.json"),
                              str(preds_path), features=str(vqa_setup["store"])))
    predicted = {p["question_id"]: p["answer"] for p in json.loads(preds_path.read_text())}
    with FeatureStore(vqa_setup["store"]) as store:
        for it in vqa_setup["items"]:
            path = vqa_setup["root"] / "images" / f"{it.image_key}.png"
            pixels, grid = explainer.grid(path)
            # the same cells the model was trained on (float16 store, recomputed in float32 then rounded)
            assert grid.shape == (1, 4, 6, 512)
            np.testing.assert_allclose(grid[0].numpy(), store.get_item(it.image_key), rtol=1e-2, atol=2e-3)
            res = explainer.explain(path, it.question)
            # the explained top answer is the one `vqa predict` gives from the store
            assert res.answer == predicted[it.question_id] == res.top[0][0]
            cam = res.cam.cam[0]
            assert cam.shape == pixels.shape[:2] == VQA_SIZE
            assert torch.isfinite(cam).all() and float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0
            assert res.cam.grid_cam.shape == (1, 4, 6) and float(res.cam.grid_cam.min()) >= 0.0
            assert res.score == pytest.approx(float(explainer.logits(grid, it.question)[res.answer_index]), abs=1e-5)


def test_vqa_cam_weights_agree_with_finite_differences(vqa_setup: dict):
    """Grad-CAM's channel weights are mean_hw(d score / d A_c): the derivative of the score along
    "add 1/N to channel c in every cell", which a central difference measures without autograd.

    The model reads standardised cells (random-weight features have channels with std ~1e-8), so
    each channel is stepped in its own standardised units (eps * std_c): a raw step of one size
    for all channels would be far outside the linear range of some and in the noise of others.
    """
    from vln_clip.study.gradcam import VQAExplainer

    explainer = VQAExplainer(vqa_setup["ckpt"])
    image = vqa_setup["root"] / "images" / "COCO_synth_000000000003.png"  # the green square on the left
    # the answer with the most positive evidence (an all-zero map would make the check vacuous)
    res = max((explainer.explain(image, "What color is the square?", a) for a in explainer.answers),
              key=lambda r: float(r.cam.grid_cam.max()))
    explainer.model.double()
    explainer.loaded.feature_stats = tuple(t.double() for t in explainer.loaded.feature_stats)
    std = explainer.loaded.feature_stats[1]
    score = explainer.score_fn("What color is the square?", res.answer_index)
    grid = res.grid.double()
    _, h, w, c = grid.shape
    eps = 1e-2
    step = torch.diag(std)[:, None, None, :] * (eps / (h * w))  # [C, 1, 1, C]: one perturbed grid per channel
    with torch.no_grad():
        fd = (score(grid + step) - score(grid - step)) / (2 * eps * std)  # [C]
        expected = torch.relu((grid[0] * fd).sum(-1))
    assert float(expected.max()) > 0.05
    np.testing.assert_allclose(res.cam.grid_cam[0].numpy(), expected.numpy(), rtol=1e-2,
                               atol=5e-3 * float(expected.max()))


def test_vqa_cam_depends_on_the_answer(vqa_setup: dict):
    from vln_clip.study.gradcam import VQAExplainer

    explainer = VQAExplainer(vqa_setup["ckpt"])
    q = "What color is the square?"
    image = vqa_setup["root"] / "images" / "COCO_synth_000000000003.png"
    maps = {a: explainer.explain(image, q, a) for a in ("green", "red")}
    assert maps["green"].answer == "green" and maps["red"].answer == "red"
    assert maps["green"].score != pytest.approx(maps["red"].score)
    assert not torch.allclose(maps["green"].cam.grid_cam, maps["red"].cam.grid_cam, atol=1e-3)
    with pytest.raises(DataError, match=r"answer 'purple' is not in .*answer vocabulary"):
        explainer.explain(vqa_setup["image"], q, "purple")


def test_vqa_cam_refuses_what_it_cannot_explain(vqa_setup: dict, tmp_path):
    from vln_clip.errors import MissingResourceError
    from vln_clip.study.gradcam import VQAExplainer
    from vln_clip.vqa.training import VQATrainConfig, train_prior

    with pytest.raises(DataError, match=r"enc.pt: not a vln-clip training checkpoint.*takes a VQA model"):
        VQAExplainer(vqa_setup["enc"])
    prior = train_prior(VQATrainConfig(data=str(vqa_setup["root"]), model="prior", answer_min_count=1),
                        tmp_path / "prior")
    with pytest.raises(DataError, match="answer-prior baseline reads no image"):
        VQAExplainer(prior.checkpoint)
    # the store's encoder checkpoint is gone: the error names it and what to do
    ckpt = torch.load(vqa_setup["ckpt"], weights_only=False)
    moved = dict(ckpt, extra=dict(ckpt["extra"], features=dict(ckpt["extra"]["features"],
                                                               encoder=str(tmp_path / "gone" / "enc.pt"))))
    torch.save(moved, tmp_path / "moved.pt")
    with pytest.raises(MissingResourceError, match=r"gone/enc.pt'.*not available here.*put the encoder checkpoint back"):
        VQAExplainer(tmp_path / "moved.pt")
    # a registry encoder whose weights file is not on this machine
    foreign = dict(ckpt, config=dict(ckpt["config"], features=None),
                   extra=dict(ckpt["extra"], features={"encoder": "clip_res50", "weights": "file:/nowhere/RN50.pt",
                                                       "kind": "grid", "short_side": 128, "long_side": 192}))
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(MissingResourceError, match=r"foreign.pt: the encoder of its feature store \(clip_res50.*"
                                                   r"/nowhere/RN50.pt: weights file not found"):
        VQAExplainer(tmp_path / "foreign.pt")


def test_cli_gradcam_of_a_vqa_answer(vqa_setup: dict, tmp_path, capsys):
    from PIL import Image

    from vln_clip.cli.main import main

    out = tmp_path / "cam.png"
    rc = main(["gradcam", "--checkpoint", str(vqa_setup["ckpt"]), "--image", str(vqa_setup["image"]),
               "--question", "What color is the square?", "--answer", "red", "--answer", "green", "--out", str(out)])
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["explained"]) == {"red", "green"} and report["grid"] == [4, 6]
    assert len(report["top_answers"]) == 5
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > im.height
    assert main(["gradcam", "--checkpoint", str(vqa_setup["ckpt"]), "--image", str(vqa_setup["image"]),
                 "--text", "a red square", "--out", str(out)]) == 2
    assert "--text: not used with --checkpoint" in capsys.readouterr().err
    assert main(["gradcam", "--checkpoint", str(vqa_setup["ckpt"]), "--image", str(vqa_setup["image"]),
                 "--out", str(out)]) == 2
    assert "needs --question" in capsys.readouterr().err
