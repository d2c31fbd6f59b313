"""The task-agnostic training core (vln_clip.train): schedules, optimizers, resume, DDP, output."""

from __future__ import annotations

import io
import math
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vln_clip.errors import DataError
from vln_clip.train import (DataOrder, LoopConfig, OptimizerConfig, Task, Trainer, axis_scale, fit, load_checkpoint,
                            plot_curves)
from vln_clip.train.example import ToyConfig, ToyRegression

REPO = Path(__file__).resolve().parents[1]


def _loop(out: Path, **kw) -> LoopConfig:
    values = dict(out_dir=str(out), iters=12, eval_every=4, save_every=4, log_every=2, progress="off",
                  best_metric="val/mse", best_mode="min")
    return LoopConfig(**{**values, **kw})


class NoisyToy(ToyRegression):
    """The toy task drawing from every global stream (torch dropout, NumPy, Python random)."""

    kind = "noisy-toy"

    def __init__(self, config: ToyConfig | None = None, interrupt_at: int | None = None) -> None:
        super().__init__(config or ToyConfig(dropout=0.2))
        self.interrupt_at = interrupt_at

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        if step == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives in the middle of an update
        idx = self.train_order.next()
        jitter = torch.from_numpy(np.random.normal(0.0, 0.05, size=(len(idx), self.config.in_dim))).float()
        scale = 1.0 + 0.1 * random.random()
        pred = self.module("head")(self.module("backbone")(self.x[idx] + jitter))
        return {"loss": scale * torch.nn.functional.mse_loss(pred, self.y[idx])}


# ------------------------------------------------------------------------------------------
# schedules and optimizers


