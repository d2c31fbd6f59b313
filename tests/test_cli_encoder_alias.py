"""`--encoder-checkpoint ENC.pt` is a second spelling of `--encoder` in every command that takes an
encoder (issue 15): same destination, both spellings accept a registry name or a checkpoint, and
two different values are a usage error instead of argparse's silent last-one-wins."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from vln_clip.cli.main import build_parser, main

PARSER = build_parser()
# the smallest argument list each command parses with (the encoder comes on top)
COMMANDS = {
    "features extract": ["--connectivity", "conn", "--out", "f.h5"],
    "features grid": ["--images", "imgs", "--out", "g.h5"],
    "features convert": ["--tsv", "f.tsv", "--out", "f.h5"],
    "train": ["--out", "runs/x"],
    "vqa zero-shot": ["--questions", "q.json", "--annotations", "a.json", "--images", "imgs"],
    "pretrain": ["--data", "vl", "--out", "runs/p"],
    "finetune": ["--task", "vqa", "--from", "scratch", "--data", "vl", "--out", "runs/f"],
    "gradcam": ["--image", "img.jpg", "--text", "a dog", "--out", "cam.png"],
}


def _parse(command: str, *extra: str) -> argparse.Namespace:
    return PARSER.parse_args([*command.split(), *COMMANDS[command], *extra])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_both_spellings_fill_args_encoder(command: str):
    for flag in ("--encoder", "--encoder-checkpoint"):
        assert _parse(command, flag, "enc/contrastive.pt").encoder == "enc/contrastive.pt"
        assert _parse(command, flag, "clip_res50").encoder == "clip_res50"
    # the same encoder twice (also as another path to the same file) is fine
    args = _parse(command, "--encoder", "enc/contrastive.pt", "--encoder-checkpoint", "./enc/../enc/contrastive.pt")
    assert args.encoder == "./enc/../enc/contrastive.pt"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_two_different_encoders_are_refused(command: str, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(command, "--encoder", "clip_res50", "--encoder-checkpoint", "enc/contrastive.pt")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--encoder clip_res50 and --encoder-checkpoint enc/contrastive.pt name different encoders" in err


def test_required_and_default_encoders(capsys):
    for command in ("features extract", "features grid"):
        with pytest.raises(SystemExit):
            _parse(command)  # required: one of the two spellings
        assert _parse(command, "--encoder-checkpoint", "e.pt").encoder == "e.pt"
    assert _parse("vqa zero-shot").encoder == "clip_res50"
    assert _parse("train").encoder is None  # the dataset preset decides
    with pytest.raises(SystemExit):
        _parse("gradcam")  # gradcam needs an encoder or a VQA --checkpoint
    capsys.readouterr()
    with pytest.raises(SystemExit):
        PARSER.parse_args(["features", "grid", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--encoder ENCODER, --encoder-checkpoint ENCODER" in help_text and "encoder checkpoint ENC.pt" in help_text


def test_pretrain_maps_a_checkpoint_to_the_study_backbone(tmp_path: Path):
    from vln_clip.cli.pretrain import _setup
    from vln_clip.errors import DataError

    _, backbone = _setup(_parse("pretrain", "--encoder-checkpoint", str(tmp_path / "enc.pt")))
    assert backbone.encoder_checkpoint == str(tmp_path / "enc.pt")
    assert backbone.label() == f"encoder checkpoint {tmp_path / 'enc.pt'}"
    _, backbone = _setup(_parse("pretrain", "--encoder", "clip_res101", "--random-weights"))
    assert backbone.encoder == "clip_res101" and backbone.encoder_checkpoint is None and backbone.random_weights
    with pytest.raises(DataError, match="carries its own weights; drop --weights/--random-weights"):
        _setup(_parse("pretrain", "--encoder-checkpoint", "enc.pt", "--random-weights"))


def test_grid_features_are_the_same_under_either_spelling(tmp_path: Path):
    from PIL import Image

    from vln_clip.features.store import FeatureStore
    from vln_clip.study.encoder_pretrain import random_encoder

    enc = random_encoder("rn-tiny", 64, tmp_path / "enc.pt")
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "images" / f"im{k}.png")
    stores = {}
    for flag in ("--encoder", "--encoder-checkpoint"):
        out = tmp_path / f"grid{flag}.h5"
        assert main(["features", "grid", flag, str(enc), "--images", str(tmp_path / "images"), "--out", str(out),
                     "--short-side", "64", "--long-side", "96", "--workers", "0", "--no-progress"]) == 0
        stores[flag] = FeatureStore(out)
    a, b = stores.values()
    assert a.encoder == b.encoder == str(enc.resolve()) and a.keys() == b.keys()
    for key in a.keys():
        np.testing.assert_array_equal(a.get_item(key), b.get_item(key))
