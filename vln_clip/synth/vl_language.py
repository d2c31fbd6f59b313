"""Questions, answers, captions, programs and hypotheses from a synthetic image's description.

Every function here is pure: it reads one image description (see
:func:`vln_clip.synth.vl.describe_view`: the camera's room, the clearly visible objects left to
right with colour, position and attributes, the barely visible ``partial`` ones) and a
``numpy.random.Generator``, and returns plain records that :mod:`vln_clip.synth.vl` writes in
the real formats. The rules that keep the data honest:

* An answer is computed from the description, never guessed: counts are the number of
  visible objects of the class, "left of" compares the centroids of the visible pixels with a
  margin (pairs closer than ``LR_MARGIN`` of the image width are never asked about), "the X"
  is only said of a class seen exactly once. Barely visible objects are never used, neither
  as present nor as absent.
* Yes/no questions are balanced per question: "is there a X?" asks about a present class or
  an absent one drawn with the frequency that classes are *present* in the split, so the
  question text alone does not tell the answer.
* Ten annotators answer each VQA question with human-like variation (synonyms, ``2`` /
  ``two``, articles, capitals, trailing periods, now and then a wrong answer), so the official
  answer normalisation matters; the correct answer is kept the most frequent one (after that
  normalisation), as it is for nearly all real VQA questions.
* SNLI-VE labels follow from the description: entailment = a true statement about what is
  visible, contradiction = a false one that the image decides, neutral = a claim the image
  cannot decide (the colour of a class that is not in the picture, an unobservable property,
  something outside the view). Each hypothesis records its template (``hypothesis_type``), so
  a comparison can be split by the fact it turns on, as GQA's question types split GQA.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from vln_clip.eval.vqa_rules import N_ANSWERS, normalize_answer

from .world import FURNITURE, PALETTE

LR_MARGIN = 0.12  # share of the image width two centroids must be apart for a left/right claim
ROOM_SHARE = 0.5  # share of the image the camera's room must fill for room questions

# Names an annotator may use for a class (first = the name questions and captions use most).
OBJECT_NAMES: dict[str, tuple[str, ...]] = {
    "sofa": ("sofa", "couch"), "armchair": ("armchair", "arm chair"), "tv": ("tv", "television"),
    "coffee table": ("coffee table",), "bookshelf": ("bookshelf", "bookcase"), "plant": ("plant", "potted plant"),
    "lamp": ("lamp", "floor lamp"), "fridge": ("fridge", "refrigerator"), "stove": ("stove", "oven"),
    "counter": ("counter", "kitchen counter"), "kitchen table": ("kitchen table", "table"), "bed": ("bed",),
    "wardrobe": ("wardrobe", "closet"), "nightstand": ("nightstand", "night stand", "bedside table"),
    "bathtub": ("bathtub", "tub", "bath tub"), "sink": ("sink", "basin"), "toilet": ("toilet",),
    "desk": ("desk",), "chair": ("chair",), "filing cabinet": ("filing cabinet", "file cabinet"),
    "dining table": ("dining table", "table"), "cabinet": ("cabinet", "cupboard"),
    "washing machine": ("washing machine", "washer"), "dryer": ("dryer", "clothes dryer"), "shelf": ("shelf",),
    "basket": ("basket",), "bench": ("bench",), "coat rack": ("coat rack", "coat stand"),
    "treadmill": ("treadmill",), "exercise ball": ("exercise ball", "yoga ball"), "painting": ("painting", "picture"),
    "crib": ("crib", "cot"), "toy box": ("toy box", "toybox"), "rocking chair": ("rocking chair",),
    "globe": ("globe",), "pool table": ("pool table", "billiard table"),
    "arcade machine": ("arcade machine", "arcade game"), "beanbag": ("beanbag", "bean bag"),
}
ROOM_NAMES: dict[str, tuple[str, ...]] = {
    "living room": ("living room", "lounge"), "kitchen": ("kitchen",), "bedroom": ("bedroom", "bed room"),
    "bathroom": ("bathroom", "restroom"), "hallway": ("hallway", "hall", "corridor"),
    "office": ("office", "study"), "dining room": ("dining room",), "laundry room": ("laundry room", "laundry"),
    "gym": ("gym", "home gym"), "nursery": ("nursery", "baby room"), "library": ("library",),
    "game room": ("game room", "playroom"), "landing": ("landing",),
}
COLOUR_NAMES: dict[str, tuple[str, ...]] = {c: (c,) for c in PALETTE}
COLOUR_NAMES.update({"gray": ("gray", "grey"), "purple": ("purple", "violet"), "teal": ("teal", "turquoise")})
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
OBJECT_WORDS = ("objects", "things", "pieces of furniture")

assert set(OBJECT_NAMES) == set(FURNITURE), "every furniture type needs its names"


# ---------------------------------------------------------------------------------------
# Words


def plural(name: str) -> str:
    """English plural of a (possibly multi-word) object name."""
    if name.endswith("shelf"):
        return name[:-1] + "ves"
    if name.endswith(("sh", "ch", "s", "x")):
        return name + "es"
    return name + "s"


def article(phrase: str) -> str:
    """``a`` or ``an`` before ``phrase`` (by its first letter: the names here have no silent h)."""
    return "an" if phrase[:1] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return f"{article(phrase)} {phrase}"


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def tokenize(sentence: str) -> list[str]:
    """Karpathy-style tokens: lower case, punctuation dropped."""
    return re.findall(r"[a-z0-9]+", sentence.lower())


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _name(rng: np.random.Generator, kind: str, p_synonym: float = 0.25) -> str:
    names = OBJECT_NAMES[kind]
    return names[0] if len(names) == 1 or rng.random() >= p_synonym else _pick(rng, names[1:])


def _room_name(rng: np.random.Generator, kind: str, p_synonym: float = 0.25) -> str:
    names = ROOM_NAMES[kind]
    return names[0] if len(names) == 1 or rng.random() >= p_synonym else _pick(rng, names[1:])


# ---------------------------------------------------------------------------------------
# Facts of a description


def visible(desc: dict[str, Any]) -> list[dict[str, Any]]:
    return desc["objects"]


def singletons(desc: dict[str, Any]) -> list[dict[str, Any]]:
    """Visible objects whose class appears exactly once (and not even partially again):
    "the X" names them unambiguously."""
    partial = {p["type"] for p in desc["partial"]}
    return [o for o in desc["objects"] if desc["counts"][o["type"]] == 1 and o["type"] not in partial]


def clear_pairs(objs: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(a, b)`` with a clearly left of b (centroids at least ``LR_MARGIN`` apart)."""
    out = []
    for a in objs:
        for b in objs:
            if a["type"] != b["type"] and a["center"][0] + LR_MARGIN <= b["center"][0]:
                out.append((a, b))
    return out