def test_schedules_are_the_documented_formulas():
    w, total = 4, 20
    c = OptimizerConfig(lr=1.0, schedule="cosine", warmup_steps=w)
    assert [c.factor(s, total) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert c.factor(w, total) == 1.0 and c.factor(12, total) == pytest.approx(0.5)  # half way through the decay
    assert c.factor(total, total) == pytest.approx(0.0)
    lin = OptimizerConfig(lr=1.0, schedule="linear", warmup_steps=w)
    assert lin.factor(8, total) == pytest.approx(0.75) and lin.factor(30, total) == 0.0
    step = OptimizerConfig(lr=1.0, schedule="step", milestones=(5, 10), gamma=0.1)
    assert [step.factor(s, total) for s in (0, 4, 5, 9, 10, 19)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert OptimizerConfig(schedule="constant", total_steps=3).factor(100, total) == 1.0
    held = OptimizerConfig(lr=1.0, schedule="step", milestones=(5,), gamma=0.1, hold_steps=3)
    assert [held.factor(s, total) for s in range(7)] == pytest.approx([0, 0, 0, 1, 1, 0.1, 0.1])
    with pytest.raises(ValueError, match="hold_steps"):
        OptimizerConfig(hold_steps=-1).validate()
    with pytest.raises(ValueError, match="schedule"):
        OptimizerConfig(schedule="poly").validate()
    # the optimizers see the same numbers: lr at update s is lr * factor(s)
    task = ToyRegression(ToyConfig(head_optim=OptimizerConfig("adamw", lr=0.01, schedule="cosine", warmup_steps=w)))
    tr = Trainer(task, LoopConfig(out_dir="unused", iters=total, progress="off"))
    seen = []
    for _ in range(total):
        seen.append(tr.optimizers["head"].param_groups[0]["lr"])
        tr.update()
    head = task.config.head_optim
    assert seen == pytest.approx([0.01 * head.factor(s, total) for s in range(total)], rel=1e-12)
    assert all(lr == 0.05 for lr in [tr.optimizers["backbone"].param_groups[0]["lr"]])  # constant SGD


class TwoParts(Task):
    """y = b(a(x)) with SGD (no momentum) on ``a`` and on ``b`` at different rates; ``frozen`` has none."""

    kind = "two-parts"

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.a, self.b, self.frozen = nn.Linear(3, 4), nn.Linear(4, 1), nn.Linear(1, 1)
        self.x, self.y = torch.randn(8, 3), torch.randn(8, 1)

    def models(self):
        return {"a": self.a, "b": self.b, "frozen": self.frozen}

    def optimizers(self):
        return {"a": (self.a.parameters(), OptimizerConfig("sgd", lr=0.1)),
                "b": (self.b.parameters(), OptimizerConfig("sgd", lr=0.001))}

    def loss(self) -> torch.Tensor:
        return ((self.frozen(self.b(self.a(self.x))) - self.y) ** 2).mean()

    def train_step(self, step):
        return {"loss": self.loss()}


def test_each_optimizer_steps_only_the_parameters_it_owns():
    task = TwoParts()
    before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in task.models().items()}
    task.loss().backward()
    grads = {n: {k: p.grad.clone() for k, p in m.named_parameters()} for n, m in task.models().items()}
    for m in task.models().values():
        m.zero_grad(set_to_none=True)
    tr = Trainer(task, LoopConfig(out_dir="unused", iters=1, seed=None, progress="off"))
    tr.update()
    for name, lr in (("a", 0.1), ("b", 0.001)):
        for k, p in task.models()[name].named_parameters():
            assert torch.allclose(p, before[name][k] - lr * grads[name][k], atol=1e-7), (name, k)
    assert all(torch.equal(v, before["frozen"][k]) for k, v in task.frozen.state_dict().items())
    both = TwoParts()
    both.optimizers = lambda: {"a": (both.a.parameters(), OptimizerConfig("sgd", lr=0.1)),  # type: ignore[method-assign]
                               "ab": ([*both.a.parameters(), *both.b.parameters()], OptimizerConfig("sgd", lr=0.1))}
    with pytest.raises(ValueError, match="exactly one optimizer"):
        Trainer(both, LoopConfig(out_dir="unused", iters=1, seed=None))


def test_data_order_is_epoch_wise_sharded_and_resumable():
    order = DataOrder(10, 4, seed=3)
    first = [order.next().tolist() for _ in range(2)]
    assert sorted(first[0] + first[1]) != list(range(10)) and len(set(first[0] + first[1])) == 8  # tail dropped
    state = order.state_dict()
    rest = [order.next().tolist() for _ in range(3)]
    assert order.epoch == 3 and order.batches_per_epoch == 2
    again = DataOrder(10, 4, seed=99)
    again.load_state_dict(state)
    assert [again.next().tolist() for _ in range(3)] == rest
    glob = DataOrder(10, 4, seed=3).next_global().tolist()
    shards = [DataOrder(10, 4, seed=3, rank=r, world_size=2).next().tolist() for r in (0, 1)]
    assert shards == [glob[0::2], glob[1::2]]
    with pytest.raises(ValueError, match="divisible"):
        DataOrder(10, 3, rank=0, world_size=2)
    with pytest.raises(DataError, match="same training data"):
        DataOrder(11, 4).load_state_dict(state)


# ------------------------------------------------------------------------------------------
# checkpoints and resume


def _same_checkpoints(a: dict, b: dict) -> None:
    for name in a["models"]:
        for k, v in a["models"][name].items():
            assert torch.equal(v, b["models"][name][k]), (name, k)
    for name in a["optimizers"]:
        for sa, sb in zip(a["optimizers"][name]["state"].values(), b["optimizers"][name]["state"].values()):
            for k in sa:
                assert torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k], (name, k)
    assert a["schedulers"] == b["schedulers"] and a["step"] == b["step"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["rng"]["python"] == b["rng"]["python"]
    assert all(np.array_equal(x, y) for x, y in zip(a["rng"]["numpy"][1:2], b["rng"]["numpy"][1:2]))
    assert torch.equal(a["data_orders"]["train_order"]["order"], b["data_orders"]["train_order"]["order"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted 12-update NoisyToy run both resume tests compare against."""
    return fit(NoisyToy(), _loop(tmp_path_factory.mktemp("straight")))


def test_resume_is_bit_exact_with_two_optimizers(tmp_path: Path, straight):
    half = fit(NoisyToy(), _loop(tmp_path / "b"), stop_after=5)  # "killed" after update 5 (last.pt saved)
    mid = load_checkpoint(half.last_checkpoint)
    assert mid["step"] == 5 and set(mid["optimizers"]) == {"backbone", "head"}
    resumed = fit(NoisyToy(), _loop(tmp_path / "b", resume=True))
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    _same_checkpoints(a, b)
    assert a["history"] == b["history"] and a["best_score"] == b["best_score"] == straight.best_score
    # the comparison can fail: the seven updates after the interruption moved the weights
    assert not torch.equal(mid["models"]["backbone"]["0.weight"], a["models"]["backbone"]["0.weight"])
    assert a["kind"] == "noisy-toy" and a["config"]["dropout"] == 0.2 and a["loop"]["iters"] == 12
    assert a["optim"]["backbone"]["name"] == "sgd" and a["optim"]["head"]["schedule"] == "cosine"
    # TensorBoard got the training and validation scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = EventAccumulator(str(straight.out_dir / "tb"))
    ev.Reload()
    tags = set(ev.Tags()["scalars"])
    assert {"train/loss", "val/mse", "lr/head", "lr/backbone"} <= tags
    assert [e.step for e in ev.Scalars("val/mse")] == [4, 8, 12]


def test_sigint_finishes_the_update_saves_and_resumes_exactly(tmp_path: Path, straight):
    hit = fit(NoisyToy(interrupt_at=6), _loop(tmp_path / "b"))  # SIGINT inside update 7
    assert hit.interrupted and hit.step == 7
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 7
    resumed = fit(NoisyToy(), _loop(tmp_path / "b", resume=True))
    assert not resumed.interrupted and resumed.step == 12
    _same_checkpoints(load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint))


def test_kill_9_then_resume_matches_the_uninterrupted_run(tmp_path: Path):
    """A process killed with SIGKILL mid-run resumes from its last atomic save, exactly."""
    import time

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    args = ["--iters", "100000", "--batch-size", "16", "--dropout", "0.1", "--eval-every", "0", "--save-every", "5",
            "--log-every", "5", "--progress", "plain"]
    proc = subprocess.Popen([sys.executable, "-m", "vln_clip.train.example", "--out", str(out), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "last.pt").exists():
            time.sleep(0.05)  # killed without warning soon after its first save, in the middle of the run
    finally:
        proc.kill()
        proc.wait()
    saved = load_checkpoint(out / "last.pt")["step"]
    # last.pt is whole (a kill during a save leaves at most a temporary file beside it, never a torn last.pt)
    assert saved > 0 and saved % 5 == 0
    target = saved + 7

    def loop(path: Path, resume: bool) -> LoopConfig:
        return LoopConfig(out_dir=str(path), iters=100000, eval_every=0, save_every=5, log_every=5, seed=0,
                          best_metric="val/mse", best_mode="min", resume=resume or None, progress="off",
                          eval_at_end=False)

    resumed = fit(ToyRegression(ToyConfig(batch_size=16, dropout=0.1)), loop(out, True), stop_after=7)
    straight = fit(ToyRegression(ToyConfig(batch_size=16, dropout=0.1)), loop(tmp_path / "straight", False),
                   stop_after=target)
    assert resumed.step == straight.step == target
    a, b = load_checkpoint(resumed.last_checkpoint), load_checkpoint(straight.last_checkpoint)
    _same_checkpoints(a, b)


class Scripted(ToyRegression):
    """Validation scores fixed in advance, to check which checkpoint is kept as best."""

    kind = "scripted"
    scores = [0.3, 0.7, 0.5, 0.6]

    def evaluate(self):
        return {"val/score": self.scores.pop(0) if self.scores else 0.0}


def test_best_checkpoint_follows_the_validation_metric(tmp_path: Path):
    task = Scripted()
    task.scores = [0.3, 0.7, 0.5, 0.6]
    r = fit(task, _loop(tmp_path / "max", iters=8, eval_every=2, best_metric="val/score", best_mode="max"))
    best = load_checkpoint(r.best_checkpoint)
    assert r.best_score == 0.7 and best["step"] == 4 and best["metrics"] == {"val/score": 0.7}
    task = Scripted()
    task.scores = [0.3, 0.7, 0.2, 0.6]
    r = fit(task, _loop(tmp_path / "min", iters=8, eval_every=2, best_metric="val/score", best_mode="min"))
    assert r.best_score == 0.2 and load_checkpoint(r.best_checkpoint)["step"] == 6
    with pytest.raises(DataError, match="val/nothing"):
        fit(Scripted(), _loop(tmp_path / "bad", iters=2, eval_every=2, best_metric="val/nothing"))


def test_resume_errors_are_clear(tmp_path: Path):
    with pytest.raises(DataError, match="checkpoint not found"):
        fit(ToyRegression(), _loop(tmp_path / "none", resume=True))
    fit(ToyRegression(), _loop(tmp_path / "toy", iters=2))
    with pytest.raises(DataError, match="cannot resume a 'noisy-toy' run"):
        fit(NoisyToy(), _loop(tmp_path / "other", resume=str(tmp_path / "toy" / "last.pt")))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------------------
# progress and curves


def test_progress_prints_plain_lines_when_not_a_terminal(tmp_path: Path):
    stream = io.StringIO()  # isatty() is False, like a log file or CI
    r = fit(ToyRegression(ToyConfig(n_train=64, batch_size=16)), _loop(tmp_path, iters=None, epochs=2, log_every=4,
                                                                      progress="auto"), stream=stream)
    assert r.step == 8  # 2 epochs x 64 / 16 batches
    lines = stream.getvalue().splitlines()
    plain = [ln for ln in lines if ln.startswith("step ") and "it/s" in ln]
    assert [ln.split()[1] for ln in plain] == ["4/8", "8/8"]
    assert "(50%)" in plain[0] and "eta" in plain[0] and "loss=" in plain[0]
    assert [ln.split(":")[0] for ln in lines if "val/mse=" in ln] == ["step 4", "step 8"]
    quiet = io.StringIO()
    fit(ToyRegression(), _loop(tmp_path / "q", iters=2, progress="off"), stream=quiet)
    assert quiet.getvalue() == ""


def test_curves_use_log_scale_for_losses_spanning_orders_of_magnitude(tmp_path: Path):
    assert axis_scale([5.0, 0.9, 0.5, 0.3]) == "linear"
    assert axis_scale([100.0, 1.0, 0.01, 0.001]) == "log"  # five decades, three without the first point
    assert axis_scale([5000.0, 2.0, 1.5, 1.2, 1.1]) == "clip-first"  # only the first point is far out
    assert axis_scale([-1.0, 200.0, 0.5]) == "linear"  # not positive: no log axis
    history = [{"step": s, "loss": 10.0 ** (-s / 3), "acc": s / 10} for s in range(1, 11)]
    history.append({"step": 10, "val/score": 0.5})
    scales = plot_curves(history, tmp_path / "curves.png")
    assert scales == {"acc": "linear", "loss": "log", "val/score": "linear"}
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_curves(history, tmp_path / "one.png", keys=["loss"]) == {"loss": "log"}


# ------------------------------------------------------------------------------------------
# distributed


def test_two_torchrun_processes_train_the_same_model_as_one(tmp_path: Path):
    """2 CPU ranks (gloo) with per-rank batch 8 == 1 process with batch 16, to 1e-5."""
    iters, batch = 12, 16
    one = fit(ToyRegression(ToyConfig(batch_size=batch)), _loop(tmp_path / "one", iters=iters, eval_every=6))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vln_clip.train.example", "--out", str(tmp_path / "two"), "--iters", str(iters),
           "--batch-size", str(batch), "--eval-every", "6", "--save-every", "4", "--progress", "plain"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(one.last_checkpoint), load_checkpoint(tmp_path / "two" / "last.pt")
    assert b["step"] == a["step"] == iters and len(b["rng_ranks"]) == 2
    worst = 0.0
    for name in a["models"]:
        for k, v in a["models"][name].items():
            worst = max(worst, float((v - b["models"][name][k]).abs().max()))
    assert worst < 1e-5, worst
    losses = [h["loss"] for h in a["history"] if "loss" in h]
    assert losses[-1] < 0.8 * losses[0]  # the model did train: equality is not that of two untouched inits
    assert b["metrics"]["val/mse"] == pytest.approx(a["metrics"]["val/mse"], rel=1e-4)
    assert proc.stdout.count('"step": 12') == 1  # rank 0 alone reports
    with pytest.raises(DataError, match="saved by 2 process"):  # per-rank RNG streams cannot continue in one
        fit(ToyRegression(ToyConfig(batch_size=batch)), _loop(tmp_path / "two", iters=14, resume=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_on_cuda(tmp_path: Path):
    class Probe(ToyRegression):
        dtypes: list[torch.dtype] = []

        def train_step(self, step):
            idx = self.train_order.next().to(self.device)
            hidden = self.module("backbone")(self.x[idx])
            self.dtypes.append(hidden.dtype)
            return {"loss": torch.nn.functional.mse_loss(self.module("head")(hidden).float(), self.y[idx])}

    task = Probe()
    r = fit(task, _loop(tmp_path, iters=4, device="cuda"))
    assert set(task.dtypes) == {torch.bfloat16} and math.isfinite(r.metrics["val/mse"])
    fp32 = Probe()
    fp32.dtypes = []
    fit(fp32, _loop(tmp_path / "fp32", iters=2, device="cuda", bf16=False))
    assert set(fp32.dtypes) == {torch.float32}


# ------------------------------------------------------------------------------------------
# VLN on the core: old agent checkpoints


def _as_legacy(new: dict) -> dict:
    """What the pre-core trainer wrote (format vln-clip-agent-1) for the same run state."""
    orders = new["data_orders"]
    return {"format": "vln-clip-agent-1", "kind": new["kind"], "config": new["config"],
            "vocab": new["extra"]["vocab"], "feature_dim": new["extra"]["feature_dim"], "models": new["models"],
            "optimizer": new["optimizers"]["follower"], "iteration": new["step"], "best_score": new["best_score"],
            "history": [{("iteration" if k == "step" else k): v for k, v in h.items()} for h in new["history"]],
            "rng": new["rng"], "order_rng": orders["train_order"]["generator"], "order": orders["train_order"]["order"],
            "cursor": orders["train_order"]["cursor"], "aug_order": None, "aug_cursor": 0,
            "metrics": {"val_unseen": {"success": 0.5}}}


def test_old_agent_checkpoints_load_convert_and_resume_exactly(tmp_path: Path):
    from agents_world import make_plus_world

    from vln_clip.agents.checkpoint import convert_checkpoint, load_checkpoint as load_agent
    from vln_clip.agents.config import TrainConfig
    from vln_clip.agents.inference import predict_trajectories
    from vln_clip.agents.trainer import train

    world = make_plus_world(tmp_path / "plus")
    small = dict(encoder="test_enc", batch_size=8, hidden_dim=16, embed_dim=8, angle_embed_dim=8, min_word_count=1,
                 max_actions=6, log_every=1, eval_every=100, save_every=100, eval_max_episodes=2,
                 data_dir=str(world))
    first = train(TrainConfig.preset("synthetic", **small, iters=2, out_dir=str(tmp_path / "new")), progress=False)
    new = load_agent(first.last_checkpoint)
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    torch.save(_as_legacy(new), old_dir / "last.pt")
    old = load_agent(old_dir / "last.pt")  # converted in memory
    assert old["format"] == "vln-clip-train-1" and old["step"] == 2 and old["extra"] == new["extra"]
    assert old["metrics"] == {"val_unseen/success": 0.5} and old["history"][0]["step"] == 1
    split = world / "r2r" / "R2R_val_unseen.json"
    feats = world / "features" / "test_enc.h5"
    assert (predict_trajectories(old_dir / "last.pt", split, world / "connectivity", feats)
            == predict_trajectories(first.last_checkpoint, split, world / "connectivity", feats))
    # resuming the old file continues exactly like resuming the new one
    more = dict(small, iters=4)
    a = train(TrainConfig.preset("synthetic", **more, out_dir=str(tmp_path / "new")), resume=True, progress=False)
    b = train(TrainConfig.preset("synthetic", **more, out_dir=str(old_dir)), resume=True, progress=False)
    ka, kb = load_agent(a.last_checkpoint), load_agent(b.last_checkpoint)
    assert kb["step"] == 4 and all(torch.equal(v, kb["models"]["follower"][k])
                                   for k, v in ka["models"]["follower"].items())
    convert_checkpoint(old_dir / "last.pt", tmp_path / "converted.pt")
    assert torch.load(tmp_path / "converted.pt", weights_only=False)["format"] == "vln-clip-train-1"
    torch.save({"format": "vln-clip-agent-0"}, tmp_path / "ancient.pt")
    with pytest.raises(DataError, match="vln-clip-agent-1"):
        load_agent(tmp_path / "ancient.pt")
