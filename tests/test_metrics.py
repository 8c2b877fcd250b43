import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets.metrics import (
    correlation_curve,
    covariance_correlations,
    covariance_smoothness,
    effective_dim,
    effective_dim_from_covariance,
    effective_dimensionality,
    leading_component,
    perplexity,
    row_correlations,
    selectivity,
    smoothness,
    unit_pairs,
    weight_smoothness,
)


def naive_curve(x: np.ndarray, h: int, w: int, n_bins: int, min_pairs: int):
    """Oracle: a Python loop over every pair, np.corrcoef, bins by hand."""
    pairs = []
    for a in range(h * w):
        for b in range(a + 1, h * w):
            dist = math.hypot(a // w - b // w, a % w - b % w)
            pairs.append((dist, np.corrcoef(x[a], x[b])[0, 1]))
    dists = np.array([p[0] for p in pairs])
    lo, hi = dists.min(), dists.max()
    width = (hi - lo) / n_bins
    sums, counts = np.zeros(n_bins), np.zeros(n_bins, dtype=int)
    for dist, corr in pairs:
        k = min(int((dist - lo) // width), n_bins - 1) if width > 0 else 0
        # float edges: a distance on an edge belongs to the upper bin, as np.linspace places it
        edges = np.linspace(lo, hi, n_bins + 1)
        k = min(int(np.searchsorted(edges[1:-1], dist, side="right")), n_bins - 1)
        sums[k] += corr
        counts[k] += 1
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    dense = means[counts >= min_pairs]
    return means, counts, dense.max() - dense.min()


@pytest.mark.parametrize("h, w, k, n_bins, min_pairs", [(4, 6, 30, 5, 1), (6, 6, 10, 8, 3), (3, 9, 50, 20, 10)])
def test_smoothness_matches_naive_loop(h, w, k, n_bins, min_pairs):
    gen = torch.Generator().manual_seed(h * w)
    x = torch.randn(h * w, k, generator=gen, dtype=torch.float64).cumsum(0)  # neighbours alike along the unit order
    means, counts, value = naive_curve(x.numpy(), h, w, n_bins, min_pairs)
    i, j = unit_pairs(h * w)
    from hf_toponets.metrics import pair_distances

    curve = correlation_curve(row_correlations(x, i, j), pair_distances((h, w), i, j), n_bins, min_pairs)
    assert curve.counts.tolist() == counts.tolist()
    np.testing.assert_allclose(curve.correlations.numpy(), means, atol=1e-5)
    assert curve.smoothness == pytest.approx(value, abs=1e-5)


def test_unit_pairs_exact_and_sampled():
    i, j = unit_pairs(5)
    assert sorted(zip(i.tolist(), j.tolist())) == [(a, b) for a in range(5) for b in range(a + 1, 5)]
    i, j = unit_pairs(3072, max_pairs=10_000, seed=3)
    assert len(i) == 10_000 and bool((i != j).all()) and int(i.max()) < 3072 and int(j.max()) < 3072
    i2, j2 = unit_pairs(3072, max_pairs=10_000, seed=3)
    assert torch.equal(i, i2) and torch.equal(j, j2)  # fixed seed: reproducible
    assert not torch.equal(i, unit_pairs(3072, max_pairs=10_000, seed=4)[0])


def test_row_correlations_match_numpy():
    x = torch.randn(10, 40, dtype=torch.float64)
    i, j = unit_pairs(10)
    expected = np.corrcoef(x.numpy())[i.numpy(), j.numpy()]
    np.testing.assert_allclose(row_correlations(x, i, j).numpy(), expected, atol=1e-6)


def smooth_sheet(h: int, w: int, d: int, seed: int = 0) -> torch.Tensor:
    """``(h w, d)`` rows varying smoothly over the sheet: a few random planar waves."""
    gen = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], 1).float()  # (h w, 2)
    freq = torch.randn(d, 2, generator=gen) * (2 * math.pi / max(h, w))
    phase = torch.rand(d, generator=gen) * 2 * math.pi
    return torch.cos(pos @ freq.T + phase)  # (h w, d)


# the shuffled floor is max - min of noisy bin means: larger on a small sheet (fewer units per bin)
@pytest.mark.parametrize("h, w, d, max_pairs, floor", [(8, 16, 64, 200_000, 0.15), (48, 64, 96, 50_000, 0.05)])
def test_smooth_sheet_is_smooth_and_its_shuffle_is_not(h, w, d, max_pairs, floor):
    x = smooth_sheet(h, w, d)
    assert smoothness(x, (h, w), max_pairs=max_pairs).smoothness > 0.9
    for seed in range(3):
        shuffled = x[torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))]
        assert smoothness(shuffled, (h, w), max_pairs=max_pairs).smoothness < floor


