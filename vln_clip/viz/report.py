"""A self-contained HTML report of one rollout (every image embedded as base64).

One file a researcher can mail or open offline: the instruction with the agent's word
attention, the metrics, the top-down map (PNG) and its animation (GIF), the strip of views
the agent faced, and a table with one row per step.
"""

from __future__ import annotations

import base64
import html
import math
from typing import TYPE_CHECKING, Sequence

from .safe import printable

from vln_clip.rollout import ended_phrase

if TYPE_CHECKING:
    from vln_clip.rollout import RolloutResult

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
h1{font-size:1.3em} h2{font-size:1.1em;margin-top:1.4em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f2f2f2} .instr{font-size:1.05em;line-height:1.8} .tok{padding:1px 2px;border-radius:3px}
.chosen{font-weight:bold} .teacher{color:#0a6} img{max-width:100%;image-rendering:pixelated}
.meta{color:#555;font-size:.9em}
"""


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def _instruction_html(tokens: Sequence[str], attention: Sequence[float] | None) -> str:
    weights = list(attention or [])[: len(tokens)]
    peak = max(weights) if weights else 0.0
    out = []
    for i, tok in enumerate(tokens):
        tok = printable(tok)
        if i < len(weights) and peak > 0:
            level = weights[i] / peak
            out.append(f'<span class="tok" title="attention {weights[i]:.3f}" '
                       f'style="background:rgba(255,200,0,{level:.2f})">{html.escape(tok)}</span>')
        else:
            out.append(f'<span class="tok">{html.escape(tok)}</span>')
    return " ".join(out)


def _mean_attention(result: "RolloutResult") -> list[float] | None:
    rows = [s.word_attention for s in result.steps if s.word_attention]
    if not rows:
        return None
    n = min(len(r) for r in rows)
    return [sum(r[i] for r in rows) / len(rows) for i in range(n)]


def rollout_html(result: "RolloutResult", topdown_png: bytes, gif: bytes | None = None,
                 strip_png: bytes | None = None, notes: Sequence[str] = ()) -> str:
    """The report as one HTML string; images are ``data:`` URIs, nothing is linked."""
    ep = result.episode
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rollout {html.escape(printable(ep.instr_id))}</title>"
             f"<style>{STYLE}</style></head><body>"]
    parts.append(f"<h1>Rollout of instruction {html.escape(printable(ep.instr_id))} (scan {html.escape(printable(ep.scan))})</h1>")
    parts.append(f"<p class='meta'>{html.escape(ended_phrase(result))}; "
                 f"actors: {html.escape(', '.join(sorted({s.actor for s in result.steps})) or '-')}</p>")
    for note in notes:
        parts.append(f"<p class='meta'>{html.escape(printable(note))}</p>")
    attention = _mean_attention(result)
    parts.append("<h2>Instruction</h2>")
    if attention:
        parts.append("<p class='meta'>shaded by the agent's word attention (mean over steps; per step in the table)</p>")
    parts.append(f"<p class='instr'>{_instruction_html(result.tokens, attention)}</p>")
    if result.metrics:
        parts.append("<h2>Metrics</h2><table><tr>" + "".join(f"<th>{html.escape(k)}</th>" for k in result.metrics)
                     + "</tr><tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in result.metrics.values()) + "</tr></table>")
    parts.append("<h2>Top-down map</h2><p class='meta'>reference path, agent path, start and goal</p>")
    parts.append(f"<img id='topdown' alt='top-down map' src='{data_uri(topdown_png, 'image/png')}'>")
    if gif is not None:
        parts.append("<h2>Step by step</h2>")
        parts.append(f"<img id='animation' alt='top-down map over the steps' src='{data_uri(gif, 'image/gif')}'>")
    if strip_png is not None:
        parts.append("<h2>Views the agent faced</h2>")
        parts.append(f"<img id='views' alt='views faced at each step' src='{data_uri(strip_png, 'image/png')}'>")
    parts.append("<h2>Steps</h2><table id='steps'><tr><th>step</th><th>viewpoint</th><th>heading</th>"
                 "<th>distance to goal</th><th>candidates (heading, distance, p)</th><th>actor</th>"
                 "<th>action</th><th>teacher</th><th>attended words</th></tr>")
    for s in result.steps:
        cands = "<br>".join(
            f"<span class='{'chosen' if c.action == s.action else ''} {'teacher' if c.action == s.teacher_action else ''}'>"
            f"#{k} {c.heading_deg:+.0f}&deg; {c.distance:.2f} m"
            + (f" p={c.prob:.2f}" if c.prob is not None else "") + "</span>"
            for k, c in enumerate(s.candidates, 1))
        if s.stop_prob is not None:
            cands += f"<br>STOP p={s.stop_prob:.2f}"
        teacher = "-" if s.teacher_action is None else ("STOP" if s.teacher_action == s.stop_action else
                                                        f"#{s._number(s.teacher_action)}")
        words = ""
        if s.word_attention:
            top = sorted(range(min(len(s.word_attention), len(result.tokens))), key=lambda i: -s.word_attention[i])[:3]
            words = ", ".join(html.escape(result.tokens[i]) for i in sorted(top))
        dist = "-" if s.distance_to_goal is None else f"{s.distance_to_goal:.2f} m"
        parts.append(f"<tr class='step' data-step='{s.step}'><td>{s.step}</td><td>{html.escape(s.viewpoint)}</td>"
                     f"<td>{math.degrees(s.heading):.0f}&deg;</td><td>{dist}</td><td>{cands}</td>"
                     f"<td>{html.escape(s.actor)}</td><td>{html.escape(s.action_label())}</td><td>{teacher}</td>"
                     f"<td>{words}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))
