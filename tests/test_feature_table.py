"""The index path (the follower gathers from the device feature table) gives the copy path's numbers.

Training and inference read feature-table rows by index (``RolloutEnv(observation="indices")``,
the default); the reference is the environment's copied feature tensors
(``observation="features"``). Same seed, same model: logits, actions, losses, gradients, the
weights after updates and the greedy paths must be equal to the bit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents_world import make_plus_world
from vln_clip.agents.config import TrainConfig
from vln_clip.agents.trainer import (RolloutEnv, Run, chosen_angle, greedy_paths, il_rollout, rl_rollout,
                                     teacher_trajectories)
from vln_clip.envs.feature_table import FeatureTable, Views, as_joined, as_views

SMALL = dict(encoder="test_enc", batch_size=12, hidden_dim=32, embed_dim=16, angle_embed_dim=8,
             log_every=5, min_word_count=1, max_actions=8, max_decode_len=20, eval_every=1000, save_every=1000)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_plus_world(tmp_path_factory.mktemp("plus_table"))


def _cfg(world: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig.preset("synthetic", **{**SMALL, "data_dir": str(world), "out_dir": str(out), **kw})


def _env(run: Run, split: str, observation: str) -> RolloutEnv:
    c = run.cfg
    return RolloutEnv(run.graphs, run.episodes[split], run.features, run.vocab, c.batch_size, run.device,
                      c.max_actions, c.max_instr_len, observation=observation)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_runs_default_to_the_index_path(world: Path, tmp_path: Path) -> None:
    run = Run(_cfg(world, tmp_path))
    env = run.env("train")
    assert env.env.observation == "indices"
    obs = env.reset(torch.arange(3))
    assert isinstance(obs.pano, Views) and isinstance(obs.cand, Views)
    assert obs.pano.visual.shape == (3, 36, 8) and obs.cand.angle.shape == (3, 16, 128)


@pytest.mark.parametrize("no_vision", [False, True])
def test_training_losses_and_gradients_are_identical(world: Path, tmp_path: Path, no_vision: bool) -> None:
    kw = dict(no_vision=True, encoder="none") if no_vision else {}
    run = Run(_cfg(world, tmp_path, **kw))
    m = run.follower
    m.train()  # dropout on: both paths must draw the same masks
    idx = torch.arange(len(run.episodes["train"]))[:12]
    tokens = run.tokens["train"][idx]
    env_mask = m.env_dropout_mask(len(idx), 0.4, generator=torch.Generator().manual_seed(1))
    results = {}
    for observation in ("features", "indices"):
        env = _env(run, "train", observation)
        out = {}
        for name, fn in (("il", lambda: il_rollout(m, env, idx, tokens, run.cfg.max_actions)),
                         ("il_env_mask", lambda: il_rollout(m, env, idx, tokens, run.cfg.max_actions, env_mask)),
                         ("rl", lambda: rl_rollout(m, env, idx, tokens, run.cfg.max_actions, 0.9, 0.01)[0])):
            torch.manual_seed(7)
            m.zero_grad()
            loss = fn()
            loss.backward()
            out[name] = (loss.detach(), _grads(m))
        acts, panos, smask = teacher_trajectories(env, idx, run.cfg.max_actions)
        out["speaker_input"] = (acts, panos, smask)
        results[observation] = out
    copied, indexed = results["features"], results["indices"]
    for name in ("il", "il_env_mask", "rl"):
        assert torch.equal(copied[name][0], indexed[name][0]), name
        assert copied[name][1].keys() == indexed[name][1].keys()
        for k, g in copied[name][1].items():
            assert torch.equal(g, indexed[name][1][k]), (name, k)
    for a, b in zip(copied["speaker_input"], indexed["speaker_input"]):
        assert torch.equal(a, b)


def test_updates_and_greedy_decoding_are_identical(world: Path, tmp_path: Path) -> None:
    runs = {}
    for observation in ("features", "indices"):
        run = Run(_cfg(world, tmp_path / observation, lr=1e-3))
        if observation == "features":
            run.envs = {s: _env(run, s, "features") for s in ("train", "val_seen", "val_unseen")}
        logs = [run.follower_iteration() for _ in range(3)]  # IL + A2C, RMSprop
        runs[observation] = (run, logs)
    (a, logs_a), (b, logs_b) = runs["features"], runs["indices"]
    assert b.env("train").env.observation == "indices"
    assert logs_a == logs_b
    for k, v in a.follower.state_dict().items():
        assert torch.equal(v, b.follower.state_dict()[k]), k
    assert a.evaluate("val_unseen") == b.evaluate("val_unseen")
    # per-step logits and actions of greedy decoding, from the same weights
    m = b.follower.eval()
    idx = torch.arange(len(b.episodes["val_unseen"]))
    tokens = b.tokens["val_unseen"][idx]
    envs = [_env(b, "val_unseen", o) for o in ("features", "indices")]
    with torch.no_grad():
        mask = tokens != 0
        ctx, h, c = m.encode(tokens, mask)
        state = [(h, c, torch.zeros(len(idx), 128), env.reset(idx)) for env in envs]
        for _ in range(b.cfg.max_actions):
            steps = []
            for env, (h_, c_, prev, obs) in zip(envs, state):
                logits, h_, c_, _, _, view_attn = m.step(prev, obs.pano, obs.cand, obs.cand_mask, h_, c_, ctx, mask)
                action = logits.argmax(1)
                steps.append((logits, view_attn, action, h_, c_, chosen_angle(obs.cand, action, m.feature_dim)))
            (la, va, aa, *_), (lb, vb, ab, *_) = steps
            assert torch.equal(la, lb) and torch.equal(va, vb) and torch.equal(aa, ab)
            state = [(h_, c_, prev, env.step(action)[0]) for env, (_, _, action, h_, c_, prev) in zip(envs, steps)]
    assert (greedy_paths(m, envs[0], idx, tokens, b.cfg.max_actions)
            == greedy_paths(m, envs[1], idx, tokens, b.cfg.max_actions))


def test_views_helpers_and_table_layout() -> None:
    flat = torch.arange(2 * 36 * 3 + 3, dtype=torch.float16).view(-1, 3)
    flat[-1] = 0
    table = FeatureTable(flat, torch.zeros(36, 36, 128))
    assert table.num_viewpoints == 2 and table.zero_row == 72 and table.panoramas.shape == (2, 36, 3)
    pano = table.panorama(torch.tensor([1, 0]))
    assert pano.dtype == torch.float32 and torch.equal(pano, flat[:72].view(2, 36, 3).float()[[1, 0]])
    views = table.candidate_views(torch.tensor([[5, 72]]), torch.ones(1, 2, 128))
    joined = views.joined()
    assert joined.shape == (1, 2, 131) and torch.equal(joined[0, 1, :3], torch.zeros(3))
    assert as_joined(joined) is joined and torch.equal(as_joined(as_views(joined, 3)), joined)
    with pytest.raises(ValueError, match="V \\* 36 \\+ 1"):
        FeatureTable(torch.zeros(36, 3), torch.zeros(36, 36, 128))
    with pytest.raises(ValueError, match="128"):
        table.candidate_views(torch.tensor([[0]]), torch.zeros(1, 1, 4))
