"""Measuring topography: smoothness, effective dimensionality, selectivity, perplexity.

Pure torch (never imports transformers). Responses are rows, one per unit of a layer's
``h x w`` sheet (unit ``u`` at row ``u // w``, column ``u % w``, see :mod:`sheet`):

- **smoothness** (TDANN, Margalit et al. 2024; TopoNets section 2.3): the Pearson correlation
  of two units' responses against their distance on the sheet, averaged in equal-width
  distance bins; ``smoothness = max(binned) - min(binned)``. Range ``[0, 2]``; higher is more
  topographic (near units respond alike, far ones do not); about 0 for a shuffled sheet.
- **effective dimensionality** of a covariance ``K`` with eigenvalues ``l``:
  ``(sum l)^2 / sum l^2 = tr(K)^2 / ||K||_F^2``. Range ``[1, n_units]``; lower means fewer
  directions carry the variance.
- **selectivity** (TopoNets eq. 2): per unit, Welch's t between responses to a target set and
  to the other sets.

>>> x = torch.randn(4000, 16)
>>> 14 < effective_dimensionality(x) <= 16
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
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


def smoothness(
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
    >>> smoothness(col * a + (1 - col) * b, (6, 6)).smoothness > 0.5
    True
    """
    if responses.ndim != 2:
        raise ValueError(f"smoothness: responses must be (n_units, k), got shape {tuple(responses.shape)}")
    shape = _check_shape(shape, responses.shape[0], "smoothness")
    units = sample_units(responses.shape[0], max_units, seed)
    return correlation_curve(*pair_correlations(correlation_matrix(responses[units]), units, shape), n_bins)


