"""Grid and pooled features of keyed images: the resolution rule (hand-computed sizes), grid
shapes and values for a CLIP ResNet and a CLIP ViT at several aspect ratios (equal to a direct
encoder pass), the ViT's positional embedding at non-square sizes, recorded metadata, refusing
mismatched stores, resume after SIGKILL (same store as an uninterrupted run), torchrun shards,
pooled mode, bad inputs, the CLI, and old navigation stores still readable."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from vln_clip import encoders
from vln_clip.encoders import get_spec, grid_size
from vln_clip.errors import DataError, MissingResourceError
from vln_clip.features.grid import (GridConfig, ResolutionRule, default_rule, extract_grid, list_images,
                                    plan_batches, resize_image)
from vln_clip.features.store import FeatureStore, FeatureWriter, journal_dir

RULE = ResolutionRule(64, 128)  # tiny images, fast tests
# (height, width): landscape, portrait, square, very wide (long side capped), tall, 4:3 larger
SIZES = [(60, 80), (80, 60), (64, 64), (50, 150), (200, 100), (90, 120), (100, 200)]
KEYS = [f"COCO_synth_{i:012d}" for i in range(len(SIZES))]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Single-threaded kernels: a resumed run in another process computes the same bits."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Smooth colour gradients plus noise (so different cells differ), JPEG and PNG."""
    root = tmp_path_factory.mktemp("vl_images") / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, (key, (h, w)) in enumerate(zip(KEYS, SIZES)):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([255 * xx / w, 255 * yy / h, np.full((h, w), 40.0 * i)], -1)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"{key}.{'png' if i % 3 == 0 else 'jpg'}")
    (root / "notes.txt").write_text("not an image")
    return root


_ENC: dict[str, torch.nn.Module] = {}


def enc(name: str) -> torch.nn.Module:
    if name not in _ENC:
        _ENC[name] = encoders.load_encoder(name, random_weights=True)
    return _ENC[name]


