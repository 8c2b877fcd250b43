"""Fit integration windows to the TopoNets paper's eq. 3, every unit at once (pure torch).

A unit's normalised window ``y[D] = theta_norm[D]`` (``D = 0 .. K``) is fitted by least squares with

    f(D; a, b, c) = c (D + 1)^-a + (1 - c) exp(-b D),      a, b in [0, 10],  c in [0, 1]

(Skrill & Norman-Haignere, NeurIPS 2023): ``a`` is the power-law exponent (slow tails), ``b`` the
exponential rate (fast decay), ``c`` the power-law share. ``R^2 = 1 - sum (f - y)^2 / sum (y - mean y)^2``.

The authors fit one unit at a time with scipy's ``curve_fit`` (trust-region reflective, start
``(1, 1, 0.5)``). Here all units are fitted together, in float64, in blocks of :data:`CHUNK` units:

1. **grid starts**: ``c`` enters linearly, so at each ``(a, b)`` of a 32 x 32 grid (0 and 31
   log-spaced values from 0.01 to 10) the best ``c`` is closed-form, ``clip(<y - E, P - E> / |P - E|^2, 0, 1)``
   with ``P = (D+1)^-a``, ``E = e^(-bD)``, and every unit's loss on the whole grid is two matrix
   products. The loss has several basins (a steep power law with a slow exponential can mimic a
   shallow power law with a fast one), so the best grid point of each of the 3 x 3 decade blocks
   of ``(a, b)`` (below 0.1, 0.1 to 1, above 1) is a start: 9 starts per unit.
2. **projected Levenberg-Marquardt** from every start at once: ``(J^T J + lam diag(J^T J)) step = J^T r``
   per start, a 3 x 3 system solved in closed form (Cramer's rule, batched), parameters clipped
   to the bounds, a bound that the gradient pushes against held fixed (projected Newton), ``lam``
   shrunk after a step that lowers the loss and grown (the step refused) otherwise.
3. the start with the lowest final loss gives the unit's ``(a, b, c)``.

>>> d = torch.arange(21.0)
>>> fit = fit_windows(window_curve(d, torch.tensor([0.8]), torch.tensor([1.5]), torch.tensor([0.4])))
>>> [round(float(v), 3) for v in (fit.a[0], fit.b[0], fit.c[0], fit.r2[0])]
[0.8, 1.5, 0.4, 1.0]
"""

from __future__ import annotations

from typing import NamedTuple

import torch

LOWER = (0.0, 0.0, 0.0)  # a, b, c
UPPER = (10.0, 10.0, 1.0)
GRID = torch.cat([torch.zeros(1, dtype=torch.float64), torch.logspace(-2, 1, 31, dtype=torch.float64)])
BLOCK_EDGES = (0.1, 1.0)  # the grid's (a, b) decade blocks: one start per block
CHUNK = 4096  # units fitted together: 9 starts x 4096 x 21 x 3 float64 Jacobian = 19 MB


class WindowFit(NamedTuple):
    """Per-unit fit of eq. 3, each ``(N,)`` float64 on the input's device."""

    a: torch.Tensor  # power-law exponent
    b: torch.Tensor  # exponential rate
    c: torch.Tensor  # power-law weight
    r2: torch.Tensor  # coefficient of determination (nan for a constant window)
    loss: torch.Tensor  # sum of squared residuals


