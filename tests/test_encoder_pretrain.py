"""Encoder pre-training (issue 15): the contrastive arm learns image-text alignment, the
classification arm learns from labels alone, and both load through the encoder registry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vln_clip.datasets.coco import KarpathyImage, KarpathySentence, write_karpathy
from vln_clip.encoders import get_spec, load_encoder
from vln_clip.errors import DataError
from vln_clip.study.encoder_pretrain import (EncoderPretrainConfig, EncoderPretrainTask, encoder_quality, load_split,
                                             pretrain_encoder, scene_colour)
from vln_clip.train import LoopConfig, OptimizerConfig, fit

ROOMS = {"kitchen": (220, 40, 40), "bedroom": (40, 200, 40), "bathroom": (40, 40, 220), "office": (230, 220, 40)}


def _toy_world(root: Path, captions: str = "true", per_room: int = 10) -> Path:
    """A V&L world in the synth-vl layout: a room is a background colour, objects are squares."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    scenes, images = {}, []
    k = 0
    for split, n in (("train", per_room), ("val", per_room // 2)):
        for room, rgb in ROOMS.items():
            for _ in range(n):
                k += 1
                key = f"COCO_synth_{k:012d}"
                img = np.zeros((64, 80, 3), np.uint8) + np.array(rgb, np.uint8)
                img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
                objs = []
                if rng.random() < 0.5:
                    x = int(rng.integers(0, 60))
                    colour = ("white", "red")[k % 2]
                    img[20:40, x:x + 20] = {"white": (255, 255, 255), "red": (230, 30, 30)}[colour]
                    objs.append({"type": "lamp", "colour": colour, "area": 0.08, "in_room": True})
                Image.fromarray(img).save(root / "images" / f"{key}.jpg", quality=95)
                scenes[key] = {"split": split, "room": {"type": room}, "objects": objs}
                word = {"true": room, "garbage": "zzz"}[captions]
                sents = [KarpathySentence(k * 10 + j, f"a photo of a {word}.", ["a", "photo", "of", "a", word])
                         for j in range(5)]
                images.append(KarpathyImage(imgid=k, image_key=key, filename=f"{key}.jpg", split=split,
                                            sentences=sents, cocoid=k))
    (root / "coco").mkdir(exist_ok=True)
    write_karpathy(root / "coco" / "dataset_coco.json", images)
    (root / "scenes.json").write_text(json.dumps(scenes))
    return root


def _cfg(data: Path, objective: str) -> EncoderPretrainConfig:
    return EncoderPretrainConfig(data=str(data), objective=objective, image_size=64, batch_size=16,
                                 optim=OptimizerConfig("adamw", lr=2e-3, weight_decay=0.0, warmup_steps=5))


def _loop(out: Path, iters: int) -> LoopConfig:
    return LoopConfig(out_dir=str(out), iters=iters, eval_every=iters, save_every=iters, log_every=5,
                      seed=0, progress="off")


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return _toy_world(tmp_path_factory.mktemp("toy_vl"))


def test_contrastive_loss_falls_and_zero_shot_beats_chance(toy: Path, tmp_path: Path):
    report = pretrain_encoder(_cfg(toy, "contrastive"), _loop(tmp_path / "run", 40), tmp_path / "c.pt")
    hist = json.loads(json.dumps(torch.load(tmp_path / "run" / "last.pt", weights_only=False)["history"]))
    losses = [h["loss"] for h in hist if "loss" in h]
    assert losses[-1] < 0.7 * losses[0]
    assert report["zero_shot_room"] > 0.6 > 0.25  # four rooms: chance is 0.25
    assert report["probe_room"] > 0.9
    # the checkpoint loads through the registry for pooled and grid features
    spec = get_spec(tmp_path / "c.pt")
    enc = load_encoder(str(tmp_path / "c.pt"))
    out = enc(torch.zeros(2, 3, 64, 96, dtype=torch.uint8))
    assert out["pooled"].shape == (2, spec.pooled_dim) and out["grid"].shape == (2, spec.grid_channels, 2, 3)


def test_classification_sees_only_labels(toy: Path, tmp_path: Path):
    garbage = _toy_world(tmp_path / "garbage", captions="garbage")
    runs = []
    for name, data in (("a", toy), ("b", garbage)):
        task = EncoderPretrainTask(_cfg(data, "classification"))
        fit(task, _loop(tmp_path / name, 30))
        assert task.train.captions is None
        runs.append({k: v.clone() for k, v in task.clip.visual.state_dict().items()})
    # the captions differ completely, the trained weights do not
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    ckpt = str(_export(tmp_path, task))
    q = encoder_quality(ckpt, toy, 64)
    assert q["room_accuracy"] > 0.5 and "zero_shot_room" not in q
    # the checkpoint brings its own input size: left out, the same report; contradicted, a clear error
    assert encoder_quality(ckpt, toy) == q
    with pytest.raises(DataError, match="trained on 64px images"):
        encoder_quality(ckpt, toy, 128)


def _export(tmp: Path, task: EncoderPretrainTask) -> Path:
    from vln_clip.encoders import ENCODER_CHECKPOINT_FORMAT

    path = tmp / "cls.pt"
    torch.save({"format": ENCODER_CHECKPOINT_FORMAT, "objective": "classification", "arch": "rn-tiny",
                "model_cfg": task.model_cfg, "state_dict": task.clip.state_dict(),
                "heads": task.heads.state_dict(), "labels": dataclasses.asdict(task.labels)}, path)
    return path


def test_grayscale_domain_and_colour_probe(toy: Path, tmp_path: Path):
    task = EncoderPretrainTask(dataclasses.replace(_cfg(toy, "contrastive"), grayscale=True))
    fit(task, _loop(tmp_path / "g", 2))
    for split in (task.train, task.val):  # trained and validated without colour
        assert torch.equal(split.images[:, 0], split.images[:, 1])
        assert torch.equal(split.images[:, 0], split.images[:, 2])
    rgb, labels = load_split(toy, "val", 64, None, False)
    gray, _ = load_split(toy, "val", 64, labels, False, grayscale=True)
    # luminance in every channel, PIL's ITU-R 601-2 weights (up to the resize's rounding)
    assert torch.equal(gray.images[:, 0], gray.images[:, 1]) and torch.equal(gray.images[:, 1], gray.images[:, 2])
    lum = (0.299 * rgb.images[:, 0].float() + 0.587 * rgb.images[:, 1].float() + 0.114 * rgb.images[:, 2].float())
    assert (gray.images[:, 0].float() - lum).abs().mean() < 2.0
    assert not torch.equal(rgb.images[:, 0], rgb.images[:, 1])
    # the colour label is the largest in-room object's; none without objects
    assert scene_colour({"objects": [{"colour": "red", "area": 0.1}, {"colour": "blue", "area": 0.3},
                                     {"colour": "teal", "area": 0.9, "in_room": False}]}) == "blue"
    assert scene_colour({"objects": []}) is None
    assert set(rgb.colours) == {None, "white", "red"}
    # a red and a white square: even a random tower's pooled feature tells them apart
    q = encoder_quality("random", toy, 64)
    assert q["colours"] == 2 and q["colour_images"] == sum(c is not None for c in rgb.colours)
    assert q["probe_colour"] > q["probe_colour_majority"] + 0.2


def test_random_arm_and_bad_checkpoint(toy: Path, tmp_path: Path):
    q = encoder_quality("random", toy, 64)
    assert q["objective"] == "random" and 0.0 <= q["probe_room"] <= 1.0
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(DataError, match="not a vln-clip encoder checkpoint"):
        load_encoder(str(bad))