def absent_types(desc: dict[str, Any]) -> set[str]:
    """Classes that are certainly not in the image (neither visible nor glimpsed)."""
    seen = {o["type"] for o in desc["objects"]} | {p["type"] for p in desc["partial"]}
    return set(FURNITURE) - seen


def room_known(desc: dict[str, Any]) -> bool:
    return desc["room_share"] >= ROOM_SHARE


class Frequencies:
    """How often each class is visible and each room type shown in a split: absent classes for
    "is there a X?" are drawn with these weights, so P(yes | X) stays near one half."""

    def __init__(self, descs: Sequence[dict[str, Any]]):
        self.objects = {t: 1.0 for t in sorted(FURNITURE)}  # add-one: every class can be asked about
        self.rooms: dict[str, float] = {}
        for d in descs:
            for o in d["objects"]:
                self.objects[o["type"]] += 1.0
            self.rooms[d["room"]["type"]] = self.rooms.get(d["room"]["type"], 0.0) + 1.0
        for t in ROOM_NAMES:
            self.rooms.setdefault(t, 0.5)

    def absent_object(self, rng: np.random.Generator, desc: dict[str, Any]) -> str | None:
        pool = sorted(absent_types(desc))
        if not pool:
            return None
        w = np.array([self.objects[t] for t in pool])
        return pool[int(rng.choice(len(pool), p=w / w.sum()))]

    def other_room(self, rng: np.random.Generator, room: str) -> str:
        pool = sorted(t for t in self.rooms if t != room)
        w = np.array([self.rooms[t] for t in pool])
        return pool[int(rng.choice(len(pool), p=w / w.sum()))]


def _other_colour(rng: np.random.Generator, kind: str, colour: str) -> str:
    """A wrong colour, preferring those the class comes in (a plausible confusion)."""
    pool = [c for c in FURNITURE[kind]["colours"] if c != colour] or [c for c in PALETTE if c != colour]
    return _pick(rng, pool)


# ---------------------------------------------------------------------------------------
# Ten annotators


