"""Rich renderings of a rollout step for the terminal (plain ANSI: fine over SSH).

The instruction is printed with the words the agent attends to highlighted (background
intensity = attention weight), then the candidate directions with the agent's probability
as a bar, the teacher's choice marked, and the distance to the goal.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from vln_clip.rollout import RolloutResult, StepRecord

METRIC_ORDER = ("success", "spl", "ndtw", "sdtw", "cls", "nav_error", "oracle_error", "oracle_success",
                "trajectory_length", "steps")


def attention_text(tokens: Sequence[str], attention: Sequence[float] | None, top: int = 3) -> Text:
    """The instruction with each word's background shaded by its attention weight.

    The ``top`` most attended words are also bold and underlined, so the highlight survives
    terminals without colour.
    """
    text = Text()
    weights = list(attention or [])[: len(tokens)]
    peak = max(weights) if weights else 0.0
    ranked = set(sorted(range(len(weights)), key=lambda i: -weights[i])[:top]) if weights else set()
    for i, tok in enumerate(tokens):
        if i:
            text.append(" ")
        if i < len(weights) and peak > 0:
            level = weights[i] / peak
            shade = int(255 - 155 * level)  # 255 (white) .. 100 (strong yellow)
            style = f"black on rgb(255,255,{shade})" if level > 0.05 else ""
            if i in ranked:
                style += " bold underline"
            text.append(tok, style=style.strip() or None)
        else:
            text.append(tok)
    return text


def _bar(p: float | None, width: int = 10) -> Text:
    if p is None:
        return Text("")
    n = int(round(max(0.0, min(1.0, p)) * width))
    return Text("█" * n + "·" * (width - n) + f" {p:5.1%}", style="green" if p >= 0.5 else None)


def step_panel(record: "StepRecord", tokens: Sequence[str], instruction_shown: bool = True) -> Panel:
    """One step: instruction with attention, candidate table, distance to goal."""
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("direction")
    table.add_column("heading", justify="right")
    table.add_column("dist", justify="right")
    table.add_column("p(agent)")
    table.add_column("")
    for k, c in enumerate(record.candidates, 1):
        mark = "teacher" if c.action == record.teacher_action else ""
        if record.action is not None and c.action == record.action:
            mark = ("chosen, " + mark).rstrip(", ")
        table.add_row(str(k), c.describe(), f"{c.heading_deg:+.0f}°", f"{c.distance:.2f} m", _bar(c.prob), mark)
    stop_mark = "teacher" if record.teacher_action == record.stop_action else ""
    if record.action is not None and record.action == record.stop_action:
        stop_mark = ("chosen, " + stop_mark).rstrip(", ")
    table.add_row("s", "STOP here", "", "", _bar(record.stop_prob), stop_mark)
    dist = "unknown (no goal)" if record.distance_to_goal is None else f"{record.distance_to_goal:.2f} m"
    header = Text.assemble(("step ", "dim"), (str(record.step), "bold"), ("  at ", "dim"), record.viewpoint,
                           ("  heading ", "dim"), f"{math.degrees(record.heading):.0f}°",
                           ("  distance to goal ", "dim"), (dist, "bold cyan"))
    parts: list = [header]
    if instruction_shown:
        parts.append(attention_text(tokens, record.word_attention))
    parts.append(table)
    if record.view_attention:
        va = list(record.view_attention)
        best = max(range(len(va)), key=lambda i: va[i])
        parts.append(Text(f"most attended view: {best} (heading {30 * (best % 12)}°, "
                          f"elevation {30 * (best // 12 - 1):+d}°), weight {va[best]:.2f}", style="dim"))
    return Panel(Group(*parts), title=f"step {record.step}", title_align="left")


def action_line(record: "StepRecord") -> Text:
    who = record.actor or "?"
    return Text.assemble(("-> ", "bold"), (who, "magenta"), " chose ", (record.action_label(), "bold"))


def metrics_table(metrics: dict[str, float]) -> Table:
    table = Table(title="episode metrics", show_header=False, box=None)
    table.add_column("metric")
    table.add_column("value", justify="right")
    keys = [k for k in METRIC_ORDER if k in metrics] + [k for k in metrics if k not in METRIC_ORDER]
    for k in keys:
        v = metrics[k]
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    return table


def result_summary(result: "RolloutResult") -> Group:
    """Final lines: how it ended, the path, the metrics."""
    lines = [Text(f"episode {result.episode.instr_id} ended by {result.ended_by} after "
                  f"{len(result.steps)} steps; path: " + " -> ".join(result.viewpoints), style="bold")]
    if result.metrics:
        lines.append(metrics_table(result.metrics))
    return Group(*lines)
