"""Image-text dataset formats: round trips, bad input refused with file + entry named, the answer
vocabulary and soft scores checked by hand."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from vln_clip.datasets import coco, gqa, lxmert, results, snli_ve, vqa
from vln_clip.datasets.vqa import AnswerVocab, VQAItem, coco_image_key
from vln_clip.errors import DataError


def _vqa_items() -> list[VQAItem]:
    return [
        VQAItem(1001, 9, coco_image_key("train2014", 9), "What color is the bus?", "what color is the", "other",
                ["red"] * 6 + ["Red"] * 2 + ["dark red", "red."], "red", ["yes"] * 8 + ["maybe", "no"]),
        VQAItem(1002, 9, coco_image_key("train2014", 9), "How many dogs?", "how many", "number",
                ["2"] * 5 + ["two"] * 4 + ["3"], "2", ["yes"] * 10),
        VQAItem(1003, 25, coco_image_key("train2014", 25), "Is it sunny?", "is it", "yes/no",
                ["yes"] * 10, "yes", ["yes"] * 10),
    ]


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _fail(path: Path, data, reader, *needles: str) -> str:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    with pytest.raises(DataError) as err:
        reader(path)
    message = str(err.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return message


# ---------------------------------------------------------------------------------------
# VQA v2


def test_vqa_round_trip_and_image_keys(tmp_path):
    items = _vqa_items()
    vqa.write_vqa(tmp_path / "q.json", tmp_path / "a.json", items, data_subtype="train2014")
    back = vqa.read_vqa(tmp_path / "q.json", tmp_path / "a.json")
    assert back == items
    assert back[0].image_key == "COCO_train2014_000000000009"
    raw = json.loads((tmp_path / "a.json").read_text())["annotations"][0]
    assert raw["answers"][8] == {"answer": "dark red", "answer_confidence": "maybe", "answer_id": 9}
    # Questions only (a test split): no annotation fields.
    vqa.write_vqa(tmp_path / "tq.json", None, items, data_subtype="train2014")
    test = vqa.read_vqa(tmp_path / "tq.json")
    assert [(t.question_id, t.image_key, t.question, t.answers) for t in test] == \
        [(i.question_id, i.image_key, i.question, []) for i in items]
    # test-dev questions name the test2015 images.
    assert coco_image_key("test-dev2015", 1) == "COCO_test2015_000000000001"


def test_vqa_order_follows_the_annotation_file(tmp_path):
    items = _vqa_items()
    vqa.write_vqa(tmp_path / "q.json", tmp_path / "a.json", items, data_subtype="train2014")
    ann = json.loads((tmp_path / "a.json").read_text())
    ann["annotations"].reverse()
    (tmp_path / "a.json").write_text(json.dumps(ann))
    assert [i.question_id for i in vqa.read_vqa(tmp_path / "q.json", tmp_path / "a.json")] == [1003, 1002, 1001]


@pytest.fixture()
def vqa_files(tmp_path):
    vqa.write_vqa(tmp_path / "q.json", tmp_path / "a.json", _vqa_items(), data_subtype="train2014")
    return (json.loads((tmp_path / "q.json").read_text()), json.loads((tmp_path / "a.json").read_text()), tmp_path)


def _bad_annotations(vqa_files, edit, *needles):
    q, a, tmp = vqa_files
    a = copy.deepcopy(a)
    edit(a)
    (tmp / "q.json").write_text(json.dumps(q))
    return _fail(tmp / "a.json", a, lambda p: vqa.read_vqa(tmp / "q.json", p), *needles)


def _bad_questions(vqa_files, edit, *needles):
    q, a, tmp = vqa_files
    q = copy.deepcopy(q)
    edit(q)
    return _fail(tmp / "q.json", q, lambda p: vqa.read_vqa(p, tmp / "a.json"), *needles)


def test_vqa_nine_answers_refused(vqa_files):
    _bad_annotations(vqa_files, lambda a: a["annotations"][1]["answers"].pop(),
                     "annotations[1] (question_id 1002)", "has 9 answers", "exactly 10")


def test_vqa_missing_field_refused(vqa_files):
    _bad_annotations(vqa_files, lambda a: a["annotations"][0].pop("answer_type"),
                     "annotations[0] (question_id 1001)", "field 'answer_type' is missing")
    _bad_questions(vqa_files, lambda q: q["questions"][2].pop("question"),
                   "questions[2] (question_id 1003)", "field 'question' is missing")
    _bad_questions(vqa_files, lambda q: q.pop("data_subtype"), "data_subtype")


def test_vqa_wrong_types_refused(vqa_files):
    _bad_questions(vqa_files, lambda q: q["questions"][0].update(image_id="9"),
                   "questions[0] (question_id 1001)", "field 'image_id' must be an integer, got a string")
    _bad_annotations(vqa_files, lambda a: a["annotations"][2]["answers"][3].update(answer=3),
                     "annotations[2] (question_id 1003): answers[3]", "field 'answer' must be a string")
    _bad_annotations(vqa_files, lambda a: a["annotations"][0].update(answer_type="colour"),
                     "field 'answer_type' is 'colour', not one of 'yes/no', 'number', 'other'")
    _bad_questions(vqa_files, lambda q: q["questions"][0].update(question_id=True),
                   "questions[0]", "field 'question_id' must be an integer, got true/false")


def test_vqa_duplicates_and_mismatches_refused(vqa_files):
    _bad_questions(vqa_files, lambda q: q["questions"].append(dict(q["questions"][0])),
                   "questions[3] (question_id 1001)", "appears twice")
    _bad_annotations(vqa_files, lambda a: a["annotations"].append(dict(a["annotations"][0])),
                     "annotations[3] (question_id 1001)", "annotated twice")
    _bad_annotations(vqa_files, lambda a: a["annotations"][1]["answers"][4].update(answer_id=1),
                     "answers[4]", "answer_id 1 repeats")
    _bad_annotations(vqa_files, lambda a: a["annotations"][0].update(image_id=77),
                     "annotations[0] (question_id 1001)", "image_id 77 differs")
    _bad_annotations(vqa_files, lambda a: a["annotations"][0].update(question_id=5555),
                     "annotations[0] (question_id 5555)", "has no question in")


def test_vqa_question_without_annotation_refused(vqa_files):
    msg = _bad_annotations(vqa_files, lambda a: a["annotations"].pop(1), "question_id 1002")
    assert "have no annotation" in msg


def test_vqa_malformed_and_wrong_files_refused(tmp_path):
    _fail(tmp_path / "q.json", '{"questions": [', vqa.read_vqa, "malformed JSON at line 1")
    _fail(tmp_path / "q.json", [1, 2], vqa.read_vqa, "must be an object with 'questions'")
    _fail(tmp_path / "q.json", {"annotations": []}, vqa.read_vqa, "needs a top-level 'questions'")


# ---------------------------------------------------------------------------------------
# Answer vocabulary and soft scores


def _item(qid: int, mca: str, answers: list[str] | None = None) -> VQAItem:
    return VQAItem(qid, 1, coco_image_key("val2014", 1), "?", "what", "other", answers or [mca] * 10, mca)


def test_vocab_counts_questions_per_normalised_answer(tmp_path):
    # "two" x2 + "2" x1 + "Two" x1 -> "2": 4 questions; "dog" x2 + "the dog" -> "dog": 3; "cat": 2; "red": 1.
    mcas = ["two", "2", "Two", "two", "dog", "the dog", "dog", "cat", "cat", "red"]
    items = [_item(i, a) for i, a in enumerate(mcas)]
    assert AnswerVocab.build(items, min_count=3).answers == ["2", "dog"]
    vocab = AnswerVocab.build(items, min_count=2)
    assert vocab.answers == ["2", "dog", "cat"] and vocab.counts == [4, 3, 2]
    assert len(AnswerVocab.build(items, min_count=1)) == 4
    # A question counts once however it is repeated.
    assert AnswerVocab.build(items + [items[-1]], min_count=2).answers == ["2", "dog", "cat"]
    assert vocab.index("Two") == 0 and vocab.index("a dog") == 1 and vocab.index("bird") is None
    assert "the cat" in vocab
    vocab.save(tmp_path / "v.json")
    assert AnswerVocab.load(tmp_path / "v.json") == vocab
    (tmp_path / "answers_vqa.txt").write_text("yes\nTwo\n\nthe dog\n")
    assert AnswerVocab.load(tmp_path / "answers_vqa.txt").answers == ["yes", "2", "dog"]
    _fail(tmp_path / "bad.json", {"answers": ["a"]}, AnswerVocab.load, "not a vln-clip answer vocabulary")


def test_soft_scores_by_hand():
    vocab = AnswerVocab(["2", "3", "dog", "4"])
    # Normalised: "2" x6 (incl. "two" x3 and "Two"), "3" x3 ("three"), "dog" x1, "cat" x0 (OOV).
    answers = ["2", "2", "two", "Two", "two", "2", "three", "3", "3", "the dog"]
    butd = vocab.soft_scores(answers, "butd")
    assert butd == {0: 1.0, 1: 0.9, 2: 0.3}
    mmf = vocab.soft_scores(answers, "mmf")
    assert set(mmf) == {0, 1, 2}
    assert mmf[0] == 1.0
    # "3" at answers 6..8: the ten leave-one-out subsets see 3 matches (7 of them) or 2 (3 of them):
    # (7 * 1 + 3 * 2/3) / 10 = 0.9.
    assert mmf[1] == pytest.approx(0.9, abs=1e-15)
    assert mmf[2] == pytest.approx(0.3, abs=1e-15)  # 9 subsets with one match: 9 * (1/3) / 10
    assert vocab.soft_scores(["cat"] * 10) == {}
    two = vocab.soft_scores(["dog", "dog"] + ["x"] * 8, "mmf")
    assert two == {2: pytest.approx(0.6, abs=1e-15)}  # (2 * 1/3 + 8 * 2/3) / 10
    targets = vocab.targets([_item(1, "2", answers), _item(2, "x", ["x"] * 10)], "butd")
    assert targets.shape == (2, 4) and targets.dtype == np.float32
    assert targets.tolist() == [[1.0, pytest.approx(0.9), pytest.approx(0.3), 0.0], [0.0] * 4]
    with pytest.raises(ValueError, match="soft score method"):
        vocab.soft_scores(answers, "vqa")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# COCO captions and Karpathy


def _caption_images() -> list[coco.CaptionImage]:
    return [coco.CaptionImage(9, "COCO_val2014_000000000009", "COCO_val2014_000000000009.jpg", 480, 640,
                              ["A bus.", "A red bus on a road."], [11, 12]),
            coco.CaptionImage(25, "COCO_val2014_000000000025", "COCO_val2014_000000000025.jpg", 427, 640,
                              ["Two giraffes."], [13]),
            coco.CaptionImage(30, "COCO_test2014_000000000030", "COCO_test2014_000000000030.jpg", 10, 20)]


def test_captions_round_trip_and_errors(tmp_path):
    images = _caption_images()
    coco.write_captions(tmp_path / "c.json", images)
    assert coco.read_captions(tmp_path / "c.json") == images
    data = json.loads((tmp_path / "c.json").read_text())
    assert {a["id"] for a in data["annotations"]} == {11, 12, 13}

    bad = copy.deepcopy(data)
    bad["annotations"][1]["image_id"] = 99
    _fail(tmp_path / "b.json", bad, coco.read_captions, "annotations[1] (id 12)", "image_id 99 is not in 'images'")
    bad = copy.deepcopy(data)
    bad["annotations"][2]["id"] = 11
    _fail(tmp_path / "b.json", bad, coco.read_captions, "annotations[2] (id 11)", "appears twice")
    bad = copy.deepcopy(data)
    del bad["images"][0]["file_name"]
    _fail(tmp_path / "b.json", bad, coco.read_captions, "images[0] (id 9)", "field 'file_name' is missing")
    bad = copy.deepcopy(data)
    bad["annotations"][0]["caption"] = ["A bus."]
    _fail(tmp_path / "b.json", bad, coco.read_captions, "annotations[0] (id 11)", "'caption' must be a string")


def _karpathy() -> list[coco.KarpathyImage]:
    s = coco.KarpathySentence
    return [coco.KarpathyImage(0, "COCO_val2014_000000391895", "COCO_val2014_000000391895.jpg", "test",
                               [s(0, "A man riding a bike.", ["a", "man", "riding", "a", "bike"]),
                                s(1, "A cyclist.", ["a", "cyclist"])], "val2014", 391895),
            coco.KarpathyImage(1, "COCO_train2014_000000000009", "COCO_train2014_000000000009.jpg", "restval",
                               [s(2, "Food.", ["food"])], "train2014", 9),
            coco.KarpathyImage(2, "COCO_train2014_000000000025", "COCO_train2014_000000000025.jpg", "train",
                               [s(3, "Giraffes.", ["giraffes"])], "train2014", 25)]


def test_karpathy_round_trip_splits_and_errors(tmp_path):
    images = _karpathy()
    coco.write_karpathy(tmp_path / "dataset_coco.json", images)
    back = coco.read_karpathy(tmp_path / "dataset_coco.json")
    assert back == images
    assert [im.imgid for im in coco.karpathy_split(back, "train")] == [1, 2]
    assert [im.imgid for im in coco.karpathy_split(back, "train", restval_as_train=False)] == [2]
    assert back[0].raw_captions == ["A man riding a bike.", "A cyclist."]

    data = json.loads((tmp_path / "dataset_coco.json").read_text())
    bad = copy.deepcopy(data)
    bad["images"][1]["split"] = "dev"
    _fail(tmp_path / "b.json", bad, coco.read_karpathy, "images[1] (imgid 1)", "'split' is 'dev'")
    bad = copy.deepcopy(data)
    bad["images"][2]["sentences"][0]["sentid"] = 0
    bad["images"][2]["sentids"] = [0]
    _fail(tmp_path / "b.json", bad, coco.read_karpathy, "images[2] (imgid 2): sentences[0]", "sentid 0 is also used")
    bad = copy.deepcopy(data)
    bad["images"][0]["sentids"] = [0, 7]
    _fail(tmp_path / "b.json", bad, coco.read_karpathy, "images[0] (imgid 0)", "are not the sentid of its sentences")
    bad["images"][0]["sentids"] = [1, 0]  # the order is not checked
    assert coco.read_karpathy(_write(tmp_path / "ok.json", bad))[0].imgid == 0
    bad = copy.deepcopy(data)
    del bad["images"][0]["sentences"][1]["tokens"]
    _fail(tmp_path / "b.json", bad, coco.read_karpathy, "sentences[1]", "field 'tokens' is missing")


# ---------------------------------------------------------------------------------------
# GQA, SNLI-VE, LXMERT


def _gqa_items() -> list[gqa.GQAItem]:
    steps = [gqa.GQAStep("select", "bus (1)", []), gqa.GQAStep("query", "color", [0])]
    return [gqa.GQAItem("20968379", "n161313", "What color is the bus?", "red", "The bus is red.", True,
                        {"structural": "query", "semantic": "attr", "detailed": "color"}, steps,
                        "select: bus (1)->query: color [0]",
                        {"entailed": [], "equivalent": ["20968379"], "groups": {"global": "color", "local": "10q"}}),
            gqa.GQAItem("t1", "n2", "Is there a cat?")]


def test_gqa_round_trip_and_errors(tmp_path):
    items = _gqa_items()
    gqa.write_gqa(tmp_path / "g.json", items)
    back = gqa.read_gqa(tmp_path / "g.json")
    assert back == items and back[0].image_key == "n161313"
    data = json.loads((tmp_path / "g.json").read_text())
    bad = copy.deepcopy(data)
    bad["20968379"]["semantic"][1]["dependencies"] = [1]
    _fail(tmp_path / "b.json", bad, gqa.read_gqa, "question '20968379': semantic[1]", "not the index of an earlier step")
    bad = copy.deepcopy(data)
    del bad["t1"]["imageId"]
    _fail(tmp_path / "b.json", bad, gqa.read_gqa, "question 't1'", "field 'imageId' is missing")
    _fail(tmp_path / "b.json", [1], gqa.read_gqa, "must be an object")


def test_snli_ve_round_trip_and_errors(tmp_path):
    items = [snli_ve.SNLIVEItem("3416050480.jpg#4r1e", "3416050480", "A person is outdoors.", "entailment",
                                "Two women are embracing.", {"captionID": "3416050480.jpg#4"}),
             snli_ve.SNLIVEItem("3416050480.jpg#4r1c", "3416050480", "Nobody is there.", "contradiction")]
    snli_ve.write_snli_ve(tmp_path / "s.jsonl", items)
    back = snli_ve.read_snli_ve(tmp_path / "s.jsonl")
    assert back == items and [i.label_index for i in back] == [0, 2]
    lines = (tmp_path / "s.jsonl").read_text().splitlines()
    bad_label = json.loads(lines[1])
    bad_label["gold_label"] = "-"
    (tmp_path / "b.jsonl").write_text(lines[0] + "\n" + json.dumps(bad_label) + "\n")
    with pytest.raises(DataError) as err:
        snli_ve.read_snli_ve(tmp_path / "b.jsonl")
    assert "b.jsonl" in str(err.value) and "line 2 (pairID 3416050480.jpg#4r1c)" in str(err.value)
    assert "'gold_label' is '-'" in str(err.value)
    (tmp_path / "b.jsonl").write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(DataError, match="line 2 .* repeats line 1"):
        snli_ve.read_snli_ve(tmp_path / "b.jsonl")
    missing = json.loads(lines[0])
    del missing["sentence2"]
    (tmp_path / "b.jsonl").write_text(json.dumps(missing) + "\n")
    with pytest.raises(DataError, match="line 1 .*field 'sentence2' is missing"):
        snli_ve.read_snli_ve(tmp_path / "b.jsonl")


def test_lxmert_round_trip_and_errors(tmp_path):
    items = [lxmert.LXMERTItem("COCO_train2014_000000000009",
                               {"mscoco": ["A bus.", "A red bus."], "vqa": ["What color is it?", "Is it big?"]},
                               {"vqa": [{"red": 1.0, "dark red": 0.3}, {"yes": 0.9}]}),
             lxmert.LXMERTItem("COCO_train2014_000000000025", {"mscoco": ["Giraffes."]}, {})]
    lxmert.write_lxmert(tmp_path / "l.json", items)
    back = lxmert.read_lxmert(tmp_path / "l.json")
    assert back == items
    assert list(back[0].captions()) == [("mscoco", "A bus."), ("mscoco", "A red bus.")]
    assert list(back[0].questions())[1] == ("vqa", "Is it big?", {"yes": 0.9})
    data = json.loads((tmp_path / "l.json").read_text())
    bad = copy.deepcopy(data)
    bad[0]["labelf"]["vqa"].pop()
    _fail(tmp_path / "b.json", bad, lxmert.read_lxmert, "[0] (img_id COCO_train2014_000000000009)",
          "has 1 labels for 2 questions")
    bad = copy.deepcopy(data)
    bad[1]["labelf"] = {"gqa": [{"x": 1}]}
    _fail(tmp_path / "b.json", bad, lxmert.read_lxmert, "[1]", "source 'gqa' with no questions")
    bad = copy.deepcopy(data)
    bad[0]["labelf"]["vqa"][0]["red"] = "1"
    _fail(tmp_path / "b.json", bad, lxmert.read_lxmert, "labelf['vqa'][0]", "field 'red' must be a number")
    bad = copy.deepcopy(data) + [copy.deepcopy(data[0])]
    _fail(tmp_path / "b.json", bad, lxmert.read_lxmert, "[2]", "repeats entry [0]")


# ---------------------------------------------------------------------------------------
# Result / submission files


def test_result_files_round_trip_and_errors(tmp_path):
    results.write_vqa_results(tmp_path / "v.json", {3: "yes", 1: "2"})
    assert json.loads((tmp_path / "v.json").read_text()) == [{"question_id": 3, "answer": "yes"},
                                                              {"question_id": 1, "answer": "2"}]
    assert results.read_vqa_results(tmp_path / "v.json", [1, 3]) == {3: "yes", 1: "2"}
    with pytest.raises(DataError, match=r"1 of 3 question_ids have no entry \(first: 2\)"):
        results.read_vqa_results(tmp_path / "v.json", [1, 2, 3])

    results.write_caption_results(tmp_path / "c.json", {9: "a bus", 25: "giraffes"})
    assert results.read_caption_results(tmp_path / "c.json", [9, 25]) == {9: "a bus", 25: "giraffes"}
    _fail(tmp_path / "c.json", [{"image_id": 9, "caption": "a"}, {"image_id": 9, "caption": "b"}],
          results.read_caption_results, "entry [1] (image_id 9)", "already given by entry [0]")

    results.write_gqa_predictions(tmp_path / "g.json", {"201": "red"})
    assert results.read_gqa_predictions(tmp_path / "g.json", ["201"]) == {"201": "red"}
    _fail(tmp_path / "g.json", [{"questionId": 201, "prediction": "red"}], results.read_gqa_predictions,
          "entry [0]", "field 'questionId' must be a string, got an integer")
    _fail(tmp_path / "g.json", [{"questionId": "201"}], results.read_gqa_predictions,
          "entry [0] (questionId '201')", "field 'prediction' is missing")
    with pytest.raises(ValueError):
        results.write_vqa_results(tmp_path / "x.json", {"1": "yes"})  # type: ignore[dict-item]
