"""`vln-clip study encoders` end to end on a minimal synthetic world, with the real stage commands
(issue 15): every arm and task reaches results.json / results.md / bars.png, and a study killed
in the middle of a stage continues where it stopped when the same command is rerun.

World: 3 houses (one per split) whose 90 viewpoints keep the 36-view extraction short (seed 5
makes small houses), 32 px skybox faces, 4 R2R paths per house; the V&L world has 12 images per
house at 96x64 / 64x96, enough for answers to reach VQA training's default consensus count (9).

Where the stages run: a child process per stage costs 6-8 s of imports (torch, open_clip) on this
2-core machine, 30 stages about 4 minutes before any work. The full study therefore runs the very
same stage command lines through the same entry point (``vln_clip.cli.main.main``) inside this
process (one import), which takes about a minute; the kill-and-resume test uses real child
processes (``vln-clip study encoders`` as a subprocess, then the study's own child runner) on the
random arm and VQA, and compares what it produces with the full run's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from PIL import Image

from vln_clip.cli.main import main
from vln_clip.datasets.results import read_vqa_results
from vln_clip.study.run import ARMS, PAIRS, TASKS, StudyConfig, run_study

WORLD_FLAGS = ["--houses", "3", "--seed", "5", "--face-size", "32", "--paths-per-house", "4",
               "--val-seen-per-house", "1", "--rxr-paths-per-house", "1"]
VL_FLAGS = ["--images-per-house", "12", "--sizes", "96x64,64x96"]
N_VAL = {"vln": 12, "vqa": 96, "caption": 12}  # val_unseen instructions, val questions, val images
KILL_TIMEOUT_S = 300


def in_process(argv: list[str], log: Path) -> int:
    """Run one stage's ``vln-clip`` command line in this process, its output in ``log`` (what the
    study's child runner does, without paying the imports again for each stage)."""
    with open(log, "w", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            return int(main(argv) or 0)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            return 1


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("study_e2e")
    world, vl = root / "world", root / "vl"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["data", "synth", "--out", str(world), *WORLD_FLAGS]) == 0
        assert main(["data", "synth-vl", "--world", str(world), "--out", str(vl), *VL_FLAGS]) == 0
    return world, vl


@pytest.fixture(scope="module")
def full_study(worlds: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, dict]:
    world, vl = worlds
    cfg = StudyConfig(world=str(world), out=str(tmp_path_factory.mktemp("study_full") / "s"), budget="test",
                      vl=str(vl), threads=1)
    torch.set_num_threads(1)
    stream = io.StringIO()
    try:
        result = run_study(cfg, stream=stream, runner=in_process)
    except Exception:
        print(stream.getvalue())
        raise
    return cfg, result


def test_full_study_covers_every_arm_and_task(full_study: tuple[StudyConfig, dict]):
    cfg, result = full_study
    out = Path(cfg.out)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["arms"] == list(ARMS) and set(on_disk["tasks"]) == set(TASKS)
    for task, t in on_disk["tasks"].items():
        assert set(t["arms"]) == set(ARMS)
        top = 100.0 if task in ("vln", "vqa") else 1000.0  # SR and VQA accuracy in %, CIDEr-D x100 (at most 10)
        for arm, s in t["arms"].items():
            assert s["n"] == N_VAL[task], (task, arm)
            assert 0.0 <= s["ci_low"] <= s["mean"] + 1e-9 <= s["ci_high"] + 2e-9 <= top + 2e-9, (task, arm, s)
        pairs = on_disk["paired"][task]
        assert set(pairs) == {f"{a}-{b}" for a, b in PAIRS}
        for p in pairs.values():
            assert p["n"] == N_VAL[task] and p["ci_low"] <= p["diff"] <= p["ci_high"]
            assert -top <= p["diff"] <= top
    for arm in ARMS:
        q = on_disk["quality"][arm]
        assert 0.0 <= q["probe_room"] <= 1.0
    assert 0.0 <= on_disk["quality"]["contrastive"]["zero_shot_room"] <= 1.0
    assert 0.0 <= on_disk["quality"]["classification"]["room_accuracy"] <= 1.0
    # every stage ran once, was logged before it ran and marked done with its command
    stages = sorted(p.stem for p in (out / "stages").glob("*.json"))
    assert len(stages) == 3 * 10 and set(on_disk["stage_seconds"]) == set(stages)
    commands = (out / "commands.sh").read_text()
    for name in stages:
        assert commands.count(f"# {name}\n") == 1
        assert json.loads((out / "stages" / f"{name}.json").read_text())["command"] in commands
    md = (out / "results.md").read_text()
    assert "| task | metric | contrastive | classification | random |" in md
    for task in TASKS:
        assert f"\n| {task} | " in md
    with Image.open(out / "bars.png") as im:
        assert im.format == "PNG" and im.width > 2 * im.height  # three panels side by side