def covariance_smoothness(
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



def weight_smoothness(module: nn.Module, name: str = "module", **kwargs) -> CorrelationCurve:
    """Data-free smoothness of a layer: each unit's response is its weight vector ``(d,)``."""
    return smoothness(unit_weight(module, name).detach(), **kwargs)


def _check_shape(shape, n_units: int, where: str) -> tuple[int, int]:
    shape = sheet_shape(n_units) if shape is None else tuple(shape)
    if len(shape) != 2 or shape[0] * shape[1] != n_units:
        raise ValueError(f"{where}: a sheet of shape {shape} cannot hold {n_units} units")
    return shape


def effective_dim(eigenvalues: torch.Tensor) -> float:
    """``(sum l)^2 / sum l^2`` of a covariance's eigenvalues (tiny negative ones from round-off
    count as 0).

    >>> effective_dim(torch.tensor([1.0, 1.0, 1.0, 0.0]))
    3.0
    """
    lam = eigenvalues.double().clamp_min(0)
    if not float(lam.sum()) > 0:
        raise ValueError("effective_dim: the eigenvalues sum to 0 (the responses have no variance)")
    return float(lam.sum() ** 2 / (lam**2).sum())


def effective_dim_from_covariance(cov: torch.Tensor, n_samples: int, proj: torch.Tensor | None = None) -> float:
    """Effective dimensionality of ``K = proj @ cov @ proj.T`` (``K = cov`` without ``proj``),
    estimated from ``n_samples`` observations, without an eigendecomposition:
    ``tr(K)^2 / ||K||_F^2``, with ``tr(K) = <P^T P, cov>`` and ``||K||_F^2 = tr((cov P^T P)^2)``
    computed in the ``(d, d)`` input space.

    Raises ``ValueError`` when ``n_samples`` is below the number of units: the covariance then
    has rank below its size and the value measures the sample count, not the representation.
    """
    cov = cov.double()
    check_samples(n_samples, cov.shape[0] if proj is None else proj.shape[0])
    if proj is None:
        trace, frob2 = cov.trace(), (cov * cov).sum()
    else:
        p = proj.detach().float()
        m = cov @ (p.T @ p).double()  # (d, d); K^2 has trace tr(m m); P^T P in float32: the big product
        trace, frob2 = m.trace(), (m * m.T).sum()
    if not float(trace) > 0:
        raise ValueError("effective dimensionality: the responses have no variance")
    return float(trace**2 / frob2)


def check_samples(n_samples: int, n_units: int) -> None:
    """Raise ``ValueError`` unless ``n_samples >= max(2, n_units)`` (see :func:`effective_dim_from_covariance`)."""
    if n_samples < max(2, n_units):
        raise ValueError(
            f"effective dimensionality of {n_units} units needs n_samples >= {max(2, n_units)} observations "
            f"(token positions), got {n_samples}; use more or longer samples"
        )


def effective_dimensionality(x: torch.Tensor) -> float:
    """Effective dimensionality of ``x (n_samples, n_units)``'s covariance; needs ``n_samples >= n_units``."""
    if x.ndim != 2:
        raise ValueError(f"effective_dimensionality: x must be (n_samples, n_units), got shape {tuple(x.shape)}")
    x = x.detach().double()
    n = x.shape[0]
    check_samples(n, x.shape[1])
    xc = x - x.mean(0)
    return effective_dim_from_covariance(xc.T @ xc / (n - 1), n)


def selectivity(target: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per-unit t-value (TopoNets eq. 2) of ``target (n_c, n_units)`` against ``other (n_o, n_units)``:

    ``t = (mu_c - mu_o) / sqrt(s_c^2 / n_c + s_o^2 / n_o)`` with sample variances ``s^2``
    (``n - 1``). Positive: the unit prefers the target set. nan where both sets have no variance.
    Returns ``(n_units,)`` float32.

    >>> selectivity(torch.tensor([[2.0], [4.0]]), torch.tensor([[0.0], [2.0]])).tolist()
    [1.4142135381698608]
    """
    if target.ndim != 2 or other.ndim != 2 or target.shape[1] != other.shape[1]:
        raise ValueError(
            f"selectivity: target and other must be (n_stimuli, n_units) with the same n_units, "
            f"got {tuple(target.shape)} and {tuple(other.shape)}"
        )
    if min(target.shape[0], other.shape[0]) < 2:
        raise ValueError(
            f"selectivity: each set needs >= 2 stimuli for a variance, got {target.shape[0]} target "
            f"and {other.shape[0]} other"
        )
    t, o = target.double(), other.double()
    den = (t.var(0) / t.shape[0] + o.var(0) / o.shape[0]).sqrt()
    return torch.where(den > 0, (t.mean(0) - o.mean(0)) / den, float("nan")).float()


def leading_component(x: torch.Tensor) -> torch.Tensor:
    """Scores ``(n,)`` of the rows of ``x (n, d)`` on their first principal component (rows
    centred across ``n``), signed so that the largest-magnitude score is positive. For a
    weight (one row per unit) it is a map of what varies most across the sheet."""
    x = x.detach().double()
    xc = x - x.mean(0)
    if x.shape[0] <= x.shape[1]:  # eigenvectors of the smaller Gram matrix
        vals, vecs = torch.linalg.eigh(xc @ xc.T)
        scores = vecs[:, -1] * vals[-1].clamp_min(0).sqrt()
    else:
        scores = xc @ torch.linalg.eigh(xc.T @ xc)[1][:, -1]
    return (scores * scores[scores.abs().argmax()].sign()).float()


@torch.no_grad()
def perplexity(model: nn.Module, input_ids: torch.LongTensor | Sequence[torch.LongTensor], batch_size: int = 8) -> float:
    """Perplexity of a causal LM on ``input_ids (n, t)`` (or a sequence of ``(b, t)`` batches):
    ``exp(sum of next-token NLL / number of predicted tokens)``. ``model(input_ids)`` must
    return an output with ``.logits (b, t, vocab)``; it runs in eval mode (its mode is restored).
    """
    batches = list(input_ids.split(batch_size)) if isinstance(input_ids, torch.Tensor) else list(input_ids)
    if not batches or any(b.ndim != 2 or b.shape[1] < 2 for b in batches) or sum(b.shape[0] for b in batches) == 0:
        raise ValueError("perplexity: input_ids must be a non-empty (n, t) LongTensor (or batches) with t >= 2")
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    try:
        for batch in batches:
            batch = batch.to(device)
            logits = model(batch).logits[:, :-1].float()  # (b, t - 1, vocab)
            target = batch[:, 1:]
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
            count += target.numel()
    finally:
        model.train(training)
    return math.exp(nll / count)
