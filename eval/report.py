"""``vln-clip eval --report DIR``: per-episode results and where an agent fails.

Averages hide *where* an agent fails; the two questions researchers ask first are whether it
fails on long routes and on long instructions. The report therefore holds:

* ``episodes.csv``: one row per instruction with every metric of :mod:`.metrics` plus the
  reference path length (m), d(start, goal) and the instruction length (words);
* ``summary.json``: the averages (the same object ``vln-clip eval --json`` prints);
* ``success_vs_path_length.png`` and ``success_vs_instruction_length.png``: success rate
  (and SPL) per bin, with the number of episodes in each bin printed on the bars;
* ``bins.json``: the binned rates behind the plots, so they can be re-plotted or tested.

Bins are equal-count quantile bins (at most :data:`DEFAULT_BINS`), so every bar rests on a
similar number of episodes; bins are merged when the values repeat (short R2R paths).
All files are written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vln_clip.errors import DataError
from vln_clip.io import atomic_path, write_json

from .metrics import EPISODE_METRICS, EvalResult

DEFAULT_BINS = 6
CSV_COLUMNS = ("instr_id", "scan", "language") + EPISODE_METRICS + (
    "dtw", "shortest_distance", "reference_length", "instruction_words")


def binned_rates(values: Sequence[float], success: Sequence[float], spl: Sequence[float] | None = None,
                 bins: int = DEFAULT_BINS) -> list[dict[str, float | int]]:
    """Success (and SPL) rates in quantile bins of ``values``.

    Returns one dict per non-empty bin: ``low``/``high`` edges (inclusive low, exclusive high
    except the last), ``count``, ``success`` and ``spl`` means.
    """
    x = np.asarray(values, dtype=np.float64)
    s = np.asarray(success, dtype=np.float64)
    p = np.asarray(spl, dtype=np.float64) if spl is not None else np.zeros_like(s)
    if x.size == 0:
        return []
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    if edges.size == 1:
        edges = np.array([edges[0], edges[0]])
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    out: list[dict[str, float | int]] = []
    for k in range(edges.size - 1):
        mask = which == k
        if not mask.any():
            continue
        out.append({"low": float(edges[k]), "high": float(edges[k + 1]), "count": int(mask.sum()),
                    "success": float(s[mask].mean()), "spl": float(p[mask].mean())})
    return out


def write_csv(path: str | os.PathLike[str], result: EvalResult) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for e in result.episodes:
        row = e.as_dict()
        writer.writerow({k: row[k] for k in CSV_COLUMNS})
    with atomic_path(path) as tmp:
        Path(tmp).write_text(buf.getvalue(), encoding="utf-8")


def _plot(path: Path, rows: list[dict[str, float | int]], xlabel: str, title: str, unit_fmt: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    labels = [f"{unit_fmt.format(r['low'])}-{unit_fmt.format(r['high'])}" for r in rows]
    pos = np.arange(len(rows))
    ax.bar(pos - 0.2, [100 * float(r["success"]) for r in rows], width=0.4, label="success rate", color="#3b7dd8")
    ax.bar(pos + 0.2, [100 * float(r["spl"]) for r in rows], width=0.4, label="SPL", color="#f08c2e")
    for x, r in zip(pos, rows):
        top = 100 * max(float(r["success"]), float(r["spl"]))
        ax.text(x, top + 1.5, f"n={r['count']}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(pos, labels, rotation=20, fontsize=8)
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("%")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def check_report_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a Path, or a :class:`DataError` when it (or a parent) is an existing file.

    Called before an evaluation starts, so a typo in ``--report`` costs no decoding time.
    """
    out = Path(out_dir)
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise DataError(f"--report {out}: {folder} is an existing file, but the report is a folder of "
                            "files (episodes.csv, summary.json, plots); pass a folder name")
        if folder.exists():
            break
    return out


def write_report(out_dir: str | os.PathLike[str], result: EvalResult, bins: int = DEFAULT_BINS) -> dict[str, Path]:
    """Write the CSV, summary, bins and the two plots into ``out_dir``; return their paths."""
    out = check_report_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": out / "episodes.csv",
        "summary": out / "summary.json",
        "bins": out / "bins.json",
        "path_plot": out / "success_vs_path_length.png",
        "instruction_plot": out / "success_vs_instruction_length.png",
    }
    write_csv(files["csv"], result)
    write_json(files["summary"], result.summary(), indent=2)
    success, spl = result.column("success"), result.column("spl")
    by_path = binned_rates(result.column("reference_length"), success, spl, bins)
    by_words = binned_rates(result.column("instruction_words"), success, spl, bins)
    write_json(files["bins"], {"path_length_m": by_path, "instruction_words": by_words}, indent=2)
    _plot(files["path_plot"], by_path, "reference path length (m)", "Success against path length", "{:.1f}")
    _plot(files["instruction_plot"], by_words, "instruction length (words)",
          "Success against instruction length", "{:.0f}")
    return files


def summary_json(result: EvalResult) -> str:
    return json.dumps(result.summary())
