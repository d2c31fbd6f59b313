"""Training iterations per second: batched environment + model vs single environments one by one.

Two numbers per side: full training iterations (teacher-forced + sampled rollout, backward,
RMSprop step) and teacher-forced rollouts without gradients (the environment's share is largest
there). Both sides run the *same* follower, the same losses and the same rollout code
(:func:`vln_clip.agents.trainer.il_rollout` + :func:`~vln_clip.agents.trainer.rl_rollout`, one
RMSprop step); only the environment differs:

* ``batched``: :class:`vln_clip.envs.BatchedNavEnv` on the training device, a whole batch per
  tensor operation (the training path of ``vln-clip train``);
* ``naive``: EnvDrop's way: ``batch`` separate :class:`vln_clip.envs.NavEnv` objects, stepped in
  a Python loop; each step's observations are stacked from NumPy into tensors and the chosen
  actions go back to the host (``.tolist()``) for the per-environment ``step`` calls.

The world is a synthetic one (``vln_clip.synth.generate_world``, graphs and episodes only) with
a random feature store of the requested width (speed only: the features' values do not matter).

    python benchmarks/bench_train.py --batch 64 --iters 5 --dim 512
    python benchmarks/bench_train.py --device cuda --iters 20      # on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vln_clip.agents.config import TrainConfig
from vln_clip.agents.trainer import Obs, Run


class NaiveEnv:
    """``batch`` single NavEnvs behind the rollout interface of :class:`RolloutEnv`."""

    def __init__(self, graphs: Any, episodes: list, features: Any, vocab: Any, batch: int,
                 device: torch.device, max_actions: int, max_instr_len: int) -> None:
        from vln_clip.envs.nav_env import NavEnv, NavTask, NavEnvConfig

        task = NavTask(graphs, episodes, features, NavEnvConfig(max_steps=max_actions, max_instr_len=max_instr_len,
                                                                 validate=False), vocab)
        self.envs = [NavEnv(task=task) for _ in range(batch)]
        self.episodes = episodes
        self.device = device
        self.n = batch

    def _obs(self) -> Obs:
        o, info = self._last_obs, self._last_info
        pano = np.stack([np.concatenate([x["panorama"], x["panorama_angles"]], 1) for x in o])
        t = lambda a, dt=torch.float32: torch.as_tensor(np.asarray(a), dtype=dt, device=self.device)  # noqa: E731
        stop = t([x["num_candidates"] for x in o], torch.long)
        teacher = t([i["teacher"] for i in info], torch.long)
        teacher = torch.where(teacher < 0, stop, teacher)
        return Obs(t(pano), t(np.stack([x["candidates"] for x in o])),
                   t(np.stack([x["candidate_mask"] for x in o]), torch.bool), stop, teacher,
                   t(self._done, torch.bool))

    def reset(self, idx: torch.Tensor) -> Obs:
        self.n = len(idx)
        self._last_obs, self._last_info = [], []
        for env, i in zip(self.envs, idx.tolist()):
            o, info = env.reset(options={"instr_id": self.episodes[i].instr_id})
            self._last_obs.append(o)
            self._last_info.append(info)
        self._done = [False] * self.n
        return self._obs()

    def step(self, actions: torch.Tensor) -> tuple[Obs, torch.Tensor]:
        acts = actions.tolist()  # the host round trip of every step
        rewards = []
        for b in range(self.n):
            if self._done[b]:
                rewards.append(0.0)
                continue
            o, r, term, trunc, info = self.envs[b].step(int(acts[b]))
            self._last_obs[b], self._last_info[b] = o, info
            self._done[b] = bool(term or trunc)
            rewards.append(float(r))
        return self._obs(), torch.tensor(rewards, device=self.device)


def make_world(root: Path, dim: int) -> Path:
    from vln_clip.features.store import FeatureWriter
    from vln_clip.graph import GraphStore
    from vln_clip.synth import generate_world

    generate_world(root, houses=6, seed=0, render=False)
    store = root / "features" / f"random{dim}.h5"
    graphs = GraphStore(root / "connectivity")
    wanted = {f"{s}_{vp}" for s in graphs.scans for vp in graphs[s].viewpoints}
    if store.exists():
        from vln_clip.features.store import FeatureStore

        with FeatureStore(store) as fs:
            stale = not wanted <= set(fs.keys())
        if stale:  # the world was regenerated (new viewpoint ids)
            store.unlink()
    if not store.exists():
        rng = np.random.default_rng(0)
        with FeatureWriter(store, dim, {"encoder": f"random{dim}", "weights": "random"}) as w:
            for scan in graphs.scans:
                for vp in graphs[scan].viewpoints:
                    w.write(scan, vp, rng.standard_normal((36, dim)).astype(np.float32))
    return store


def time_iterations(run: Run, iters: int, device: torch.device) -> float:
    run.follower_iteration()  # warm-up (allocations, lazy tables)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        run.follower_iteration()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters / (time.perf_counter() - t0)


def time_rollouts(run: Run, iters: int, device: torch.device) -> float:
    """Teacher-forced rollouts without gradients: the environment's share made visible."""
    from vln_clip.agents.trainer import il_rollout

    m = run.follower
    m.eval()
    env = run.env("train")

    def once() -> None:
        idx = run.next_batch(len(run.episodes["train"]))
        with torch.no_grad():
            il_rollout(m, env, idx, run.batch_tokens("train", idx), run.cfg.max_actions)

    once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", default="/tmp/vln_clip_bench_train_world")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--dim", type=int, default=512, help="feature width (0 = vision-free)")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.world)
    store = make_world(root, args.dim) if args.dim else None
    if store is None:
        from vln_clip.synth import generate_world

        generate_world(root, houses=6, seed=0, render=False)
    cfg = TrainConfig.preset("synthetic", data_dir=str(root), out_dir=str(root / "run"), batch_size=args.batch,
                             hidden_dim=args.hidden, device=args.device, features=str(store) if store else None,
                             no_vision=store is None, encoder=f"random{args.dim}")
    device = torch.device(args.device)
    results: dict[str, Any] = {"batch": args.batch, "iters": args.iters, "dim": args.dim, "hidden": args.hidden,
                               "device": args.device, "threads": torch.get_num_threads()}
    for name in ("batched", "naive"):
        torch.manual_seed(0)
        run = Run(cfg)
        if name == "naive":
            run.envs["train"] = NaiveEnv(run.graphs, run.episodes["train"], run.features, run.vocab, args.batch,
                                         device, cfg.max_actions, cfg.max_instr_len)  # type: ignore[assignment]
        results[f"{name}_it_per_s"] = round(time_iterations(run, args.iters, device), 4)
        results[f"{name}_rollouts_per_s"] = round(time_rollouts(run, args.iters, device), 4)
    results["ratio"] = round(results["batched_it_per_s"] / results["naive_it_per_s"], 2)
    results["rollout_ratio"] = round(results["batched_rollouts_per_s"] / results["naive_rollouts_per_s"], 2)
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{'env':<10}{'it/s':>10}{'IL rollouts/s (no grad)':>26}   (batch {args.batch}, features {args.dim}, hidden {args.hidden}, "
              f"{args.device}, {results['threads']} threads)")
        for name in ("batched", "naive"):
            print(f"{name:<10}{results[name + '_it_per_s']:>10.3f}{results[name + '_rollouts_per_s']:>26.3f}")
        print(f"{'ratio':<10}{results['ratio']:>9.2f}x{results['rollout_ratio']:>25.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
