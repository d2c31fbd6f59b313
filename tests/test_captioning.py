"""Captioning: SCST gradient sign, beam vs greedy, resume bit-exact, results files, caption eval."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vln_clip.captioning.decoding import beam_search, greedy, sample, sequence_logprobs
from vln_clip.captioning.model import TransformerCaptioner, preset
from vln_clip.captioning.predict import baseline_captions, predict_captions, target_images
from vln_clip.captioning.scst import CiderReward, mean_of_others, scst_loss
from vln_clip.captioning.train import CaptionTask, CaptionTrainConfig
from vln_clip.captioning.vocab import BOS, EOS, PAD, CaptionVocab
from vln_clip.cli.main import main as cli
from vln_clip.datasets.coco import CaptionImage, KarpathyImage, KarpathySentence, write_captions, write_karpathy
from vln_clip.datasets.results import read_caption_results, write_caption_results
from vln_clip.errors import DataError
from vln_clip.features.store import FeatureWriter
from vln_clip.train import LoopConfig, OptimizerConfig, fit, load_checkpoint

COLORS = ("red", "blue", "green", "white")
OBJECTS = ("chair", "table", "sofa", "lamp")
TEMPLATES = ("a {c} {o}", "a {c} {o} in a room", "there is a {c} {o}", "the {o} is {c}", "a {o} that is {c}")


def build_world(out: Path, n_train: int = 24, n_val: int = 8, dim: int = 8) -> Path:
    """Karpathy file + COCO val captions + a grid store where cell (0,0) says the colour and the
    last cell the object; grids are 2x3 or 2x2 (padding masks matter)."""
    rng = np.random.default_rng(0)
    images, val = [], []
    sid = 0
    with FeatureWriter(out / "grid.h5", dim, {"kind": "grid", "encoder": "toy", "weights": "random"}) as fw:
        for i in range(n_train + n_val):
            c, o = int(rng.integers(4)), int(rng.integers(4))
            sents = []
            for t in TEMPLATES:
                raw = t.format(c=COLORS[c], o=OBJECTS[o])
                sents.append(KarpathySentence(sid, raw, raw.split()))
                sid += 1
            key = f"COCO_synth_{i + 1:012d}"
            split = "train" if i < n_train else "val"
            images.append(KarpathyImage(i, key, key + ".jpg", split, sents, "images", i + 1))
            grid = rng.normal(0, 0.3, size=(2, 3 if i % 2 else 2, dim)).astype(np.float32)
            grid[0, 0, c] += 2.0
            grid[-1, -1, 4 + o] += 2.0
            fw.write_item(key, grid)
            if split == "val":
                val.append(CaptionImage(i + 1, key, key + ".jpg", captions=[s.raw for s in sents]))
    write_karpathy(out / "coco" / "dataset_coco.json", images)
    write_captions(out / "coco" / "captions_val.json", val)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(tmp_path_factory.mktemp("capworld"))


def tiny_config(world: Path, **kw) -> CaptionTrainConfig:
    base = dict(data=str(world), features=str(world / "grid.h5"), preset="tiny", min_count=1, batch_size=8,
                model=dict(d_model=16, heads=2, ff_dim=32, enc_layers=1, dec_layers=1),
                optim=OptimizerConfig("adam", lr=3e-3, betas=(0.9, 0.98), grad_clip=1.0))
    base.update(kw)
    return CaptionTrainConfig(**base)


def loop(out: Path, iters: int, **kw) -> LoopConfig:
    return LoopConfig(out_dir=str(out), iters=iters, eval_every=0, log_every=1, save_every=0, seed=0,
                      best_metric="val/CIDEr", progress="off", **kw)


# ----------------------------------------------------------------------------------------


def test_scst_step_moves_probability_to_the_higher_reward_sample() -> None:
    torch.manual_seed(0)
    model = TransformerCaptioner(preset("tiny", feat_dim=8, vocab_size=12, d_model=16, heads=2, ff_dim=32,
                                        enc_layers=1, dec_layers=1, dropout=0.0, max_len=5))
    feats, mask = torch.randn(1, 4, 8), torch.ones(1, 4, dtype=torch.bool)
    memory, pad = model.encode(feats, mask)
    samples = sample(model, memory, pad, n=2, max_len=5, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(samples[0], samples[1])
    rewards = torch.tensor([[1.0, 0.0]])  # sample 0 is the better one
    advantage = (rewards - mean_of_others(rewards)).reshape(-1)
    assert advantage.tolist() == [1.0, -1.0]  # n = 2: the baseline is the other sample

    def seq_logp() -> torch.Tensor:
        m, p = model.encode(feats, mask)
        return sequence_logprobs(model, m.repeat_interleave(2, 0), p.repeat_interleave(2, 0), samples)

    before, tok = seq_logp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    scst_loss(*seq_logp(), advantage).backward()
    opt.step()
    after = seq_logp()[0].sum(1).detach()
    before = before.sum(1).detach()
    assert after[0] > before[0] and after[1] < before[1]
    # Counted tokens: words up to the sampled EOS, never the padding after it.
    for row, counted in zip(samples.tolist(), tok.tolist()):
        n = row.index(EOS) + 1 if EOS in row[:-1] else len(row) - 1
        assert counted == [True] * n + [False] * (len(row) - n)


def test_mean_of_others_and_reward() -> None:
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert mean_of_others(r).tolist() == [[3.5, 3.25, 3.0, 2.75, 2.5]]
    reward = CiderReward({"a": ["a red chair", "a red seat"], "b": ["a blue lamp"]})
    got = reward(["a red chair", "a blue lamp", "a blue lamp"], ["a", "a", "b"])
    assert got[0] > got[1] and got[2] > got[1]


class MarkovModel(torch.nn.Module):
    """Next-word distribution depends on the last word only: BOS -> a 0.6 | b 0.4;
    a -> c 0.36 | d 0.34 | EOS 0.3; b -> EOS 0.9 | c 0.1; c, d -> EOS.
    Greedy takes 'a' (0.6) and ends with p = 0.6 * 0.36 = 0.216; 'b <eos>' has 0.36."""

    A, B, C, D = 4, 5, 6, 7

    def __init__(self) -> None:
        super().__init__()
        table = torch.full((8, 8), 1e-9)
        table[BOS, self.A], table[BOS, self.B] = 0.6, 0.4
        table[self.A, self.C], table[self.A, self.D], table[self.A, EOS] = 0.36, 0.34, 0.3
        table[self.B, EOS], table[self.B, self.C] = 0.9, 0.1
        table[self.C, EOS] = table[self.D, EOS] = table[EOS, EOS] = table[PAD, EOS] = 1.0
        self.register_buffer("logp", torch.log(table / table.sum(1, keepdim=True)))

    def next_logprobs(self, memory, mem_pad, prefix):
        return self.logp[prefix[:, -1]]


def test_beam_search_finds_the_sequence_greedy_misses() -> None:
    model = MarkovModel()
    memory, pad = torch.zeros(2, 1, 1), torch.zeros(2, 1, dtype=torch.bool)
    g = greedy(model, memory, pad, max_len=4)
    assert g[0].tolist() == [model.A, model.C, EOS, PAD, PAD]
    tokens, score = beam_search(model, memory, pad, beam=2, max_len=4)
    assert tokens[0].tolist() == [model.B, EOS, PAD, PAD, PAD]
    assert score[0].item() == pytest.approx(math.log(0.36), abs=1e-5)
    assert beam_search(model, memory, pad, beam=1, max_len=4)[0][0].tolist() == g[0].tolist()
    # Length normalisation divides by the length (EOS counted): log(0.36) / 2.
    _, norm = beam_search(model, memory, pad, beam=2, max_len=4, length_norm=1.0)
    assert norm[0].item() == pytest.approx(math.log(0.36) / 2, abs=1e-5)
    # The word limit forces an end: one word allowed -> EOS appended to 'a'.
    assert greedy(model, memory, pad, max_len=1)[0].tolist() == [model.A, EOS]


def test_vocabulary_threshold_and_round_trip() -> None:
    caps = [["a", "red", "chair"]] * 5 + [["a", "rare", "sofa"]]
    vocab = CaptionVocab.build(caps, min_count=5)
    assert vocab.words[4:] == ["a", "chair", "red"]
    t = vocab.targets([["a", "rare", "chair"]], max_len=2)
    assert t.tolist() == [[BOS, vocab.index["a"], 3, EOS]]
    assert vocab.decode(t[0, 1:].tolist()) == "a UNK"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["models"]["captioner"]


def test_xe_and_scst_resume_bit_exact(world: Path, tmp_path: Path) -> None:
    fit(CaptionTask(tiny_config(world)), loop(tmp_path / "xe", 2))
    xe_best = tmp_path / "xe" / "best.pt"
    assert xe_best.exists()
    for stage, cfg in (("xe", tiny_config(world)),
                       ("scst", tiny_config(world, scst_from=str(xe_best), scst_samples=3))):
        straight = fit(CaptionTask(cfg), loop(tmp_path / f"{stage}_a", 3))
        fit(CaptionTask(cfg), loop(tmp_path / f"{stage}_b", 3), stop_after=1)
        resumed = fit(CaptionTask(cfg), loop(tmp_path / f"{stage}_b", 3, resume=True))
        a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
        assert all(torch.equal(a[k], b[k]) for k in a), stage
        assert straight.metrics == resumed.metrics
    scst_hist = [h for h in straight.history if "reward" in h]
    assert scst_hist and all(0 <= h["reward"] <= 10 for h in scst_hist)
    # The original SCST: the greedy caption's reward is the baseline (one update runs and logs it).
    greedy_run = fit(CaptionTask(tiny_config(world, scst_from=str(xe_best), scst_baseline="greedy")),
                     loop(tmp_path / "scst_greedy", 1))
    logged = [h for h in greedy_run.history if "baseline" in h]
    assert logged and 0 <= logged[0]["baseline"] <= 10


def test_xe_training_learns_and_predict_writes_results(world: Path, tmp_path: Path) -> None:
    """A short XE run beats the constant caption on val CIDEr-D; predict + --check round trip."""
    res = fit(CaptionTask(tiny_config(world, model=dict(d_model=32, heads=2, ff_dim=64, enc_layers=1, dec_layers=1),
                                      optim=OptimizerConfig("adam", lr=5e-3, betas=(0.9, 0.98), grad_clip=1.0))),
              loop(tmp_path / "run", 80))
    target = target_images("val", str(world))
    preds = predict_captions(res.best_checkpoint, world / "grid.h5", target, beam=3)
    const = baseline_captions("constant", str(world), world / "grid.h5", target)
    nearest = baseline_captions("nearest", str(world), world / "grid.h5", target)
    task = CaptionTask(tiny_config(world))
    task.setup(type("Ctx", (), {"device": torch.device("cpu")})())
    keys = {i: k for i, k in zip(target.image_ids, target.keys)}

    def cider(caps: dict[int, str]) -> float:
        return float(task.val_cider.scores([caps[i] for i in keys], list(keys.values())).mean())

    assert len(set(const.values())) == 1
    assert cider(preds) > cider(const) + 0.5
    assert cider(nearest) > cider(const)
    out = tmp_path / "preds.json"
    write_caption_results(out, preds)
    assert cli(["caption", "predict", "--check", str(out), "--captions", str(world / "coco" / "captions_val.json")]) == 0
    assert cli(["caption", "predict", "--checkpoint", str(res.best_checkpoint), "--features",
                str(world / "grid.h5"), "--data", str(world), "--images-from", "val", "--out", str(out),
                "--decoder", "greedy"]) == 0
    assert set(read_caption_results(out)) == set(target.image_ids)


def test_results_file_validation_names_the_entry(world: Path, tmp_path: Path, capsys) -> None:
    caps = str(world / "coco" / "captions_val.json")
    bad = tmp_path / "bad.json"
    cases = [
        ([{"image_id": 25, "caption": "a"}, {"image_id": 25, "caption": "b"}], "entry [1]"),
        ([{"image_id": "25", "caption": "a"}], "entry [0]"),
        ([{"image_id": 25}], "caption"),
        ({"image_id": 25}, "list"),
        ([{"image_id": 999, "caption": "a"}], "999"),
    ]
    for rows, needle in cases:
        bad.write_text(json.dumps(rows))
        assert cli(["caption", "predict", "--check", str(bad), "--captions", caps]) == 2
        err = capsys.readouterr().err
        assert needle in err and str(bad) in err and "Traceback" not in err
    bad.write_text(json.dumps([{"image_id": 25, "caption": "a"}]))
    with pytest.raises(DataError, match="have no entry"):
        read_caption_results(bad, [25, 26])


@pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap's PTB tokenizer and METEOR need Java")
def test_caption_eval_matches_pycocoevalcap(tmp_path: Path, capsys) -> None:
    """Predictions equal to a reference up to case and punctuation: after PTB tokenisation
    BLEU-1..4 and ROUGE-L are 1; CIDEr equals our CIDEr-D on the tokenised references."""
    from vln_clip.eval.cider import CiderD

    refs = {1: ["A red chair in a small room.", "a red chair next to a table"],
            2: ["A blue sofa, near the window.", "a blue couch by a window"],
            3: ["Two lamps on a white table!", "white table with two lamps"]}
    write_captions(tmp_path / "caps.json", [CaptionImage(i, f"COCO_synth_{i:012d}", f"COCO_synth_{i:012d}.jpg",
                                                         captions=c) for i, c in refs.items()])
    preds = {1: "a RED chair in a small room", 2: "A blue sofa near the window", 3: "white table, with two lamps."}
    write_caption_results(tmp_path / "preds.json", preds)
    assert cli(["caption", "eval", "--captions", str(tmp_path / "caps.json"), "--preds",
                str(tmp_path / "preds.json"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    for k in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L"):
        assert scores[k] == pytest.approx(1.0, abs=1e-6), k
    assert 0.5 < scores["METEOR"] <= 1.0
    tokenised = {1: ["a red chair in a small room", "a red chair next to a table"],
                 2: ["a blue sofa near the window", "a blue couch by a window"],
                 3: ["two lamps on a white table", "white table with two lamps"]}
    ours, _ = CiderD(tokenised).corpus_score({1: tokenised[1][0], 2: tokenised[2][0], 3: tokenised[3][1]})
    assert scores["CIDEr"] == pytest.approx(ours, abs=1e-9)
    assert scores["n_images"] == 3
    assert "SPICE" in scores or "CoreNLP" in scores["skipped"]["SPICE"]
