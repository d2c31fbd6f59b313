"""Every bad input of issue 16 ends in one clear message (file, field, fix), never a traceback."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import line_split, write_connectivity, write_r2r

from vln_clip.cli.main import main
from vln_clip.episodes import read_r2r
from vln_clip.errors import DataError, MissingResourceError, StorageError
from vln_clip.eval.formats import Prediction, read_predictions, write_r2r as write_preds
from vln_clip.graph import GraphStore, load_graph
from vln_clip.io import atomic_path, remove_stale_temps, require_free_space, write_json


@pytest.fixture()
def world(tmp_path: Path) -> dict:
    conn, v, split = line_split(tmp_path)
    return {"conn": conn, "split": split, "v": v, "root": tmp_path}


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out + err


def _good_rows(v: list[str]) -> list[dict]:
    return [{"instr_id": "1_0", "trajectory": [[x, 0.0, 0.0] for x in v[:4]]},
            {"instr_id": "1_1", "trajectory": [[x, 0.0, 0.0] for x in v[:4]]},
            {"instr_id": "2_0", "trajectory": [[x, 3.14, 0.0] for x in v[5:1:-1]]}]


# ----------------------------------------------------------------------------------------
# Predictions and submissions


@pytest.mark.parametrize("step, message", [
    ("VP", "bare viewpoint"),
    (["VP"], r"expected \[viewpoint, heading, elevation\]"),
    (["VP", 0.0], r"expected \[viewpoint, heading, elevation\]"),
    (["VP", "0", 0.0], "heading '0'"),
    (["VP", True, 0.0], "heading True"),
])
def test_trajectory_steps_need_viewpoint_heading_elevation(tmp_path, step, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"instr_id": "1_0", "trajectory": [step]}]).replace('"VP"', '"a"'))
    with pytest.raises(DataError, match=message):
        read_predictions(path)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_headings_are_refused_in_lists_and_lines(tmp_path, value):
    path = tmp_path / "p.json"
    path.write_text(f'[{{"instr_id": "1_0", "trajectory": [["a", {value}, 0.0]]}}]')
    with pytest.raises(DataError, match=f"{value.lstrip('-')}.*finite"):
        read_predictions(path)
    lines = tmp_path / "p.jsonl"
    lines.write_text(f'{{"instr_id": "1_0", "trajectory": [["a", 0.0, {value}]]}}\n')
    with pytest.raises(DataError, match=r"p.jsonl:1: .*finite"):
        read_predictions(lines)
    with pytest.raises(DataError, match="only finite angles"):  # and never written
        write_preds(tmp_path / "out.json", [Prediction("1_0", (("a", float("nan"), 0.0),))])
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("text, kind", [("null", "null"), ('{"preds": []}', "an object"), ("3", "a number"),
                                        ('"x"', "a string"), ("true", "a boolean")])
def test_top_level_must_be_a_list(tmp_path, text, kind):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(DataError, match=fr"the top level is {kind} \(in JSON's terms\), not a list of predictions"):
        read_predictions(path)


def test_a_single_jsonl_line_still_reads(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"instruction_id": 7, "path": ["a", "b"]}\n')
    assert read_predictions(path)[0].path == ["a", "b"]


def test_submit_check_rejects_bare_viewpoints(world, capsys, tmp_path):
    rows = _good_rows(world["v"])
    rows[0]["trajectory"] = [x for x, _, _ in rows[0]["trajectory"]]
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(rows))
    rc, text = _run(capsys, ["submit", "--check", str(preds), "--split-file", str(world["split"]),
                             "--connectivity", str(world["conn"])])
    assert rc == 2 and "bare viewpoint" in text and "Traceback" not in text


# ----------------------------------------------------------------------------------------
# Split files and graphs


def test_duplicate_path_id_names_both_entries(tmp_path):
    split = write_r2r(tmp_path / "R2R_x.json", [
        {"path_id": 5, "scan": "s", "path": ["a", "b"], "heading": 0, "instructions": ["x"]},
        {"path_id": 5, "scan": "s", "path": ["a", "c"], "heading": 0, "instructions": ["y"]},
    ])
    with pytest.raises(DataError, match=r"entry 1 \(path_id 5\) repeats the path_id of entry 0"):
        read_r2r(split)


def test_unknown_scan_blames_the_split_not_the_predictions(world, capsys, tmp_path):
    items = json.loads(world["split"].read_text())
    items[1]["scan"] = "noSuchScan"
    split = write_r2r(tmp_path / "R2R_bad.json", items)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(_good_rows(world["v"])))
    rc, text = _run(capsys, ["eval", str(preds), "--split-file", str(split), "--connectivity", str(world["conn"])])
    assert rc == 2
    assert f"{split}: instr_id 2_0: unknown scan 'noSuchScan'" in text
    assert "problem(s) in the predictions" not in text


def test_asymmetric_unobstructed_is_refused(tmp_path):
    ids = write_connectivity(tmp_path, "oneWay", [(0, 0, 1.5), (0, 2, 1.5), (0, 4, 1.5)], [(0, 1)])
    path = tmp_path / "oneWay_connectivity.json"
    data = json.loads(path.read_text())
    data[1]["unobstructed"][2] = True  # 1 -> 2 but not 2 -> 1
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"{ids[1]} -> {ids[2]} is unobstructed but {ids[2]} -> {ids[1]} is not"):
        load_graph(path, use_cache=False)


# ----------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("argv, flag", [
    (["eval", "--agent", "stop", "--split", "x", "--limit", "-3"], "--limit"),
    (["eval", "--agent", "stop", "--split", "x", "--batch-size", "0"], "--batch-size"),
    (["submit", "--agent", "stop", "--split", "x", "--batch-size", "0"], "--batch-size"),
    (["rollout", "--split", "x", "--max-steps", "-1"], "--max-steps"),
    (["train", "--out", "x", "--iters", "-5"], "--iters"),
    (["train", "--out", "x", "--batch-size", "0"], "--batch-size"),
    (["demo", "--iters", "-1"], "--iters"),
])
def test_negative_and_zero_counts_are_usage_errors(capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert f"argument {flag}" in err and ("must be" in err) and "Traceback" not in err


def test_eval_report_onto_an_existing_file(world, capsys, tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("keep me")
    rc, text = _run(capsys, ["eval", "--agent", "stop", "--split-file", str(world["split"]), "--connectivity",
                             str(world["conn"]), "--report", str(report)])
    assert rc == 2 and "is an existing file" in text and report.read_text() == "keep me"


# Counts that are slice bounds: a negative one used to mean "all but the last N" (the `eval
# --limit -3` mistake again), zero an empty output that only failed later.


@pytest.mark.parametrize("extra, message", [
    (["--limit", "-1"], "--limit -1: must be a positive integer"),
    (["--limit", "0"], "--limit 0: must be a positive integer"),
    (["--image-size", "-5"], "--image-size -5: must be a positive integer"),
    (["--workers", "-1"], "--workers -1: must be an integer >= 0"),
    (["--face-size", "-1"], "--face-size -1: must be an integer >= 0"),
    (["--width", "0"], r"view width 0 \(--width\): must be a positive number of pixels"),
    (["--vfov", "0"], r"view VFOV 0.0 degrees \(--vfov\): must be between 0 and 180"),
])
def test_feature_extraction_counts_are_checked_before_any_work(world, capsys, tmp_path, extra, message):
    import re

    out = tmp_path / "f.h5"
    rc, text = _run(capsys, ["features", "extract", "--encoder", "clip_vit_b32", "--random-weights",
                             "--skybox-dir", str(tmp_path), "--connectivity", str(world["conn"]),
                             "--out", str(out), "--no-progress", *extra])
    assert rc == 2 and re.search(message, text) and "Traceback" not in text
    assert not any(p.name.startswith("f.h5") for p in tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("extra, message", [
    (["--limit", "-1"], "--limit -1: must be a positive integer"),
    (["--workers", "-2"], "--workers -2: must be an integer >= 0"),
    (["--short-side", "0"], "--short-side 0: must be a positive number of pixels"),
    (["--short-side", "-8"], "--short-side -8: must be a positive number of pixels"),
    (["--long-side", "-1"], "--long-side -1: must be a positive number of pixels (--long-side 0 means no cap)"),
])
def test_grid_extraction_counts_are_checked(capsys, tmp_path, extra, message):
    rc, text = _run(capsys, ["features", "grid", "--encoder", "clip_vit_b32", "--random-weights", "--images",
                             str(tmp_path), "--out", str(tmp_path / "g.h5"), "--no-progress", *extra])
    assert rc in (1, 2) and message in text
    assert not (tmp_path / "g.h5").exists()


@pytest.mark.parametrize("extra, message", [
    (["--per-scan", "-2"], "--per-scan -2: must be a positive integer"),
    (["--per-scan", "0"], "--per-scan 0: must be a positive integer"),
    (["--min-edges", "5", "--max-edges", "2"], "--min-edges 5 --max-edges 2: the range is empty"),
    (["--min-edges", "-1"], "--min-edges -1: a path needs at least 1 edge"),
    (["--min-distance", "-3"], "--min-distance -3.0: must be zero or more metres"),
])
def test_aug_paths_options(world, capsys, tmp_path, extra, message):
    out = tmp_path / "aug.json"
    rc, text = _run(capsys, ["data", "aug-paths", "--connectivity", str(world["conn"]), "--scans-from",
                             str(world["split"]), "--out", str(out), *extra])
    assert rc == 2 and message in text and not out.exists()


@pytest.mark.parametrize("option, value, message", [
    ("paths_per_house", -3, "--paths-per-house -3: must be a positive integer"),
    ("paths_per_house", 0, "--paths-per-house 0: must be a positive integer"),
    ("val_seen_per_house", -1, "--val-seen-per-house -1: must be a positive integer"),
    ("rxr_paths_per_house", 0, "--rxr-paths-per-house 0: must be a positive integer"),
    ("min_distance", -1.0, "--min-distance -1.0: must be zero or more metres"),
    ("jpeg_quality", 500, "--jpeg-quality 500: must be between 1 and 100"),
])
def test_synthetic_world_options(tmp_path, option, value, message):
    from vln_clip.synth import generate_world

    with pytest.raises(DataError, match=message):
        generate_world(tmp_path / "w", houses=3, face_size=8, render=False, **{option: value})
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------------------
# Feature stores of another encoder or width


def _store(path: Path, encoder: str, dim: int) -> Path:
    from vln_clip.features.store import FeatureWriter

    with FeatureWriter(path, dim, {"encoder": encoder, "weights": "random"}) as w:
        w.write("lineScan", "lineScanvp0", np.zeros((36, dim), dtype=np.float32))
    return path


def test_train_encoder_must_match_the_features(tmp_path):
    from vln_clip.cli.train_checks import store_encoder

    store = _store(tmp_path / "vit.h5", "clip_vit_b32", 8)
    with pytest.raises(DataError, match="holds clip_vit_b32 features but --encoder is clip_res50"):
        store_encoder(store, "clip_res50")
    assert store_encoder(store, None) == "clip_vit_b32"  # recorded as the store's, not the default
    assert store_encoder(store, "clip_vit_b32") == "clip_vit_b32"


def _policy(tmp_path: Path, encoder: str, dim: int, features: str | None = None) -> SimpleNamespace:
    cfg = SimpleNamespace(encoder=encoder, features=features, data_dir=str(tmp_path))
    return SimpleNamespace(feature_dim=dim, config=cfg)


def test_checkpoint_store_of_another_encoder_or_width(tmp_path):
    from vln_clip.eval.inputs import follower_store

    vit = _store(tmp_path / "vit.h5", "clip_vit_b32", 8)
    with pytest.raises(DataError, match="holds clip_vit_b32 features but ckpt.pt was trained on clip_res50"):
        follower_store("ckpt.pt", vit, _policy(tmp_path, "clip_res50", 8))
    with pytest.raises(DataError, match="dimension 8 but ckpt.pt was trained on 16-d"):
        follower_store("ckpt.pt", vit, _policy(tmp_path, "clip_vit_b32", 16))
    # the default is the store the run trained with, like `rollout`
    (tmp_path / "features").mkdir()
    default = _store(tmp_path / "features" / "clip_vit_b32.h5", "clip_vit_b32", 8)
    assert follower_store("ckpt.pt", None, _policy(tmp_path, "clip_vit_b32", 8)) == default
    assert follower_store("ckpt.pt", None, _policy(tmp_path, "clip_vit_b32", 0)) is None  # vision-free


def test_resume_a_speaker_as_a_follower_and_a_store_of_another_width(tmp_path):
    from vln_clip.cli.train_checks import check_resume

    store = _store(tmp_path / "s.h5", "clip_vit_b32", 8)
    cfg = SimpleNamespace(agent="speaker", no_vision=False, features=str(store), encoder="clip_vit_b32",
                          data_dir=str(tmp_path))
    ckpt = {"extra": {"feature_dim": 8}}
    with pytest.raises(DataError, match="holds a speaker run but --agent follower was given"):
        check_resume(Path("last.pt"), ckpt, cfg, "follower")
    assert check_resume(Path("last.pt"), ckpt, cfg, None) == ["resuming the speaker run of last.pt"]
    with pytest.raises(DataError, match="dimension 8 but last.pt was trained on 16-d"):
        check_resume(Path("last.pt"), {"extra": {"feature_dim": 16}}, cfg, None)


def test_resume_with_a_store_of_another_encoder_of_the_same_width(tmp_path):
    from vln_clip.cli.train_checks import check_resume

    rn101 = _store(tmp_path / "rn101.h5", "clip_res101", 8)  # RN101 and ViT-B/32 are both 512-d
    cfg = SimpleNamespace(agent="follower", no_vision=False, features=str(rn101), encoder="clip_vit_b32",
                          data_dir=str(tmp_path))
    with pytest.raises(DataError, match="holds clip_res101 features but last.pt was trained on clip_vit_b32"):
        check_resume(Path("last.pt"), {"extra": {"feature_dim": 8}}, cfg, None)
    cfg.features = str(_store(tmp_path / "vit_pca.h5", "clip_vit_b32", 8))  # a PCA store keeps the name
    assert check_resume(Path("last.pt"), {"extra": {"feature_dim": 8}}, cfg, None) == []


def test_real_data_training_without_data_points_to_the_readme(tmp_path):
    from vln_clip.cli.train_checks import check_real_data

    with pytest.raises(MissingResourceError, match="Getting the real data") as exc:
        check_real_data("rxr", tmp_path)
    assert f"data synth --out {tmp_path}" not in str(exc.value)
    check_real_data("synthetic", tmp_path)  # nothing to check


# ----------------------------------------------------------------------------------------
# Text that reaches the terminal and the HTML report


def test_control_characters_are_shown_escaped():
    from rich.console import Console

    from vln_clip.viz.safe import printable
    from vln_clip.viz.terminal import attention_text

    raw = "walk\x1b[31m red\x00 \x07bell \u202eesrever 廊下 ok"
    shown = printable(raw)
    assert shown == "walk\\x1b[31m red\\x00 \\x07bell \\u202eesrever 廊下 ok"
    console = Console(record=True, width=200, color_system=None)
    console.print(attention_text(raw.split(" "), [0.1] * 7))
    text = console.export_text()
    assert "\x1b" not in text and "\x00" not in text and "\u202e" not in text and "\\x1b" in text


# ----------------------------------------------------------------------------------------
# Disk full, stale temporaries, permissions


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_is_a_storage_error_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "preds.json"
    with pytest.raises(StorageError, match=f"{target}: the disk is full"):
        with atomic_path(target) as tmp:
            _enospc()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr("vln_clip.io.os.replace", _enospc)
    with pytest.raises(StorageError, match="free some space or choose another output folder"):
        write_json(target, [1])
    assert list(tmp_path.iterdir()) == []


def test_eval_out_on_a_full_disk_is_one_line(world, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("vln_clip.io.os.replace", _enospc)
    out = tmp_path / "preds_out.json"
    rc, text = _run(capsys, ["eval", "--agent", "stop", "--split-file", str(world["split"]), "--connectivity",
                             str(world["conn"]), "--out", str(out), "--json"])
    assert rc == 2 and "the disk is full" in text and "Traceback" not in text and not out.exists()


def test_cli_handlers_turn_raw_enospc_into_one_line(capsys, monkeypatch):
    from vln_clip.cli.common import friendly_os_errors

    wrapped = friendly_os_errors(lambda args: _enospc())
    with pytest.raises(StorageError, match="runs/x: the disk is full"):
        wrapped(SimpleNamespace(out="runs/x"))
    h5 = RuntimeError("Can't decrement id ref count (file write failed: errno = 28, error message = 'No space')")
    with pytest.raises(StorageError):
        friendly_os_errors(lambda args: (_ for _ in ()).throw(h5))(SimpleNamespace(out="f.h5"))
    with pytest.raises(ValueError):  # anything else is not hidden
        friendly_os_errors(lambda args: (_ for _ in ()).throw(ValueError("bug")))(SimpleNamespace())


def test_stale_temporaries_and_free_space_before_a_merge(tmp_path, monkeypatch):
    from features.extract import prepare_merge

    out = tmp_path / "f.h5"
    stale = tmp_path / ".f.h5.abc123.tmp"
    stale.write_bytes(b"x" * 10)
    other = tmp_path / ".g.h5.abc123.tmp"  # another output's temporary is not touched
    other.write_bytes(b"x")
    parts = tmp_path / "f.h5.parts"
    parts.mkdir()
    (parts / "part-r000-aaaa-000001.npz").write_bytes(b"x" * 4096)
    prepare_merge(out, [parts])
    assert not stale.exists() and other.exists()
    assert remove_stale_temps(out) == []
    monkeypatch.setattr("vln_clip.io.shutil.disk_usage", lambda p: SimpleNamespace(free=1000))
    with pytest.raises(StorageError, match=r"needs about 1\.0 MiB but only 0\.0 MiB are free"):
        prepare_merge(out, [parts])
    with pytest.raises(StorageError):
        require_free_space(out, 2000)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "preds.json", [])
    finally:
        os.umask(old)
    assert (tmp_path / "preds.json").stat().st_mode & 0o777 == mode


def test_dead_rank_does_not_hang_the_merge(tmp_path):
    from features.extract import wait_for_ranks

    (tmp_path / "done-r000-of-002").write_text("3")
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"rank\(s\) 1 of 2 wrote nothing for 0 s"):
        wait_for_ranks(tmp_path, 2, poll_s=0.05, stall_s=0.2)
    assert time.perf_counter() - t0 < 5
    (tmp_path / "done-r001-of-002").write_text("3")
    wait_for_ranks(tmp_path, 2, poll_s=0.05, stall_s=0.2)  # both done: returns at once


def test_graph_cache_on_a_full_disk_is_only_slower(world, monkeypatch):
    monkeypatch.setattr("vln_clip.io.os.replace", _enospc)
    assert len(GraphStore(world["conn"], use_cache=True)["lineScan"]) == 6


def test_submit_a_baseline_for_a_split(world, capsys, tmp_path):
    out = tmp_path / "submit" / "random.json"
    rc, text = _run(capsys, ["submit", "--agent", "random", "--split-file", str(world["split"]), "--connectivity",
                             str(world["conn"]), "--out", str(out)])
    assert rc == 0, text
    rows = json.loads(out.read_text())
    assert [r["instr_id"] for r in rows] == ["1_0", "1_1", "2_0"]
    assert all(len(step) == 3 for r in rows for step in r["trajectory"])
    rc, text = _run(capsys, ["submit", "--check", str(out), "--split-file", str(world["split"]), "--connectivity",
                             str(world["conn"])])
    assert rc == 0 and "valid" in text
