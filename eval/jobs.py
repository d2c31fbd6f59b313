"""Scoring and exporting trajectories: the load -> validate -> score (or export) sequence.

``vln-clip eval`` and ``vln-clip submit`` are the same job with two endings, so it lives here
once and both commands (and scripts, and tests) call it with a typed config:

1. resolve the split and the connectivity (:mod:`vln_clip.eval.inputs`), read the split's
   episodes and check the split itself, so a broken split is blamed on the split;
2. get the trajectories from exactly one source (:class:`TrajectorySource`): a predictions
   file, a baseline agent (:mod:`vln_clip.agents.baselines`) or a follower checkpoint
   (:func:`vln_clip.agents.inference.predict_trajectories` with the store it was trained with);
3. validate them as a leaderboard would (:func:`vln_clip.eval.validation.validate_predictions`);
4. :func:`evaluate` scores them with the official metrics (and writes a report), while
   :func:`submit` writes them in the leaderboard's format (or, with ``check``, stops there).

Every problem is a :class:`~vln_clip.errors.DataError` raised before minutes of decoding
where it can be (a missing ``--out``, a test split given to ``evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vln_clip.agents.baselines import AGENTS, NEEDS_GOAL, run_baseline
from vln_clip.agents.inference import predict_trajectories
from vln_clip.episodes import Episode, file_format, read_episodes
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore

from .formats import Prediction, paths_of, predictions_from_dicts, read_predictions, write_predictions
from .inputs import check_split, follower_store, resolve_connectivity, resolve_split
from .metrics import EvalResult, score_paths
from .report import check_report_dir, write_report
from .validation import validate_predictions


@dataclass
class SplitSource:
    """Which split and graphs: ``split_file``, or ``split`` (a name or file) under ``data_dir``."""

    split_file: str | None = None
    split: str | None = None
    dataset: str = "r2r"  # for a split name: r2r, r4r or rxr
    data_dir: str | None = None  # default $VLN_CLIP_DATA or ./data
    connectivity: str | None = None  # default DATA/connectivity (or DATA/matterport/connectivity)
    languages: list[str] | None = None  # RxR: keep these base languages


@dataclass
class TrajectorySource:
    """Where trajectories come from: exactly one of ``predictions``, ``agent``, ``checkpoint``."""

    predictions: str | None = None  # R2R or RxR predictions file
    agent: str | None = None  # a baseline of vln_clip.agents.baselines.AGENTS
    checkpoint: str | None = None  # a follower (or back-translation) checkpoint
    features: str | None = None  # the checkpoint's store (default: the one it trained with)
    batch_size: int = 64
    seed: int = 0  # the random agent's

    def check(self) -> None:
        given = [x for x in (self.predictions, self.agent, self.checkpoint) if x]
        if len(given) != 1:
            raise DataError("give exactly one of PREDS (a predictions file), --agent NAME or --checkpoint CKPT")
        if self.agent and self.agent not in AGENTS:
            raise DataError(f"unknown baseline agent {self.agent!r}; choose one of {', '.join(AGENTS)}")

    @property
    def name(self) -> str:
        """How reports and errors name the source."""
        if self.predictions:
            return str(self.predictions)
        return f"{self.agent} agent" if self.agent else f"checkpoint {self.checkpoint}"


@dataclass
class EvalConfig:
    """One ``vln-clip eval``: score a source's trajectories on a split with goals."""

    split: SplitSource = field(default_factory=SplitSource)
    source: TrajectorySource = field(default_factory=TrajectorySource)
    limit: int | None = None  # only the first N instructions of the split
    allow_missing: bool = False  # score only the instructions the predictions file has
    out: str | None = None  # write an agent's / checkpoint's predictions (RxR format for .jsonl[.gz])
    report: str | None = None  # episodes.csv, summary.json and plots


@dataclass
class Evaluation:
    """What :func:`evaluate` scored: the per-episode result, its summary and where it came from."""

    result: EvalResult
    summary: dict[str, Any]
    source: str
    split: Path
    predictions: list[Prediction]
    report_files: dict[str, Path] = field(default_factory=dict)


@dataclass
class SubmitConfig:
    """One ``vln-clip submit``: validate a source's trajectories and export them (or only check)."""

    split: SplitSource = field(default_factory=SplitSource)
    source: TrajectorySource = field(default_factory=TrajectorySource)
    check: bool = False  # only validate (source.predictions is the file to check)
    out: str | None = None  # the submission file (required unless check)
    format: str | None = None  # r2r | rxr; default rxr for .jsonl(.gz) splits


@dataclass
class SubmitResult:
    source: str
    split: Path
    episodes: int
    predictions: list[Prediction]  # in split order
    out: Path | None = None
    format: str | None = None


@dataclass
class _Split:
    path: Path
    connectivity: Path
    graphs: GraphStore
    episodes: list[Episode]


