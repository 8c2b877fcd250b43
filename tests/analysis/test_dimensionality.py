"""analysis.dimensionality against numpy's eigvalsh and SVD."""

import numpy as np
import pytest
import torch

from hf_toponets.analysis.dimensionality import (
    effective_dimensionality,
    effective_dimensionality_from_covariance,
    effective_dimensionality_from_eigenvalues,
    leading_component,
)


@pytest.mark.parametrize("n, d, rank", [(300, 12, 12), (50, 8, 3), (1000, 30, 30)])
def test_effective_dimensionality_matches_eigvalsh(n, d, rank):
    gen = torch.Generator().manual_seed(n)
    scales = torch.linspace(0.1, 3.0, rank, dtype=torch.float64)
    x = (torch.randn(n, rank, generator=gen, dtype=torch.float64) * scales) @ torch.randn(rank, d, generator=gen, dtype=torch.float64)
    lam = np.linalg.eigvalsh(np.cov(x.numpy().T))
    expected = lam.sum() ** 2 / (lam**2).sum()
    assert effective_dimensionality(x) == pytest.approx(expected, rel=1e-9)
    assert effective_dimensionality_from_eigenvalues(torch.from_numpy(lam)) == pytest.approx(expected, rel=1e-9)
    # through a projection: K = P C P^T, the trace identities against eigvalsh of K itself
    p = torch.randn(2 * d, d, generator=gen, dtype=torch.float64)
    cov = torch.cov(x.T)
    lam_k = np.linalg.eigvalsh((p @ cov @ p.T).numpy())
    expected_k = lam_k.clip(0).sum() ** 2 / (lam_k.clip(0) ** 2).sum()
    assert effective_dimensionality_from_covariance(cov, n_samples=10 * d, proj=p) == pytest.approx(expected_k, rel=1e-6)


def test_effective_dimensionality_known_cases():
    gen = torch.Generator().manual_seed(0)
    iso = torch.randn(20_000, 50, generator=gen)
    assert 47 < effective_dimensionality(iso) <= 50  # ~ d / (1 + d / n)
    rank1 = torch.randn(5000, 1, generator=gen) * torch.randn(1, 50, generator=gen) + 1e-3 * torch.randn(5000, 50, generator=gen)
    assert 1.0 <= effective_dimensionality(rank1) < 1.01


@pytest.mark.parametrize("n", [1, 5, 49])
def test_too_few_samples_is_a_clear_error(n):
    with pytest.raises(ValueError, match="n_samples >= 50"):
        effective_dimensionality(torch.randn(n, 50))
    with pytest.raises(ValueError, match="n_samples >= 50"):
        effective_dimensionality_from_covariance(torch.eye(5), n, proj=torch.randn(50, 5))


def test_leading_component_matches_svd():
    gen = torch.Generator().manual_seed(0)
    for n, d in [(40, 10), (10, 40)]:
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        xc = x.numpy() - x.numpy().mean(0)
        u, s, _ = np.linalg.svd(xc, full_matrices=False)
        expected = u[:, 0] * s[0]
        got = leading_component(x).numpy()
        np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-4, atol=1e-5)
        assert abs(float(np.dot(got, expected))) == pytest.approx(float(np.dot(expected, expected)), rel=1e-4)
        assert got[np.abs(got).argmax()] > 0
