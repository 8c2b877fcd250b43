"""Pearson's correlation with its two-sided p-value, in pure Python (no scipy at run time).

For ``n`` pairs with correlation ``r``, under the null hypothesis of no correlation (and normal
data) ``t = r sqrt((n - 2) / (1 - r^2))`` follows Student's t with ``df = n - 2`` degrees of
freedom, so the two-sided p-value is::

    p = P(|T| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2)

with ``I_x(a, b)`` the regularized incomplete beta function, evaluated here by its continued
fraction (modified Lentz). Agrees with ``scipy.stats.pearsonr`` to ~1e-12 (the tests' oracle).

>>> c = pearson([1, 2, 3, 4, 5], [2.1, 3.9, 6.2, 7.8, 10.1])
>>> round(c.r, 4), c.p < 1e-3, c.n
(0.9987, True, 5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

_EPS, _TINY, _MAX_TERMS = 1e-15, 1e-300, 10_000


class Correlation(NamedTuple):
    """Pearson's ``r`` in [-1, 1] and its two-sided ``p`` (nan when undefined: fewer than 3 points
    or a constant variable), over ``n`` points."""

    r: float
    p: float
    n: int


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (converges fast for ``x < (a + 1) / (a + b + 2)``)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    fraction = d
    for m in range(1, _MAX_TERMS):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),           # even term d_{2m}
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):  # odd term d_{2m+1}
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            fraction *= d * c
        if abs(d * c - 1.0) < _EPS:
            return fraction
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")  # not reached for x in [0, 1]


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b) = B(x; a, b) / B(a, b)`` for ``a, b > 0`` and ``x`` in [0, 1]."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"regularized_incomplete_beta: need a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b  # I_x(a, b) = 1 - I_{1-x}(b, a)


def t_two_sided_p(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df > 0`` degrees of freedom."""
    if not df > 0:
        raise ValueError(f"t_two_sided_p: df must be > 0, got {df}")
    if math.isinf(t):
        return 0.0
    return regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def pearson(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Pearson's correlation of ``x`` and ``y`` (equal lengths, finite) and its two-sided p-value."""
    xs, ys = [float(v) for v in x], [float(v) for v in y]
    if len(xs) != len(ys) or not all(map(math.isfinite, xs + ys)):
        raise ValueError(f"pearson: x and y must be finite and of equal length, got {len(xs)} and {len(ys)} values")
    n = len(xs)
    if n < 2:
        return Correlation(math.nan, math.nan, n)
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(xs, ys))
    sxx, syy = math.fsum((a - mx) ** 2 for a in xs), math.fsum((b - my) ** 2 for b in ys)
    if sxx == 0 or syy == 0:
        return Correlation(math.nan, math.nan, n)
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    if n < 3:
        return Correlation(r, math.nan, n)  # two points always lie on a line: no test
    if abs(r) == 1.0:
        return Correlation(r, 0.0, n)
    df = n - 2
    return Correlation(r, t_two_sided_p(r * math.sqrt(df / (1.0 - r * r)), df), n)
