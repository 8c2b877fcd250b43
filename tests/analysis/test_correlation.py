"""Pearson's r and its p-value: closed-form t tails (df = 1, 2) and scipy as oracles, edge cases, bad input."""

import math
import random

import pytest

from hf_toponets.analysis.correlation import pearson, regularized_incomplete_beta, t_two_sided_p


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.0, 300.0])
def test_t_tails_match_closed_forms(t):
    # df = 1 is Cauchy: P(|T| >= t) = 1 - (2 / pi) atan t; df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2)
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-12, abs=1e-15)
    assert t_two_sided_p(-t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-12, abs=1e-15)


def test_pearson_r_is_the_textbook_formula():
    x, y = [1.0, 2.0, 4.0, 7.0], [3.0, 1.0, 2.0, 9.0]
    mx, my = sum(x) / 4, sum(y) / 4
    r = sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(
        sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))
    c = pearson(x, y)
    assert c.r == pytest.approx(r, rel=1e-14) and c.n == 4
    # n = 4: df = 2, so the p-value has the closed form above at t = r sqrt(2 / (1 - r^2))
    t = r * math.sqrt(2 / (1 - r * r))
    assert c.p == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), rel=1e-12)


@pytest.mark.parametrize("n", [3, 5, 8, 30, 500])
def test_pearson_matches_scipy(n):
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(n)
    for _ in range(20):
        x = [rng.gauss(0, 1) for _ in range(n)]
        slope = rng.uniform(-3, 3)
        y = [slope * a + rng.gauss(0, 1) for a in x]
        r, p = stats.pearsonr(x, y)
        c = pearson(x, y)
        assert c.r == pytest.approx(r, abs=1e-12)
        assert c.p == pytest.approx(p, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("a, b, x", [(0.5, 0.5, 0.2), (1.5, 0.5, 0.97), (250.0, 0.5, 0.999), (3.0, 7.0, 0.3), (2.0, 2.0, 0.5)])
def test_incomplete_beta_matches_scipy(a, b, x):
    special = pytest.importorskip("scipy.special")
    assert regularized_incomplete_beta(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), rel=1e-12)


def test_undefined_cases_give_nan_not_errors():
    assert math.isnan(pearson([1, 2], [3, 5]).p) and pearson([1, 2], [3, 5]).r == pytest.approx(1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]).r)  # a constant variable
    assert pearson([1, 2, 3], [2, 4, 6]) == (pytest.approx(1.0), 0.0, 3)  # exact line: p = 0


@pytest.mark.parametrize("x, y", [([1, 2, 3], [1, 2]), ([1, float("nan"), 3], [1, 2, 3])])
def test_bad_input(x, y):
    with pytest.raises(ValueError, match="pearson: x and y must be finite and of equal length"):
        pearson(x, y)
    with pytest.raises(ValueError, match="regularized_incomplete_beta"):
        regularized_incomplete_beta(1.0, 1.0, 1.5)