def annotate(rng: np.random.Generator, answer: str, kind: str, synonyms: Sequence[str] = (),
             wrong: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Ten annotators' answers and confidences for a question whose correct answer is ``answer``.

    ``kind`` is ``yes/no``, ``number``, ``colour`` or ``noun`` (which surface variations
    apply: number words, articles). Each annotator answers the canonical form, or a synonym
    (12%), or a wrong answer (6%, from ``wrong``); then varies the surface: a capital (12%), an
    article for nouns (8%), a trailing period (6%), the number word (25% for numbers). The
    draw is repeated until the correct answer (normalised as the official evaluator does) is
    strictly the most frequent, so ``multiple_choice_answer`` is right.
    """
    for _ in range(50):
        out, conf = [], []
        for _k in range(N_ANSWERS):
            r = rng.random()
            c = "yes"
            if wrong and r < 0.06:
                a = _pick(rng, wrong)
                c = "maybe" if rng.random() < 0.5 else "yes"
            elif synonyms and r < 0.18:
                a = _pick(rng, synonyms)
                c = "yes" if rng.random() < 0.8 else "maybe"
            else:
                a = answer
                if rng.random() < 0.04:
                    c = "maybe"
            if kind == "number" and a.isdigit() and rng.random() < 0.25:
                a = number_word(int(a))
            if kind == "noun" and rng.random() < 0.08:
                a = (with_article(a) if rng.random() < 0.6 else f"the {a}")
            if rng.random() < 0.12:
                a = a[:1].upper() + a[1:]
            if rng.random() < 0.06:
                a = a + "."
            out.append(a)
            conf.append(c)
        norm = [normalize_answer(a) if len(set(out)) > 1 else a for a in out]
        target = normalize_answer(answer) if len(set(out)) > 1 else answer
        counts: dict[str, int] = {}
        for a in norm:
            counts[a] = counts.get(a, 0) + 1
        best = max(counts.values())
        if counts.get(target, 0) == best and sum(1 for v in counts.values() if v == best) == 1:
            return out, conf
    return [answer] * N_ANSWERS, ["yes"] * N_ANSWERS


# ---------------------------------------------------------------------------------------
# VQA


def _qa(question: str, qtype: str, atype: str, answer: str, kind: str, synonyms: Sequence[str] = (),
        wrong: Sequence[str] = ()) -> dict[str, Any]:
    return {"question": question, "question_type": qtype, "answer_type": atype, "answer": answer, "kind": kind,
            "synonyms": [s for s in synonyms if s != answer], "wrong": [w for w in wrong if w != answer]}


def _yes_no(yes: bool) -> tuple[str, list[str]]:
    return ("yes", ["no"]) if yes else ("no", ["yes"])


def _vqa_exist(rng, desc, freq, want):
    if want and desc["objects"]:
        kind, yes = _pick(rng, desc["objects"])["type"], True
    else:
        kind, yes = freq.absent_object(rng, desc), False
        if kind is None:
            return None
    name = OBJECT_NAMES[kind][0]
    q = _pick(rng, ("Is there {} in the picture?", "Is there {}?", "Is there {} in the image?")).format(
        with_article(name))
    ans, wrong = _yes_no(yes)
    return _qa(q, "is there a", "yes/no", ans, "yes/no", (), wrong)


def _vqa_exist_colour(rng, desc, freq, want):
    ones = singletons(desc)
    if not ones:
        return None
    o = _pick(rng, ones)
    yes = want
    colour = o["colour"] if yes else _other_colour(rng, o["type"], o["colour"])
    q = f"Is there {with_article(colour + ' ' + OBJECT_NAMES[o['type']][0])}?"
    ans, wrong = _yes_no(yes)
    return _qa(q, "is there a", "yes/no", ans, "yes/no", (), wrong)


def _vqa_left_of(rng, desc, freq, want):
    pairs = clear_pairs(singletons(desc))
    if not pairs:
        return None
    a, b = _pick(rng, pairs)
    yes = want
    x, y = (a, b) if yes else (b, a)
    rel = _pick(rng, ("to the left of", "left of", "on the left side of"))
    q = f"Is the {OBJECT_NAMES[x['type']][0]} {rel} the {OBJECT_NAMES[y['type']][0]}?"
    ans, wrong = _yes_no(yes)
    return _qa(q, "is the", "yes/no", ans, "yes/no", (), wrong)


def _vqa_room_verify(rng, desc, freq, want):
    if not room_known(desc):
        return None
    room = desc["room"]["type"]
    yes = want
    asked = room if yes else freq.other_room(rng, room)
    q = f"Is this {with_article(ROOM_NAMES[asked][0])}?"
    ans, wrong = _yes_no(yes)
    return _qa(q, "is this a", "yes/no", ans, "yes/no", (), wrong)


def _vqa_count(rng, desc, freq, want):
    r = rng.random()
    if r < 0.55:
        if desc["partial"]:
            return None  # a glimpse would make the total debatable
        n = len(desc["objects"])
        word = _pick(rng, OBJECT_WORDS)
        q = _pick(rng, ("How many {} are there?", "How many {} are in the picture?",
                        "How many {} can you see?")).format(word)
    elif r < 0.8:
        # a class in the picture (one, now and then two) or one that is not (none): classes
        # come once per room, so asking only about present ones would make "1" a sure guess
        kind = _pick(rng, desc["objects"])["type"] if desc["objects"] and rng.random() < 0.5 \
            else freq.absent_object(rng, desc)
        if kind is None or kind in {p["type"] for p in desc["partial"]}:
            return None
        n = desc["counts"].get(kind, 0)
        q = f"How many {plural(OBJECT_NAMES[kind][0])} are there?"
    else:
        shown = sorted({o["colour"] for o in desc["objects"]})
        colour = _pick(rng, shown) if shown and rng.random() < 0.5 else _pick(rng, sorted(PALETTE))
        if any(p["colour"] == colour for p in desc["partial"]):
            return None
        n = sum(1 for o in desc["objects"] if o["colour"] == colour)
        q = f"How many {colour} {_pick(rng, OBJECT_WORDS)} are there?"
    wrong = [str(max(0, n - 1)), str(n + 1)]
    return _qa(q, "how many", "number", str(n), "number", (), wrong)


def _vqa_colour(rng, desc, freq, want):
    ones = [o for o in singletons(desc) if len(FURNITURE[o["type"]]["colours"]) > 1]
    if not ones:
        return None
    o = _pick(rng, ones)
    q = _pick(rng, ("What color is the {}?", "What color is the {} in the picture?")).format(
        OBJECT_NAMES[o["type"]][0])
    colour = o["colour"]
    return _qa(q, "what color is the", "other", colour, "colour", COLOUR_NAMES[colour][1:],
               [_other_colour(rng, o["type"], colour)])


def _vqa_room(rng, desc, freq, want):
    if not room_known(desc):
        return None
    room = desc["room"]["type"]
    q = _pick(rng, ("What room is this?", "What room is shown?", "What room is this picture taken in?"))
    return _qa(q, "what room is", "other", room, "noun", ROOM_NAMES[room][1:], [freq.other_room(rng, room)])


def _neighbour(objs, o, side):
    """The visible object nearest to ``o`` on ``side`` (clear of the margin), else None."""
    if side == "left":
        cands = [p for p in objs if p["center"][0] + LR_MARGIN <= o["center"][0]]
        return max(cands, key=lambda p: p["center"][0]) if cands else None
    cands = [p for p in objs if p["center"][0] >= o["center"][0] + LR_MARGIN]
    return min(cands, key=lambda p: p["center"][0]) if cands else None


def _unique_neighbour(objs, o, side):
    """Like :func:`_neighbour`, but None when a second candidate is nearly as close."""
    n = _neighbour(objs, o, side)
    if n is None:
        return None
    others = [p for p in objs if p is not n and p is not o and p["type"] != n["type"]]
    if any(abs(p["center"][0] - n["center"][0]) < LR_MARGIN / 2 and
           ((side == "left" and p["center"][0] < o["center"][0]) or (side == "right" and p["center"][0] > o["center"][0]))
           for p in others):
        return None
    return n


def _vqa_what_beside(rng, desc, freq, want):
    ones = singletons(desc)
    side = "left" if rng.random() < 0.5 else "right"
    cands = [(o, n) for o in ones if (n := _unique_neighbour(desc["objects"], o, side)) is not None]
    if not cands:
        return None
    o, n = _pick(rng, cands)
    q = f"What is to the {side} of the {OBJECT_NAMES[o['type']][0]}?"
    others = [p["type"] for p in desc["objects"] if p["type"] not in (n["type"], o["type"])]
    wrong = [OBJECT_NAMES[t][0] for t in others] or [OBJECT_NAMES[o["type"]][0]]
    return _qa(q, "what is", "other", OBJECT_NAMES[n["type"]][0], "noun", OBJECT_NAMES[n["type"]][1:], wrong)


def _vqa_on_side(rng, desc, freq, want):
    objs = desc["objects"]
    if len(objs) < 2:
        return None
    side = "left" if rng.random() < 0.5 else "right"
    ordered = objs if side == "left" else objs[::-1]
    first, second = ordered[0], ordered[1]
    if abs(first["center"][0] - second["center"][0]) < LR_MARGIN or first["type"] == second["type"] \
            or abs(first["center"][0] - (0.0 if side == "left" else 1.0)) > 0.45:
        return None
    q = _pick(rng, ("What is on the {}?", "What is on the far {}?", "What is on the {} side of the picture?")).format(side)
    return _qa(q, "what is on the", "other", OBJECT_NAMES[first["type"]][0], "noun",
               OBJECT_NAMES[first["type"]][1:], [OBJECT_NAMES[second["type"]][0]])


def _vqa_which_colour(rng, desc, freq, want):
    by_colour: dict[str, list[dict[str, Any]]] = {}
    for o in desc["objects"]:
        by_colour.setdefault(o["colour"], []).append(o)
    partial = {p["colour"] for p in desc["partial"]}
    cands = [v[0] for c, v in sorted(by_colour.items()) if len(v) == 1 and c not in partial]
    if not cands:
        return None
    o = _pick(rng, cands)
    q = f"What is the {o['colour']} {_pick(rng, ('object', 'thing', 'piece of furniture'))}?"
    others = [OBJECT_NAMES[p["type"]][0] for p in desc["objects"] if p["type"] != o["type"]]
    return _qa(q, "what is the", "other", OBJECT_NAMES[o["type"]][0], "noun", OBJECT_NAMES[o["type"]][1:],
               others or [OBJECT_NAMES[freq.absent_object(rng, desc) or o["type"]][0]])


#: (generator, weight): about 40% yes/no, 15% number, 45% other, as VQA v2 (38 / 12 / 50).
VQA_GENERATORS = ((_vqa_exist, 0.17), (_vqa_exist_colour, 0.06), (_vqa_left_of, 0.09), (_vqa_room_verify, 0.07),
                  (_vqa_count, 0.15), (_vqa_colour, 0.15), (_vqa_room, 0.09), (_vqa_what_beside, 0.09),
                  (_vqa_on_side, 0.07), (_vqa_which_colour, 0.06))


def _want(rng: np.random.Generator, tally: dict[str, int]) -> bool:
    """The answer the next yes/no question should have: the rarer one so far in this image
    (a coin flip on a tie), so yes and no stay balanced even when some questions repeat."""
    if tally["yes"] == tally["no"]:
        return bool(rng.random() < 0.5)
    return tally["yes"] < tally["no"]


def vqa_questions(rng: np.random.Generator, desc: dict[str, Any], n: int, freq: Frequencies) -> list[dict[str, Any]]:
    """Up to ``n`` distinct questions with ten annotators' answers each.

    Each record: ``question``, ``question_type`` (VQA's prefixes: ``is there a``, ``how many``,
    ``what color is the``, ``what room is``, ``what is``, ...), ``answer_type``, ``answer`` (the
    correct one, in canonical lower-case form), ``answers`` (10), ``confidences`` (10).
    """
    gens = [g for g, _ in VQA_GENERATORS]
    w = np.array([p for _, p in VQA_GENERATORS])
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    tally = {"yes": 0, "no": 0}
    for _ in range(n * 6):
        if len(out) >= n:
            break
        qa = gens[int(rng.choice(len(gens), p=w / w.sum()))](rng, desc, freq, _want(rng, tally))
        if qa is None or qa["question"] in seen:
            continue
        if qa["answer"] in tally:
            tally[qa["answer"]] += 1
        seen.add(qa["question"])
        qa["answers"], qa["confidences"] = annotate(rng, qa["answer"], qa.pop("kind"), qa.pop("synonyms"),
                                                    qa.pop("wrong"))
        out.append(qa)
    return out


# ---------------------------------------------------------------------------------------
# Captions


def _np(rng: np.random.Generator, o: dict[str, Any], p_colour: float = 0.75) -> str:
    """A noun phrase for an object: 'a red sofa', 'a couch'."""
    name = _name(rng, o["type"])
    if rng.random() < p_colour:
        name = f"{_pick(rng, COLOUR_NAMES[o['colour']])} {name}"
    return with_article(name)


def _join(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _caption(rng: np.random.Generator, desc: dict[str, Any]) -> str:
    objs = desc["objects"]
    in_room = [o for o in objs if o["in_room"]]
    if not in_room:  # only furniture of a neighbouring room: say so
        o = _pick(rng, objs)
        return (f"A door open onto {with_article(_room_name(rng, o['room_type']))} with {_np(rng, o)}"
                + ("." if rng.random() < 0.6 else ""))
    room = _room_name(rng, desc["room"]["type"]) if room_known(desc) else None
    where = room or _pick(rng, ("room", "house", "home"))
    k = min(len(in_room), int(rng.integers(1, 4)))
    chosen_idx = sorted(rng.permutation(len(in_room))[:k].tolist())
    chosen = [in_room[i] for i in chosen_idx]
    if rng.random() < 0.5:
        chosen = chosen[::-1]
    phrases = [_np(rng, o) for o in chosen]
    pairs = clear_pairs(singletons(desc))
    t = int(rng.integers(9))
    if t == 0:
        s = f"{with_article(where)} with {_join(phrases)}"
    elif t == 1:
        s = f"{_join(phrases)} in {with_article(where)}"
    elif t == 2:
        s = f"a view of {with_article(where)} showing {_join(phrases)}"
    elif t == 3 and pairs:
        a, b = _pick(rng, pairs)
        s = _pick(rng, ("{a} to the left of {b} in {w}", "{b} to the right of {a}",
                        "{a} on the left and {b} on the right")).format(a=_np(rng, a), b=_np(rng, b), w=with_article(where))
    elif t == 4:
        s = f"the {where} has {_join(phrases)}"
    elif t == 5 and not desc["partial"]:
        n = len(objs)
        s = f"{with_article(where)} with {number_word(n)} {'piece' if n == 1 else 'pieces'} of furniture"
    elif t == 6:
        s = f"{_join(phrases)} {'stands' if len(phrases) == 1 else 'stand'} in {with_article(where)}"
    elif t == 7 and any(not o["in_room"] for o in objs):
        o = _pick(rng, [o for o in objs if not o["in_room"]])
        s = f"{with_article(where)} with a door open onto {with_article(_room_name(rng, o['room_type']))} with {_np(rng, o)}"
    else:
        s = f"{_pick(rng, ('inside', 'a photo of', 'looking into'))} {with_article(where)} with {_join(phrases)}"
    if rng.random() < 0.8:
        s = s[:1].upper() + s[1:]
    if rng.random() < 0.6:
        s += "."
    return s


def captions(rng: np.random.Generator, desc: dict[str, Any], n: int = 5) -> list[str]:
    """``n`` different captions (templates, synonyms, which objects, their order)."""
    out: list[str] = []
    for _ in range(n * 20):
        c = _caption(rng, desc)
        if tokenize(c) not in [tokenize(x) for x in out]:
            out.append(c)
        if len(out) == n:
            break
    while len(out) < n:  # a bare image with few objects: repeat a caption rather than invent one
        out.append(out[len(out) % max(1, len(out))])
    return out


# ---------------------------------------------------------------------------------------
# GQA programs


def _sel(o: dict[str, Any] | None, kind: str | None = None) -> str:
    if o is None:
        return f"{OBJECT_NAMES[kind][0]} (-)" if kind else "scene"
    return f"{OBJECT_NAMES[o['type']][0]} ({o['id']})"


def _gqa(question, answer, full, structural, semantic, detailed, steps, group):
    return {"question": question, "answer": answer, "fullAnswer": full,
            "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
            "semantic": [{"operation": op, "argument": arg, "dependencies": deps} for op, arg, deps in steps],
            "group": group}


def _gqa_query_colour(rng, desc, freq, want):
    ones = [o for o in singletons(desc) if len(FURNITURE[o["type"]]["colours"]) > 1]
    if not ones:
        return None
    o = _pick(rng, ones)
    n = OBJECT_NAMES[o["type"]][0]
    return _gqa(f"What color is the {n}?", o["colour"], f"The {n} is {o['colour']}.", "query", "attr", "queryAttr",
                [("select", _sel(o), []), ("query", "color", [0])], f"{n}_color")


def _gqa_exist_attr(rng, desc, freq, want):
    ones = singletons(desc)
    if not ones:
        return None
    o = _pick(rng, ones)
    n = OBJECT_NAMES[o["type"]][0]
    yes = want
    colour = o["colour"] if yes else _other_colour(rng, o["type"], o["colour"])
    q = f"Is there {with_article(colour + ' ' + n)} in the picture?"
    full = f"Yes, there is {with_article(colour + ' ' + n)}." if yes else f"No, the {n} is {o['colour']}."
    return _gqa(q, "yes" if yes else "no", full, "verify", "attr", "existAttr",
                [("select", _sel(o), []), ("filter color", colour, [0]), ("exist", "?", [1])], f"{colour}_{n}")


def _gqa_exist_and(rng, desc, freq, want):
    objs = desc["objects"]
    if not objs:
        return None
    a = _pick(rng, objs)
    if want:
        others = [o for o in objs if o["type"] != a["type"]]
        if not others:
            return None
        b, yes = _pick(rng, others), True
        kind_b = b["type"]
    else:
        kind_b, b, yes = freq.absent_object(rng, desc), None, False
        if kind_b is None:
            return None
    items = [(a, a["type"]), (b, kind_b)]
    if rng.random() < 0.5:  # word order must not give the answer away
        items = items[::-1]
    (o1, k1), (o2, k2) = items
    n1, n2 = OBJECT_NAMES[k1][0], OBJECT_NAMES[k2][0]
    q = f"Are there both {with_article(n1)} and {with_article(n2)} in the picture?"
    full = f"Yes, there are both {with_article(n1)} and {with_article(n2)}." if yes else \
        f"No, there is {with_article(OBJECT_NAMES[a['type']][0])} but no {OBJECT_NAMES[kind_b][0]}."
    steps = [("select", _sel(o1, k1), []), ("exist", "?", [0]),
             ("select", _sel(o2, k2), []), ("exist", "?", [2]), ("and", "", [1, 3])]
    return _gqa(q, "yes" if yes else "no", full, "logical", "obj", "existAnd", steps, f"{n1}_{n2}_and")


def _gqa_relate_query(rng, desc, freq, want):
    ones = singletons(desc)
    side = "left" if rng.random() < 0.5 else "right"
    cands = [(o, n) for o in ones if (n := _unique_neighbour(desc["objects"], o, side)) is not None]
    if not cands:
        return None
    o, nb = _pick(rng, cands)
    n = OBJECT_NAMES[o["type"]][0]
    rel = f"to the {side} of"
    word = _pick(rng, ("object", "piece of furniture"))
    if rng.random() < 0.5:
        q, ref, steps = f"What is the {word} {rel} the {o['colour']} {n}?", f"{o['colour']} {n}", \
            [("select", _sel(o), []), ("filter color", o["colour"], [0]), ("relate", f"{word},{rel},s ({nb['id']})", [1]),
             ("query", "name", [2])]
    else:
        q, ref, steps = f"What is the {word} {rel} the {n}?", n, \
            [("select", _sel(o), []), ("relate", f"{word},{rel},s ({nb['id']})", [0]), ("query", "name", [1])]
    ans = OBJECT_NAMES[nb["type"]][0]
    return _gqa(q, ans, f"The {word} is {with_article(ans)}.", "query", "rel", "relS", steps, f"{side}_{ref}")


def _gqa_verify_rel(rng, desc, freq, want):
    pairs = clear_pairs(singletons(desc))
    if not pairs:
        return None
    a, b = _pick(rng, pairs)
    yes = want
    x, y = (a, b) if yes else (b, a)
    nx, ny = OBJECT_NAMES[x["type"]][0], OBJECT_NAMES[y["type"]][0]
    q = f"Is the {nx} to the left of the {ny}?"
    full = f"Yes, the {nx} is to the left of the {ny}." if yes else f"No, the {nx} is to the right of the {ny}."
    return _gqa(q, "yes" if yes else "no", full, "verify", "rel", "relVerify",
                [("select", _sel(y), []), ("verify rel", f"{nx},to the left of,s ({x['id']})", [0])], f"{nx}_left_{ny}")


def _gqa_choose_rel(rng, desc, freq, want):
    pairs = clear_pairs(singletons(desc))
    if not pairs:
        return None
    a, b = _pick(rng, pairs)
    if rng.random() < 0.5:
        x, y, side = a, b, "left"
    else:
        x, y, side = b, a, "right"
    nx, ny = OBJECT_NAMES[x["type"]][0], OBJECT_NAMES[y["type"]][0]
    q = f"Is the {nx} to the left or to the right of the {ny}?"
    return _gqa(q, side, f"The {nx} is to the {side} of the {ny}.", "choose", "rel", "relChooser",
                [("select", _sel(y), []), ("choose rel", f"{nx},to the left of|to the right of,s ({x['id']})", [0])],
                f"{nx}_{ny}_side")


def _gqa_choose_attr(rng, desc, freq, want):
    ones = [o for o in singletons(desc) if len(FURNITURE[o["type"]]["colours"]) > 1]
    if not ones:
        return None
    o = _pick(rng, ones)
    n = OBJECT_NAMES[o["type"]][0]
    other = _other_colour(rng, o["type"], o["colour"])
    c1, c2 = (o["colour"], other) if rng.random() < 0.5 else (other, o["colour"])
    return _gqa(f"Is the {n} {c1} or {c2}?", o["colour"], f"The {n} is {o['colour']}.", "choose", "attr", "chooseAttr",
                [("select", _sel(o), []), ("choose color", f"{c1}|{c2}", [0])], f"{n}_color_choice")


def _gqa_place(rng, desc, freq, want):
    if not room_known(desc):
        return None
    room = desc["room"]["type"]
    q = _pick(rng, ("Which room is this?", "Which place is it?", "What room is it?"))
    return _gqa(q, room, f"It is {with_article(room)}.", "query", "global", "placeQuery",
                [("select", "scene", []), ("query", "room", [0])], "place")


GQA_GENERATORS = ((_gqa_query_colour, 0.17), (_gqa_exist_attr, 0.15), (_gqa_exist_and, 0.12), (_gqa_relate_query, 0.16),
                  (_gqa_verify_rel, 0.12), (_gqa_choose_rel, 0.1), (_gqa_choose_attr, 0.1), (_gqa_place, 0.08))


def semantic_str(steps: Sequence[dict[str, Any]]) -> str:
    """GQA's one-line rendering of a program: ``select: sofa (3)->query: color [0]``."""
    parts = []
    for s in steps:
        deps = f" [{', '.join(map(str, s['dependencies']))}]" if s["dependencies"] else ""
        arg = f" {s['argument']}" if s["argument"] else ""
        parts.append(f"{s['operation']}:{arg}{deps}")
    return "->".join(parts)


def gqa_questions(rng: np.random.Generator, desc: dict[str, Any], n: int, freq: Frequencies) -> list[dict[str, Any]]:
    """Up to ``n`` distinct compositional questions with their programs and full answers."""
    gens = [g for g, _ in GQA_GENERATORS]
    w = np.array([p for _, p in GQA_GENERATORS])
    out, seen = [], set()
    tally = {"yes": 0, "no": 0}
    for _ in range(n * 6):
        if len(out) >= n:
            break
        q = gens[int(rng.choice(len(gens), p=w / w.sum()))](rng, desc, freq, _want(rng, tally))
        if q is None or q["question"] in seen:
            continue
        if q["answer"] in tally:
            tally[q["answer"]] += 1
        seen.add(q["question"])
        out.append(q)
    return out


# ---------------------------------------------------------------------------------------
# SNLI-VE hypotheses

_UNOBSERVABLE = ("The {n} was bought last year.", "The {n} is very expensive.", "Someone is about to use the {n}.",
                 "The {n} was a present from a friend.", "The {n} is brand new.", "The family that lives here chose the {n} together.")
_OUTSIDE = ("It is raining outside.", "The house has a garden.", "Nobody is at home right now.",
            "The neighbours are having a party.", "The house is in a big city.")


#: The template of each synthetic hypothesis (``hypothesis_type`` in the SNLI-VE files): which
#: fact of the image it turns on. The neutral ones mostly share a decidable template's wording
#: (a colour claim about an object that is not in the picture), so a template is not a label.
OBJECT, NO_OBJECT, ROOM, RELATION, COLOUR_CLAIM, COUNT = "object", "no object", "room", "relation", "colour", "count"
OTHER_ROOM, UNOBSERVABLE, OUTSIDE = "other room", "unobservable", "outside"
HYPOTHESIS_TYPES = (OBJECT, NO_OBJECT, ROOM, RELATION, COLOUR_CLAIM, COUNT, OTHER_ROOM, UNOBSERVABLE, OUTSIDE)
HYPOTHESIS_TYPE = "hypothesis_type"


def _entailment(rng, desc, freq):
    objs = desc["objects"]
    r = rng.random()
    ones = singletons(desc)
    if r < 0.35 and objs:
        return OBJECT, f"There is {_np(rng, _pick(rng, objs), 0.6)} in the picture."
    if r < 0.5 and room_known(desc):
        return ROOM, f"This is {with_article(_room_name(rng, desc['room']['type']))}."
    if r < 0.7 and (pairs := clear_pairs(ones)):
        a, b = _pick(rng, pairs)
        if rng.random() < 0.5:
            return RELATION, f"The {OBJECT_NAMES[a['type']][0]} is to the left of the {OBJECT_NAMES[b['type']][0]}."
        return RELATION, f"The {OBJECT_NAMES[b['type']][0]} is to the right of the {OBJECT_NAMES[a['type']][0]}."
    if r < 0.85 and ones:
        o = _pick(rng, ones)
        return COLOUR_CLAIM, f"The {_name(rng, o['type'])} is {o['colour']}."
    if r < 0.92 and not desc["partial"] and objs:
        return COUNT, _furniture_count(len(objs))
    kind = freq.absent_object(rng, desc)
    return None if kind is None else (NO_OBJECT, f"There is no {OBJECT_NAMES[kind][0]} in the picture.")


def _furniture_count(n: int) -> str:
    return f"There {'is' if n == 1 else 'are'} {number_word(n)} {'piece' if n == 1 else 'pieces'} of furniture."


def _contradiction(rng, desc, freq):
    r = rng.random()
    ones = singletons(desc)
    if r < 0.3:
        kind = freq.absent_object(rng, desc)
        if kind is not None:
            return OBJECT, f"There is {with_article(OBJECT_NAMES[kind][0])} in the picture."
    if r < 0.45 and room_known(desc):
        return ROOM, f"This is {with_article(ROOM_NAMES[freq.other_room(rng, desc['room']['type'])][0])}."
    if r < 0.65 and (pairs := clear_pairs(ones)):
        a, b = _pick(rng, pairs)
        if rng.random() < 0.5:
            return RELATION, f"The {OBJECT_NAMES[a['type']][0]} is to the right of the {OBJECT_NAMES[b['type']][0]}."
        return RELATION, f"The {OBJECT_NAMES[b['type']][0]} is to the left of the {OBJECT_NAMES[a['type']][0]}."
    if r < 0.85 and ones:
        o = _pick(rng, ones)
        return COLOUR_CLAIM, f"The {OBJECT_NAMES[o['type']][0]} is {_other_colour(rng, o['type'], o['colour'])}."
    if r < 0.92 and ones:
        return NO_OBJECT, f"There is no {OBJECT_NAMES[_pick(rng, ones)['type']][0]} in the picture."
    if not desc["partial"] and desc["objects"]:
        n = len(desc["objects"])
        return COUNT, _furniture_count(n + 1 if n == 1 or rng.random() < 0.5 else n - 1)
    return None


def _neutral(rng, desc, freq):
    """A claim the image cannot decide. Most share their wording with the decidable ones
    ("The sofa is blue." of a sofa that is not in the picture), so the text alone does not
    give the label away; the rest are about what no picture shows (when it was bought, the
    weather) or about other rooms."""
    r = rng.random()
    kind = freq.absent_object(rng, desc)
    if r < 0.45 and kind is not None:
        colour = _pick(rng, FURNITURE[kind]["colours"])
        return COLOUR_CLAIM, f"The {OBJECT_NAMES[kind][0]} is {colour}."
    if r < 0.65 and kind is not None:
        return OTHER_ROOM, f"There is {with_article(OBJECT_NAMES[kind][0])} in another room of this house."
    if r < 0.85 and desc["objects"]:
        o = _pick(rng, singletons(desc) or desc["objects"])
        return UNOBSERVABLE, _pick(rng, _UNOBSERVABLE).format(n=OBJECT_NAMES[o["type"]][0])
    return OUTSIDE, _pick(rng, _OUTSIDE)


HYPOTHESES = (("entailment", _entailment), ("neutral", _neutral), ("contradiction", _contradiction))


def snli_hypotheses(rng: np.random.Generator, desc: dict[str, Any], n: int,
                    freq: Frequencies) -> list[tuple[str, str, str]]:
    """Up to ``n`` distinct ``(hypothesis, label, template)`` triples, the three labels in turn;
    ``template`` is one of :data:`HYPOTHESIS_TYPES`."""
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for k in range(n * 8):
        if len(out) >= n:
            break
        label, gen = HYPOTHESES[len(out) % 3]
        made = gen(rng, desc, freq)
        if made is None or made[1] in seen:
            continue
        template, h = made
        seen.add(h)
        out.append((h, label, template))
    return out