def test_covariance_path_matches_the_responses():
    """Second code path: a linear layer's output correlations from its input covariance."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=gen, dtype=torch.float64) @ torch.randn(6, 6, generator=gen, dtype=torch.float64)
    w, b = torch.randn(20, 6, generator=gen, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    y = x @ w.T + b  # (500, 20): responses over 500 observations
    i, j = unit_pairs(20)
    direct = row_correlations(y.T, i, j)
    np.testing.assert_allclose(covariance_correlations(torch.cov(x.T), i, j, proj=w), direct, atol=1e-5)
    np.testing.assert_allclose(covariance_correlations(torch.cov(y.T), i, j), direct, atol=1e-5)
    assert covariance_smoothness(torch.cov(x.T), w, (4, 5)).smoothness == pytest.approx(
        smoothness(y.T, (4, 5)).smoothness, abs=1e-5
    )


@pytest.mark.parametrize("n, d, rank", [(300, 12, 12), (50, 8, 3), (1000, 30, 30)])
def test_effective_dimensionality_matches_eigvalsh(n, d, rank):
    gen = torch.Generator().manual_seed(n)
    scales = torch.linspace(0.1, 3.0, rank, dtype=torch.float64)
    x = (torch.randn(n, rank, generator=gen, dtype=torch.float64) * scales) @ torch.randn(rank, d, generator=gen, dtype=torch.float64)
    lam = np.linalg.eigvalsh(np.cov(x.numpy().T))
    expected = lam.sum() ** 2 / (lam**2).sum()
    assert effective_dimensionality(x) == pytest.approx(expected, rel=1e-9)
    assert effective_dim(torch.from_numpy(lam)) == pytest.approx(expected, rel=1e-9)
    # through a projection: K = P C P^T, the trace identities against eigvalsh of K itself
    p = torch.randn(2 * d, d, generator=gen, dtype=torch.float64)
    cov = torch.cov(x.T)
    lam_k = np.linalg.eigvalsh((p @ cov @ p.T).numpy())
    expected_k = lam_k.clip(0).sum() ** 2 / (lam_k.clip(0) ** 2).sum()
    assert effective_dim_from_covariance(cov, n_samples=10 * d, proj=p) == pytest.approx(expected_k, rel=1e-6)


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
        effective_dim_from_covariance(torch.eye(5), n, proj=torch.randn(50, 5))


def test_selectivity_matches_welch_t():
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(30, 7, generator=gen, dtype=torch.float64) + torch.arange(7.0, dtype=torch.float64) / 3
    other = 2 * torch.randn(45, 7, generator=gen, dtype=torch.float64)
    expected = []
    for u in range(7):
        a, b = target[:, u].numpy(), other[:, u].numpy()
        expected.append((a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    np.testing.assert_allclose(selectivity(target, other).numpy(), expected, rtol=1e-5)
    constant = torch.ones(4, 2)
    assert selectivity(constant, constant).isnan().all()  # no variance: no t-value
    with pytest.raises(ValueError, match=">= 2 stimuli"):
        selectivity(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="same n_units"):
        selectivity(torch.randn(4, 3), torch.randn(5, 2))


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


def test_weight_smoothness_uses_each_layer_orientation():
    gpt2 = tiny_gpt2()
    conv1d = gpt2.transformer.h[0].mlp.c_fc  # weight stored (in, out)
    expected = smoothness(conv1d.weight.detach().T).smoothness
    assert weight_smoothness(conv1d).smoothness == pytest.approx(expected)
    conv = nn.Conv2d(3, 36, 3)
    assert weight_smoothness(conv).smoothness == pytest.approx(smoothness(conv.weight.detach().flatten(1)).smoothness)
    with pytest.raises(ValueError, match="unsupported layer type"):
        weight_smoothness(nn.LayerNorm(4))


def test_smoothness_bad_input():
    with pytest.raises(ValueError, match="cannot hold 10 units"):
        smoothness(torch.randn(10, 4), (3, 3))
    with pytest.raises(ValueError, match=r"\(n_units, k\)"):
        smoothness(torch.randn(10))
    with pytest.raises(ValueError, match="every response is constant"):
        smoothness(torch.ones(12, 5))


def test_perplexity_matches_the_models_own_loss():
    model = tiny_gpt_neo(seed=0)
    ids = torch.randint(128, (6, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = math.exp(model(ids, labels=ids).loss.item())  # equal-length rows: mean of means = mean
    for batch_size in (1, 4, 8):
        assert perplexity(model, ids, batch_size) == pytest.approx(expected, rel=1e-5)
    assert perplexity(model, list(ids.split(2))) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        perplexity(model, torch.zeros(0, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="t >= 2"):
        perplexity(model, torch.zeros(3, 1, dtype=torch.long))
