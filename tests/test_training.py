"""Training loops on a tiny plus-shaped world: the losses, the learning, resume, Ctrl-C, inference, CLI."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from vln_clip.agents.checkpoint import load_checkpoint
from vln_clip.agents.config import TrainConfig
from vln_clip.agents.inference import load_policy, predict_trajectories
from vln_clip.agents.trainer import Run, il_rollout, train
from vln_clip.errors import DataError, MissingResourceError

from agents_world import make_plus_world

# Small model; paths here are 2 moves + STOP, so 8 actions leave room for detours.
SMALL = dict(encoder="test_enc", batch_size=16, hidden_dim=32, embed_dim=16, angle_embed_dim=8,
             log_every=5, min_word_count=1, max_actions=8, max_decode_len=20)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_plus_world(tmp_path_factory.mktemp("plus"))


def _cfg(world: Path, out: Path, **kw) -> TrainConfig:
    values = {**SMALL, "data_dir": str(world), "out_dir": str(out), "eval_every": 1000, "save_every": 1000, **kw}
    return TrainConfig.preset("synthetic", **values)


def _il_on_train(run: Run) -> float:
    m = run.follower
    m.eval()
    with torch.no_grad():
        idx = torch.arange(len(run.episodes["train"]))
        return float(il_rollout(m, run.env("train"), idx, run.tokens["train"][idx], run.cfg.max_actions))


def test_one_training_step_changes_weights_and_lowers_il_loss(world: Path, tmp_path: Path):
    cfg = _cfg(world, tmp_path, use_rl=False, batch_size=36)  # the whole train split is the fixed batch
    run = Run(cfg)
    before = {k: v.clone() for k, v in run.follower.state_dict().items()}
    loss0 = _il_on_train(run)
    logs = run.follower_iteration()
    loss1 = _il_on_train(run)
    changed = [k for k, v in run.follower.state_dict().items() if not torch.equal(v, before[k])]
    assert "encoder.weight_ih_l0" in changed and "candidate_attention.weight" in changed
    # the critic only learns from A2C: IL alone leaves it untouched
    assert not any(k.startswith("critic") for k in changed)
    assert loss1 < loss0 and logs["il_loss"] > 0


def test_a2c_step_trains_the_critic(world: Path, tmp_path: Path):
    run = Run(_cfg(world, tmp_path))
    before = run.follower.critic[0].weight.clone()
    logs = run.follower_iteration()
    assert not torch.equal(before, run.follower.critic[0].weight)
    assert {"il_loss", "rl_loss", "reward", "entropy", "loss"} <= set(logs)


def test_short_run_beats_the_untrained_agent(world: Path, tmp_path: Path):
    cfg = _cfg(world, tmp_path, iters=40, eval_every=40, lr=1e-3)
    untrained = Run(cfg).evaluate("val_unseen")
    result = train(cfg, progress=False)
    trained = result.metrics["val_unseen"]
    assert trained["success"] >= untrained["success"] + 0.4, (untrained, trained)
    assert trained["spl"] > untrained["spl"] and trained["ndtw"] > untrained["ndtw"]
    assert result.best_checkpoint is not None and (tmp_path / "curves.png").stat().st_size > 1000
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    # the checkpoint alone rebuilds the agent: same metrics through the inference API
    preds = predict_trajectories(result.best_checkpoint, world / "r2r" / "R2R_val_unseen.json",
                                 world / "connectivity", world / "features" / "test_enc.h5", batch_size=5)
    from vln_clip.episodes import read_r2r
    from vln_clip.eval.metrics import score_paths
    from vln_clip.graph import GraphStore

    eps = read_r2r(world / "r2r" / "R2R_val_unseen.json")
    paths = {p["instr_id"]: [t[0] for t in p["trajectory"]] for p in preds}
    again = score_paths(paths, eps, GraphStore(world / "connectivity")).summary()
    best = load_checkpoint(result.best_checkpoint)["metrics"]
    assert again["success"] == pytest.approx(best["val_unseen/success"])
    assert all(len(p["trajectory"][0]) == 3 for p in preds)
    with pytest.raises(DataError, match="feature"):
        predict_trajectories(result.best_checkpoint, world / "r2r" / "R2R_val_unseen.json", world / "connectivity")


def test_policy_matches_batched_greedy_decoding(world: Path, tmp_path: Path):
    from vln_clip.envs.nav_env import NavEnv

    result = train(_cfg(world, tmp_path, iters=4, eval_every=4, lr=1e-3), progress=False)
    split = world / "r2r" / "R2R_val_unseen.json"
    feats = world / "features" / "test_enc.h5"
    preds = {p["instr_id"]: p["trajectory"] for p in predict_trajectories(result.last_checkpoint, split,
                                                                         world / "connectivity", feats)}
    policy = load_policy(result.last_checkpoint)
    env = NavEnv(world / "connectivity", str(split), str(feats), vocab=policy.vocab, max_instr_len=policy.max_instr_len)
    for instr_id, traj in preds.items():
        obs, info = env.reset(options={"instr_id": instr_id})
        policy.reset(obs)
        done = False
        while not done:
            out = policy.step(obs)
            assert out.probs.shape == (16,) and out.view_attention.shape == (36,)
            assert out.probs.sum() == pytest.approx(1.0, abs=1e-5) and out.probs[~info["action_mask"]].max() == 0
            assert out.word_attention.sum() == pytest.approx(1.0, abs=1e-5)
            obs, _, term, trunc, info = env.step(out.action)
            done = term or trunc
        assert [t[0] for t in env.trajectory] == [t[0] for t in traj]


def test_resume_is_bit_for_bit(world: Path, tmp_path: Path):
    kw = dict(save_every=3, eval_every=3, eval_max_episodes=4)
    straight = train(_cfg(world, tmp_path / "a", iters=6, **kw), progress=False)
    half = train(_cfg(world, tmp_path / "b", iters=3, **kw), progress=False)
    halfway = load_checkpoint(half.last_checkpoint)
    resumed = train(_cfg(world, tmp_path / "b", iters=6, **kw), resume=True, progress=False)
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    assert a["step"] == b["step"] == 6 and halfway["step"] == 3
    for k, v in a["models"]["follower"].items():
        assert torch.equal(v, b["models"]["follower"][k]), k
    for sa, sb in zip(a["optimizers"]["follower"]["state"].values(), b["optimizers"]["follower"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k] for k in sa)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    # the last three iterations did change the weights (the comparison above can fail)
    assert not torch.equal(halfway["models"]["follower"]["lstm.weight_hh"], a["models"]["follower"]["lstm.weight_hh"])


def test_ctrl_c_saves_a_checkpoint_that_resumes(world: Path, tmp_path: Path):
    cfg = _cfg(world, tmp_path, iters=10_000, use_rl=False)
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        result = train(cfg, progress=False)
    finally:
        timer.cancel()
    assert result.interrupted and 0 < result.iterations < 10_000
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == result.iterations and ckpt["config"]["use_rl"] is False
    more = train(_cfg(world, tmp_path, iters=result.iterations + 2), resume=True, progress=False)
    assert more.iterations == result.iterations + 2 and not more.interrupted


def test_speaker_learns_and_is_selected_by_bleu(world: Path, tmp_path: Path):
    cfg = _cfg(world, tmp_path, agent="speaker", iters=60, eval_every=30, speaker_lr=3e-3, hidden_dim=64, embed_dim=32)
    untrained = Run(cfg).evaluate("val_unseen")["bleu"]
    result = train(cfg, progress=False)
    assert result.metrics["val_unseen"]["bleu"] > untrained + 0.3
    best = load_checkpoint(result.best_checkpoint)
    assert best["kind"] == "speaker" and best["best_score"] == pytest.approx(result.best_score)
    with pytest.raises(DataError, match="speaker"):
        load_policy(result.best_checkpoint)


def test_back_translation_uses_speaker_instructions(world: Path, tmp_path: Path):
    from vln_clip.agents.aug_paths import write_aug_paths

    sp = train(_cfg(world, tmp_path / "sp", agent="speaker", iters=10, eval_every=10, speaker_lr=3e-3), progress=False)
    fo = train(_cfg(world, tmp_path / "fo", iters=5, eval_every=5, lr=1e-3), progress=False)
    aug = tmp_path / "aug.json"
    write_aug_paths(world / "connectivity", world / "r2r" / "R2R_train.json", aug, min_edges=1, max_edges=4,
                    min_distance=3.0)
    cfg = _cfg(world, tmp_path / "bt", agent="bt", iters=2, eval_every=2, aug_paths=str(aug),
               speaker_checkpoint=str(sp.best_checkpoint), follower_checkpoint=str(fo.best_checkpoint))
    run = Run(cfg)
    start = load_checkpoint(fo.best_checkpoint)["models"]["follower"]
    assert all(torch.equal(v, start[k]) for k, v in run.follower.state_dict().items())  # from the best follower
    speaker_before = {k: v.clone() for k, v in run.speaker.state_dict().items()}
    logs = run.follower_iteration()
    assert {"il_loss", "aug_il_loss", "aug_rl_loss"} <= set(logs) and logs["aug_il_loss"] > 0
    assert all(torch.equal(v, speaker_before[k]) for k, v in run.speaker.state_dict().items())  # frozen speaker
    result = train(cfg, progress=False)
    assert load_checkpoint(result.last_checkpoint)["config"]["agent"] == "bt"
    with pytest.raises(DataError, match="speaker-checkpoint"):
        Run(_cfg(world, tmp_path / "x", agent="bt"))


def test_missing_features_name_the_extract_command(world: Path, tmp_path: Path):
    cfg = _cfg(world, tmp_path, encoder="clip_res50")
    with pytest.raises(MissingResourceError) as err:
        Run(cfg)
    msg = str(err.value)
    # no CLIP weights on the test machines: the printed command must work as written
    assert (f"vln-clip features extract --encoder clip_res50 --random-weights --source skybox --skybox-dir "
            f"{world / 'scans'} --connectivity {world / 'connectivity'} --out {world / 'features' / 'clip_res50.h5'}"
            ) in msg
    Run(_cfg(world, tmp_path, encoder="clip_res50", no_vision=True))  # vision-free needs no store


def test_cli_train_json_summary(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from vln_clip.cli.main import main

    rc = main(["train", "--dataset", "synthetic", "--data-dir", str(world), "--no-vision", "--iters", "1",
               "--batch-size", "4", "--eval-max-episodes", "4", "--out", str(tmp_path), "--json", "--no-progress"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["iterations"] == 1 and 0.0 <= summary["val_unseen"]["success"] <= 1.0
    assert load_checkpoint(tmp_path / "last.pt")["extra"]["feature_dim"] == 0
    # --resume takes the run's own config (vision-free, data dir) and only the new --iters
    rc = main(["train", "--out", str(tmp_path), "--resume", "--iters", "2", "--json", "--no-progress"])
    assert rc == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["iterations"] == 2
    rc = main(["train", "--dataset", "synthetic", "--data-dir", str(world), "--encoder", "clip_res50",
               "--out", str(tmp_path / "y")])
    assert rc == 2 and "vln-clip features extract --encoder clip_res50" in capsys.readouterr().err


def test_cli_imitation_only_and_model_size_reach_the_config(world: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    from vln_clip.cli.main import main

    rc = main(["train", "--dataset", "synthetic", "--data-dir", str(world), "--no-vision", "--iters", "1",
               "--batch-size", "4", "--eval-max-episodes", "4", "--out", str(tmp_path), "--json", "--no-progress",
               "--no-rl", "--hidden-dim", "64", "--max-actions", "7"])
    assert rc == 0
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["config"]["use_rl"] is False and ckpt["config"]["max_actions"] == 7
    assert ckpt["models"]["follower"]["encoder2decoder.weight"].shape == (64, 64)
    assert not any(k.startswith("rl_loss") for h in ckpt["history"] for k in h)


def test_graph_step_module_matches_eager_step_and_needs_cuda(world: Path, tmp_path: Path):
    from vln_clip.agents.trainer import StepModule

    run = Run(_cfg(world, tmp_path))
    m = run.follower.eval()
    g = torch.Generator().manual_seed(0)
    b, k, f = 3, 5, m.view_dim
    args = (torch.zeros(b, 128), torch.randn(b, 36, f, generator=g), torch.randn(b, k, f, generator=g),
            torch.ones(b, k, dtype=torch.bool), torch.randn(b, 32, generator=g), torch.randn(b, 32, generator=g),
            torch.randn(b, 4, 32, generator=g), torch.ones(b, 4, dtype=torch.bool))
    eager = m.step(*args)
    mod = StepModule(m, with_env_mask=False)(*args)
    assert all(torch.equal(x, y) for x, y in zip(mod, eager[:4]))
    env_mask = torch.zeros(b, m.feature_dim)
    masked = StepModule(m, with_env_mask=True)(*args, env_mask)
    assert torch.equal(masked[0], m.step(*args, env_mask)[0]) and not torch.equal(masked[0], eager[0])
    if not torch.cuda.is_available():
        with pytest.raises(DataError, match="CUDA"):
            Run(_cfg(world, tmp_path, cuda_graphs=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_training_runs_on_gpu(world: Path, tmp_path: Path):
    run = Run(_cfg(world, tmp_path, device="cuda", cuda_graphs=True))
    first = run.follower_iteration()
    second = run.follower_iteration()
    assert set(run._graphed) == {"il", "rl"} and first["loss"] == first["loss"] and second["loss"] == second["loss"]
