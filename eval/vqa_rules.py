"""The answer rules of the official VQA evaluator, as data and small pure functions.

Source of the facts: GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` at
its last change (a013f00, "Fixed processing answers bug", 2021). This module holds only the
per-string rules and the leave-one-out score, so that the evaluator
(:mod:`vln_clip.eval.vqa_accuracy`) and the answer vocabulary (:mod:`vln_clip.datasets.vqa`)
share one definition without importing each other. ``vqa_accuracy`` re-exports
:func:`normalize_answer`.

The rules, with the official code's quirks kept on purpose (they change scores):

* **Cleaning** (always, answers and prediction): ``\\n`` and ``\\t`` become spaces, then
  ``str.strip()``. Nothing else happens to a question's strings when its ten ground-truth
  answers are all identical (after cleaning): no lower-casing, no punctuation handling. So a
  prediction ``"Yes"`` scores 0 against ten ``"yes"``, but 1 against nine ``"yes"`` and one
  ``"yeah"``.
* **Punctuation** (only when the ten answers differ): for each of 21 symbols, it is deleted if
  the *original* string has it next to a space, or if the original string has a comma between
  two digits anywhere; otherwise it becomes a space. Periods are then deleted unless a digit
  follows (``"3.5"`` keeps its period, ``"e.g."`` loses both). The official pattern is
  ``(?!<=\\d)(\\.)(?!\\d)``: its first group is a mistyped look-behind that is really a
  look-ahead for the text ``<=`` and a digit, which can never match in front of a period, so
  only "not followed by a digit" is in force. The official call passes ``re.UNICODE`` as the
  positional *count* argument of ``sub``, so at most 32 (the value of ``re.UNICODE``) periods
  are removed. ``\\d`` is ASCII-only, as in the Python 2 code (its patterns have no flags).
  Apostrophes, colons, ``#``, ``$``, ``%``, ``&`` and ``*`` are not in the list and stay.
* **Digits and articles** (only when the ten answers differ, after punctuation): lower-case,
  split on whitespace, map the words ``none``, ``zero`` .. ``ten`` to ``0`` .. ``10``, drop
  ``a``/``an``/``the``, map words through the contraction table, join with single spaces.
  Only whole words are mapped (``"twenty"`` stays). The table has keys with capitals
  (``Im``, ``Ive``, ``Id've``, ``I'dve``) that can never match after lower-casing, and one entry
  that removes an apostrophe (``somebody'd`` -> ``somebodyd``); both are kept.
* **Score**: for each of the ten answers, the prediction is compared with the *other nine*
  (the official code drops every answer record equal to the current one; VQA v2 records have
  distinct ``answer_id`` s, so exactly one is dropped); the subset scores
  ``min(1, matches / 3)`` and the question scores the mean of the ten subset scores, summed
  left to right as the official loop does. With k matching annotators this is 0, 0.3, 0.6,
  0.9, 1.0 for k = 0, 1, 2, 3, >=4 (up to floating point in the last bit).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

import numpy as np

#: Symbols handled by the punctuation step, in the official order (the order matters for the
#: "becomes a space" case only through the final word split, which it does not change).
PUNCTUATION: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\",
                                "_", "-", ">", "<", "@", "`", ",", "?", "!")

#: Whole-word number mapping of the digit/article step.
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# The contraction table of the official evaluator (data, reproduced as a fact of the metric):
# "<key> <value>" pairs, one per line, so that the quirky entries stay visible.
_CONTRACTION_PAIRS = """
aint ain't
arent aren't
cant can't
couldve could've
couldnt couldn't
couldn'tve couldn't've
couldnt've couldn't've
didnt didn't
doesnt doesn't
dont don't
hadnt hadn't
hadnt've hadn't've
hadn'tve hadn't've
hasnt hasn't
havent haven't
hed he'd
hed've he'd've
he'dve he'd've
hes he's
howd how'd
howll how'll
hows how's
Id've I'd've
I'dve I'd've
Im I'm
Ive I've
isnt isn't
itd it'd
itd've it'd've
it'dve it'd've
itll it'll
let's let's
maam ma'am
mightnt mightn't
mightnt've mightn't've
mightn'tve mightn't've
mightve might've
mustnt mustn't
mustve must've
neednt needn't
notve not've
oclock o'clock
oughtnt oughtn't
ow's'at 'ow's'at
'ows'at 'ow's'at
'ow'sat 'ow's'at
shant shan't
shed've she'd've
she'dve she'd've
she's she's
shouldve should've
shouldnt shouldn't
shouldnt've shouldn't've
shouldn'tve shouldn't've
somebody'd somebodyd
somebodyd've somebody'd've
somebody'dve somebody'd've
somebodyll somebody'll
somebodys somebody's
someoned someone'd
someoned've someone'd've
someone'dve someone'd've
someonell someone'll
someones someone's
somethingd something'd
somethingd've something'd've
something'dve something'd've
somethingll something'll
thats that's
thered there'd
thered've there'd've
there'dve there'd've
therere there're
theres there's
theyd they'd
theyd've they'd've
they'dve they'd've
theyll they'll
theyre they're
theyve they've
twas 'twas
wasnt wasn't
wed've we'd've
we'dve we'd've
weve we've
werent weren't
whatll what'll
whatre what're
whats what's
whatve what've
whens when's
whered where'd
wheres where's
whereve where've
whod who'd
whod've who'd've
who'dve who'd've
wholl who'll
whos who's
whove who've
whyll why'll
whyre why're
whys why's
wont won't
wouldve would've
wouldnt wouldn't
wouldnt've wouldn't've
wouldn'tve wouldn't've
yall y'all
yall'll y'all'll
y'allll y'all'll
yall'd've y'all'd've
y'alld've y'all'd've
y'all'dve y'all'd've
youd you'd
youd've you'd've
you'dve you'd've
youll you'll
youre you're
youve you've
"""

CONTRACTIONS: dict[str, str] = dict(
    line.split(" ") for line in _CONTRACTION_PAIRS.strip().splitlines()  # type: ignore[misc]
)

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d", re.ASCII)
# Equivalent to the official "(?!<=\d)(\.)(?!\d)": see the module docstring.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)", re.ASCII)
_ANY_HANDLED = re.compile("[" + re.escape("".join(PUNCTUATION) + ".") + "]")
#: ``re.UNICODE`` (32) lands in ``sub``'s count argument in the official code.
PERIOD_REMOVAL_LIMIT = 32

#: Ground-truth answers per VQA v2 question.
N_ANSWERS = 10


def clean(text: str) -> str:
    """The step applied to every answer and prediction: tabs/newlines to spaces, outer strip."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official punctuation step (see the module docstring for its rules and quirks)."""
    if _ANY_HANDLED.search(text) is None:
        return text  # nothing to replace: every step below would be a no-op
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for p in PUNCTUATION:
        # The test looks at the original string, the replacement works on the running one.
        if delete_all or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=PERIOD_REMOVAL_LIMIT)


