"""The encoder study: its plan, command log, stage markers and resumption (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vln_clip.errors import DataError
from vln_clip.study.run import StudyConfig, plan, run_study


def _world(tmp: Path) -> Path:
    w = tmp / "world"
    w.mkdir()
    (w / "world.json").write_text("{}")
    return w


class FakeRunner:
    """Stands in for the child `vln-clip` processes: records calls, prints a JSON line."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv: list[str], log: Path) -> int:
        self.calls.append(argv)
        log.write_text("working...\n" + json.dumps({"probe_room": 0.5, "objective": argv[3] if len(argv) > 3 else "x"}) + "\n")
        return 1 if self.fail and self.fail in " ".join(argv) else 0


def test_plan_covers_every_arm_and_task(tmp_path: Path):
    cfg = StudyConfig(world=str(_world(tmp_path)), out=str(tmp_path / "s"), budget="test")
    names = [s.name for s in plan(cfg)]
    assert names[0] == "vl-world"
    for arm in ("contrastive", "classification", "random"):
        for stage in ("encoder", "quality", "grid", "pano", "vln-train", "vln-eval", "vqa-train", "vqa-predict",
                      "caption-train", "caption-predict"):
            assert f"{stage}-{arm}" in names
    # every downstream stage of an arm reads that arm's encoder (the comparison's whole point)
    enc = {s.name: s.argv for s in plan(cfg)}
    assert str(tmp_path / "s" / "encoders" / "random.pt") in enc["grid-random"]
    assert enc["encoder-random"][:2] == ["encoders", "init"]


def test_stages_resume_and_log_their_commands(tmp_path: Path):
    cfg = StudyConfig(world=str(_world(tmp_path)), out=str(tmp_path / "s"), budget="test", vl=str(tmp_path / "vl"),
                      arms=("contrastive", "random"), tasks=())
    first = FakeRunner()
    assert run_study(cfg, runner=first, stop_after=2) == {"stopped_before": "encoder-random"}
    assert len(first.calls) == 2
    second = FakeRunner()
    result = run_study(cfg, runner=second)
    assert [c[:2] for c in second.calls] == [["encoders", "init"], ["encoders", "quality"]]  # only what was left
    assert set(result["quality"]) == {"contrastive", "random"}
    log = (tmp_path / "s" / "commands.sh").read_text()
    assert log.count("vln-clip encoders") == 4 and "# quality-random" in log
    third = FakeRunner()
    run_study(cfg, runner=third)
    assert third.calls == []  # everything done: nothing reruns
    # a changed budget changes the commands: those stages run again
    cfg.budget = "small"
    fourth = FakeRunner()
    run_study(cfg, runner=fourth)
    assert len(fourth.calls) == 4


def test_a_failed_stage_names_itself_and_its_log(tmp_path: Path):
    cfg = StudyConfig(world=str(_world(tmp_path)), out=str(tmp_path / "s"), budget="test", vl=str(tmp_path / "vl"),
                      arms=("random",), tasks=())
    with pytest.raises(DataError, match=r"stage quality-random failed .*logs/quality-random.log"):
        run_study(cfg, runner=FakeRunner(fail="quality"))
    assert not (tmp_path / "s" / "stages" / "quality-random.json").exists()


def test_bad_configs_are_refused(tmp_path: Path):
    with pytest.raises(DataError, match="not a synthetic world"):
        run_study(StudyConfig(world=str(tmp_path), out=str(tmp_path / "s")))
    with pytest.raises(DataError, match="unknown arm"):
        run_study(StudyConfig(world=str(_world(tmp_path)), out=str(tmp_path / "s"), arms=("imagenet",)))
