"""CIDEr-D (vln_clip.eval.cider) against pycocoevalcap's Cider and a hand-computed value."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from pycocoevalcap.cider.cider import Cider

from vln_clip.errors import DataError
from vln_clip.eval.cider import CiderD


def _sentence(rng: random.Random, words: list[str], lo: int, hi: int) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))


@pytest.mark.parametrize("seed", range(6))
def test_equals_pycocoevalcap_on_random_references(seed: int) -> None:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(rng.choice([3, 8, 30]))]
    n = rng.randint(1, 40)
    gts = {f"img{i}": [_sentence(rng, words, 1, 14) for _ in range(rng.randint(1, 6))] for i in range(n)}
    # Candidates include empty and one-word captions (the bigram-length quirk) and unseen words.
    res = {k: [_sentence(rng, words + ["unseen", "other"], 0, 16)] for k in gts}
    mean_ref, per_ref = Cider().compute_score(gts, res)
    scorer = CiderD(gts)
    mean, per = scorer.corpus_score({k: v[0] for k, v in res.items()})
    np.testing.assert_allclose(per, per_ref, rtol=0, atol=1e-9)
    assert abs(mean - mean_ref) < 1e-9


def test_batch_with_repeated_images_matches_one_by_one() -> None:
    """5 samples per image scored in one call equal scoring each sample on its own."""
    rng = random.Random(7)
    words = [f"w{i}" for i in range(10)]
    corpus = {i: [_sentence(rng, words, 3, 10) for _ in range(5)] for i in range(20)}
    scorer = CiderD(corpus)
    keys = [i for i in (3, 11, 0) for _ in range(5)]
    cands = [_sentence(rng, words, 2, 12) for _ in keys]
    batch = scorer.scores(cands, keys)
    single = np.array([scorer.scores([c], [k])[0] for c, k in zip(cands, keys)])
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-12)


def test_hand_computed_two_images() -> None:
    """N = 2 images; the candidate equals image a's only reference 'x y'.

    n-grams of 'x y': x, y (df 1 each: image b is 'z'), 'x y' (df 1). idf = log 2 for all,
    so orders 1 and 2 have cosine 1, orders 3 and 4 have no n-grams (0): score = 10 * 2/4 = 5.
    """
    scorer = CiderD({"a": ["x y"], "b": ["z"]})
    assert scorer.scores(["x y"], ["a"])[0] == pytest.approx(5.0, abs=1e-12)
    # A word shared by both images has idf log(2) - log(2) = 0 and contributes nothing.
    both = CiderD({"a": ["x y"], "b": ["x"]})
    # unigrams: only y counts; candidate 'x y' vs ref 'x y': unigram cos = (log2)^2/(log2*log2) = 1.
    assert both.scores(["x y"], ["a"])[0] == pytest.approx(5.0, abs=1e-12)
    # Length penalty: 'x y x y' has 3 bigrams vs 1 -> exp(-4/72) on each order.
    got = scorer.scores(["x y x y"], ["a"])[0]
    # With l = log 2: unigrams (2l, 2l) vs (l, l), clipped: (min(2l,l)*l * 2) / (sqrt(8) l * sqrt(2) l) = 1/2;
    # bigrams 'x y' 2l, 'y x' l vs 'x y' l: l*l / (sqrt(5) l * l) = 1/sqrt(5); orders 3, 4: 0.
    expected = 10 * (0.5 + 1 / math.sqrt(5)) / 4 * math.exp(-4 / 72)
    assert got == pytest.approx(expected, abs=1e-12)


def test_unknown_image_is_a_data_error() -> None:
    scorer = CiderD({"a": ["x"]})
    with pytest.raises(DataError, match="no references"):
        scorer.scores(["x"], ["b"])
    with pytest.raises(DataError, match="empty"):
        CiderD({})
