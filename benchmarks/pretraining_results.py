"""Blank-image ablation of fine-tuned CLIP-ViL_p runs (docs/pretraining.md).

``python benchmarks/pretraining_results.py RUN [RUN ...]`` scores each fine-tuning run's
``best.pt`` on its val split twice: with the real images, and with every image replaced by a
black one of the same size (same text, same valid grid cells). One JSON line per run: both
accuracies, the fraction of questions whose answer did not change, and how many distinct
answers each gives (a handful = one per question type). A model that reads the
image changes its answers; one that answers from the text alone does not.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from vln_clip.pretraining.tasks import FinetuneConfig, FinetuneTask
from vln_clip.train.loop import TaskContext


def blank_image_ablation(run: Path) -> dict[str, float | str | int]:
    ckpt = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
    task = FinetuneTask(FinetuneConfig.from_dict(ckpt["config"]))
    with tempfile.TemporaryDirectory() as tmp:  # setup writes the vocabulary; keep the run folder untouched
        (Path(tmp) / "vocab.txt").write_text((run / "vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
        task.setup(TaskContext(device=torch.device("cpu"), out_dir=Path(tmp), resuming=True))
    task.model.load_state_dict(ckpt["models"]["model"])
    task.model.eval()
    real_batch = task.image_batch

    def blank_batch(keys):  # type: ignore[no-untyped-def]
        images, valid = real_batch(keys)
        return torch.zeros_like(images), valid

    with torch.no_grad():
        _, p_real, s_real = task.predict("val")
        task.image_batch = blank_batch  # type: ignore[method-assign]
        _, p_blank, s_blank = task.predict("val")
    return {"run": str(run), "real": round(float(np.nanmean(s_real)) * 100, 2),
            "blank": round(float(np.nanmean(s_blank)) * 100, 2),
            "same_answer": round(float(np.mean([a == b for a, b in zip(p_real, p_blank)])), 4), "n": len(p_real),
            "distinct_answers": len(set(p_real)), "distinct_answers_blank": len(set(p_blank))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="vln-clip finetune run folders (best.pt, vocab.txt)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    missing = [str(run) for run in args.runs if not (run / "best.pt").is_file()]
    if missing:
        raise SystemExit(f"no best.pt in {', '.join(missing)}: pass vln-clip finetune run folders")
    for run in args.runs:
        print(json.dumps(blank_image_ablation(run)), flush=True)


if __name__ == "__main__":
    main()
