"""Zero-shot CLIP VQA on a two-image toy whose towers we control: the right answer must win."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vln_clip.datasets.vqa import VQAItem, coco_image_key, write_vqa
from vln_clip.errors import DataError
from vln_clip.encoders import load_clip
from vln_clip.vqa.zero_shot import ZeroShotConfig, answer_text, check_prompt, run_zero_shot


RGB = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


class ColourCLIP(nn.Module):
    """Image tower: the mean colour of the picture. Text tower: the colour named in the text
    (the tokenizer turns each text into the RGB of the colour word it contains), plus a small
    component for the word "answer" that every prompt text shares and that must not matter."""

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), torch.zeros(len(x), 1)], 1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens


def tokenize(texts: list[str]) -> torch.Tensor:
    rows = []
    for t in texts:
        words = t.lower().replace("?", " ").replace(":", " ").split()
        rgb = np.zeros(3)
        last = [w for w in words if w in RGB]
        if last:
            rgb = np.asarray(RGB[last[-1]])  # the candidate answer comes after the question
        rows.append(list(rgb) + [0.1 * ("answer" in words)])
    return torch.tensor(rows, dtype=torch.float32)


def transform(im) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)


def test_two_image_toy(tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    items = []
    for image_id, colour in ((1, "red"), (2, "blue")):
        key = coco_image_key("synth", image_id)
        Image.fromarray(np.full((8, 8, 3), np.asarray(RGB[colour]) * 255, dtype=np.uint8)).save(images / f"{key}.png")
        items.append(VQAItem(image_id, image_id, key, "What color is the wall?", "what color is the", "other",
                             [colour] * 10, colour))
    # a third candidate that no image has, so chance is 1/3 and the toy must pick correctly
    items.append(VQAItem(3, 1, coco_image_key("synth", 1), "Is it green?", "is it", "other", ["green"] * 10, "green"))
    q, a = tmp_path / "q.json", tmp_path / "a.json"
    write_vqa(q, a, items, data_subtype="synth")
    cfg = ZeroShotConfig(str(q), str(a), str(images))
    report = run_zero_shot(cfg, ColourCLIP(), tokenize, transform, weights_label="toy")
    assert report["n_candidates"] == 3
    for name in ("no_prompt", "prompt"):
        # the two colour questions are right; "is it green?" -> the red image wins "red"
        assert report[name]["overall"] == pytest.approx(200 / 3)
        assert report[name]["per_answer_type"]["other"] == pytest.approx(200 / 3)


def test_prompt_and_encoder_checks() -> None:
    assert answer_text("is it red?", "yes", None) == "is it red? yes"
    assert answer_text("is it red?", "yes", "question: {question} answer: {answer}") == \
        "question: is it red? answer: yes"
    with pytest.raises(DataError, match="must contain both"):
        check_prompt("Q: {question}")
    with pytest.raises(DataError, match="only the fields"):
        check_prompt("{question} {answer} {image}")
    with pytest.raises(DataError, match="no text tower"):
        load_clip("imagenet_res152", random_weights=True)
