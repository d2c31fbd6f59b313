"""Rich renderings of a rollout step for the terminal (plain ANSI: fine over SSH), and :func:`play`.

:func:`play` prints each step and reads plain lines from ``input()``, so it works over SSH and
can be driven from a script or a test's stdin. It lives here, not in :mod:`vln_clip.rollout`,
so that the rollout model never imports its views (one direction: viz -> rollout).

The instruction is printed with the words the agent attends to highlighted (background
intensity = attention weight), then the candidate directions with the agent's probability
as a bar, the teacher's choice marked, and the distance to the goal.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from vln_clip.errors import DataError
from vln_clip.eval.metrics import EPISODE_METRICS
from vln_clip.geometry import view_angles
from vln_clip.rollout import (INTERACTIVE_HELP, Actor, EpisodePlayer, RolloutResult, StepRecord, ended_phrase,
                              episode_metrics)

from .safe import printable

METRIC_ORDER = EPISODE_METRICS  # one order for the CSV report and this table


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
        tok = printable(tok)
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
        heading, elevation = (math.degrees(a) for a in view_angles(best))
        parts.append(Text(f"most attended view: {best} (heading {heading:.0f}°, "
                          f"elevation {elevation:+.0f}°), weight {va[best]:.2f}", style="dim"))
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
    lines = [Text(f"episode {printable(result.episode.instr_id)} {ended_phrase(result)}; path: "
                  + " -> ".join(result.viewpoints), style="bold")]
    if result.metrics:
        lines.append(metrics_table(result.metrics))
    return Group(*lines)


def play(player: EpisodePlayer, policy: Actor | None, console: Any = None, interactive: bool = False,
         input_fn: Callable[[str], str] | None = None, metrics: bool = True) -> RolloutResult:
    """Play ``player``'s episode to the end, printing every step.

    Non-interactive: ``policy`` acts at every step. Interactive: a person types a candidate
    number, ``s`` (stop), ``u`` (undo) or ``q`` (quit); an empty line lets ``policy`` act.
    End of input counts as ``q``, so scripted stdin that runs out ends the episode cleanly.
    After a stop a person may still undo (``u``) or finish (Enter / ``q``).
    """
    console = console or Console()
    read = input_fn or input
    if policy is not None and policy is not player.shadow:
        try:
            policy.reset(player.obs, player.info)
        except DataError as exc:
            if not interactive:
                raise
            console.print(f"Enter does nothing here: {exc}", style="yellow")
            policy = None
    helper_name = policy.name if policy is not None else "nobody"
    if interactive:
        console.print(INTERACTIVE_HELP.format(helper=helper_name))
    shown_instruction = False

    def helper_action() -> int | None:
        if policy is None:
            return None
        if policy is player.shadow:
            decision = player.agent_decision()
            return None if decision is None else decision.action
        return policy.act(player.obs, player.info).action

    while True:
        if not player.done:
            record = player.current
            console.print(step_panel(record, player.tokens, instruction_shown=not shown_instruction
                                     or record.word_attention is not None))
            shown_instruction = True
        if not interactive:
            if player.done:
                break
            action = helper_action()
            if action is None:
                raise DataError("a non-interactive rollout needs a policy: --policy agent, teacher or random")
            console.print(action_line(player.act(action, helper_name)))
            continue
        prompt = ("episode over: u to undo, Enter or q to finish > " if player.done else
                  f"[1-{len(player.current.candidates)}] move, s stop, u undo, Enter {helper_name}, q quit > ")
        try:
            line = read(prompt).strip().lower()
        except EOFError:
            line = "q"
        if line in ("q", "quit", "exit"):
            break
        if line in ("u", "undo"):
            console.print("undone" if player.undo() else "nothing to undo", style="yellow")
            continue
        if player.done:
            if line == "":
                break
            console.print("the episode is over: u to undo, Enter or q to finish", style="yellow")
            continue
        record = player.current
        if line == "":
            action = helper_action()
            if action is None:
                console.print("no helper policy here: pick a number or s", style="yellow")
                continue
            console.print(action_line(player.act(action, helper_name)))
        elif line in ("s", "stop"):
            console.print(action_line(player.act(record.stop_action, "human")))
        elif line.isdigit() and 1 <= int(line) <= len(record.candidates):
            console.print(action_line(player.act(record.candidates[int(line) - 1].action, "human")))
        else:
            console.print(f"not understood: {line!r}. " + INTERACTIVE_HELP.format(helper=helper_name), style="red")
    result = player.result(episode_metrics(player.graph) if metrics else None)
    console.print(result_summary(result))
    return result
