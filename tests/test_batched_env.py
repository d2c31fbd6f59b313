"""BatchedNavEnv: identical to stepping single NavEnvs; the teacher solves every R2R train episode."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from env_worlds import two_scan_world, write_features
from vln_clip.envs import BatchedNavEnv, NavEnv
from vln_clip.episodes import read_r2r
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore

INT_KEYS = ("instruction", "instruction_length", "num_candidates", "view_index")


def _compare_random_rollout(single: list[NavEnv], batched: BatchedNavEnv, ids: list[str], seed: int,
                            stop_prob: float = 0.08) -> int:
    """Step both with the same random actions; assert equal outputs; return the steps compared."""
    rng = np.random.default_rng(seed)
    bobs, binfo = batched.reset(options={"instr_ids": ids})
    outs = [env.reset(options={"instr_id": i}) for env, i in zip(single, ids)]
    sobs = [o[0] for o in outs]
    sinfo = [o[1] for o in outs]
    done = [False] * len(ids)
    compared = 0
    for _ in range(batched.max_steps + 1):
        for b in range(len(ids)):
            if done[b]:
                assert bool(binfo["done"][b]) and int(binfo["teacher"][b]) == -1
                continue
            for key in INT_KEYS:
                assert np.array_equal(np.asarray(sobs[b][key]), bobs[key][b].numpy()), key
            assert np.array_equal(sobs[b]["candidate_mask"].astype(bool), bobs["candidate_mask"][b].numpy())
            for key in ("panorama", "panorama_angles", "candidates"):
                assert np.array_equal(sobs[b][key], bobs[key][b].numpy()), key  # bit-identical
            assert sinfo[b]["teacher"] == int(binfo["teacher"][b])
            assert np.array_equal(sinfo[b]["action_mask"], binfo["action_mask"][b].numpy())
            d = sinfo[b]["distance_to_goal"]
            assert (math.isinf(d) and math.isinf(float(binfo["distance_to_goal"][b]))) or \
                d == pytest.approx(float(binfo["distance_to_goal"][b]), rel=1e-6)
            assert batched.viewpoint_names(binfo["viewpoint"][b:b + 1]) == [sinfo[b]["viewpoint"]]
            compared += 1
        if all(done):
            break
        acts = []
        for b in range(len(ids)):
            n = int(sinfo[b]["action_mask"].sum()) - 1
            r = rng.random()
            acts.append(n if r < stop_prob else (batched.K - 1 if r < stop_prob * 1.5 else int(rng.integers(0, max(n, 1)))))
        acts += [0] * (batched.num_envs - len(ids))
        bobs, brew, bterm, btrunc, binfo = batched.step(torch.tensor(acts))
        for b in range(len(ids)):
            if done[b]:
                assert float(brew[b]) == 0 and not bterm[b] and not btrunc[b]
                continue
            sobs[b], r, term, trunc, sinfo[b] = single[b].step(acts[b])
            assert r == float(brew[b]) and term == bool(bterm[b]) and trunc == bool(btrunc[b])
            done[b] = term or trunc
    for b, traj in enumerate(batched.trajectories()[: len(ids)]):
        ref = sinfo[b]["trajectory"]
        assert traj is not None and [t[0] for t in traj] == [t[0] for t in ref]
        assert np.allclose([t[1:] for t in traj], [t[1:] for t in ref])
    return compared


def test_batched_equals_single_on_tiny_world_with_features(tmp_path: Path) -> None:
    vps, train, test = two_scan_world(tmp_path)
    feats = write_features(tmp_path / "f.h5", vps, dim=8)
    conn = tmp_path / "connectivity"
    batched = BatchedNavEnv(conn, train, feats, num_envs=6, max_steps=6)
    ids = [e.instr_id for e in batched.episodes]
    single = [NavEnv(conn, train, feats, max_steps=6) for _ in ids]
    assert batched.feature_table.flat.dtype == torch.float16  # the store's dtype, kept losslessly
    total = sum(_compare_random_rollout(single, batched, ids, seed) for seed in range(8))
    assert total > 100
    assert batched.trajectories()[5] is None and batched.instr_ids()[5] is None  # unused slot
    # test split: no goal, no teacher, zero rewards
    bt = BatchedNavEnv(conn, test, num_envs=2)
    _compare_random_rollout([NavEnv(conn, test)], bt, ["9_0"], seed=1)


def test_index_observation_reads_the_copied_values_from_the_table(tmp_path: Path) -> None:
    """observation="indices": the table rows the agent gathers are the copied observation's values."""
    vps, train, _ = two_scan_world(tmp_path)
    feats = write_features(tmp_path / "f.h5", vps, dim=8)
    conn = tmp_path / "connectivity"
    copied = BatchedNavEnv(conn, train, feats, num_envs=6, max_steps=6)
    indexed = BatchedNavEnv(task=copied.task, num_envs=6, observation="indices")
    assert indexed.single_observation_space.contains(
        {k: v[0].numpy().astype(indexed.single_observation_space[k].dtype)
         for k, v in indexed.reset(options={"episode_indices": [0]})[0].items()})
    table = indexed.feature_table
    rng = np.random.default_rng(0)
    ids = [e.instr_id for e in copied.episodes]
    for seed in range(4):
        a, _ = copied.reset(options={"instr_ids": ids})
        b, info = indexed.reset(options={"instr_ids": ids})
        for _ in range(7):
            assert set(b) == {"instruction", "instruction_length", "viewpoint", "candidate_rows", "candidate_angles",
                              "candidate_mask", "num_candidates", "view_index"}
            pano = table.panorama_views(b["viewpoint"], b["view_index"])
            cand = table.candidate_views(b["candidate_rows"], b["candidate_angles"])
            assert torch.equal(pano.visual, a["panorama"]) and torch.equal(pano.angle, a["panorama_angles"])
            assert torch.equal(cand.joined(), a["candidates"])  # bit-identical, STOP/padding rows zero
            for key in ("instruction", "candidate_mask", "num_candidates", "view_index"):
                assert torch.equal(a[key], b[key]), key
            acts = torch.as_tensor(rng.integers(0, copied.K, size=6))
            a, ra, *_ = copied.step(acts)
            b, rb, _, _, info = indexed.step(acts)
            assert torch.equal(ra, rb)
    with pytest.raises(ValueError, match="observation"):
        BatchedNavEnv(task=copied.task, observation="pixels")