def test_killed_study_resumes_and_matches_the_uninterrupted_run(
        worlds: tuple[Path, Path], full_study: tuple[StudyConfig, dict], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    world, vl = worlds
    full_cfg, full = full_study
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the children compute like this process (one thread)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "s"
    cfg = StudyConfig(world=str(world), out=str(out), budget="test", vl=str(vl), arms=("random",), tasks=("vqa",),
                      threads=1)
    argv = [sys.executable, "-m", "vln_clip.cli.main", "study", "encoders", "--world", str(world), "--vl", str(vl),
            "--out", str(out), "--budget", "test", "--arms", "random", "--tasks", "vqa", "--threads", "1"]
    last = out / "runs" / "vqa_random" / "last.pt"
    with open(tmp_path / "study.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            t0 = time.monotonic()
            # kill the whole study (it and its stage child) as soon as VQA training saved its first checkpoint
            while not last.exists() and proc.poll() is None and time.monotonic() - t0 < KILL_TIMEOUT_S:
                time.sleep(0.01)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert last.exists(), "the study ended or stalled before VQA training saved last.pt:\n" + \
        (tmp_path / "study.log").read_text()[-3000:]
    markers = out / "stages"
    done = {p.stem: p.stat().st_mtime_ns for p in markers.glob("*.json")}
    assert set(done) == {"encoder-random", "quality-random", "grid-random"}  # killed inside vqa-train-random
    assert torch.load(last, weights_only=False)["step"] < 12  # mid-training (the test budget trains 12 updates)
    store_mtime = (out / "features" / "random_grid.h5").stat().st_mtime_ns

    # rerun the same study: real child processes again (the study's own runner)
    stream = io.StringIO()
    result = run_study(cfg, stream=stream)
    for name, mtime in done.items():
        assert (markers / f"{name}.json").stat().st_mtime_ns == mtime  # finished stages were not rerun
        assert f"] {name}: done" in stream.getvalue()
    assert (out / "features" / "random_grid.h5").stat().st_mtime_ns == store_mtime
    lines = (out / "commands.sh").read_text().splitlines()
    for name in done:
        assert lines.count(f"# {name}") == 1
    train = [lines[i + 1] for i, ln in enumerate(lines) if ln == "# vqa-train-random"]
    assert len(train) == 2 and not train[0].endswith("--resume") and train[1] == train[0] + " --resume"
    assert lines.count("# vqa-predict-random") == 1

    # the resumed study's numbers are the uninterrupted (full) study's for the same arm and task
    assert result["tasks"]["vqa"]["arms"]["random"] == full["tasks"]["vqa"]["arms"]["random"]
    def scores(q: dict) -> dict:
        return {k: v for k, v in q.items() if k != "encoder"}  # the checkpoint's path differs, not its numbers

    assert scores(result["quality"]["random"]) == scores(full["quality"]["random"])
    assert read_vqa_results(out / "preds" / "vqa_random.json") == \
        read_vqa_results(Path(full_cfg.out) / "preds" / "vqa_random.json")
