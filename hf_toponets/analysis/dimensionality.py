"""Effective dimensionality of responses, and their leading principal component.

For a covariance ``K`` with eigenvalues ``l``: ``ED = (sum l)^2 / sum l^2 = tr(K)^2 / ||K||_F^2``.
Range ``[1, n_units]``; lower means fewer directions carry the variance (TopoNets section 2.3).

>>> x = torch.randn(4000, 16)
>>> 14 < effective_dimensionality(x) <= 16
True
"""

from __future__ import annotations

import torch

def effective_dimensionality_from_eigenvalues(eigenvalues: torch.Tensor) -> float:
    """``(sum l)^2 / sum l^2`` of a covariance's eigenvalues (tiny negative ones from round-off
    count as 0).

    >>> effective_dimensionality_from_eigenvalues(torch.tensor([1.0, 1.0, 1.0, 0.0]))
    3.0
    """
    lam = eigenvalues.double().clamp_min(0)
    if not float(lam.sum()) > 0:
        raise ValueError("effective_dimensionality_from_eigenvalues: the eigenvalues sum to 0 (the responses have no variance)")
    return float(lam.sum() ** 2 / (lam**2).sum())


def effective_dimensionality_from_covariance(cov: torch.Tensor, n_samples: int, proj: torch.Tensor | None = None) -> float:
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
    """Raise ``ValueError`` unless ``n_samples >= max(2, n_units)`` (see :func:`effective_dimensionality_from_covariance`)."""
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
    return effective_dimensionality_from_covariance(xc.T @ xc / (n - 1), n)


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
