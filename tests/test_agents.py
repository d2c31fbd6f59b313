"""Agents without training loops: models, feature dropout, BLEU, tokenizers, config, aug paths."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path

import pytest
import torch

from vln_clip.agents.aug_paths import hop_counts, read_aug_paths, sample_aug_paths, write_aug_paths
from vln_clip.agents.config import TrainConfig
from vln_clip.agents.follower import Follower, drop_visual
from vln_clip.agents.speaker import Speaker, corpus_bleu
from vln_clip.errors import DataError
from vln_clip.graph import GraphStore
from vln_clip.tokenizers import Vocab, r2r_tokenize, tokenize, unicode_tokenize

from agents_world import make_plus_world
from helpers import line_world


def _follower(d: int = 6) -> Follower:
    torch.manual_seed(0)
    return Follower(vocab_size=20, feature_dim=d, embed_dim=16, hidden_dim=32, angle_embed_dim=8)


def _inputs(b: int = 3, d: int = 6, k: int = 5, l: int = 7):
    g = torch.Generator().manual_seed(1)
    tok = torch.randint(4, 20, (b, l), generator=g)
    mask = torch.ones(b, l, dtype=torch.bool)
    mask[0, 4:] = False
    tok[0, 4:] = 0
    pano = torch.randn(b, 36, d + 128, generator=g)
    cand = torch.randn(b, k, d + 128, generator=g)
    cmask = torch.ones(b, k, dtype=torch.bool)
    cmask[1, 3:] = False
    return tok, mask, pano, cand, cmask


def test_follower_shapes_masks_and_padding():
    m = _follower().eval()
    tok, mask, pano, cand, cmask = _inputs()
    ctx, h, c = m.encode(tok, mask)
    assert ctx.shape == (3, 7, 32) and h.shape == (3, 32) and c.shape == (3, 32)
    logits, h2, c2, h_tilde, word_attn, view_attn = m.step(torch.zeros(3, 128), pano, cand, cmask, h, c, ctx, mask)
    assert logits.shape == (3, 5) and view_attn.shape == (3, 36) and word_attn.shape == (3, 7)
    # masked candidates can never be chosen, padded words get no attention
    assert torch.softmax(logits, 1)[1, 3:].max() < 1e-12
    assert word_attn[0, 4:].max() < 1e-12
    assert torch.allclose(view_attn.sum(1), torch.ones(3))
    assert m.value(h_tilde).shape == (3,)
    # the STOP row (zero feature) has logit exactly 0 in the bilinear scorer
    cand[:, -1] = 0
    cmask[:, -1] = True
    logits = m.step(torch.zeros(3, 128), pano, cand, cmask, h, c, ctx, mask)[0]
    assert torch.all(logits[:, -1] == 0)


def test_follower_vision_free_uses_angles_only():
    m = Follower(20, 0, embed_dim=16, hidden_dim=32, angle_embed_dim=8).eval()
    tok, mask, pano, cand, cmask = _inputs(d=0)
    ctx, h, c = m.encode(tok, mask)
    logits = m.step(torch.zeros(3, 128), pano, cand, cmask, h, c, ctx, mask)[0]
    assert logits.shape == (3, 5)
    assert m.env_dropout_mask(3, 0.4) is None


def test_feature_dropout_touches_visual_channels_only():
    drop = torch.nn.Dropout(0.5).train()
    x = torch.ones(2, 36, 10 + 128)
    y = drop_visual(x, 10, drop, None)
    assert torch.all(y[..., 10:] == 1)  # angles survive
    assert (y[..., :10] == 0).any() and set(y[..., :10].unique().tolist()) <= {0.0, 2.0}


def test_environmental_dropout_mask_is_shared_by_views_and_steps():
    m = _follower(d=12)
    g = torch.Generator().manual_seed(3)
    env_mask = m.env_dropout_mask(2, 0.4, generator=g)
    assert env_mask.shape == (2, 12)
    assert torch.allclose(env_mask[env_mask > 0], torch.tensor(1 / 0.6)) and (env_mask == 0).any()
    pano = torch.ones(2, 36, 12 + 128)
    step1 = drop_visual(pano, 12, m.drop_env, env_mask)
    step2 = drop_visual(pano, 12, m.drop_env, env_mask)
    cand = drop_visual(torch.ones(2, 4, 12 + 128), 12, m.drop_env, env_mask)
    # the same channels vanish in every view, at every step, in the candidates too
    assert torch.equal(step1, step2)
    for v in range(36):
        assert torch.equal(step1[:, v, :12], env_mask)
    assert torch.equal(cand[:, 2, :12], env_mask)
    assert torch.all(step1[..., 12:] == 1)
    # and the speaker sees the same mask through the same helper
    sp = Speaker(20, 12, embed_dim=8, hidden_dim=16)
    seen = drop_visual(torch.ones(2, 3, 36, 140), 12, sp.drop_env, env_mask)
    assert torch.equal(seen[:, 1, 5, :12], env_mask)


def test_speaker_teacher_forcing_and_greedy_decoding():
    torch.manual_seed(0)
    sp = Speaker(12, 4, embed_dim=8, hidden_dim=16).eval()
    acts = torch.randn(2, 3, 132)
    panos = torch.randn(2, 3, 36, 132)
    smask = torch.tensor([[True, True, True], [True, True, False]])
    tokens = torch.tensor([[3, 5, 6, 2, 0], [3, 7, 2, 0, 0]])
    loss = sp.loss(acts, panos, smask, tokens, pad=0)
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    out = sp.generate(acts, panos, smask, bos=3, eos=2, max_len=7)
    assert len(out) == 2 and all(len(r) <= 7 and 2 not in r for r in out)


def test_bleu_hand_computed():
    hyp = "go down the hall and stop at the door".split()
    ref = "go down the hall and wait at the door".split()
    # precisions 8/9, 6/8, 4/7, 2/6; equal lengths -> no brevity penalty
    expected = (8 / 9 * 6 / 8 * 4 / 7 * 2 / 6) ** 0.25
    assert corpus_bleu([hyp], [[ref]]) == pytest.approx(expected, abs=1e-12)
    assert corpus_bleu([ref], [[ref]]) == pytest.approx(1.0)
    # brevity penalty: a 4-word exact prefix of an 8-word reference
    short = "go down the hall".split()
    assert corpus_bleu([short], [[ref[:8]]]) == pytest.approx(math.exp(1 - 8 / 4))
    # clipping: "the the the the" against "the cat" counts "the" once
    assert corpus_bleu(["the the the the".split()], [["the cat".split()]], max_n=1) == pytest.approx(
        0.25 * 1.0)  # p1 = 1/4, hyp longer than ref -> BP 1
    # multiple references: the closest length is used for the brevity penalty
    assert corpus_bleu([short], [[ref, short]]) == pytest.approx(1.0)
    assert corpus_bleu([["a", "b"]], [[["c", "d"]]]) == 0.0


# ---- tokenizers in three scripts -------------------------------------------------------------


def test_english_r2r_tokenizer():
    assert r2r_tokenize("Walk past the sofa, then turn LEFT... Stop!") == [
        "walk", "past", "the", "sofa", ",", "then", "turn", "left", "...", "stop", "!"]
    assert tokenize("Go up the stairs.", "en", "r2r") == ["go", "up", "the", "stairs", "."]


def test_devanagari_combining_marks_stay_inside_words():
    text = "बाएं मुड़ें और सीढ़ियों से ऊपर जाएं।"
    words = [unicodedata.normalize("NFC", w) for w in ["बाएं", "मुड़ें", "और", "सीढ़ियों", "से", "ऊपर", "जाएं", "।"]]
    assert unicode_tokenize(text) == words
    assert tokenize(text, "hi", "rxr") == words  # no local stanza models here: the Unicode fallback
    # the R2R rule (split at non-word characters) would tear the vowel signs off
    assert len([w for w in re.split(r"(\W+)", text) if w.strip()]) > len(words)


def test_telugu_combining_marks_stay_inside_words():
    text = "ఎడమవైపు తిరగండి, మెట్లు ఎక్కండి."
    words = ["ఎడమవైపు", "తిరగండి", ",", "మెట్లు", "ఎక్కండి", "."]
    assert unicode_tokenize(text) == [unicodedata.normalize("NFC", w) for w in words]
    # every token that contains a letter also keeps its marks (virama, vowel signs, anusvara)
    for tok in unicode_tokenize(text):
        assert not unicodedata.category(tok[0]).startswith("M")


def test_vocab_min_count_and_round_trip():
    sents = [["go", "left"]] * 5 + [["go", "right"]] * 4
    vocab = Vocab.build(sents, min_count=5)
    assert "left" in vocab.stoi and "right" not in vocab.stoi and vocab.pad == 0
    ids = vocab.encode(["go", "right", "left"], max_len=80)
    assert ids[0] == vocab.bos and ids[-1] == vocab.eos and ids[2] == vocab.unk
    assert vocab.decode(ids) == ["go", "<UNK>", "left"]


# ---- config ------------------------------------------------------------------------------------


def test_presets_hold_the_paper_settings():
    r2r, rxr, syn = (TrainConfig.preset(n) for n in ("r2r", "rxr", "synthetic"))
    assert (r2r.ml_weight, r2r.max_instr_len, r2r.iters, r2r.selection_metric) == (0.2, 80, 80_000, "success")
    assert (rxr.ml_weight, rxr.max_instr_len, rxr.iters, rxr.selection_metric) == (0.4, 160, 200_000, "ndtw")
    assert (r2r.lr, r2r.batch_size, r2r.max_actions, r2r.gamma, r2r.grad_clip) == (1e-4, 64, 35, 0.9, 40.0)
    assert syn.dataset == "synthetic" and syn.tokenizer_dataset == "r2r" and rxr.tokenizer_dataset == "rxr"
    cfg = TrainConfig.preset("r2r", batch_size=8, iters=None)
    assert cfg.batch_size == 8 and cfg.iters == 80_000
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        TrainConfig.preset("r2r", agent="critic")


# ---- augmentation paths --------------------------------------------------------------------------


def test_hop_counts_on_a_line(tmp_path: Path):
    line_world(tmp_path, n=6)
    g = GraphStore(tmp_path)["lineScan"]
    hops = hop_counts(g, max_hops=3)
    assert hops[0, 3] == 3 and hops[2, 2] == 0 and hops[1, 0] == 1
    assert hops[0, 5] == 4  # longer than max_hops -> max_hops + 1


def test_aug_paths_follow_r2r_statistics(tmp_path: Path):
    line_world(tmp_path, n=9, spacing=2.0)
    g = GraphStore(tmp_path)["lineScan"]
    items = sample_aug_paths(GraphStore(tmp_path), ["lineScan"], per_scan=100, seed=0)
    # on a line, 4-6 edges of 2 m: (start, goal) pairs with |i - j| in 4..6 -> 2 * (5 + 4 + 3)
    assert len(items) == 24
    for it in items:
        assert 4 <= len(it["path"]) - 1 <= 6 and it["distance"] >= 5.0 and it["instructions"] == []
        assert it["path"] == g.shortest_path(it["path"][0], it["path"][-1])
    assert len({it["path_id"] for it in items}) == len(items)
    again = sample_aug_paths(GraphStore(tmp_path), ["lineScan"], per_scan=5, seed=0)
    assert len(again) == 5 and again == sample_aug_paths(GraphStore(tmp_path), ["lineScan"], per_scan=5, seed=0)


def test_aug_paths_cli_excludes_training_pairs(tmp_path: Path):
    from vln_clip.cli.main import main

    make_plus_world(tmp_path, features_dim=None)
    out = tmp_path / "aug.json"
    rc = main(["data", "aug-paths", "--connectivity", str(tmp_path / "connectivity"), "--scans-from",
               str(tmp_path / "r2r" / "R2R_train.json"), "--out", str(out), "--min-edges", "2",
               "--max-edges", "4", "--min-distance", "5"])
    assert rc == 0
    items = json.loads(out.read_text())
    train = json.loads((tmp_path / "r2r" / "R2R_train.json").read_text())
    train_pairs = {(t["scan"], t["path"][0], t["path"][-1]) for t in train}
    assert items and all((i["scan"], i["path"][0], i["path"][-1]) not in train_pairs for i in items)
    assert {i["scan"] for i in items} == {t["scan"] for t in train}  # training scans only
    assert min(i["path_id"] for i in items) > max(t["path_id"] for t in train)
    eps = read_aug_paths(out)
    assert len(eps) == len(items) and eps[0].instr_id == f"{items[0]['path_id']}_0"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"scan": "plus0", "path": ["a", "b"], "heading": 0}]))
    with pytest.raises(DataError, match="path_id"):
        read_aug_paths(bad)


def test_aug_paths_on_the_real_graphs(shared_connectivity: Path, shared_r2r_train: Path, tmp_path: Path):
    summary = write_aug_paths(shared_connectivity, shared_r2r_train, tmp_path / "aug.json", per_scan=20, seed=0)
    assert summary["paths"] >= 20 * 55 and 4.0 <= summary["mean_edges"] <= 6.0
    assert summary["mean_distance"] >= 5.0
