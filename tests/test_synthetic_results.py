"""The reporting tools behind docs/training.md's synthetic evidence (benchmarks/synthetic_results.py)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from vln_clip.features.store import FeatureStore
from vln_clip.synth import generate_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sr():
    spec = importlib.util.spec_from_file_location("synthetic_results", ROOT / "benchmarks" / "synthetic_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sr):
    """Five unrendered houses (3 train, 1 val_unseen, 1 test) with oracle scene features."""
    w = generate_world(tmp_path_factory.mktemp("res") / "w", houses=5, seed=3, render=False, paths_per_house=6,
                       val_seen_per_house=2, rxr_paths_per_house=2, two_floor_fraction=0.0)
    root = Path(w.connectivity).parent
    sr.oracle_scene_features(root, root / "features" / "oracle_scene.h5")
    return root


def test_oracle_features_mark_the_viewpoint_room_in_every_view(world):
    from vln_clip.synth.world import ROOM_TYPES

    n = len(ROOM_TYPES)  # the first n channels: room type of the viewpoint
    scene = json.loads(next((world / "scenes").glob("*.json")).read_text())
    vp = scene["viewpoints"][0]
    with FeatureStore(world / "features" / "oracle_scene.h5") as st:
        f = st.get(scene["scan"], vp["id"])
    assert f.shape[0] == 36 and (f[:, :n].sum(1) == 1).all()  # one room-type bit, the same in all views
    assert (f[:, :n] == f[:1, :n]).all() and f[0, list(ROOM_TYPES).index(vp["room_type"])] == 1


def test_probe_beats_the_majority_class_with_oracle_features(world, sr):
    out = sr.probe(argparse.Namespace(world=str(world), features=str(world / "features" / "oracle_scene.h5")))
    assert out["edges_unseen"] > 0 and out["edges_unseen_into_another_room"] <= out["edges_unseen"]
    assert out["unseen_accuracy"] > out["unseen_majority_class"] + 0.1


def test_compare_of_a_checkpoint_with_itself_is_exactly_zero(world, sr, tmp_path):
    out = tmp_path / "nv"
    args = argparse.Namespace(world=str(world), features="none", out=str(out), agent="follower", iters=2, batch=4,
                              hidden=32, max_actions=6, eval_every=2, threads=1, seed=0, no_rl=True)
    res = sr.one_follower(args)
    assert set(res) == {"success", "spl", "ndtw", "best_val_unseen"}
    ckpt = str(out / "last.pt")
    cmp = sr.compare(argparse.Namespace(world=str(world), a=ckpt, a_features="none", b=ckpt, b_features="none",
                                        bootstrap=50))
    assert cmp["instructions"] == 3 * cmp["paths"]  # three R2R instructions per path, resampled by path
    for k in ("success", "spl", "ndtw"):
        assert cmp[k]["b_minus_a"] == 0.0 and cmp[k]["ci95"] == [0.0, 0.0] and cmp[k]["a"] == cmp[k]["b"]
    assert cmp["only_a_succeeds"] == cmp["only_b_succeeds"] == 0
