"""Feature extraction end to end on a tiny world: store contents and attributes, resume after an
interrupted run, torchrun-style shards, TSV round trip and conversion, bad inputs, shared reads,
and the simulator's rendered ``state.rgb``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from helpers import write_connectivity
from vln_clip import encoders
from vln_clip.errors import DataError
from vln_clip.features.extract import ExtractConfig, run_extraction
from vln_clip.features.store import FeatureStore, journal_dir
from vln_clip.features.tsv import convert_tsv, read_tsv, write_tsv
from vln_clip.features.views import (CANONICAL_ROTATION, ViewSpec, discretized_rays, faces_to_strip,
                                     render_skybox, skybox_from_function, write_skybox)

N_PANOS = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """4 panoramas in a line, each with its own yaw and scene colours; strips and faces mixed."""
    root = tmp_path_factory.mktemp("featworld")
    conn, sky = root / "connectivity", root / "scans"
    ids = write_connectivity(conn, "scanF", [(2.0 * i, 0.0, 1.5) for i in range(N_PANOS)],
                             [(i, i + 1) for i in range(N_PANOS - 1)])
    path = conn / "scanF_connectivity.json"
    data = json.loads(path.read_text())
    for k, item in enumerate(data):
        a = 0.4 * k
        rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        rot = rz @ CANONICAL_ROTATION
        pose = np.eye(4)
        pose[:3, :3] = rot
        pose[:3, 3] = item["pose"][3], item["pose"][7], item["pose"][11]
        item["pose"] = pose.reshape(-1).tolist()

        def colour(d, k=k):
            return np.stack([(d[..., 0] + 1) * 100 + 20 * k, (d[..., 1] + 1) * 60, (d[..., 2] > 0) * 200.0], -1)

        write_skybox(sky / "scanF" / "matterport_skybox_images", ids[k], skybox_from_function(colour, 24, rot),
                     strip=k % 2 == 0)
    path.write_text(json.dumps(data))
    return conn, sky, ids


_CACHE: dict[tuple, torch.nn.Module] = {}


@pytest.fixture()
def fast_encoder(monkeypatch):
    """Build each random encoder once for the module (construction dominates a tiny run)."""
    real = encoders.load_encoder

    def cached(name, weights=None, random_weights=False, device=None, l2_normalize=False):
        key = (name, weights, random_weights)
        if key not in _CACHE:
            torch.manual_seed(0)
            _CACHE[key] = real(name, weights=weights, random_weights=random_weights, device=device)
        enc = _CACHE[key]
        enc.l2_normalize = l2_normalize
        return enc

    monkeypatch.setattr(encoders, "load_encoder", cached)


def config(world, out, **kw):
    conn, sky, _ = world
    base = dict(encoder="clip_res50", skybox_dir=sky, connectivity_dir=conn, out=out, random_weights=True,
                batch_panoramas=2, image_size=32, view=ViewSpec(48, 36), face_size=None, workers=0,
                progress=False, dtype="float32")
    base.update(kw)
    return ExtractConfig(**base)


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """One uninterrupted run; the other tests compare against it."""
    torch.manual_seed(0)
    key = ("clip_res50", None, True)
    _CACHE[key] = encoders.load_encoder("clip_res50", random_weights=True)
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    real = encoders.load_encoder
    encoders.load_encoder = lambda *a, **k: _CACHE[key]
    try:
        run_extraction(config(world, out))
    finally:
        encoders.load_encoder = real
    with FeatureStore(out) as store:
        return {k: store.get(*k.split("_", 1)).copy() for k in store.keys()}, dict(store.attrs)


def test_store_has_every_viewpoint_with_metadata(world, reference):
    feats, attrs = reference
    _, _, ids = world
    assert sorted(feats) == sorted(f"scanF_{v}" for v in ids)
    for arr in feats.values():
        assert arr.shape == (36, 1024) and np.isfinite(arr).all()
    assert attrs["encoder"] == "clip_res50" and attrs["weights"] == "random"
    assert attrs["image_size"] == 32 and attrs["bgr"] == "False" and attrs["version"] == 1
    # Different views of one panorama differ (the scene is not uniform) ...
    a = feats[f"scanF_{ids[0]}"]
    assert np.abs(a[12] - a[30]).max() > 1e-4


def test_features_equal_a_direct_encoder_pass(world, reference, fast_encoder):
    """The batched pipeline computes exactly: render 36 views, resize+crop, encode."""
    import torch.nn.functional as F

    from vln_clip.features.views import load_skybox

    conn, sky, ids = world
    feats, _ = reference
    rot = json.loads((conn / "scanF_connectivity.json").read_text())[1]["pose"]
    rot = torch.tensor(np.asarray(rot).reshape(4, 4)[:3, :3], dtype=torch.float32)[None]
    faces = torch.from_numpy(load_skybox(sky, "scanF", ids[1])).permute(0, 3, 1, 2)[None]
    views = render_skybox(faces_to_strip(faces).float(), rot, discretized_rays(ViewSpec(48, 36)))[0]
    x = F.interpolate(views, size=(32, 42), mode="bicubic", antialias=True, align_corners=False)
    x = (x[..., :, 5:37] / 255).clamp(0, 1)
    enc = encoders.load_encoder("clip_res50", random_weights=True)
    with torch.no_grad():
        direct = enc(x, grid=False)["pooled"].numpy()
    assert np.allclose(feats[f"scanF_{ids[1]}"], direct, atol=1e-4)


def test_resume_after_interruption_gives_the_same_store(world, reference, tmp_path, fast_encoder):
    out = tmp_path / "f.h5"
    calls = []

    def crash(n):
        calls.append(n)
        if n >= 2:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        run_extraction(config(world, out), on_batch=crash)
    assert not out.exists()  # no half store
    parts = list(journal_dir(out).glob("part-*.npz"))
    assert len(parts) == 1  # the finished batch survived
    with pytest.raises(DataError, match="bgr"):  # resuming with other settings is refused
        run_extraction(config(world, out, bgr=True))
    done = []
    run_extraction(config(world, out), on_batch=done.append)
    assert done == [2]  # only the remaining 2 panoramas were extracted
    assert not journal_dir(out).exists()
    feats, _ = reference
    with FeatureStore(out) as store:
        assert sorted(store.keys()) == sorted(feats)
        for k in store.keys():
            assert np.allclose(store.get(*k.split("_", 1)), feats[k], atol=1e-4)
    again = []
    run_extraction(config(world, out), on_batch=again.append)  # everything done: nothing to do
    assert again == []


def test_torchrun_shards_merge_to_the_same_store(world, reference, tmp_path, monkeypatch, fast_encoder):
    out = tmp_path / "sharded.h5"
    seen = {}
    for rank in (1, 0):  # rank 1 finishes first; rank 0 waits for it and builds the store
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        counts = []
        run_extraction(config(world, out), on_batch=counts.append)
        seen[rank] = counts[-1]
        assert out.exists() == (rank == 0)
    assert seen == {0: 2, 1: 2}
    feats, _ = reference
    with FeatureStore(out) as store:
        assert sorted(store.keys()) == sorted(feats)
        for k in store.keys():
            assert np.allclose(store.get(*k.split("_", 1)), feats[k], atol=1e-4)


def test_bgr_option_swaps_channels(world, reference, tmp_path, fast_encoder):
    out = tmp_path / "bgr.h5"
    run_extraction(config(world, out, bgr=True, limit=1))
    feats, _ = reference
    with FeatureStore(out) as store:
        assert store.bgr and len(store) == 1
        key = store.keys()[0]
        assert not np.allclose(store.get(*key.split("_", 1)), feats[key], atol=1e-4)


def test_missing_faces_fail_before_any_model_work(world, tmp_path, fast_encoder):
    conn, sky, ids = world
    import shutil

    sky2 = tmp_path / "scans"
    shutil.copytree(sky, sky2)
    folder = sky2 / "scanF" / "matterport_skybox_images"
    (folder / f"{ids[1]}_skybox4_sami.jpg").unlink()
    with pytest.raises(DataError, match=f"{ids[1]}_skybox4_sami.jpg"):
        run_extraction(config(world, tmp_path / "x.h5", skybox_dir=sky2))
    assert not journal_dir(tmp_path / "x.h5").exists()  # nothing started, nothing left behind
    with pytest.raises(DataError, match="clip_res50, clip_res101"):
        run_extraction(config(world, tmp_path / "x.h5", encoder="clip_rn50"))


def test_tsv_round_trip_and_convert(tmp_path):
    rng = np.random.default_rng(0)
    rows = [("scanA", f"vp{i}", rng.standard_normal((36, 512)).astype(np.float32)) for i in range(3)]
    tsv = tmp_path / "feats.tsv"
    assert write_tsv(tsv, rows) == 3
    back = list(read_tsv(tsv))
    assert [(r.scan, r.viewpoint, r.image_w, r.image_h, r.vfov) for r in back] == \
        [("scanA", f"vp{i}", 640, 480, 60.0) for i in range(3)]
    for r, (_, _, f) in zip(back, rows):
        assert np.array_equal(r.features, f)
    out = tmp_path / "f.h5"
    assert convert_tsv(tsv, out, encoder="clip_vit_b32", dtype="float32") == 3
    with FeatureStore(out) as store:
        assert store.encoder == "clip_vit_b32" and store.dim == 512
        assert np.array_equal(store.get("scanA", "vp2"), rows[2][2])
    with pytest.raises(DataError, match="dimension 512 but encoder clip_res50x4 produces 640"):
        convert_tsv(tsv, tmp_path / "g.h5", encoder="clip_res50x4")
    assert not (tmp_path / "g.h5").exists()


def test_tsv_bad_rows(tmp_path):
    bad = tmp_path / "bad.tsv"
    write_tsv(bad, [("s", "v", np.zeros((36, 4), np.float32))])
    line = bad.read_text().strip().split("\t")
    bad.write_text("\t".join(line[:-1] + [line[-1][:-8]]) + "\n")  # truncated features
    with pytest.raises(DataError, match="bad.tsv:1"):
        list(read_tsv(bad))
    with pytest.raises(DataError, match="dimension 4, expected 8"):
        write_tsv(bad, [("s", "v", np.zeros((36, 4), np.float32))])
        list(read_tsv(bad, dim=8))


def test_packed_reads_are_shared_memmaps(reference, tmp_path):
    from vln_clip.features.store import FeatureWriter

    feats, _ = reference
    path = tmp_path / "p.h5"
    with FeatureWriter(path, 1024, {"encoder": "clip_res50"}) as w:
        for k, v in feats.items():
            w.write(*k.split("_", 1), v)
    with FeatureStore(path) as store:
        arr, index = store.packed()
        arr2, _ = store.packed()
        assert isinstance(arr, np.memmap) and arr.filename == arr2.filename
        k = sorted(feats)[2]
        assert np.allclose(arr[index[k]], feats[k], atol=1e-2)


def test_simulator_renders_bgr_frames_from_skyboxes(world):
    from vln_clip.envs import Simulator

    conn, sky, ids = world
    sim = Simulator()
    sim.setNavGraphPath(str(conn))
    sim.setDatasetPath(str(sky))
    sim.setCameraResolution(32, 24)
    sim.setCameraVFOV(math.radians(60))  # ViewSpec's; MatterSim's default is 0.8 rad
    sim.setDiscretizedViewingAngles(True)
    sim.setRenderingEnabled(True)
    sim.initialize()
    sim.newEpisode(["scanF"], [ids[2]], [math.pi / 2], [0.0])
    state = sim.getState()[0]
    assert state.rgb.dtype == np.uint8 and state.rgb.shape == (24, 32, 3)
    from vln_clip.features.views import load_skybox, view_rays

    rot = np.asarray(json.loads((conn / "scanF_connectivity.json").read_text())[2]["pose"]).reshape(4, 4)[:3, :3]
    faces = torch.from_numpy(load_skybox(sky, "scanF", ids[2])).permute(0, 3, 1, 2)[None]
    rgb = render_skybox(faces_to_strip(faces), torch.tensor(rot, dtype=torch.float32)[None],
                        view_rays([math.pi / 2], [0.0], ViewSpec(32, 24)))[0, 0].permute(1, 2, 0).numpy()
    assert np.array_equal(state.rgb, rgb[..., ::-1])  # BGR like MatterSim
    first = state.rgb.copy()
    sim.makeAction([0], [1.0], [0.0])
    assert not np.array_equal(sim.getState()[0].rgb, first)  # turned: new frame

    bare = Simulator()
    bare.setNavGraphPath(str(conn))
    bare.setDatasetPath(str(conn))  # no skyboxes there
    bare.setRenderingEnabled(True)
    with pytest.raises(DataError, match="matterport_skybox_images"):
        bare.initialize()


def test_cli_extract_merge_and_convert(world, reference, tmp_path, fast_encoder, capsys):
    """Also the CPU path where a DataLoader worker renders and preprocesses the views."""
    from vln_clip.cli.main import main

    conn, sky, _ = world
    out = tmp_path / "cli.h5"
    args = ["features", "extract", "--encoder", "clip_res50", "--skybox-dir", str(sky), "--connectivity",
            str(conn), "--out", str(out), "--random-weights", "--image-size", "32", "--width", "48",
            "--height", "36", "--workers", "1", "--no-progress", "--dtype", "float32", "--face-size", "0",
            "--batch-panoramas", "3"]
    assert main(args) == 0
    feats, _ = reference
    with FeatureStore(out) as store:
        assert sorted(store.keys()) == sorted(feats) and store.weights == "random"
        for k in store.keys():
            assert np.allclose(store.get(*k.split("_", 1)), feats[k], atol=1e-4)
    assert main(["features", "merge", "--out", str(out)]) == 0  # nothing pending: store unchanged
    capsys.readouterr()
    assert main(["features", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["viewpoints"] == 4 and info["scans"] == 1 and info["encoder"] == "clip_res50"
    tsv = tmp_path / "x.tsv"
    write_tsv(tsv, [("s", "v", np.zeros((36, 2048), np.float32))])
    assert main(["features", "convert", "--tsv", str(tsv), "--out", str(tmp_path / "x.h5"),
                 "--encoder", "clip_res50"]) == 2
    assert "dimension 2048 but encoder clip_res50 produces 1024" in capsys.readouterr().err


def test_mattersim_source_through_the_simulator_api(world, reference, tmp_path, monkeypatch, fast_encoder):
    """--source mattersim drives MatterSim's Python API (start heading 0 / -30 deg, turn right, look
    up every 12 views, BGR frames). Stand-in: the pure-Python Simulator, which renders the same
    frames from skyboxes, registered as ``MatterSim``."""
    import importlib.machinery
    import sys
    import types

    from vln_clip.envs import Simulator

    fake = types.ModuleType("MatterSim")
    fake.__spec__ = importlib.machinery.ModuleSpec("MatterSim", None)
    fake.Simulator = Simulator
    monkeypatch.setitem(sys.modules, "MatterSim", fake)
    out = tmp_path / "ms.h5"
    run_extraction(config(world, out, source="mattersim", limit=2))
    feats, _ = reference
    with FeatureStore(out) as store:
        assert len(store) == 2 and store.attrs["source"] == "mattersim"
        for k in store.keys():  # frames are rounded to uint8 there: near, not bit-equal
            got, ref = store.get(*k.split("_", 1)), feats[k]
            assert np.abs(got - ref).max() < 1e-4
            assert np.abs(ref[np.r_[1:36, 0]] - ref).max() > 1e-3  # a view-order slip would show
