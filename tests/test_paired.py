"""Paired bootstrap: the difference and its interval on hand-checkable data."""

import numpy as np
import pytest

from vln_clip.errors import DataError
from vln_clip.eval.paired import mean_interval, paired_bootstrap


def test_constant_difference_has_a_degenerate_interval():
    a = {str(i): 1.0 for i in range(50)}
    b = {str(i): 0.0 for i in range(50)}
    r = paired_bootstrap(a, b, resamples=500)
    assert (r.diff, r.ci_low, r.ci_high, r.wins_a, r.wins_b) == (100.0, 100.0, 100.0, 50, 0)


def test_pairing_removes_item_variance():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    a = {str(i): float(v + 0.02) for i, v in enumerate(base)}
    b = {str(i): float(v) for i, v in enumerate(base)}
    r = paired_bootstrap(a, b, resamples=2000)
    assert r.diff == pytest.approx(2.0)
    assert r.ci_high - r.ci_low < 1e-6  # the same shift on every item: no uncertainty left
    lo, hi = mean_interval(list(b.values()), resamples=2000)
    assert hi - lo > 3.0  # while one system's own mean is uncertain by several points


def test_mismatched_items_are_refused():
    with pytest.raises(DataError, match="different items"):
        paired_bootstrap({"1": 1.0}, {"2": 1.0})
