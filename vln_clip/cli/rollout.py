"""`vln-clip rollout`: play one episode step by step and picture it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vln_clip.actors import POLICIES, resolve_policy
from vln_clip.task import MAX_ACTIONS

from .common import add_parser, friendly_os_errors, positive_int
from .eval import add_split_arguments, resolve_connectivity, resolve_split

EXAMPLES = [
    "vln-clip rollout --data-dir runs/demo/world --split val_unseen --policy teacher --out runs/rollout",
    "vln-clip rollout --checkpoint runs/demo/train/best.pt --data-dir runs/demo/world --split val_unseen "
    "--skybox-dir runs/demo/world/scans --out runs/rollout",
    "vln-clip rollout --split-file R2R_val_unseen.json --connectivity connectivity/ --instr-id 4332_1 --interactive",
    "printf '1\\nu\\n\\n\\n\\n\\n\\n\\n\\n\\n' | vln-clip rollout --data-dir runs/demo/world --split val_unseen "
    "--interactive   # scripted: move, undo, then Enter lets the teacher walk to the goal and stop",
]


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = add_parser(sub, "rollout", "play and picture one episode", EXAMPLES, description=(
        "Play one episode step by step: the instruction (words the agent attends to highlighted), the "
        "candidate directions with relative heading, distance and the agent's probability, the chosen "
        "action and the distance to the goal; the episode's metrics at the end. With --out: a top-down "
        "PNG, a GIF over the steps, a strip of the views faced (when skyboxes are given) and a "
        "self-contained HTML report. --interactive lets a person drive: a candidate number moves, s "
        "stops, u undoes, Enter lets the agent (or the teacher) act, q quits."))
    p.add_argument("--checkpoint", help="follower checkpoint (needed for --policy agent; optional otherwise: "
                   "with it the agent's probabilities and attention are shown whoever drives)")
    add_split_arguments(p)
    p.add_argument("--instr-id", default=None,
                   help="instruction id, e.g. 4332_1 (R2R: <path_id>_<k>); default: the split's first instruction")
    p.add_argument("--features", help="feature store (.h5) for the agent; default: the checkpoint's")
    p.add_argument("--skybox-dir", help="folder with <scan>/matterport_skybox_images/ to draw the views faced")
    p.add_argument("--out", help="write topdown.png, topdown.gif, views.png, report.html, rollout.json here")
    p.add_argument("--policy", choices=POLICIES, default=None,
                   help="who acts (default: agent with --checkpoint, else teacher; human implies --interactive). "
                        "In interactive mode this is who acts when you press Enter")
    p.add_argument("--interactive", action="store_true", help="drive the episode yourself from the terminal")
    p.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    p.add_argument("--max-steps", type=positive_int, default=MAX_STEPS,
                   help=f"actions before the episode is cut (EnvDrop: {MAX_STEPS})")
    p.add_argument("--map-size", type=positive_int, default=512, help="side of the top-down map in pixels")
    p.set_defaults(func=friendly_os_errors(run))


MAX_STEPS = MAX_ACTIONS


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vln_clip.rollout import open_rollout
    from vln_clip.viz.terminal import play

    console = Console(highlight=False, soft_wrap=False)
    policy_name, interactive, helper = resolve_policy(args.policy, args.interactive, args.checkpoint)
    split, connectivity = resolve_split(args), resolve_connectivity(args)
    setup = open_rollout(split, connectivity, args.instr_id, args.checkpoint, args.features, helper, args.seed,
                         args.max_steps)
    if setup.weights_note:
        console.print(setup.weights_note, style="yellow")
    result = play(setup.player, setup.actor, console, interactive=interactive, input_fn=_input_fn(console))
    if args.out:
        from vln_clip.viz.pictures import ViewRenderer, write_rollout_files

        renderer = ViewRenderer(args.skybox_dir, connectivity)
        notes = [setup.weights_note] if setup.weights_note else []
        files = write_rollout_files(result, setup.graph, args.out, renderer, map_size=args.map_size, notes=notes)
        console.print(f"wrote {files.report_html} (with {files.topdown_png.name}, {files.topdown_gif.name}"
                      + (f", {files.views_png.name}" if files.views_png else "") + f", {files.rollout_json.name})")
        if not renderer.available:
            console.print(f"no view strip: {renderer.reason}", style="dim")
    return 0


def _input_fn(console: Any):
    """Plain ``input()`` (works over SSH, in pipes and in tests); the prompt goes to the console."""

    def read(prompt: str) -> str:
        console.print(prompt, end="")
        line = sys.stdin.readline()
        if not line:
            console.print()
            raise EOFError
        if not sys.stdin.isatty():
            console.print(line.rstrip("\n"))  # echo scripted input so transcripts read naturally
        return line.rstrip("\n")

    return read
