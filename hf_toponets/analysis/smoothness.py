"""Smoothness of a topographic layer (TDANN, Margalit et al. 2024; TopoNets section 2.3).

Responses are rows, one per unit of a layer's ``h x w`` sheet (unit ``u`` at row ``u // w``,
column ``u % w``, see :mod:`hf_toponets.core.sheet`): the Pearson correlation of two units'
responses against their distance on the sheet, averaged in equal-width distance bins (the
*correlation curve*); ``smoothness = max(binned) - min(binned)``. Range ``[0, 2]``; higher is more
topographic (near units respond alike, far ones do not); about 0 for a shuffled sheet.

- :func:`smoothness` -> float; :func:`smoothness_curve` -> :class:`CorrelationCurve` (the curve and
  the value read off it), from responses ``(n_units, k)``;
- :func:`covariance_smoothness_curve` from a response covariance (activation statistics);
- :func:`weight_smoothness_curve` data-free, from a layer's weight rows.

Pure torch (never imports transformers).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..core.sheet import sheet_positions, sheet_shape, unit_weight

MAX_UNITS = 4096  # up to this many units: every pair (exact); more: every pair among MAX_UNITS sampled units
N_BINS = 20
MIN_BIN_SHARE = 0.005  # bins with fewer pairs than this share (and than 10) are left out of max - min:
# the sheet's far corners hold few pairs, whose mean is noise that max - min would pick up


class CorrelationCurve(NamedTuple):
    """Binned correlation vs sheet distance, and the smoothness read off it."""

    distances: torch.Tensor  # (n_bins,) bin centres, in units of the sheet's grid spacing
    correlations: torch.Tensor  # (n_bins,) mean pair correlation per bin, nan where empty
    counts: torch.Tensor  # (n_bins,) pairs per bin (pairs with an undefined correlation left out)
    smoothness: float  # max - min over the bins holding enough pairs (see correlation_curve)


def sample_units(n_units: int, max_units: int = MAX_UNITS, seed: int = 0) -> torch.Tensor:
    """Sorted int64 indices of the units whose pairs are measured: all of them when
    ``n_units <= max_units``, else ``max_units`` drawn without replacement by a generator seeded
    with ``seed`` (every pair among them is then used: uniformly random unit pairs).

    >>> sample_units(5).tolist(), sample_units(10, 3, seed=1).tolist() == sample_units(10, 3, seed=1).tolist()
    ([0, 1, 2, 3, 4], True)
    """
    if n_units < 2 or max_units < 2:
        raise ValueError(f"sample_units: n_units and max_units must be >= 2 to form a pair, got {n_units}, {max_units}")
    if n_units <= max_units:
        return torch.arange(n_units)
    return torch.randperm(n_units, generator=torch.Generator().manual_seed(seed))[:max_units].sort().values


def correlation_matrix(x: torch.Tensor) -> torch.Tensor:
    """Pearson correlations ``(n, n)`` float32 between the rows of ``x (n, k)``; nan for a constant row."""
    x = x.detach().float()
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    z = torch.where(norm > 0, x / norm, float("nan"))
    return z @ z.T


def covariance_correlation_matrix(cov: torch.Tensor, proj: torch.Tensor | None = None) -> torch.Tensor:
    """Correlations ``(n, n)`` float32 of units with covariance ``K = proj @ cov @ proj.T``.

    ``cov (d, d)``; ``proj (n, d)``, or ``None`` for ``K = cov``. A linear layer's outputs
    ``y = W x + b`` have covariance ``W cov(x) W^T``, so ``proj = W`` gives their correlations
    from the (smaller) input covariance. ``K_ij / sqrt(K_ii K_jj)``, nan for a unit with no variance.
    """
    k = cov.float() if proj is None else proj.detach().float() @ cov.float() @ proj.detach().float().T
    std = k.diagonal().clamp_min(0).sqrt()
    den = std[:, None] * std[None, :]
    return torch.where(den > 0, k / den, float("nan"))


def pair_correlations(matrix: torch.Tensor, units: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair ``i < j`` of the ``units`` whose correlations are ``matrix (m, m)``:
    ``(correlations, sheet distances)``, each ``(m (m - 1) / 2,)`` float32."""
    pos = sheet_positions(*shape)[units]  # (m, 2)
    upper = torch.ones(len(units), len(units), dtype=torch.bool).triu_(1)
    return matrix[upper], torch.cdist(pos, pos)[upper]