def process_digit_article(text: str) -> str:
    """The official number-word / article / contraction step."""
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


@lru_cache(maxsize=1 << 18)
def normalize_answer(text: str) -> str:
    """Clean, then punctuation, then digits/articles: the full official processing of a string.

    This is what the evaluator applies to every answer and to the prediction of a question
    whose ten answers are not all identical; the answer vocabulary and soft scores use it for
    every answer (as BUTD and MMF do), so a vocabulary entry is the string the evaluator would
    compare.
    """
    return process_digit_article(process_punctuation(clean(text)))


def _subset_score(matches: int) -> float:
    # As in the official loop: min(1, float(matches) / 3); an int 1 when capped.
    return min(1, float(matches) / 3)


def _build_mask_table(n: int = N_ANSWERS) -> np.ndarray:
    """Score of a question for every pattern of matching annotators (bit i = answer i matches).

    The value is the official mean: the ten subset scores added left to right in answer order,
    divided by ten, so a table look-up is bit-identical to the official per-question loop.
    """
    table = np.zeros(1 << n, dtype=np.float64)
    for mask in range(1 << n):
        k = bin(mask).count("1")
        total = 0.0
        for i in range(n):
            total += _subset_score(k - 1 if (mask >> i) & 1 else k)
        table[mask] = float(total) / n
    return table


MASK_SCORE: np.ndarray = _build_mask_table()
_BIT_WEIGHTS = (1 << np.arange(N_ANSWERS, dtype=np.int64))


def leave_one_out_scores(matches: np.ndarray) -> np.ndarray:
    """Official per-question scores from a boolean ``[N, 10]`` "answer i equals the prediction" array."""
    matches = np.asarray(matches, dtype=bool)
    if matches.ndim != 2 or matches.shape[1] != N_ANSWERS:
        raise ValueError(f"expected a [N, {N_ANSWERS}] match array, got shape {matches.shape}")
    return MASK_SCORE[matches.astype(np.int64) @ _BIT_WEIGHTS]


def leave_one_out_score(matches: Sequence[bool]) -> float:
    """The official score of one question from its per-answer matches (any number of answers).

    A plain loop over the answers, written as the official code reads; for ten answers it equals
    :func:`leave_one_out_scores` bit for bit.
    """
    matches = [bool(m) for m in matches]
    k = sum(matches)
    total = 0.0
    for m in matches:
        total += _subset_score(k - 1 if m else k)
    return float(total) / len(matches)
