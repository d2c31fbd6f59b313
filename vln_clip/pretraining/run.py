"""Entry points: :func:`pretrain` and :func:`finetune` (what ``vln-clip pretrain/finetune`` call).

Presets (:data:`PRESETS`): ``paper`` is the appendix's recipe (BERT-base, 384/640 images,
batch 512, 20 epochs; fine-tuning AdamW 5e-5 + SGD 1e-3); ``cpu`` shrinks everything to what
a 2-core machine trains in minutes (128/192 images, a 2-layer 128-wide transformer, batch 16,
5x the paper's transformer learning rates, backbone SGD rates scaled down with the batch) and says
so in every output (the config is saved with the run).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from vln_clip.datasets.results import write_gqa_predictions, write_vqa_results
from vln_clip.io import write_json
from vln_clip.train import FitResult, LoopConfig, fit, load_checkpoint
from vln_clip.train.distributed import current as dist_info

from .tasks import FinetuneConfig, FinetuneTask, ModelSetup, PretrainConfig, PretrainTask

# Per preset: ModelSetup fields, then task-config fields. Explicit options override both.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {"model": {}, "pretrain": {}, "finetune": {}},
    "cpu": {
        "model": dict(transformer="tiny", short_side=128, long_side=192, cache_images=True, dropout=0.1,
                      vocab_size=1000),
        # tiny models and a few thousand updates: 5x the paper's AdamW rates for the transformer.
        # The backbone's SGD rates are the paper's scaled linearly from batch 512 to 16, times 3
        # (pre-training 3e-3 -> 3e-4, fine-tuning 1e-3 -> 1e-4): at the 1.5e-2 used before, the
        # followed cell std grew 450x in 250 updates (docs/pretraining.md, round 4).
        "pretrain": dict(batch_size=16, eval_batch_size=32, eval_examples=256, epochs=4, qa_from_epoch=2,
                         patches=16, backbone_decay_epochs=(3,),
                         transformer_optim=dataclasses.replace(PretrainConfig().transformer_optim, lr=5e-4),
                         backbone_optim=dataclasses.replace(PretrainConfig().backbone_optim, lr=3e-4)),
        "finetune": dict(batch_size=16, eval_batch_size=32,
                         transformer_optim=dataclasses.replace(FinetuneConfig().transformer_optim, lr=2.5e-4),
                         backbone_optim=dataclasses.replace(FinetuneConfig().backbone_optim, lr=1e-4)),
    },
}
# Fine-tuning length per preset and task: (epochs, backbone decay epochs). ``paper`` is the
# appendix's. ``cpu`` is what the synthetic world's few thousand questions need at batch 16 to
# stop under-training: at 3 epochs every GQA model stayed at the answer prior on the
# existence and left/right questions even on its training set, and scratch rose from 56.4 to
# 62.4 on val with 15 (docs/pretraining.md, round 10); SNLI-VE's 8 are rounds 4-10's.
FINETUNE_SCHEDULE: dict[str, dict[str, tuple[int, tuple[int, ...]]]] = {
    "paper": {"vqa": (5, (3,)), "gqa": (5, (3,)), "snli-ve": (2, (1,))},
    "cpu": {"vqa": (15, (12,)), "gqa": (15, (12,)), "snli-ve": (8, (6,))},
}


def _with(obj: Any, values: dict[str, Any]) -> Any:
    return dataclasses.replace(obj, **{k: v for k, v in values.items() if v is not None})


def pretrain_config(preset: str = "paper", model: dict[str, Any] | None = None, **task: Any) -> PretrainConfig:
    """A :class:`PretrainConfig` from a preset plus explicit overrides (None = keep the preset's)."""
    p = PRESETS[preset]
    setup = _with(_with(ModelSetup(), p["model"]), model or {})
    return _with(_with(PretrainConfig(model=setup), p["pretrain"]), task)


def finetune_config(task_name: str, preset: str = "paper", model: dict[str, Any] | None = None,
                    **task: Any) -> FinetuneConfig:
    p = PRESETS[preset]
    setup = _with(_with(ModelSetup(), p["model"]), model or {})
    epochs, decay = FINETUNE_SCHEDULE[preset][task_name]
    base = FinetuneConfig(task=task_name, model=setup, epochs=epochs, backbone_decay_epochs=decay)
    if preset != "paper":
        base = _with(base, p["finetune"])
    return _with(base, task)


def pretrain(config: PretrainConfig, loop: LoopConfig) -> FitResult:
    """Pre-train (from scratch, or continuing ``config.init``); writes ``OUT/{last,best}.pt``,
    ``OUT/vocab.txt``, ``OUT/tb``, ``OUT/pretrain.json``."""
    loop = dataclasses.replace(loop, epochs=config.epochs, iters=None, best_metric=loop.best_metric or "val/score",
                               best_mode="max")
    t0 = time.perf_counter()
    task = PretrainTask(config)  # with --init, its config holds the checkpoint's model
    result = fit(task, loop)
    if dist_info().is_main:
        extra = {"qa_head": task.qa_head_report} if task.qa_head_report is not None else {}
        write_json(Path(loop.out_dir) / "pretrain.json",
                   {"config": task.config.to_dict(), "backbone": task.model_setup.backbone.label(), **extra,
                    "step": result.step, "metrics": result.metrics, "best_score": result.best_score,
                    "wall_s_this_call": time.perf_counter() - t0, "interrupted": result.interrupted,
                    "torch_threads": torch.get_num_threads()}, indent=1)
    return result


def write_predictions(task: FinetuneTask, out_dir: Path, reuse_latest: bool = False) -> dict[str, dict[str, float]]:
    """Per evaluation split: the task's prediction file and ``{split}_scores.json`` (per question).

    ``reuse_latest``: the model is the one the last evaluation scored, so its predictions stand.
    """
    summary: dict[str, dict[str, float]] = {}
    for split in task.data.evals:
        examples, preds, scores = task.latest[split] if reuse_latest and split in task.latest else task.predict(split)
        if task.config.task == "vqa":
            write_vqa_results(out_dir / f"{split}_predictions.json", {int(ex.qid): p for ex, p in zip(examples, preds)})
        elif task.config.task == "gqa":
            write_gqa_predictions(out_dir / f"{split}_predictions.json", {ex.qid: p for ex, p in zip(examples, preds)})
        else:
            write_json(out_dir / f"{split}_predictions.json",
                       [{"pairID": ex.qid, "prediction": p} for ex, p in zip(examples, preds)])
        per_q = {ex.qid: float(s) for ex, s in zip(examples, scores) if s == s}
        write_json(out_dir / f"{split}_scores.json", per_q)
        if per_q:
            summary[split] = {"accuracy": 100.0 * sum(per_q.values()) / len(per_q), "n": len(per_q)}
    return summary


def finetune(config: FinetuneConfig, loop: LoopConfig) -> dict[str, Any]:
    """Fine-tune, then predict every evaluation split with the best checkpoint.

    Writes the run (``OUT/{last,best}.pt``, ``OUT/tb``), ``OUT/<split>_predictions.json`` (VQA
    results / GQA submission / SNLI-VE pairs), ``OUT/<split>_scores.json`` and
    ``OUT/finetune.json`` (config, metrics, wall time). Returns the latter's content.
    """
    metric = f"{config.eval_splits[0]}/accuracy"
    loop = dataclasses.replace(loop, epochs=config.epochs, iters=None, best_metric=loop.best_metric or metric,
                               best_mode="max")
    t0 = time.perf_counter()
    task = FinetuneTask(config)
    result = fit(task, loop)
    summary: dict[str, Any] = {"task": config.task, "init": config.init, "step": result.step,
                               "metrics": result.metrics, "best_score": result.best_score,
                               "interrupted": result.interrupted}
    if task.qa_head_report is not None:
        summary["qa_head"] = task.qa_head_report  # answers whose output row came from the pre-training QA head
    if dist_info().is_main and not result.interrupted:
        best = result.best_checkpoint or result.last_checkpoint
        ckpt = load_checkpoint(best, "cpu")
        same = int(ckpt["step"]) == result.step and bool(task.latest)  # best = the final, just-evaluated model
        if not same:
            task.model.load_state_dict(ckpt["models"]["model"])
        task.model.eval()
        with torch.no_grad():
            summary["predictions"] = write_predictions(task, Path(loop.out_dir), reuse_latest=same)
        summary["predicted_with"] = str(best)
    summary["wall_s_this_call"] = time.perf_counter() - t0
    summary["config"] = task.config.to_dict()
    summary["backbone"] = task.model_setup.backbone.label()
    if dist_info().is_main:
        write_json(Path(loop.out_dir) / "finetune.json", summary, indent=1)
    return summary