def run(images, out, name="clip_res50", on_batch=None, **kw):
    base = dict(encoder=name, images=images, out=out, rule=RULE, random_weights=True, batch_size=2, workers=0,
                progress=False)
    base.update(kw)
    return extract_grid(GridConfig(**base), on_batch=on_batch, encoder=enc(name))


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """One uninterrupted float16 RN50 run (the resume, shard and CLI tests compare with it)."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    run(images, out)
    with FeatureStore(out) as store:
        return {k: store.get_item(k, np.float16) for k in store.keys()}, dict(store.attrs)


def direct(name: str, path: Path, rule: ResolutionRule, pooled: bool = False) -> np.ndarray:
    """The reference computation: resize one image, one encoder pass, the documented layout."""
    with Image.open(path) as img:
        x = torch.from_numpy(resize_image(img, rule).copy()).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = enc(name)(x)
    if pooled:
        return out["pooled"][0].numpy()
    g = out["grid"][0]  # [C, h, w]
    if get_spec(name).is_vit:
        return g.flatten(1).T.numpy()  # [h*w, C] row-major
    return g.permute(1, 2, 0).numpy()


def test_resolution_rule_hand_computed():
    vqa = ResolutionRule(600, 1000)
    assert vqa.input_size(480, 640) == (576, 800)  # 600x800 -> sides snapped down to 32
    assert vqa.input_size(640, 480) == (800, 576)
    assert vqa.input_size(600, 1000) == (576, 992)
    assert grid_size("clip_res50", *vqa.input_size(600, 1000)) == (18, 31) == grid_size("clip_res50", 600, 1000)
    assert vqa.input_size(300, 1200) == (224, 992)  # 600x2400 exceeds 1000: the long side rules -> 250x1000
    assert ResolutionRule(384, 640).input_size(480, 640) == (384, 512)  # pre-training
    assert ResolutionRule(384, 640).input_size(427, 640) == (384, 576)  # 384x575.5 -> 576 -> 576
    assert ResolutionRule(600, None).input_size(300, 1200) == (576, 2400)  # no limit
    assert ResolutionRule(224, None, crop=True).input_size(480, 640) == (224, 224)
    assert RULE.input_size(50, 150) == (32, 128)  # 64x192 capped to 43x128 -> 32x128
    assert default_rule("clip_res50x4", pooled=True) == ResolutionRule(288, None, 32, crop=True)
    assert default_rule("clip_res50", pooled=False) == ResolutionRule(600, 1000, 32)
    with pytest.raises(DataError, match="--long-side 100"):
        ResolutionRule(200, 100).validate()
    sizes = dict(zip(KEYS, SIZES))
    batches = plan_batches(sizes, RULE, 2)
    assert sorted(k for _, ks in batches for k in ks) == sorted(KEYS)
    for shape, ks in batches:
        assert len(ks) <= 2 and all(RULE.input_size(*sizes[k]) == shape for k in ks)  # one tensor per batch
    assert len({s for s, _ in batches}) == 4  # 64x64 (x4 images), 32x128, 128x64, 64x128
    assert plan_batches(dict(reversed(list(sizes.items()))), RULE, 2) == batches  # order-independent


@pytest.mark.parametrize("name", ["clip_res50", "clip_vit_b32"])
def test_grid_shapes_values_and_metadata(images, tmp_path, name):
    out = tmp_path / f"{name}.h5"
    run(images, out, name, dtype="float32")
    spec = get_spec(name)
    paths = list_images(images)
    with FeatureStore(out) as store:
        assert store.kind == "grid" and sorted(store.keys()) == KEYS and store.dim == spec.grid_channels
        assert store.grid_layout == ("nc" if spec.is_vit else "hwc")
        a = store.attrs
        assert (a["encoder"], a["weights"], a["short_side"], a["long_side"], a["stride"], a["crop"]) == \
            (name, "random", 64, 128, 32, "none")
        pre = json.loads(a["preprocessing"])
        assert pre["mean"] == list(spec.mean) and pre["std"] == list(spec.std) and pre["channels"] == "RGB"
        assert a["version"] == 1 and a["dtype"] == "float32"
        for key, (h, w) in zip(KEYS, SIZES):
            ih, iw = RULE.input_size(h, w)
            gh, gw = grid_size(name, ih, iw)
            got = store.get_item(key)
            assert got.shape == ((gh * gw, spec.grid_channels) if spec.is_vit else (gh, gw, spec.grid_channels))
            assert store.grid_shape(key) == (gh, gw)
            assert store.item_attrs(key) == {"grid_hw": (gh, gw), "image_hw": (h, w), "input_hw": (ih, iw)}
            np.testing.assert_allclose(got, direct(name, paths[key], RULE), atol=1e-4, rtol=1e-4)
        # one padded batch with a mask: cells in row-major order, zeros after each item's end
        batch = store.get_many(KEYS)
        lengths = [int(np.prod(store.grid_shape(k))) for k in KEYS]
        assert batch.features.shape == (len(KEYS), max(lengths), spec.grid_channels)
        assert batch.mask.sum(1).tolist() == lengths
        assert batch.shapes.tolist() == [list(store.grid_shape(k)) for k in KEYS]
        for i, k in enumerate(KEYS):
            np.testing.assert_array_equal(batch.features[i, : lengths[i]],
                                          store.get_item(k).reshape(lengths[i], -1))
            assert not batch.features[i, lengths[i]:].any()
        assert store.get_many(KEYS[:2], dtype=np.float16).features.dtype == np.float16
        with pytest.raises(DataError, match="get_item"):
            store.get("COCO", "synth_000000000000")  # the panorama reader refuses image stores
        with pytest.raises(DataError, match="get_many"):
            store.packed()


def test_vit_positional_embedding_follows_non_square_grids():
    """With a transpose-symmetric patch kernel and positional grid, the ViT commutes with
    transposing the image; confusing rows and columns in the interpolation at a 2x4 grid
    (native 7x7) would break that."""
    vit = copy.deepcopy(enc("clip_vit_b32"))
    v = vit.backbone
    with torch.no_grad():
        v.conv1.weight.copy_((v.conv1.weight + v.conv1.weight.transpose(-1, -2)) / 2)
        pos = v.positional_embedding
        g = pos[1:].reshape(7, 7, -1)
        pos[1:] = ((g + g.transpose(0, 1)) / 2).reshape(49, -1)
        x = torch.rand(1, 3, 64, 128)
        a = vit(x)["grid"]  # [1, C, 2, 4]
        b = vit(x.transpose(-1, -2).contiguous())["grid"]  # [1, C, 4, 2]
    assert a.shape[-2:] == (2, 4) and b.shape[-2:] == (4, 2)
    torch.testing.assert_close(b, a.transpose(-1, -2), atol=1e-4, rtol=1e-4)
    # ... and the asymmetric original does not commute (the check can fail)
    with torch.no_grad():
        orig = enc("clip_vit_b32")
        assert not torch.allclose(orig(x.transpose(-1, -2).contiguous())["grid"],
                                  orig(x)["grid"].transpose(-1, -2), atol=1e-3)


def test_mismatched_store_is_refused(images, reference, tmp_path):
    _, attrs = reference
    out = tmp_path / "g.h5"
    run(images, out, limit=2)
    with FeatureStore(out) as store:
        assert store.require(kind="grid", encoder="clip_res50", weights="random", short_side=64,
                             long_side=128, dim=2048) is store
        with pytest.raises(DataError) as exc:
            store.require(encoder="clip_vit_b32")
        msg = str(exc.value)
        assert str(out) in msg and "'clip_res50'" in msg and "'clip_vit_b32'" in msg
        assert "vln-clip features grid --encoder clip_vit_b32" in msg and "--short-side 64" in msg
        with pytest.raises(DataError, match="kind is 'grid' but 'pooled'.*--pooled"):
            store.require(kind="pooled")
        with pytest.raises(DataError, match="short_side is 64 but 384"):
            store.require(short_side=384)
        with pytest.raises(DataError, match="weights is 'random' but 'openai'"):
            store.require(weights="openai")
        with pytest.raises(DataError, match="preprocessing"):
            store.require(preprocessing={"mean": [0.5, 0.5, 0.5]})
    # a run with another rule into the same store is refused before any model work
    with pytest.raises(DataError, match="short_side is 64 but 96"):
        run(images, out, rule=ResolutionRule(96, 128))
    with pytest.raises(DataError, match="kind is 'grid' but 'pooled'"):
        run(images, out, pooled=True)


CHILD = """
import sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from vln_clip.features.grid import GridConfig, ResolutionRule, extract_grid
cfg = GridConfig(encoder="clip_res50", images=Path(sys.argv[1]), out=Path(sys.argv[2]), rule=ResolutionRule(64, 128),
                 random_weights=True, batch_size=2, workers=0, progress=False)
