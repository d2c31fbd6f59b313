"""One data-layout resolver (vln_clip.paths): training finds what evaluation finds, in both layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import line_world
from vln_clip.agents.config import TrainConfig
from vln_clip.agents.trainer import extract_command, resolve_paths
from vln_clip.errors import MissingResourceError
from vln_clip.eval.inputs import resolve_connectivity, resolve_split
from vln_clip.paths import connectivity_dir, feature_store_path, skybox_dir


def _layout(root: Path, connectivity: str, dataset: str) -> None:
    line_world(root / connectivity)
    for split in ("train", "val_seen", "val_unseen"):
        if dataset == "rxr":
            (root / "rxr").mkdir(parents=True, exist_ok=True)
            (root / "rxr" / f"rxr_{split}_guide.jsonl").write_text("")
        else:
            (root / "r2r").mkdir(parents=True, exist_ok=True)
            (root / "r2r" / f"R2R_{split}.json").write_text("[]")
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "features" / "clip_vit_b32.h5").write_bytes(b"")


@pytest.mark.parametrize("connectivity", ["connectivity", "matterport/connectivity"])
@pytest.mark.parametrize("dataset", ["r2r", "rxr", "synthetic"])
def test_training_and_evaluation_resolve_the_same_files(tmp_path: Path, connectivity: str, dataset: str) -> None:
    _layout(tmp_path, connectivity, dataset)
    cfg = TrainConfig.preset(dataset, data_dir=str(tmp_path), encoder="clip_vit_b32")
    paths = resolve_paths(cfg)
    assert paths.connectivity == tmp_path / connectivity == resolve_connectivity(None, tmp_path)
    split_dataset = "rxr" if dataset == "rxr" else "r2r"
    for split, found in paths.splits.items():
        assert found == resolve_split(None, split, split_dataset, tmp_path)
        assert found.exists()
    assert paths.features == feature_store_path(tmp_path, "clip_vit_b32")


def test_missing_pieces_are_named_with_the_layout(tmp_path: Path) -> None:
    line_world(tmp_path / "matterport" / "connectivity")
    with pytest.raises(MissingResourceError) as err:
        resolve_paths(TrainConfig.preset("r2r", data_dir=str(tmp_path)))
    msg = str(err.value)
    assert str(tmp_path / "r2r" / "R2R_train.json") in msg and "Getting the real data" in msg
    assert f"data synth --out {tmp_path}" not in msg  # never a synthetic world in a real-data folder
    with pytest.raises(MissingResourceError, match="connectivity/ and matterport/connectivity/"):
        resolve_paths(TrainConfig.preset("synthetic", data_dir=str(tmp_path / "empty")))
    command = extract_command(tmp_path, "clip_res50")
    assert f"--connectivity {connectivity_dir(tmp_path)} " in command  # the real layout's folder
    assert f"--skybox-dir {skybox_dir(tmp_path)} " in command
    assert command.endswith(f"--out {feature_store_path(tmp_path, 'clip_res50')}")
