"""analysis.selectivity against a hand-written Welch t."""

import math

import numpy as np
import pytest
import torch

from hf_toponets.analysis.selectivity import selectivity


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