extract_grid(cfg, on_batch=lambda n: time.sleep(120))  # killed while "working" after the first batch
"""


def test_resume_after_sigkill_gives_the_same_store(images, reference, tmp_path):
    out = tmp_path / "killed.h5"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(images), str(out)], env={**os.environ},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    parts = journal_dir(out)
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    log = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, log
    assert len(list(parts.glob("part-*.npz"))) == 1 and not out.exists()  # the finished batch, no store
    journal_keys = [k for p in parts.glob("part-*.npz") for k in np.load(p)["keys"].tolist()]
    done: list[int] = []
    run(images, out, on_batch=done.append)
    first = plan_batches(dict(zip(KEYS, SIZES)), RULE, 2)[0][1]
    assert sorted(journal_keys) == sorted(first)  # the first planned batch ...
    assert done[-1] == len(KEYS) - len(first)  # ... is not extracted again
    assert not parts.exists()
    feats, attrs = reference
    with FeatureStore(out) as store:
        assert sorted(store.keys()) == sorted(feats)
        for k in store.keys():  # bit-identical: same batches, same kernels
            np.testing.assert_array_equal(store.get_item(k, np.float16), feats[k])
            assert store.item_attrs(k)["input_hw"] == RULE.input_size(*SIZES[KEYS.index(k)])
        assert dict(store.attrs) == attrs
    again: list[int] = []
    run(images, out, on_batch=again.append)  # everything done: nothing to do
    assert again == []


def test_torchrun_shards_build_the_same_store(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "sharded.h5"
    counts = {}
    for rank in (1, 0):  # rank 1 finishes first; rank 0 waits for its marker and builds the store
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        seen: list[int] = []
        run(images, out, on_batch=seen.append)
        counts[rank] = seen[-1]
        assert out.exists() == (rank == 0)
    assert counts == {0: 4, 1: 3}  # every other image
    feats, _ = reference
    with FeatureStore(out) as store:
        assert sorted(store.keys()) == sorted(feats)
        for k in store.keys():  # other batches than the single run: equal up to float16 rounding
            np.testing.assert_allclose(store.get_item(k), feats[k].astype(np.float32), rtol=2e-3, atol=2e-3)


def test_rank0_gives_up_on_a_dead_rank_and_the_rerun_finishes(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "dead.h5"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("VLN_CLIP_RANK_STALL_S", "0.2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DataError, match="rank\\(s\\) 1 of 2 wrote nothing"):
        run(images, out)  # rank 1 never started: rank 0 does not wait forever
    assert not out.exists() and len(list(journal_dir(out).glob("part-*.npz"))) == 3  # its 3 batches kept
    for rank, todo in (("1", 3), ("0", None)):
        monkeypatch.setenv("RANK", rank)
        seen: list[int] = []
        run(images, out, on_batch=seen.append)
        assert (seen[-1] if seen else None) == todo  # rank 0 has nothing left to do
    feats, _ = reference
    with FeatureStore(out) as store:
        assert sorted(store.keys()) == sorted(feats)


def test_pooled_mode(images, tmp_path):
    out = tmp_path / "pooled.h5"
    rule = ResolutionRule(64, None, crop=True)
    run(images, out, pooled=True, rule=rule, dtype="float32", batch_size=4)
    paths = list_images(images)
    with FeatureStore(out) as store:
        assert store.kind == "pooled" and store.dim == 1024 and store.attrs["crop"] == "center"
        assert store.attrs["l2_normalized"] == "False" and store.grid_layout is None
        batch = store.get_many(KEYS)
        assert batch.features.shape == (len(KEYS), 1024) and batch.mask is None
        for i, k in enumerate(KEYS):
            assert store.get_item(k).shape == (1024,)
            np.testing.assert_allclose(batch.features[i], direct("clip_res50", paths[k], rule, pooled=True),
                                       atol=1e-4, rtol=1e-4)
        arr, index = store.packed()
        np.testing.assert_allclose(arr[index[KEYS[3]]], batch.features[3], atol=1e-4)
        with pytest.raises(DataError, match="no grids"):
            store.grid_shape(KEYS[0])
    out2 = tmp_path / "pooled_l2.h5"
    run(images, out2, pooled=True, rule=rule, l2_normalize=True, limit=3, batch_size=4)
    enc("clip_res50").l2_normalize = False
    with FeatureStore(out2) as store:
        assert store.attrs["l2_normalized"] == "True"
        np.testing.assert_allclose(np.linalg.norm(store.get_many(store.keys()).features, axis=1), 1.0, atol=2e-3)


def test_bad_inputs_are_named(images, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .jpg/.jpeg/.png images"):
        run(empty, tmp_path / "x.h5")
    dup = tmp_path / "dup"
    dup.mkdir()
    Image.new("RGB", (40, 40)).save(dup / "a.jpg")
    Image.new("RGB", (40, 40)).save(dup / "a.png")
    with pytest.raises(DataError, match="two images have the key 'a'"):
        list_images(dup)
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.new("RGB", (40, 40)).save(broken / "ok.jpg")
    (broken / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="bad.jpg: not a readable image"):
        run(broken, tmp_path / "b.h5")
    assert not journal_dir(tmp_path / "b.h5").exists()  # refused before any model work
    with pytest.raises(DataError, match="no image for key 'nope'"):
        run(images, tmp_path / "k.h5", keys=["nope"])
    with pytest.raises(DataError, match="unknown encoder"):
        extract_grid(GridConfig(encoder="clip_rn50", images=images, out=tmp_path / "u.h5", random_weights=True))
    with pytest.raises(MissingResourceError, match="enc.pt: encoder checkpoint not found; make one with"):
        extract_grid(GridConfig(encoder=str(tmp_path / "enc.pt"), images=images, out=tmp_path / "c.h5"))


def test_cli_grid_info_and_plain_progress(images, reference, tmp_path, monkeypatch, capsys):
    from vln_clip.cli.main import main

    monkeypatch.setattr(encoders, "load_encoder", lambda name, **kw: enc(name))
    out = tmp_path / "cli.h5"
    args = ["features", "grid", "--encoder", "clip_res50", "--images", str(images), "--out", str(out),
            "--random-weights", "--short-side", "64", "--long-side", "128", "--batch-size", "2", "--workers", "0"]
    assert main(args) == 0
    cap = capsys.readouterr()
    assert f"{out}: 7 images, hwc grids x 2048 (clip_res50, weights random, short side 64, long side 128)" in cap.out
    # stderr is not a terminal here: plain progress lines and the CPU time estimate
    assert "expected time on cpu: about" in cap.err and "7/7 images (100%)" in cap.err
    feats, _ = reference
    with FeatureStore(out) as store:
        for k in KEYS:
            np.testing.assert_array_equal(store.get_item(k, np.float16), feats[k])
    assert main(["features", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 7 and info["kind"] == "grid" and info["grid_layout"] == "hwc"
    assert main(args[:-4] + ["--preset", "nope"]) == 2
    assert "--preset 'nope': choose one of captioning, pretrain, vqa" in capsys.readouterr().err


def test_navigation_stores_still_readable(tmp_path):
    """A store written before kinds existed (no ``kind`` attribute) reads as a panorama store."""
    path = tmp_path / "old.h5"
    rng = np.random.default_rng(1)
    data = {f"scanA_vp{i}": rng.normal(size=(36, 8)).astype(np.float16) for i in range(3)}
    with h5py.File(path, "w") as f:
        f.attrs.update({"encoder": "clip_res50", "weights": "random", "dim": 8, "version": 1, "dtype": "float16"})
        for k, v in data.items():
            f.create_dataset(k, data=v)
    with FeatureStore(path) as store:
        assert store.kind == "pano" and store.dim == 8 and store.grid_layout is None
        np.testing.assert_array_equal(store.get("scanA", "vp1"), data["scanA_vp1"].astype(np.float32))
        batch = store.get_many(["scanA_vp2", "scanA_vp0"])
        assert batch.features.shape == (2, 36, 8) and batch.mask.all()
        np.testing.assert_array_equal(batch.features[0], data["scanA_vp2"].astype(np.float32))
        store.require(kind="pano", encoder="clip_res50")
        with pytest.raises(DataError, match="kind is 'pano' but 'grid'.*vln-clip features grid"):
            store.require(kind="grid")
        with pytest.raises(DataError, match="vln-clip features extract --encoder clip_vit_b32"):
            store.require(encoder="clip_vit_b32")
    with FeatureWriter(tmp_path / "new.h5", 8, {"encoder": "x"}) as w:
        w.write("scanB", "vp0", np.zeros((36, 8)))
        with pytest.raises(ValueError, match="expected \\[36, 8\\]"):
            w.write_item("img", np.zeros((2, 2, 8)))
    with pytest.raises(DataError, match="holds pano features, new ones are grid"):
        FeatureWriter(tmp_path / "new.h5", 8, {"kind": "grid", "grid_layout": "hwc"})