def correlation_curve(
    correlations: torch.Tensor, distances: torch.Tensor, n_bins: int = N_BINS, min_pairs: int | None = None
) -> CorrelationCurve:
    """Bin pair ``correlations (m,)`` by ``distances (m,)`` into ``n_bins`` equal-width bins from
    the smallest to the largest distance; nan correlations are left out. Smoothness = max - min
    over bins with at least ``min_pairs`` pairs (default: ``max(10, MIN_BIN_SHARE * pairs)``;
    0 when fewer than two such bins).
    """
    if n_bins < 1:
        raise ValueError(f"correlation_curve: n_bins must be >= 1, got {n_bins}")
    keep = ~correlations.isnan()
    corr, dist = correlations[keep].double(), distances[keep].double()
    if corr.numel() == 0:
        raise ValueError("correlation_curve: no pair has a defined correlation (every response is constant)")
    edges = torch.linspace(float(dist.min()), float(dist.max()), n_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(dist, edges[1:-1], right=True)  # bin k holds [e_k, e_k+1), the last one closed
    counts = torch.bincount(idx, minlength=n_bins)
    sums = torch.bincount(idx, weights=corr, minlength=n_bins)
    means = torch.where(counts > 0, sums / counts.clamp_min(1), float("nan"))
    min_pairs = max(10, int(MIN_BIN_SHARE * corr.numel())) if min_pairs is None else min_pairs
    dense = means[counts >= min_pairs]
    value = float(dense.max() - dense.min()) if dense.numel() >= 2 else 0.0
    centres = (edges[:-1] + edges[1:]) / 2
    return CorrelationCurve(centres.float(), means.float(), counts, value)


def smoothness_curve(
    responses: torch.Tensor,
    shape: tuple[int, int] | None = None,
    n_bins: int = N_BINS,
    max_units: int = MAX_UNITS,
    seed: int = 0,
) -> CorrelationCurve:
    """Smoothness of ``responses (n_units, k)`` (row ``u``: unit ``u``'s response over ``k``
    stimuli, or its weight vector) laid out on an ``(h, w)`` sheet (default :func:`sheet_shape`).

    >>> a, b = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    >>> col = (torch.arange(36.0) % 6 / 5)[:, None]  # units blend a into b along each sheet row
    >>> smoothness_curve(col * a + (1 - col) * b, (6, 6)).smoothness > 0.5
    True
    """
    if responses.ndim != 2:
        raise ValueError(f"smoothness: responses must be (n_units, k), got shape {tuple(responses.shape)}")
    shape = _check_shape(shape, responses.shape[0], "smoothness")
    units = sample_units(responses.shape[0], max_units, seed)
    return correlation_curve(*pair_correlations(correlation_matrix(responses[units]), units, shape), n_bins)


def covariance_smoothness_curve(
    cov: torch.Tensor,
    proj: torch.Tensor | None = None,
    shape: tuple[int, int] | None = None,
    n_bins: int = N_BINS,
    max_units: int = MAX_UNITS,
    seed: int = 0,
) -> CorrelationCurve:
    """Smoothness of units whose response covariance is ``proj @ cov @ proj.T`` (see
    :func:`covariance_correlation_matrix`): the activation smoothness without storing activations."""
    n = cov.shape[0] if proj is None else proj.shape[0]
    shape = _check_shape(shape, n, "covariance_smoothness")
    units = sample_units(n, max_units, seed)
    matrix = covariance_correlation_matrix(cov[units][:, units], None) if proj is None else covariance_correlation_matrix(cov, proj[units])
    return correlation_curve(*pair_correlations(matrix, units, shape), n_bins)


def weight_smoothness_curve(module: nn.Module, name: str = "module", **kwargs) -> CorrelationCurve:
    """Data-free smoothness curve of a layer: each unit's response is its weight vector ``(d,)``."""
    return smoothness_curve(unit_weight(module, name).detach(), **kwargs)


def smoothness(responses: torch.Tensor, shape: tuple[int, int] | None = None, **kwargs) -> float:
    """``max - min`` of :func:`smoothness_curve` of ``responses (n_units, k)`` on an ``(h, w)`` sheet.
    Range ``[0, 2]``; higher is more topographic; about 0 for a shuffled sheet.

    >>> a, b = torch.randn(2, 50, generator=torch.Generator().manual_seed(0))
    >>> col = (torch.arange(36.0) % 6 / 5)[:, None]  # units blend a into b along each sheet row
    >>> smoothness(col * a + (1 - col) * b, (6, 6)) > 0.5
    True
    """
    return smoothness_curve(responses, shape, **kwargs).smoothness


def _check_shape(shape, n_units: int, where: str) -> tuple[int, int]:
    shape = sheet_shape(n_units) if shape is None else tuple(shape)
    if len(shape) != 2 or shape[0] * shape[1] != n_units:
        raise ValueError(f"{where}: a sheet of shape {shape} cannot hold {n_units} units")
    return shape