def window_curve(delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Eq. 3 at ``delta (K,)`` for parameters ``(N,)`` each: ``(N, K)``."""
    d = delta.to(a.dtype)[None, :]
    return c[:, None] * (d + 1).pow(-a[:, None]) + (1 - c[:, None]) * torch.exp(-b[:, None] * d)


def fit_windows(theta: torch.Tensor, max_iter: int = 60) -> WindowFit:
    """Fit eq. 3 to every row of ``theta (N, K + 1)`` (``theta[:, D]`` at ``D = 0 .. K``, finite).

    Runs on ``theta``'s device, ``max_iter`` Levenberg-Marquardt steps at most per block of units
    (fewer once no start's loss falls by more than 1e-9 of its value in a step).
    """
    if theta.ndim != 2 or theta.shape[1] < 3 or theta.shape[0] == 0:
        raise ValueError(f"fit_windows: theta must be (n_units >= 1, max_delta + 1 >= 3), got shape {tuple(theta.shape)}")
    if not bool(torch.isfinite(theta).all()):
        raise ValueError("fit_windows: theta has nan or inf entries; leave those units out before fitting")
    y = theta.double()
    delta = torch.arange(y.shape[1], dtype=torch.float64, device=y.device)
    params, losses = [], []
    for block in y.split(CHUNK):
        starts = grid_starts(block)  # (n, 9, 3)
        n, s = starts.shape[:2]
        p, loss = _levenberg_marquardt(block.repeat_interleave(s, 0), starts.reshape(n * s, 3), delta, max_iter)
        best = loss.view(n, s).argmin(1)
        params.append(p.view(n, s, 3)[torch.arange(n), best])
        losses.append(loss.view(n, s).gather(1, best[:, None])[:, 0])
    p, loss = torch.cat(params), torch.cat(losses)
    total = ((y - y.mean(1, keepdim=True)) ** 2).sum(1)
    r2 = torch.where(total > 0, 1 - loss / total.clamp_min(1e-300), float("nan"))
    return WindowFit(p[:, 0], p[:, 1], p[:, 2], r2, loss)


def grid_starts(theta: torch.Tensor) -> torch.Tensor:
    """``(N, 9, 3)``: per unit, the best ``(a, b, c)`` of the grid in each decade block of ``(a, b)``.

    With ``v = P - E`` and ``u = y - E``, the loss at the best ``c`` is ``|u|^2 - c (2 <u, v> - c |v|^2)``;
    ``<u, v>`` needs the product ``y @ v^T`` over the ``(a, b)`` grid, ``|u|^2`` only ``y @ E^T`` over ``b``.
    """
    y = theta.double()
    d = torch.arange(y.shape[1], dtype=torch.float64, device=y.device)
    grid = GRID.to(y.device)
    n_grid = len(grid)
    power, expo = (d + 1)[None].pow(-grid[:, None]), torch.exp(-grid[:, None] * d[None])  # (g, K) each
    v = (power[:, None] - expo[None]).reshape(n_grid * n_grid, -1)  # (G, K), a-major: v[ia * g + ib]
    vv = (v * v).sum(1)
    vv[vv == 0] = float("inf")  # a = b = 0: P = E, c undetermined: c = 0 there
    uv = torch.addmm((expo[None] * v.view(n_grid, n_grid, -1)).sum(2).view(-1), y, v.T, alpha=1, beta=-1)  # (N, G)
    uu = (y * y).sum(1, keepdim=True) - 2 * y @ expo.T + (expo * expo).sum(1)  # |y - E|^2, (N, g) over b
    c = (uv / vv).clamp_(0, 1)
    loss = (c * vv).sub_(uv, alpha=2).mul_(c).view(-1, n_grid, n_grid).add_(uu[:, None, :])  # (N, g_a, g_b)
    edges = torch.tensor(BLOCK_EDGES, dtype=torch.float64, device=y.device)
    block = torch.bucketize(grid, edges)  # (g,) decade block of each grid value: 0, 1, 2
    starts = []
    for ka in range(3):
        for kb in range(3):
            ia, ib = (block == ka).nonzero()[:, 0], (block == kb).nonzero()[:, 0]
            flat = loss[:, ia][:, :, ib].flatten(1).argmin(1)  # (N,) best point of the block
            i, j = ia[flat // len(ib)], ib[flat % len(ib)]
            starts.append(torch.stack([grid[i], grid[j], c.gather(1, (i * n_grid + j)[:, None])[:, 0]], dim=1))
    return torch.stack(starts, dim=1)


def _curves(delta, p):
    """Eq. 3 and its parts at parameters ``p (M, 3)``: ``f, P = (D+1)^-a, E = e^(-bD)``, each ``(M, K)``."""
    power = torch.exp(-p[:, 0:1] * torch.log1p(delta))  # (D + 1)^-a as an exp: cheaper than pow
    expo = torch.exp(-p[:, 1:2] * delta)
    return expo + p[:, 2:3] * (power - expo), power, expo


def _levenberg_marquardt(y, p, delta, max_iter):
    """Projected LM from starts ``p (M, 3)`` on curves ``y (M, K)``: final ``(p, loss)``.

    Only the starts still moving are computed: a start stops once an accepted step lowers its loss
    by less than 1e-9 of it, or once ``lam`` has grown past 1e8 (about ten refused steps running).
    """
    lo, hi = (torch.tensor(v, dtype=torch.float64, device=y.device) for v in (LOWER, UPPER))
    loss = ((_curves(delta, p)[0] - y) ** 2).sum(1)
    lam = torch.full_like(loss, 1e-3)
    live = torch.arange(len(p), device=y.device)
    for _ in range(max_iter):
        p_live, y_live, old = p[live], y[live], loss[live]
        candidate = _lm_step(p_live, y_live, delta, lam[live], lo, hi)
        new = ((_curves(delta, candidate)[0] - y_live) ** 2).sum(1)
        better = new < old
        p[live] = torch.where(better[:, None], candidate, p_live)
        loss[live] = torch.where(better, new, old)
        lam[live] = torch.where(better, lam[live] / 3, lam[live] * 4)
        live = live[~((better & (old - new <= 1e-9 * old)) | (lam[live] > 1e8))]
        if len(live) == 0:
            break
    return p, loss


def _lm_step(p, y, delta, lam, lo, hi):
    """One projected LM candidate ``clip(p - (J^T J + lam diag(J^T J))^-1 J^T r)``, ``J = df/d(a, b, c)``;
    a parameter at a bound that descent would cross is held fixed (its column of ``J`` zeroed)."""
    f, power, expo = _curves(delta, p)
    c = p[:, 2:3]
    jac = (-c * torch.log1p(delta) * power, (c - 1) * delta * expo, power - expo)  # 3 x (M, K)
    residual = f - y
    grad = torch.stack([(j * residual).sum(1) for j in jac], dim=1)  # (M, 3): half the loss's gradient
    free = ~(((p <= lo) & (grad > 0)) | ((p >= hi) & (grad < 0)))  # (M, 3)
    jac = [j * free[:, k : k + 1] for k, j in enumerate(jac)]
    grad = grad * free
    jtj = torch.stack([torch.stack([(ji * jk).sum(1) for jk in jac], dim=1) for ji in jac], dim=1)  # (M, 3, 3)
    diag = jtj.diagonal(dim1=1, dim2=2)
    damped = jtj + torch.diag_embed(lam[:, None] * diag + 1e-12)
    return torch.minimum(torch.maximum(p - _solve3(damped, grad), lo), hi)


def _solve3(m: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``m (M, 3, 3) x = rhs (M, 3)`` by Cramer's rule: elementwise, far faster than batched LAPACK
    on millions of tiny systems. ``det(m) = c0 . (c1 x c2)`` for ``m``'s columns ``c0, c1, c2``."""
    c0, c1, c2 = m[:, :, 0], m[:, :, 1], m[:, :, 2]
    det = (c0 * torch.linalg.cross(c1, c2)).sum(1)
    x0 = (rhs * torch.linalg.cross(c1, c2)).sum(1)
    x1 = (c0 * torch.linalg.cross(rhs, c2)).sum(1)
    x2 = (c0 * torch.linalg.cross(c1, rhs)).sum(1)
    return torch.stack([x0, x1, x2], dim=1) / det[:, None]
