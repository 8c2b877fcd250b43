"""evaluation.perplexity against the model's own loss."""

import math

import pytest
import torch

from conftest import tiny_gpt_neo
from hf_toponets.evaluation.perplexity import perplexity


def test_perplexity_matches_the_models_own_loss():
    model = tiny_gpt_neo(seed=0)
    ids = torch.randint(128, (6, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = math.exp(model(ids, labels=ids).loss.item())  # equal-length rows: mean of means = mean
    model.train()
    for batch_size in (1, 4, 8):
        assert perplexity(model, ids, batch_size) == pytest.approx(expected, rel=1e-5)
    assert model.training  # the caller's mode is restored
    assert perplexity(model, list(ids.split(2))) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="non-empty"):
        perplexity(model, torch.zeros(0, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="t >= 2"):
        perplexity(model, torch.zeros(3, 1, dtype=torch.long))
