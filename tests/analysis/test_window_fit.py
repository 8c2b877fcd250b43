"""The batched eq. 3 fit: exact recovery, scipy's curve_fit as the oracle, the grid, the 3 x 3 solver."""

import numpy as np
import pytest
import torch

from hf_toponets.analysis import window_fit
from hf_toponets.analysis.window_fit import fit_windows, grid_starts, window_curve

DELTA = torch.arange(21, dtype=torch.float64)


def curves(params):
    a, b, c = (torch.tensor(v, dtype=torch.float64) for v in zip(*params))
    return window_curve(DELTA, a, b, c)


def eq3(x, a, b, c):
    return c * (x + 1) ** (-a) + (1 - c) * np.exp(-b * x)


@pytest.mark.parametrize("a, b, c", [
    (0.8, 1.5, 0.4), (1.2, 0.05, 0.9), (0.3, 3.0, 0.5), (2.5, 0.2, 0.3), (0.5, 7.0, 0.6), (4.0, 0.6, 0.8),
])
def test_recovers_exact_mixtures(a, b, c):
    fit = fit_windows(curves([(a, b, c)]))
    assert fit.a.item() == pytest.approx(a, rel=1e-4)
    assert fit.b.item() == pytest.approx(b, rel=1e-4)
    assert fit.c.item() == pytest.approx(c, rel=1e-4)
    assert fit.r2.item() == pytest.approx(1.0, abs=1e-10)


def test_pure_shapes_sit_on_the_bounds():
    """A pure exponential has c = 0 (a is then free), a pure power law c = 1 (b free)."""
    fit = fit_windows(curves([(3.0, 0.7, 0.0), (1.3, 2.0, 1.0)]))
    assert fit.c[0].item() == pytest.approx(0.0, abs=1e-6) and fit.b[0].item() == pytest.approx(0.7, rel=1e-5)
    assert fit.c[1].item() == pytest.approx(1.0, abs=1e-6) and fit.a[1].item() == pytest.approx(1.3, rel=1e-5)


def test_matches_scipy_curve_fit_on_noisy_units():
    """scipy's per-unit trust-region fit from the authors' start (1, 1, 0.5) as the oracle: the batched
    fit's loss is never worse (beyond 1e-3 of it) and where both reach the same loss they agree."""
    curve_fit = pytest.importorskip("scipy.optimize").curve_fit
    g = torch.Generator().manual_seed(0)
    n = 40
    params = torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 3.0, 1.0], dtype=torch.float64)
    y = curves(params.tolist()) + 0.02 * torch.randn(n, 21, generator=g, dtype=torch.float64)
    y[:, 0] = 1.0  # theta_norm[0] = 1 by construction
    fit = fit_windows(y)
    x = DELTA.numpy()
    same = 0
    for i in range(n):
        p, _ = curve_fit(eq3, x, y[i].numpy(), p0=[1, 1, 0.5], bounds=([0, 0, 0], [10, 10, 1]))
        loss = float(((eq3(x, *p) - y[i].numpy()) ** 2).sum())
        ours = float(fit.loss[i])
        assert ours <= loss * (1 + 1e-3) + 1e-12, (i, ours, loss)
        mine = [float(fit.a[i]), float(fit.b[i]), float(fit.c[i])]
        assert ours == pytest.approx(float(((eq3(x, *mine) - y[i].numpy()) ** 2).sum()), rel=1e-9)
        if abs(ours - loss) <= 1e-7 * loss and 0.05 < p[2] < 0.95:  # the same, interior optimum
            np.testing.assert_allclose(mine, p, rtol=2e-3, atol=2e-4)
            same += 1
    assert same >= n // 2  # most units are the same optimum; the rest: ours is lower (scipy's start is local)


def test_r2_by_hand():
    g = torch.Generator().manual_seed(1)
    y = curves([(0.9, 1.1, 0.5)] * 3) + 0.05 * torch.randn(3, 21, generator=g, dtype=torch.float64)
    fit = fit_windows(y)
    f = window_curve(DELTA, fit.a, fit.b, fit.c)
    expected = 1 - ((y - f) ** 2).sum(1) / ((y - y.mean(1, keepdim=True)) ** 2).sum(1)
    torch.testing.assert_close(fit.r2, expected)


def test_bounds_hold_on_noise():
    y = torch.rand(64, 21, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 0.5
    fit = fit_windows(y)
    assert bool(((fit.a >= 0) & (fit.a <= 10) & (fit.b >= 0) & (fit.b <= 10) & (fit.c >= 0) & (fit.c <= 1)).all())
    assert bool(torch.isfinite(fit.loss).all())


def test_grid_starts_hold_the_grid_minimum():
    """Oracle: a naive loop over the grid with c on a fine 1-D grid; the best of the 9 starts is no
    worse than the naive grid minimum (the closed-form c is the exact optimum for each (a, b))."""
    g = torch.Generator().manual_seed(3)
    y = curves([(0.7, 2.0, 0.3), (2.0, 0.1, 0.8)]) + 0.01 * torch.randn(2, 21, generator=g, dtype=torch.float64)
    starts = grid_starts(y)  # (2, 9, 3)
    assert starts.shape == (2, 9, 3)
    start_loss = ((window_curve(DELTA, *starts.reshape(-1, 3).T) - y.repeat_interleave(9, 0)) ** 2).sum(1).view(2, 9)
    cs = torch.linspace(0, 1, 201, dtype=torch.float64)
    for i in range(2):
        naive = min(float(((window_curve(DELTA, torch.full_like(cs, a), torch.full_like(cs, b), cs) - y[i]) ** 2).sum(1).min())
                    for a in window_fit.GRID.tolist() for b in window_fit.GRID.tolist())
        assert float(start_loss[i].min()) <= naive + 1e-12


def test_cramer_solver_matches_lapack():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(50, 3, 3, generator=g, dtype=torch.float64)
    m = a @ a.transpose(1, 2) + 0.1 * torch.eye(3, dtype=torch.float64)
    rhs = torch.randn(50, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(window_fit._solve3(m, rhs), torch.linalg.solve(m, rhs))


@pytest.mark.parametrize("theta, message", [
    (torch.ones(4), "must be \\(n_units >= 1"),
    (torch.ones(3, 2), "max_delta \\+ 1 >= 3"),
    (torch.tensor([[1.0, float("nan"), 0.5]]), "nan or inf"),
])
def test_bad_input(theta, message):
    with pytest.raises(ValueError, match=f"fit_windows: .*{message}"):
        fit_windows(theta)
