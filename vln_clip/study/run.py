"""``vln-clip study encoders``: the paper's comparison of visual encoders, end to end, on one world.

Three arms share one visual architecture (a small open_clip ModifiedResNet by default):

* ``contrastive``: pre-trained with CLIP's InfoNCE on the world's (image, caption) pairs;
* ``classification``: pre-trained on the room / object labels of the same images;
* ``random``: the same network at its seeded random initialisation.

For each arm the study extracts the features every downstream model reads (36-view pooled
features of the navigation panoramas, grid features of the V&L images), trains the same
downstream models (VLN follower, VQA with MCAN, the Transformer captioner) and scores them on
the val houses, unseen in training. The summary pairs the arms on the same items (episodes,
questions, images) with bootstrap confidence intervals (:mod:`vln_clip.eval.paired`).

Why stages are commands: every stage is one ``vln-clip`` command line, run in a child
process and appended to ``OUT/commands.sh`` before it runs, so any number can be re-made by
hand, a stage's memory is returned when it ends, and resumption is the commands' own
(training resumes ``last.pt``, extraction resumes its journal). A stage is done when
``OUT/stages/<name>.json`` exists with the same command; a killed study reruns only the stage
it was in (continuing it) and the ones after it.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from vln_clip.captioning.data import image_id_of
from vln_clip.datasets.coco import karpathy_split, read_karpathy
from vln_clip.datasets.results import read_caption_results, read_vqa_results
from vln_clip.datasets.vqa import read_vqa
from vln_clip.errors import DataError
from vln_clip.eval.cider import CiderD
from vln_clip.eval.paired import mean_interval, paired_bootstrap
from vln_clip.eval.vqa_accuracy import score_items
from vln_clip.io import atomic_path, read_json, write_json

from .budgets import BUDGETS

ARMS = ("contrastive", "classification", "random")
TASKS = ("vln", "vqa", "caption")
#: pairs reported, in the paper's expected order (contrastive > classification > random)
PAIRS = (("contrastive", "classification"), ("contrastive", "random"), ("classification", "random"))


@dataclass
class StudyConfig:
    """One study: the navigation world, where to write, which budget, which arms and tasks.

    ``vl``: the synthetic V&L world of the same houses (default ``OUT/vl``, generated from
    ``world``). ``encoders``: arm -> a given encoder checkpoint (skips that arm's pre-training).
    ``threads``: torch CPU threads per stage.
    """

    world: str
    out: str
    budget: str = "small"
    vl: str | None = None
    arms: tuple[str, ...] = ARMS
    tasks: tuple[str, ...] = TASKS
    encoders: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    threads: int | None = None
    arch: str = "rn-tiny"

    def validate(self) -> None:
        if self.budget not in BUDGETS:
            raise DataError(f"--budget must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad:
            raise DataError(f"unknown arm(s) {bad}; choose from {', '.join(ARMS)}")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise DataError(f"unknown task(s) {bad}; choose from {', '.join(TASKS)}")
        world = Path(self.world)
        if not (world / "world.json").is_file():
            raise DataError(f"{world}: not a synthetic world (no world.json); make one with "
                            f"`vln-clip data synth --out {world}`")
        for arm, path in self.encoders.items():
            if not Path(path).is_file():
                raise DataError(f"--encoder-checkpoint {arm}={path}: file not found")


@dataclass
class Stage:
    """One command of the study. ``capture``: where its stdout (one JSON line) is kept."""

    name: str
    argv: list[str]
    capture: Path | None = None
    resume_file: Path | None = None  # when it exists, the command is rerun with --resume

    def command(self) -> list[str]:
        argv = list(self.argv)
        if self.resume_file is not None and self.resume_file.exists():
            argv.append("--resume")
        return argv


class Layout:
    """Where every file of a study lives."""

    def __init__(self, cfg: StudyConfig) -> None:
        self.root = Path(cfg.out)
        self.world = Path(cfg.world)
        self.vl = Path(cfg.vl) if cfg.vl else self.root / "vl"

    def encoder(self, arm: str) -> Path:
        return self.root / "encoders" / f"{arm}.pt"

    def quality(self, arm: str) -> Path:
        return self.root / "quality" / f"{arm}.json"

    def grid(self, arm: str) -> Path:
        return self.root / "features" / f"{arm}_grid.h5"

    def pano(self, arm: str) -> Path:
        return self.root / "features" / f"{arm}_pano.h5"

    def run(self, task: str, arm: str) -> Path:
        return self.root / "runs" / f"{task}_{arm}"

    def preds(self, task: str, arm: str) -> Path:
        return self.root / "preds" / f"{task}_{arm}.json"

    def vln_report(self, arm: str) -> Path:
        return self.root / "preds" / f"vln_{arm}_report"

    @property
    def stages(self) -> Path:
        return self.root / "stages"


def plan(cfg: StudyConfig) -> list[Stage]:
    """Every stage of the study, in order."""
    b = BUDGETS[cfg.budget]
    L = Layout(cfg)
    threads = ["--threads", str(cfg.threads)] if cfg.threads else []
    stages: list[Stage] = []
    if cfg.vl is None:
        stages.append(Stage("vl-world", ["data", "synth-vl", "--world", str(L.world), "--out", str(L.vl),
                                         "--seed", str(cfg.seed)]))
    for arm in cfg.arms:
        enc = L.encoder(arm)
        if arm in cfg.encoders:
            enc = Path(cfg.encoders[arm])
        elif arm == "random":
            stages.append(Stage(f"encoder-{arm}", ["encoders", "init", "--arch", cfg.arch, "--image-size",
                                                   str(b.image_size), "--seed", str(cfg.seed), "--out", str(enc)]))
        else:
            stages.append(Stage(f"encoder-{arm}", [
                "encoders", "pretrain", "--objective", arm, "--data", str(L.vl), "--out", str(enc), "--arch", cfg.arch,
                "--image-size", str(b.image_size), "--batch-size", str(b.encoder_batch), "--iters",
                str(b.encoder_iters), "--eval-every", str(max(b.eval_every, 1)), "--seed", str(cfg.seed), *threads],
                capture=L.root / "encoders" / f"{arm}_train.json", resume_file=enc.with_suffix(".run") / "last.pt"))
        stages.append(Stage(f"quality-{arm}", ["encoders", "quality", "--encoder-checkpoint", str(enc), "--data",
                                               str(L.vl), "--image-size", str(b.image_size), "--json"],
                            capture=L.quality(arm)))
        if "vqa" in cfg.tasks or "caption" in cfg.tasks:
            stages.append(Stage(f"grid-{arm}", ["features", "grid", "--encoder", str(enc), "--images",
                                                str(L.vl / "images"), "--out", str(L.grid(arm)), "--short-side",
                                                str(b.grid_short), "--long-side", str(b.grid_long)]))
        if "vln" in cfg.tasks:
            stages.append(Stage(f"pano-{arm}", ["features", "extract", "--encoder", str(enc), "--source", "skybox",
                                                "--skybox-dir", str(L.world / "scans"), "--connectivity",
                                                str(L.world / "connectivity"), "--out", str(L.pano(arm)),
                                                "--render", "crop", "--no-progress"]))
            run = L.run("vln", arm)
            stages.append(Stage(f"vln-train-{arm}", [
                "train", "--dataset", "synthetic", "--data-dir", str(L.world), "--features", str(L.pano(arm)),
                "--encoder", str(enc), "--no-rl", "--iters", str(b.vln_iters), "--batch-size", str(b.vln_batch),
                "--eval-every", str(b.eval_every), "--save-every", str(b.eval_every), "--seed", str(cfg.seed),
                "--out", str(run), "--no-progress", *threads,
                *(["--limit", str(b.vln_eval_limit)] if b.vln_eval_limit else [])], resume_file=run / "last.pt"))
            stages.append(Stage(f"vln-eval-{arm}", [
                "eval", "--checkpoint", str(run / "best.pt"), "--split", "val_unseen", "--data-dir", str(L.world),
                "--features", str(L.pano(arm)), "--out", str(L.preds("vln", arm)), "--report",
                str(L.vln_report(arm)), "--json"], capture=L.root / "preds" / f"vln_{arm}_summary.json"))
        if "vqa" in cfg.tasks:
            run = L.run("vqa", arm)
            stages.append(Stage(f"vqa-train-{arm}", [
                "vqa", "train", "--data", str(L.vl), "--features", str(L.grid(arm)), "--model", "mcan", "--preset",
                b.vqa_preset, "--iters", str(b.vqa_iters), "--eval-every", str(b.eval_every), "--seed",
                str(cfg.seed), "--out", str(run), "--progress", "plain", *threads], resume_file=run / "last.pt"))
            stages.append(Stage(f"vqa-predict-{arm}", [
                "vqa", "predict", "--checkpoint", str(run / "best.pt"), "--features", str(L.grid(arm)),
                "--questions", str(L.vl / "vqa" / "v2_OpenEnded_mscoco_val_questions.json"), "--out",
                str(L.preds("vqa", arm))]))
        if "caption" in cfg.tasks:
            run = L.run("caption", arm)
            stages.append(Stage(f"caption-train-{arm}", [
                "caption", "train", "--data", str(L.vl), "--features", str(L.grid(arm)), "--preset",
                b.caption_preset, "--iters", str(b.caption_iters), "--eval-every", str(b.eval_every),
                "--save-every", str(b.eval_every), "--seed", str(cfg.seed), "--out", str(run)],
                resume_file=run / "last.pt"))
            stages.append(Stage(f"caption-predict-{arm}", [
                "caption", "predict", "--checkpoint", str(run / "best.pt"), "--features", str(L.grid(arm)),
                "--data", str(L.vl), "--images-from", "val", "--out", str(L.preds("caption", arm))]))
    return stages


# ------------------------------------------------------------------------------------------
# Running


def _cli() -> list[str]:
    """How a child process runs ``vln-clip`` (this interpreter, so a venv is kept)."""
    return [sys.executable, "-m", "vln_clip.cli.main"]


def _marker(layout: Layout, stage: Stage) -> Path:
    return layout.stages / f"{stage.name}.json"


def stage_done(layout: Layout, stage: Stage) -> bool:
    m = _marker(layout, stage)
    if not m.is_file():
        return False
    try:
        return read_json(m, "study stage marker").get("argv") == stage.argv
    except DataError:
        return False


def run_study(cfg: StudyConfig, stream: TextIO | None = None, stop_after: int | None = None,
              runner: Callable[[list[str], Path], int] | None = None) -> dict[str, Any]:
    """Run (or continue) every stage, then summarise. ``stop_after``: return after that many
    stages have run in this call (tests of resumption). Returns the summary (``results.json``)."""
    cfg.validate()
    stream = stream or sys.stderr
    L = Layout(cfg)
    L.root.mkdir(parents=True, exist_ok=True)
    write_json(L.root / "study.json", {**asdict(cfg), "arms": list(cfg.arms), "tasks": list(cfg.tasks)}, indent=2)
    stages = plan(cfg)
    ran = 0
    for i, stage in enumerate(stages, 1):
        if stage_done(L, stage):
            print(f"[study {i}/{len(stages)}] {stage.name}: done", file=stream, flush=True)
            continue
        if stop_after is not None and ran >= stop_after:
            print(f"[study] stopping before {stage.name} (stop_after={stop_after})", file=stream, flush=True)
            return {"stopped_before": stage.name}
        argv = stage.command()
        line = "vln-clip " + " ".join(shlex.quote(a) for a in argv)
        with open(L.root / "commands.sh", "a", encoding="utf-8") as fh:
            fh.write(f"# {stage.name}\n{line}\n")
        print(f"[study {i}/{len(stages)}] {stage.name}: {line}", file=stream, flush=True)
        log = L.root / "logs" / f"{stage.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        rc = (runner or _run_child)(argv, log)
        seconds = time.time() - t0
        if rc != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-8:] if log.exists() else []
            raise DataError(f"study stage {stage.name} failed (exit {rc}); log {log}:\n  " + "\n  ".join(tail)
                            + "\nfix the cause and rerun the same `vln-clip study encoders` command to continue")
        if stage.capture is not None:
            lines = [ln for ln in log.read_text().splitlines() if ln.startswith("{")]
            if not lines:
                raise DataError(f"study stage {stage.name}: no JSON result in {log}")
            stage.capture.parent.mkdir(parents=True, exist_ok=True)
            write_json(stage.capture, json.loads(lines[-1]), indent=2)
        write_json(_marker(L, stage), {"argv": stage.argv, "command": line, "seconds": round(seconds, 1),
                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2)
        print(f"[study {i}/{len(stages)}] {stage.name}: finished in {seconds:.0f} s", file=stream, flush=True)
        ran += 1
    return summarise(cfg)


def _run_child(argv: list[str], log: Path) -> int:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.run(_cli() + argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return proc.returncode


# ------------------------------------------------------------------------------------------
# Scores per item and the summary


def vln_scores(layout: Layout, arm: str) -> dict[str, float]:
    """Success (0/1) per val-unseen instruction from the evaluation report."""
    path = layout.vln_report(arm) / "episodes.csv"
    if not path.is_file():
        raise DataError(f"{path}: missing; rerun the study to make it")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    key = "instr_id" if rows and "instr_id" in rows[0] else next(iter(rows[0]))
    return {r[key]: float(r["success"]) for r in rows}


def vqa_scores(layout: Layout, arm: str) -> dict[str, float]:
    """Official VQA accuracy (0..1) per val question."""
    items = read_vqa(layout.vl / "vqa" / "v2_OpenEnded_mscoco_val_questions.json",
                     layout.vl / "vqa" / "v2_mscoco_val_annotations.json")
    preds = read_vqa_results(layout.preds("vqa", arm))
    scores = score_items(items, preds)
    return {str(q): float(a) for q, a in zip(scores.question_ids, scores.accuracy)}


def caption_scores(layout: Layout, arm: str) -> dict[str, float]:
    """CIDEr-D per val image against its references (Karpathy tokens; document frequencies over val)."""
    images = karpathy_split(read_karpathy(layout.vl / "coco" / "dataset_coco.json"), "val")
    refs = {image_id_of(im): [" ".join(s.tokens) for s in im.sentences] for im in images}
    preds = read_caption_results(layout.preds("caption", arm))
    keys = sorted(refs)
    missing = [k for k in keys if k not in preds]
    if missing:
        raise DataError(f"{layout.preds('caption', arm)}: no caption for {len(missing)} val images (first {missing[0]})")
    vals = CiderD(refs).scores([" ".join(preds[k].lower().split()) for k in keys], keys)
    return {str(k): float(v) for k, v in zip(keys, vals)}  # x100 in the reports: the papers' CIDEr convention


SCORERS = {"vln": (vln_scores, "SR"), "vqa": (vqa_scores, "VQA accuracy"), "caption": (caption_scores, "CIDEr-D")}


def summarise(cfg: StudyConfig) -> dict[str, Any]:
    """results.json, results.md and bars.png from the finished stages."""
    L = Layout(cfg)
    results: dict[str, Any] = {"budget": cfg.budget, "arms": list(cfg.arms), "tasks": {}, "paired": {},
                               "quality": {}, "stage_seconds": {}}
    for arm in cfg.arms:
        if L.quality(arm).is_file():
            results["quality"][arm] = read_json(L.quality(arm))
    for m in sorted(L.stages.glob("*.json")):
        results["stage_seconds"][m.stem] = read_json(m).get("seconds")
    for task in cfg.tasks:
        fn, metric = SCORERS[task]
        per_arm = {arm: fn(L, arm) for arm in cfg.arms}
        results["tasks"][task] = {"metric": metric, "arms": {}}
        for arm, s in per_arm.items():
            lo, hi = mean_interval(list(s.values()))
            results["tasks"][task]["arms"][arm] = {"mean": float(np.mean(list(s.values())) * 100), "ci_low": lo,
                                                   "ci_high": hi, "n": len(s)}
        results["paired"][task] = {f"{a}-{b}": paired_bootstrap(per_arm[a], per_arm[b]).to_dict()
                                   for a, b in PAIRS if a in per_arm and b in per_arm}
    write_json(L.root / "results.json", results, indent=2)
    _write_markdown(L.root / "results.md", results)
    _plot(L.root / "bars.png", results)
    return results


def _write_markdown(path: Path, r: dict[str, Any]) -> None:
    lines = [f"# Encoder study (budget {r['budget']})", "", "| task | metric | " + " | ".join(r["arms"]) + " |",
             "|---|---|" + "---|" * len(r["arms"])]
    for task, t in r["tasks"].items():
        cells = [f"{t['arms'][a]['mean']:.2f} [{t['arms'][a]['ci_low']:.2f}, {t['arms'][a]['ci_high']:.2f}]"
                 for a in r["arms"]]
        lines.append(f"| {task} | {t['metric']} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (x100: percentage points, CIDEr-D as papers print it; 95% bootstrap CI over items):", "",
              "| task | pair | diff | 95% CI | n |", "|---|---|---|---|---|"]
    for task, pairs in r["paired"].items():
        for name, p in pairs.items():
            lines.append(f"| {task} | {name} | {p['diff']:+.2f} | [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] | {p['n']} |")
    if r["quality"]:
        lines += ["", "Encoder quality on val images:", "",
                  "| arm | probe room | probe colour | zero-shot room | label accuracy |", "|---|---|---|---|---|"]
        def cell(q: dict[str, Any], key: str) -> str:
            return f"{q[key]:.3f}" if key in q else "-"  # not defined for this arm (no text tower, no labels)

        for arm, q in r["quality"].items():
            lines.append(f"| {arm} | {cell(q, 'probe_room')} | {cell(q, 'probe_colour')} | "
                         f"{cell(q, 'zero_shot_room')} | {cell(q, 'room_accuracy')} |")
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def _plot(path: Path, r: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tasks = list(r["tasks"])
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(3.6 * max(1, len(tasks)), 3.2), squeeze=False)
    colours = {"contrastive": "#1f77b4", "classification": "#ff7f0e", "random": "#7f7f7f"}
    for ax, task in zip(axes[0], tasks):
        t = r["tasks"][task]
        arms = list(t["arms"])
        means = [t["arms"][a]["mean"] for a in arms]
        err = [[m - t["arms"][a]["ci_low"] for a, m in zip(arms, means)],
               [t["arms"][a]["ci_high"] - m for a, m in zip(arms, means)]]
        ax.bar(arms, means, yerr=err, capsize=4, color=[colours.get(a, "#999999") for a in arms])
        ax.set_title(f"{task}: {t['metric']} (val, unseen houses)", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"Encoder study, budget {r['budget']} (95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