def _load_split(spec: SplitSource, limit: int | None = None) -> _Split:
    path = resolve_split(spec.split_file, spec.split, spec.dataset, spec.data_dir)
    connectivity = resolve_connectivity(spec.connectivity, spec.data_dir)
    graphs = GraphStore(connectivity)
    episodes = read_episodes(path, spec.languages)
    if not episodes:
        raise DataError(f"{path}: no episodes (after the --languages filter)")
    if limit is not None:
        episodes = episodes[:limit]
    check_split(episodes, graphs, path)
    return _Split(path, connectivity, graphs, episodes)


def drop_filtered_languages(preds: list[Prediction], split: Path, episodes: list[Episode],
                            languages: list[str] | None) -> list[Prediction]:
    """With a languages filter, ignore predictions for the split's instructions in other languages.

    Ids that are in no language of the split stay, so validation still reports them as unknown.
    """
    if not languages:
        return preds
    everything = {ep.instr_id for ep in read_episodes(split)}
    kept = {ep.instr_id for ep in episodes}
    return [p for p in preds if p.instr_id in kept or p.instr_id not in everything]


def _run_source(source: TrajectorySource, split: _Split, baseline_features: str | None) -> list[Prediction]:
    """The trajectories of an agent or a checkpoint on the split's episodes."""
    if source.agent:
        rows = run_baseline(source.agent, split.episodes, split.connectivity, features=baseline_features,
                            batch_size=source.batch_size, seed=source.seed)
    else:
        assert source.checkpoint is not None
        store = follower_store(source.checkpoint, source.features)
        rows = predict_trajectories(source.checkpoint, split.path, split.connectivity,
                                    features=str(store) if store else None, batch_size=source.batch_size)
    return predictions_from_dicts(rows, source.name)


def evaluate(config: EvalConfig) -> Evaluation:
    """Load, validate and score ``config.source``'s trajectories on a split with goals."""
    src = config.source
    src.check()
    if src.checkpoint and config.limit is not None:
        raise DataError("--limit is not supported with --checkpoint; use a smaller split file")
    if config.report:
        check_report_dir(config.report)
    split = _load_split(config.split, config.limit)
    episodes = split.episodes
    if not all(ep.has_goal for ep in episodes):
        raise DataError(f"{split.path}: this split has no goals (a test split), so it cannot be scored; "
                        "use `vln-clip submit --check` to validate predictions for it")
    if src.predictions:
        preds = drop_filtered_languages(read_predictions(src.predictions), split.path, episodes,
                                        config.split.languages)
        if config.limit is not None:  # the file covers the whole split; keep the first N
            wanted = {ep.instr_id for ep in episodes}
            preds = [p for p in preds if p.instr_id in wanted]
        if config.allow_missing:
            present = {p.instr_id for p in preds}
            episodes = [ep for ep in episodes if ep.instr_id in present]
            if not episodes:
                raise DataError(f"{src.name}: none of the predicted instr_ids is in {split.path}")
    else:
        preds = _run_source(src, split, baseline_features=src.features)
        if src.checkpoint:  # a single-language RxR follower predicts only its language
            predicted = {p.instr_id for p in preds}
            langs = {ep.language for ep in episodes if ep.instr_id in predicted}
            episodes = [ep for ep in episodes if ep.language in langs]
        if config.out:
            write_predictions(config.out, preds, file_format(config.out))
    validate_predictions(preds, episodes, split.graphs, source=src.name)
    result = score_paths(paths_of(preds), episodes, split.graphs, require_all=True)
    files = write_report(config.report, result) if config.report else {}
    return Evaluation(result, result.summary(), src.name, split.path, preds, files)


def submit(config: SubmitConfig) -> SubmitResult:
    """Load and validate ``config.source``'s trajectories; write the submission unless ``check``."""
    src = config.source
    src.check()
    if config.check and not src.predictions:
        raise DataError("--check validates a predictions file: give it as the file to check")
    if src.agent in NEEDS_GOAL:
        raise DataError(f"the {src.agent} agent needs goals, which test splits do not have; "
                        f"use one of {', '.join(a for a in AGENTS if a not in NEEDS_GOAL)}")
    split = _load_split(config.split)
    if not config.check and not config.out:  # fail before minutes of decoding, not after
        raise DataError("--out FILE is required to export a submission (or use --check PREDS to only validate)")
    if src.predictions:
        preds = drop_filtered_languages(read_predictions(src.predictions), split.path, split.episodes,
                                        config.split.languages)
    else:
        preds = _run_source(src, split, baseline_features=None)
    validate_predictions(preds, split.episodes, split.graphs, source=src.name)
    if config.check:
        return SubmitResult(src.name, split.path, len(split.episodes), preds)
    fmt = config.format or file_format(split.path)
    order = {ep.instr_id: n for n, ep in enumerate(split.episodes)}
    preds = sorted(preds, key=lambda p: order[p.instr_id])
    assert config.out is not None
    write_predictions(config.out, preds, fmt)
    return SubmitResult(src.name, split.path, len(split.episodes), preds, Path(config.out), fmt)
