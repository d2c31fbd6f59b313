"""`vln-clip rollout`: play one episode step by step and picture it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import add_parser

EXAMPLES = [
    "vln-clip rollout --split-file runs/demo/world/r2r/R2R_val_unseen.json "
    "--connectivity runs/demo/world/connectivity --instr-id 12_0 --policy teacher --out runs/rollout",
    "vln-clip rollout --checkpoint runs/demo/train/best_val_unseen.pt --split-file R2R_val_unseen.json "
    "--connectivity connectivity/ --instr-id 12_0 --skybox-dir runs/demo/world/scans --out runs/rollout",
    "vln-clip rollout --split-file R2R_val_unseen.json --connectivity connectivity/ --instr-id 12_0 --interactive",
    "printf '1\\nu\\n\\ns\\n' | vln-clip rollout ... --interactive   # scripted driving",
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
    p.add_argument("--split-file", required=True, help="R2R/R4R .json or RxR .jsonl[.gz] split holding the episode")
    p.add_argument("--connectivity", required=True, help="folder of <scan>_connectivity.json files")
    p.add_argument("--instr-id", required=True, help="instruction id, e.g. 4332_1 (R2R: <path_id>_<k>)")
    p.add_argument("--features", help="feature store (.h5) for the agent; default: the checkpoint's")
    p.add_argument("--skybox-dir", help="folder with <scan>/matterport_skybox_images/ to draw the views faced")
    p.add_argument("--out", help="write topdown.png, topdown.gif, views.png, report.html, rollout.json here")
    p.add_argument("--policy", choices=("human", "agent", "teacher", "random"), default=None,
                   help="who acts (default: agent with --checkpoint, else teacher; human implies --interactive). "
                        "In interactive mode this is who acts when you press Enter")
    p.add_argument("--interactive", action="store_true", help="drive the episode yourself from the terminal")
    p.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    p.add_argument("--max-steps", type=int, default=35, help="actions before the episode is cut (EnvDrop: 35)")
    p.add_argument("--map-size", type=int, default=512, help="side of the top-down map in pixels")
    p.set_defaults(func=run)


def resolve_policy(policy: str | None, interactive: bool, checkpoint: str | None) -> tuple[str, bool, str]:
    """(who acts on Enter / every step, interactive?, the helper's name)."""
    from vln_clip.errors import DataError

    if policy == "human":
        return "human", True, "agent" if checkpoint else "teacher"
    if policy is None:
        policy = "agent" if checkpoint else "teacher"
    if policy == "agent" and not checkpoint:
        raise DataError("--policy agent needs --checkpoint CKPT (a follower checkpoint from `vln-clip train`); "
                        "without one use --policy teacher, random or human")
    return policy, interactive, policy


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from vln_clip.rollout import play

    console = Console(highlight=False, soft_wrap=False)
    policy_name, interactive, helper = resolve_policy(args.policy, args.interactive, args.checkpoint)
    setup = build_rollout(args.split_file, args.connectivity, args.instr_id, args.checkpoint, args.features,
                          helper, args.seed, args.max_steps)
    if setup.weights_note:
        console.print(setup.weights_note, style="yellow")
    result = play(setup.player, setup.actor, console, interactive=interactive, input_fn=_input_fn(console))
    if args.out:
        from vln_clip.viz.pictures import ViewRenderer, write_rollout_files

        renderer = ViewRenderer(args.skybox_dir, args.connectivity)
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


class RolloutSetup:
    """The environment, episode, graph and actors of one rollout."""

    def __init__(self, player: Any, actor: Any, graph: Any, weights_note: str = "") -> None:
        self.player, self.actor, self.graph, self.weights_note = player, actor, graph, weights_note


def build_rollout(split_file: str | Path, connectivity: str | Path, instr_id: str, checkpoint: str | None = None,
                  features: str | None = None, helper: str = "teacher", seed: int = 0,
                  max_steps: int = 35) -> RolloutSetup:
    """Open the episode in a NavEnv (with the checkpoint's vocabulary and features when given)."""
    from vln_clip.envs import NavEnv
    from vln_clip.episodes import read_episodes
    from vln_clip.errors import DataError
    from vln_clip.graph import GraphStore
    from vln_clip.rollout import AgentActor, EpisodePlayer, RandomActor, TeacherActor

    graphs = GraphStore(connectivity)
    episodes = [e for e in read_episodes(split_file) if e.instr_id == str(instr_id)]
    if not episodes:
        ids = [e.instr_id for e in read_episodes(split_file)[:3]]
        raise DataError(f"{split_file}: no instruction {instr_id!r}; ids in this file look like {', '.join(ids)}")
    episode = episodes[0]
    shadow = None
    note = ""
    env_kwargs: dict[str, Any] = {}
    if checkpoint:
        from vln_clip.agents.inference import load_policy

        policy = load_policy(checkpoint)
        shadow = AgentActor(policy)
        store = _policy_features(policy, features, checkpoint)
        if store is not None and str(getattr(store, "weights", "")) == "random":
            note = (f"note: the features in {store.path} come from a randomly initialised {store.encoder} "
                    "encoder (no pretrained CLIP weights were present), so the agent sees noise-like features")
        env_kwargs = dict(vocab=policy.vocab, features=store, max_instr_len=policy.max_instr_len)
    elif features:
        env_kwargs = dict(features=features)
    env = NavEnv(graphs, [episode], max_steps=max_steps, **env_kwargs)
    graph = graphs[episode.scan]
    player = EpisodePlayer(env, episode, graph, shadow=shadow, max_steps=max_steps)
    actor = {"agent": shadow, "teacher": TeacherActor(), "random": RandomActor(seed)}[helper]
    return RolloutSetup(player, actor, graph, note)


def _policy_features(policy: Any, features: str | None, checkpoint: str) -> Any:
    """The feature store a follower needs: --features, else the one its training run used."""
    from vln_clip.errors import DataError
    from vln_clip.features.store import FeatureStore
    from vln_clip.paths import data_dir

    if policy.feature_dim == 0:
        return None  # vision-free follower
    cfg = policy.config
    path = Path(features) if features else (
        Path(cfg.features) if cfg.features else data_dir(cfg.data_dir) / "features" / f"{cfg.encoder}.h5")
    if not path.exists():
        raise DataError(f"{checkpoint}: the follower was trained on {policy.feature_dim}-d {cfg.encoder} features "
                        f"but {path} does not exist; pass --features FILE.h5 (the store it was trained with)")
    store = FeatureStore(path)
    if int(store.dim) != int(policy.feature_dim):
        raise DataError(f"{path}: features have dimension {store.dim} but {checkpoint} was trained on "
                        f"{policy.feature_dim}-d features; pass the store of encoder {cfg.encoder}")
    return store
