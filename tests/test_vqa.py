"""VQA: tokenisation, GloVe reader, prior baseline, both models overfitting a toy set through the
training core, bit-exact resume, predict / submission checks, the feature-store guard and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vln_clip.datasets.vqa import VQAItem, coco_image_key, write_vqa
from vln_clip.errors import DataError
from vln_clip.features.store import FeatureWriter
from vln_clip.tokenizers import Vocab
from vln_clip.train import LoopConfig, load_checkpoint
from vln_clip.vqa.baselines import PriorBaseline
from vln_clip.vqa.models import build_model, model_config
from vln_clip.vqa.predict import PredictConfig, check_submission, predict_vqa
from vln_clip.vqa.text import encode_question, read_glove, vqa_tokenize
from vln_clip.vqa.training import VQATrainConfig, train_vqa


COLORS = ("red", "green", "blue", "yellow")
GRIDS = ((3, 4), (4, 3), (2, 5), (3, 3))  # variable grid sizes: padding and masks matter
DIM = 8


def item(qid: int, image_id: int, question: str, answer: str, qtype: str, atype: str,
         answers: list[str] | None = None) -> VQAItem:
    answers = answers or [answer] * 10
    return VQAItem(qid, image_id, coco_image_key("synth", image_id), question, qtype, atype, answers, answer)


def toy_items() -> list[VQAItem]:
    """Four images, one ball each (its colour is the answer); two questions per image."""
    out = []
    for i, color in enumerate(COLORS):
        out.append(item(10 * i + 1, i + 1, "What color is the ball?", color, "what color is the", "other"))
        yes = "yes" if i % 2 == 0 else "no"
        out.append(item(10 * i + 2, i + 1, f"Is the ball {COLORS[0] if yes == 'yes' else COLORS[1]}?",
                        "yes" if color == (COLORS[0] if yes == "yes" else COLORS[1]) else "no", "is the", "yes/no"))
    return out


def toy_grid(image_id: int) -> np.ndarray:
    h, w = GRIDS[(image_id - 1) % len(GRIDS)]
    rng = np.random.default_rng(image_id)
    g = rng.normal(0, 0.1, size=(h, w, DIM)).astype(np.float32)
    g[h // 2, w // 2, (image_id - 1) % len(COLORS)] += 3.0  # the ball's colour in one cell
    return g


def write_world(root: Path, items: list[VQAItem], encoder: str = "toy", weights: str = "random") -> tuple[Path, Path]:
    """A data folder (train and val = the same questions) and a grid store for its images."""
    for split in ("train", "val"):
        write_vqa(root / "vqa" / f"v2_OpenEnded_mscoco_{split}_questions.json",
                  root / "vqa" / f"v2_mscoco_{split}_annotations.json", items, data_subtype="synth")
    store = root / f"grid_{encoder}_{weights}.h5"
    with FeatureWriter(store, DIM, {"kind": "grid", "encoder": encoder, "weights": weights}) as w:
        for image_id in sorted({it.image_id for it in items}):
            w.write_item(coco_image_key("synth", image_id), toy_grid(image_id))
    return root, store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_world(tmp_path_factory.mktemp("vqa_world"), toy_items())


def loop(out: Path, iters: int, **kw) -> LoopConfig:
    return LoopConfig(out_dir=str(out), iters=iters, eval_every=kw.pop("eval_every", iters), log_every=10,
                      save_every=kw.pop("save_every", iters), seed=0, progress="off", **kw)


# --- text ------------------------------------------------------------------------------------

def test_tokenize_like_openvqa() -> None:
    assert vqa_tokenize("What's the man's T-shirt colour?") == ["whats", "the", "mans", "t", "shirt", "colour"]
    assert vqa_tokenize("Is it 3/4 full, or (mostly) empty!") == ["is", "it", "3", "4", "full", "or", "mostly", "empty"]
    vocab = Vocab(["what", "is"])
    ids = encode_question(vocab, "what is " + "x " * 20)
    assert len(ids) == 14 and ids[:2] == [vocab.stoi["what"], vocab.stoi["is"]] and ids[2] == vocab.unk


def test_glove_reader(tmp_path: Path) -> None:
    vocab = Vocab(["ball", "red"])
    good = tmp_path / "g.txt"
    good.write_text("red 1 2 3\nother 9 9 9\nball 4 5 6\n")
    table, found = read_glove(good, vocab)
    assert found == 2 and table.shape == (len(vocab), 3)
    assert table[vocab.stoi["ball"]].tolist() == [4, 5, 6] and not table[vocab.pad].any()
    bad = tmp_path / "bad.txt"
    bad.write_text("red 1 2 3\nball 4 5\n")
    with pytest.raises(DataError, match=r"bad.txt:2: 2 numbers where line 1 had 3"):
        read_glove(bad, vocab)
    with pytest.raises(DataError, match="--embed-dim 3"):
        read_glove(good, vocab, dim=300)
    with pytest.raises(DataError, match="no such word-vector file"):
        read_glove(tmp_path / "missing.txt", vocab)


# --- prior -----------------------------------------------------------------------------------

def test_prior_baseline_hand_checked() -> None:
    train = [item(1, 1, "What color is the car?", "red", "what color is the", "other"),
             item(2, 1, "What color is the sky?", "blue", "what color is the", "other"),
             item(3, 2, "What color is the bus?", "red", "what color is the", "other"),
             item(4, 2, "How many dogs?", "2", "how many", "number"),
             item(5, 3, "How many cats?", "Two", "how many", "number"),   # normalised to "2"
             item(6, 3, "How many birds?", "3", "how many", "number"),
             item(7, 3, "Is it raining?", "yes", "is it", "yes/no"),
             item(8, 3, "Is it sunny?", "no", "is it", "yes/no")]       # tie yes/no -> "no"
    prior = PriorBaseline.fit(train)
    assert prior.by_type == {"what color is the": "red", "how many": "2", "is it": "no"}
    assert prior.overall == "2"  # "red" and "2" (with "Two") twice each: the tie goes to "2" < "red"
    test = [VQAItem(20, 9, "COCO_synth_000000000009", "what color is the tree?"),
            VQAItem(21, 9, "COCO_synth_000000000009", "How many trees are there?"),
            VQAItem(22, 9, "COCO_synth_000000000009", "Why is it dark?")]
    assert prior.predict(test) == {20: "red", 21: "2", 22: prior.overall}


# --- models through the training core ---------------------------------------------------------

_TRAINED: dict[str, object] = {}


def trained(world: tuple[Path, Path], root: Path, family: str):
    """One overfit run per family, shared by the tests of this module."""
    if family not in _TRAINED:
        data, store = world
        cfg = VQATrainConfig(data=str(data), features=str(store), model=family, preset="tiny", answer_min_count=1,
                             batch_size=8, lr=3e-3)
        _TRAINED[family] = train_vqa(cfg, loop(root / family, 60))
    return _TRAINED[family]


@pytest.mark.parametrize("family", ["pythia", "mcan"])
def test_models_overfit_toy_set(world: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory,
                                family: str) -> None:
    data, _ = world
    res = trained(world, tmp_path_factory.mktemp("runs"), family)
    assert res.metrics["val/accuracy"] == pytest.approx(100.0)
    assert res.best_checkpoint is not None and res.best_checkpoint.exists()
    # the same family without the image cannot tell the colours apart (one question, four answers)
    qcfg = VQATrainConfig(data=str(data), model=family, preset="tiny", answer_min_count=1, batch_size=8,
                          lr=3e-3, question_only=True)
    qres = train_vqa(qcfg, loop(tmp_path_factory.mktemp("runs") / f"{family}_q", 20))
    assert qres.metrics["val/accuracy_other"] <= 25.0 < res.metrics["val/accuracy_other"]


def test_padding_does_not_change_answers() -> None:
    torch.manual_seed(0)
    for family in ("pythia", "mcan"):
        m = build_model(family, model_config(family, "tiny"), 20, 5, DIM).eval()
        tokens = torch.tensor([[3, 4, 5, 0, 0]])
        grid = torch.randn(1, 6, DIM)
        mask = torch.ones(1, 6, dtype=torch.bool)
        padded = torch.cat([grid, 100 * torch.randn(1, 4, DIM)], 1)
        pmask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.bool)], 1)
        a, att = m(tokens, grid, mask)
        b, patt = m(tokens, padded, pmask)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert patt[..., 6:].abs().max() == 0


def test_grid_bank_pads_and_standardizes(world: tuple[Path, Path]) -> None:
    from vln_clip.features.store import FeatureStore
    from vln_clip.vqa.data import GridBank

    _, store = world
    keys = [coco_image_key("synth", i) for i in (1, 2, 3)]
    bank = GridBank(FeatureStore(store), keys)
    grid, mask = bank.batch(keys)
    assert grid.shape == (3, 12, DIM) and mask.sum(1).tolist() == [12, 12, 10]
    cells = np.concatenate([toy_grid(i).reshape(-1, DIM).astype(np.float16).astype(np.float64) for i in (1, 2, 3)])
    mean, std = bank.channel_stats()
    np.testing.assert_allclose(mean.numpy(), cells.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), cells.std(0), rtol=1e-4, atol=1e-6)
    bank.standardize(mean, std)
    z, _ = bank.batch(keys)
    np.testing.assert_allclose(z[mask].mean(0).numpy(), 0, atol=1e-5)
    assert z[~mask].abs().max() == 0  # padding stays zero


def test_resume_is_bit_exact(world: tuple[Path, Path], tmp_path: Path) -> None:
    data, store = world
    cfg = VQATrainConfig(data=str(data), features=str(store), model="mcan", preset="tiny", answer_min_count=1,
                         batch_size=4, dropout=0.1)
    straight = train_vqa(cfg, loop(tmp_path / "a", 12, eval_every=6, save_every=6))
    half = loop(tmp_path / "b", 12, eval_every=6, save_every=6)
    from vln_clip.vqa.training import VQATask
    from vln_clip.train import Trainer

    Trainer(VQATask(cfg, half), half).fit(stop_after=6)
    resumed = train_vqa(cfg, loop(tmp_path / "b", 12, eval_every=6, save_every=6, resume=True))
    assert resumed.step == straight.step == 12
    a = load_checkpoint(straight.last_checkpoint)["models"]["vqa"]
    b = load_checkpoint(resumed.last_checkpoint)["models"]["vqa"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- predict, submissions, feature-store guard --------------------------------------------------

def test_predict_check_and_store_guard(world: tuple[Path, Path], tmp_path: Path,
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    data, store = world
    res = trained(world, tmp_path_factory.mktemp("runs"), "pythia")
    questions = data / "vqa" / "v2_OpenEnded_mscoco_val_questions.json"
    preds = tmp_path / "preds.json"
    predict_vqa(PredictConfig(str(res.best_checkpoint), str(questions), str(preds), str(store),
                              attention_png=str(tmp_path / "att"), attention_count=3))
    rows = json.loads(preds.read_text())
    expected = {it.question_id: it.multiple_choice_answer for it in toy_items()}
    assert {r["question_id"]: r["answer"] for r in rows} == expected
    assert check_submission(preds, questions) == len(expected)
    assert len(list((tmp_path / "att").glob("q*.png"))) == 3

    def bad(rows_: list, match: str) -> None:
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(rows_))
        with pytest.raises(DataError, match=match):
            check_submission(p, questions)

    bad(rows + [rows[0]], r"entry \[8\].*already given by entry \[0\]")
    bad(rows[1:], r"1 of 8 question_ids have no entry \(first: 1\)")
    bad([{**rows[0], "answer": 3}] + rows[1:], r"entry \[0\].*answer")
    bad(rows + [{"question_id": 999, "answer": "x"}], r"999.*not in the evaluated set")

    # a store of another encoder / other weights is refused with the reason
    _, other = write_world(tmp_path / "other", toy_items(), encoder="clip_res50", weights="random")
    with pytest.raises(DataError, match="encoder is 'clip_res50' but 'toy' is expected"):
        predict_vqa(PredictConfig(str(res.best_checkpoint), str(questions), str(tmp_path / "p2.json"), str(other)))
    _, reweighted = write_world(tmp_path / "rew", toy_items(), encoder="toy", weights="openai:/x.pt")
    with pytest.raises(DataError, match="weights is 'openai:/x.pt' but 'random' is expected"):
        predict_vqa(PredictConfig(str(res.best_checkpoint), str(questions), str(tmp_path / "p3.json"),
                                  str(reweighted)))


def test_prior_through_train_predict_and_eval_cli(world: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from vln_clip.cli.main import main

    data, _ = world
    run = tmp_path / "prior"
    assert main(["vqa", "train", "--data", str(data), "--model", "prior", "--out", str(run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    # "what color is the": four colours once each -> "blue"; "is the": yes 2, no 2 -> "no"
    assert summary["metrics"]["val/accuracy_other"] == pytest.approx(25.0)
    assert summary["metrics"]["val/accuracy_yes_no"] == pytest.approx(50.0)
    q = data / "vqa" / "v2_OpenEnded_mscoco_val_questions.json"
    a = data / "vqa" / "v2_mscoco_val_annotations.json"
    preds = tmp_path / "prior.json"
    assert main(["vqa", "predict", "--checkpoint", str(run / "best.pt"), "--questions", str(q),
                 "--out", str(preds)]) == 0
    assert main(["vqa", "predict", "--check", str(preds), "--questions", str(q)]) == 0
    capsys.readouterr()
    assert main(["vqa", "eval", "--questions", str(q), "--annotations", str(a), "--preds", str(preds),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"] == pytest.approx(37.5)
    assert report["per_answer_type"]["yes/no"] == pytest.approx(50.0)
    assert report["per_question_type"] == {"what color is the": pytest.approx(25.0), "is the": pytest.approx(50.0)}
    preds.write_text(json.dumps([{"question_id": 1, "answer": "red"}]))
    assert main(["vqa", "predict", "--check", str(preds), "--questions", str(q)]) == 2
    assert "have no entry" in capsys.readouterr().err