def test_batched_equals_single_on_real_graphs(shared_connectivity: Path, shared_r2r_train: Path) -> None:
    eps = read_r2r(shared_r2r_train)
    rng = np.random.default_rng(0)
    pick = [eps[i] for i in rng.choice(len(eps), 24, replace=False)]
    graphs = GraphStore(shared_connectivity)
    batched = BatchedNavEnv(graphs, pick, num_envs=24)
    single = [NavEnv(graphs, pick, vocab=batched.vocab) for _ in pick]
    assert _compare_random_rollout(single, batched, [e.instr_id for e in pick], seed=3, stop_prob=0.03) > 24 * 10


def test_teacher_solves_every_r2r_train_episode(shared_connectivity: Path, shared_r2r_train: Path) -> None:
    env = BatchedNavEnv(shared_connectivity, shared_r2r_train, num_envs=2048)
    eps = env.episodes
    assert len(eps) == 14039
    successes, moves_ok = 0, 0
    for start in range(0, len(eps), env.num_envs):
        ids = [e.instr_id for e in eps[start:start + env.num_envs]]
        ro = env.rollout(lambda obs, info: None, feedback="teacher", reset_options={"instr_ids": ids},
                         early_exit=True)
        k = len(ids)
        final = ro.final_distance[:k]
        successes += int((final < 3).sum())
        assert (final == 0).all()  # it stops exactly at the goal
        # every move gets closer (+1) and the stop earns +2
        active = ro.active[:, :k]
        assert torch.equal(ro.rewards[:, :k].sum(0), active.sum(0).float() + 1)
        n_moves = active.sum(0) - 1
        expected = torch.tensor([len(env.task.graphs[e.scan].shortest_path(e.start, e.path[-1])) - 1
                                 for e in eps[start:start + k]])
        moves_ok += int((n_moves == expected).sum())
    assert successes / len(eps) == 1.0
    assert moves_ok == len(eps)


