"""The official VQA accuracy (GT-Vision-Lab/VQA vqaEval.py) against cases worked out by hand.

Each test names the quirk of the official code it pins down; the values in the asserts were
computed on paper from the rules in vln_clip/eval/vqa_rules.py's docstring.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from vln_clip.datasets.results import write_vqa_results
from vln_clip.datasets.vqa import VQAItem, coco_image_key, write_vqa
from vln_clip.errors import DataError
from vln_clip.eval.vqa_accuracy import (evaluate_vqa, normalize_answer, score_items, summarize, vqa_accuracy,
                                        vqa_accuracy_reference)
from vln_clip.eval.vqa_rules import (MASK_SCORE, PERIOD_REMOVAL_LIMIT, leave_one_out_score,
                                     process_digit_article, process_punctuation)


def acc(answers: list[str], pred: str) -> float:
    """One question through both implementations, which must agree bit for bit."""
    vec = float(vqa_accuracy([answers], [pred])[0])
    ref = float(vqa_accuracy_reference([answers], [pred])[0])
    assert vec == ref
    return vec


# ---------------------------------------------------------------------------------------
# Normalisation


@pytest.mark.parametrize("text, expected", [
    ("hello, world", "hello world"),    # ", " in the string: the comma is deleted
    ("red,white", "red white"),         # no space next to it: the comma becomes a space
    ("a-b -c", "ab c"),                 # " -" somewhere: every "-" is deleted, also inside "a-b"
    ("x-y-z", "x y z"),                 # no space next to any "-": each becomes a space
    ("1,000", "1000"),                  # comma between digits
    ("3,5 (approx)", "35 approx"),      # a digit-comma-digit deletes every symbol, brackets too
    ("e.g.", "eg"),                     # periods not followed by a digit go
    ("3.5", "3.5"),                     # decimal point kept
    ("5.", "5"),                        # a digit before does not protect it (the look-behind is a typo)
    (".5", ".5"),                       # a digit after does
    ("what?!", "what"),
    ("it's", "it's"),                   # apostrophe is not punctuation here
    ("50%", "50%"),                     # nor is %
    ("black/white", "black white"),
])
def test_punctuation_rules(text, expected):
    assert normalize_answer(text) == expected


def test_at_most_32_periods_are_removed():
    # re.UNICODE (32) is passed as sub's count in the official code.
    assert PERIOD_REMOVAL_LIMIT == 32
    assert process_punctuation("x" + "." * 40) == "x" + "." * 8
    assert process_punctuation("a." * 33) == "a" * 32 + "a."


@pytest.mark.parametrize("text, expected", [
    ("two", "2"), ("Two", "2"), ("TEN", "10"), ("none", "0"), ("zero", "0"), ("two dogs", "2 dogs"),
    ("twenty", "twenty"),              # only zero..ten and none
    ("twofold", "twofold"),            # whole words only
    ("a dog", "dog"), ("The  Cat", "cat"), ("an", ""), ("A", ""),
    ("dont", "don't"), ("Dont", "don't"), ("whats up", "what's up"),
    ("im", "im"), ("Im", "im"),        # the table's capitalised keys never match after lower-casing
    ("somebody'd", "somebodyd"),       # the one entry that removes an apostrophe
    ("  yes\n", "yes"), ("\tyes\tsir ", "yes sir"),
])
def test_digit_article_contraction_rules(text, expected):
    assert normalize_answer(text) == expected


def test_digit_article_step_alone_lowercases_and_joins():
    assert process_digit_article("The  Two   DOGS") == "2 dogs"


# ---------------------------------------------------------------------------------------
# Per-question accuracy


def test_leave_one_out_mean_by_count():
    # k matching annotators: the ten subsets of nine see k-1 (k of them) or k (10-k of them) matches.
    # k=1: 9 * (1/3) / 10 = 0.3; k=2: (2 * 1/3 + 8 * 2/3) / 10 = 0.6; k=3: (3 * 2/3 + 7) / 10 = 0.9; k>=4: 1.
    expected = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9, 4: 1.0, 7: 1.0, 10: 1.0}
    for k, value in expected.items():
        answers = ["y"] * k + ["n"] * (10 - k)
        assert acc(answers, "y") == pytest.approx(value, abs=1e-15)


def test_leave_one_out_mean_is_summed_left_to_right_like_the_official_loop():
    # Three matches first: 2/3 + 2/3 + 2/3 = 2.0 exactly, + 7 ones = 9.0, / 10 = 0.9.
    assert acc(["y"] * 3 + ["n"] * 7, "y") == 0.9
    # Matches at answers 0, 1 and 9: 4/3 + 7 rounds up to 8.333333333333334, + 2/3 gives
    # 8.999999999999998: the official mean of this question is 0.8999999999999998, not 0.9.
    total = 0.0
    for subset_score in [2 / 3, 2 / 3] + [1] * 7 + [2 / 3]:
        total += subset_score
    assert total / 10 == 0.8999999999999998
    assert acc(["y", "y"] + ["n"] * 7 + ["y"], "y") == 0.8999999999999998
    assert MASK_SCORE[0b1000000011] == 0.8999999999999998 and MASK_SCORE[0b0000000111] == 0.9
    assert leave_one_out_score([True, True] + [False] * 7 + [True]) == 0.8999999999999998


def test_identical_answers_leave_the_prediction_unprocessed():
    ten_yes = ["yes"] * 10
    assert acc(ten_yes, "yes") == 1.0
    assert acc(ten_yes, "  yes\n") == 1.0      # cleaning always applies
    assert acc(ten_yes, "Yes") == 0.0          # no lower-casing when the answers are identical
    assert acc(ten_yes, "yes.") == 0.0         # no punctuation handling either
    assert acc(["two"] * 10, "2") == 0.0       # nor number words
    assert acc(["Yes"] * 10, "yes") == 0.0     # the answers are not lower-cased either
    # Identical after cleaning counts as identical: still no processing.
    assert acc(["yes"] * 9 + [" yes\t"], "Yes") == 0.0


def test_differing_answers_process_answers_and_prediction():
    nine_yes = ["yes"] * 9 + ["yeah"]
    assert acc(nine_yes, "Yes") == 1.0
    assert acc(nine_yes, "yes.") == 1.0
    mixed = ["2"] * 4 + ["two"] * 3 + ["3"] * 3    # normalised: seven "2", three "3"
    assert acc(mixed, "two") == 1.0
    assert acc(mixed, "three") == pytest.approx(0.9, abs=1e-15)
    assert acc(["dog"] * 9 + ["the dog"], "a dog") == 1.0
    assert acc(["dont"] * 2 + ["don't"] * 1 + ["no"] * 7, "Don't") == pytest.approx(0.9, abs=1e-15)


def test_vectorised_equals_loop_on_random_data():
    rng = random.Random(3)
    pool = ["yes", "Yes", "no", "two", "2", " 2", "the dog", "dog", "dont", "don't", "3.5", "3,5", "e.g.",
            "hello, world", "red-white", "red white", "none", "0", "ten", "Im", "x" + "." * 35, "a-b -c", "TEN"]
    answers, preds = [], []
    for _ in range(3000):
        base = rng.choice(pool)
        row = [base] * 10 if rng.random() < 0.3 else [rng.choice(pool) if rng.random() < 0.5 else base
                                                      for _ in range(10)]
        answers.append(row)
        preds.append(rng.choice(pool))
    vec = vqa_accuracy(answers, preds)
    ref = vqa_accuracy_reference(answers, preds)
    assert np.array_equal(vec, ref)
    assert 0.05 < vec.mean() < 0.6  # the data exercise both matches and misses


# ---------------------------------------------------------------------------------------
# Aggregation and files


def test_summary_per_type_percentages_unrounded():
    accuracy = np.array([1.0, 0.3, 0.0, 0.6])
    qtypes = ["is the", "is the", "how many", "what color"]
    atypes = ["yes/no", "yes/no", "number", "other"]
    s = summarize(accuracy, qtypes, atypes)
    assert s["overall"] == 100 * (1.0 + 0.3 + 0.0 + 0.6) / 4           # 47.5 (up to the last bit)
    assert s["overall"] == pytest.approx(47.5)
    assert s["per_answer_type"] == {"yes/no": 100 * 1.3 / 2, "number": 0.0, "other": 100 * 0.6 / 1}
    assert s["per_question_type"] == {"is the": 100 * 1.3 / 2, "how many": 0.0, "what color": 100 * 0.6}
    assert s["n_questions"] == 4
    # A type with no questions is reported as None, not dropped.
    assert summarize(np.array([1.0]), ["q"], ["other"])["per_answer_type"] == {"yes/no": None, "number": None,
                                                                              "other": 100.0}


def _write_split(tmp: Path) -> tuple[Path, Path]:
    items = [
        VQAItem(1, 10, coco_image_key("val2014", 10), "Is it red?", "is the", "yes/no", ["yes"] * 10, "yes"),
        VQAItem(2, 10, coco_image_key("val2014", 10), "How many?", "how many", "number",
                ["2"] * 4 + ["two"] * 3 + ["3"] * 3, "2"),
        VQAItem(3, 11, coco_image_key("val2014", 11), "What is it?", "what is", "other",
                ["dog"] * 2 + ["cat"] * 8, "cat"),
    ]
    write_vqa(tmp / "q.json", tmp / "a.json", items, data_subtype="val2014")
    return tmp / "q.json", tmp / "a.json"


def test_evaluate_vqa_files(tmp_path):
    q, a = _write_split(tmp_path)
    write_vqa_results(tmp_path / "p.json", {1: "Yes", 2: "three", 3: "the dog"})
    result = evaluate_vqa(q, a, tmp_path / "p.json")
    # Q1: identical answers, "Yes" unprocessed -> 0. Q2: "three" -> "3", matches at answers 7..9 -> 0.9.
    # Q3: "the dog" -> "dog", 2 matches at the front -> 0.6.
    q2 = (((7.0 + 2 / 3) + 2 / 3) + 2 / 3) / 10
    q3 = leave_one_out_score([True, True] + [False] * 8)
    assert result["per_answer_type"] == {"yes/no": 0.0, "number": 100 * q2, "other": 100 * q3}
    assert result["overall"] == 100 * float((0.0 + q2) + q3) / 3
    assert result["per_question_type"] == {"is the": 0.0, "how many": 100 * q2, "what is": 100 * q3}
    json.dumps(result)  # the CLI prints it as JSON


@pytest.mark.parametrize("rows, needle", [
    ([{"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": "2"}], "1 of 3 question_ids have no entry"),
    ([{"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": 2}, {"question_id": 3, "answer": "x"}],
     "entry [1] (question_id 2): field 'answer' must be a string"),
    ([{"question_id": 1, "answer": "yes"}, {"question_id": 1, "answer": "no"}, {"question_id": 2, "answer": "2"},
      {"question_id": 3, "answer": "x"}], "entry [1] (question_id 1): question_id 1 was already given by entry [0]"),
    ([{"question_id": "1", "answer": "yes"}], "entry [0]: field 'question_id' must be an integer"),
    ([{"question_id": 1, "answer": "a"}, {"question_id": 2, "answer": "b"}, {"question_id": 3, "answer": "c"},
      {"question_id": 99, "answer": "d"}], "entry [3] (question_id 99) is not in the evaluated set"),
    ({"question_id": 1, "answer": "yes"}, "must be a list"),
])
def test_evaluate_vqa_refuses_bad_results(tmp_path, rows, needle):
    q, a = _write_split(tmp_path)
    (tmp_path / "p.json").write_text(json.dumps(rows))
    with pytest.raises(DataError) as err:
        evaluate_vqa(q, a, tmp_path / "p.json")
    assert needle in str(err.value) and "p.json" in str(err.value)


def test_score_items_requires_every_prediction():
    item = VQAItem(5, 1, coco_image_key("val2014", 1), "?", "what", "other", ["a"] * 10, "a")
    with pytest.raises(ValueError, match="no prediction"):
        score_items([item], {})
    assert score_items([item], {5: "a"}).as_dict()["overall"] == 100.0