def test_reset_walk_partial_batches_and_errors(tmp_path: Path) -> None:
    _, train, _ = two_scan_world(tmp_path)
    env = BatchedNavEnv(tmp_path / "connectivity", train, num_envs=3)
    env.reset()
    assert env.instr_ids() == ["1_0", "1_1", "2_0"]
    env.reset()
    assert env.instr_ids() == ["3_0", "4_0", "1_0"]  # wraps into the next pass
    obs, info = env.reset(options={"instr_ids": ["4_0"]})
    assert info["active"].tolist() == [True, False, False] and info["done"].tolist() == [False, True, True]
    assert obs["candidate_mask"].shape == (3, 16) and obs["candidates"].shape == (3, 16, 128)
    with pytest.raises(DataError, match="unknown instr_id"):
        env.reset(options={"instr_ids": ["nope"]})
    with pytest.raises(DataError, match="for a batch of 3"):
        env.reset(options={"instr_ids": ["1_0", "1_1", "2_0", "3_0"]})
    sh = BatchedNavEnv(tmp_path / "connectivity", train, num_envs=2, shuffle=True)
    sh.reset(seed=4)
    first = sh.instr_ids() + (sh.reset() and sh.instr_ids())
    sh.reset(seed=4)
    again = sh.instr_ids() + (sh.reset() and sh.instr_ids())
    assert first == again and len(set(first)) == 4


def test_select_actions_and_sampled_rollout(tmp_path: Path) -> None:
    _, train, _ = two_scan_world(tmp_path)
    env = BatchedNavEnv(tmp_path / "connectivity", train, num_envs=5, max_steps=8)
    gen = torch.Generator().manual_seed(0)
    logits = torch.arange(16.0).repeat(5, 1)
    logits[:, 15] = 100.0  # masked out everywhere: must never be chosen

    def policy(obs, info):
        return logits.clone(), "value"

    ro = env.rollout(policy, feedback="sample", generator=gen)
    assert ro.actions.shape == (8, 5) and ro.rewards.shape == (8, 5) and ro.distance.shape == (9, 5)
    assert ro.outputs[0][1] == "value"
    assert (ro.actions < 15).all()
    # rewards are zero once an item is no longer active; active is monotone
    assert (ro.rewards[~ro.active] == 0).all()
    assert (ro.active[1:] <= ro.active[:-1]).all()
    obs, info = env.reset()
    greedy = BatchedNavEnv.select_actions(logits, obs, info, "argmax")
    assert torch.equal(greedy, obs["num_candidates"])  # the highest unmasked slot is STOP
    with pytest.raises(ValueError):
        BatchedNavEnv.select_actions(None, obs, info, "sample")


def test_strict_actions_numpy_input_and_episode_indices(tmp_path: Path) -> None:
    _, train, _ = two_scan_world(tmp_path)
    env = BatchedNavEnv(tmp_path / "connectivity", train, num_envs=2, strict=True)
    obs, info = env.reset(options={"episode_indices": [3, 0]})
    assert env.instr_ids() == ["3_0", "1_0"]
    n = obs["num_candidates"]
    with pytest.raises(ValueError, match="item 1: action 9 is not valid"):
        env.step(np.array([0, 9]))
    with pytest.raises(DataError, match="out of range"):
        env.reset(options={"episode_indices": [7]})
    # numpy / list actions work; STOP at slot n for both items ends them with a +-2 reward
    obs, reward, term, trunc, info = env.step(n.numpy())
    assert term.all() and not trunc.any() and info["done"].all()
    assert set(reward.abs().tolist()) == {2.0}
    obs, reward, term, trunc, info = env.step([0, 0])  # ended items ignore their actions
    assert (reward == 0).all() and not term.any() and (info["teacher"] == -1).all()


def test_next_hop_matches_graph(tmp_path: Path) -> None:
    _, train, test = two_scan_world(tmp_path)
    env = BatchedNavEnv(tmp_path / "connectivity", train, num_envs=5)
    env.reset()
    names = env.viewpoint_names(env.next_hop())
    for ep, name in zip(env.current_episodes(), names):
        assert name == env.task.graphs[ep.scan].next_step(ep.start, ep.path[-1])
    tenv = BatchedNavEnv(tmp_path / "connectivity", test, num_envs=1)
    tenv.reset()
    assert tenv.next_hop().tolist() == [-1]
