import math

import numpy as np
import pytest
import torch

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets.evaluation.perplexity import perplexity
from hf_toponets.analysis.pruning import check_sparsities, l1_prune, pruning_sweep, weight_sparsity

NEO = [f"transformer.h.{i}.mlp.{m}" for i in range(2) for m in ("c_fc", "c_proj")]


def zeros(model, names):
    return {n: int((model.get_submodule(n).weight == 0).sum()) for n in names}


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.333, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("global_", [True, False])
def test_l1_prune_reaches_the_sparsity_exactly(amount, global_):
    model = tiny_gpt_neo(seed=0)
    sizes = {n: model.get_submodule(n).weight.numel() for n in NEO}
    l1_prune(model, NEO, amount, global_=global_)
    counts = zeros(model, NEO)
    if global_:
        assert sum(counts.values()) == round(amount * sum(sizes.values()))
    else:
        assert counts == {n: round(amount * s) for n, s in sizes.items()}
    assert not any("_orig" in k for k in model.state_dict())  # no reparametrisation left
    assert not any(model.get_submodule(n)._forward_pre_hooks for n in NEO)


def test_global_l1_prune_zeroes_the_smallest_magnitudes():
    """Oracle: sort every named weight's |w| together in numpy; the k smallest are the zeros."""
    model = tiny_gpt2(seed=1)  # Conv1D weights
    names = ["transformer.h.0.mlp.c_fc", "transformer.h.1.attn.c_attn"]
    before = np.concatenate([model.get_submodule(n).weight.detach().numpy().ravel() for n in names])
    k = round(0.4 * before.size)
    expected = np.zeros(before.size, dtype=bool)
    expected[np.argsort(np.abs(before), kind="stable")[:k]] = True
    l1_prune(model, names, 0.4)
    after = np.concatenate([model.get_submodule(n).weight.detach().numpy().ravel() for n in names])
    assert ((after == 0) == expected).all()
    assert (after[~expected] == before[~expected]).all()  # the others are untouched


def test_sweep_reports_deltas_and_leaves_the_model_as_it_came():
    model = tiny_gpt_neo(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(128, (4, 16), generator=torch.Generator().manual_seed(0))
    calls = []

    def evaluate(m):
        calls.append(weight_sparsity(m, NEO))
        return float(m.transformer.h[0].mlp.c_fc.weight.detach().abs().sum())

    sparsities = [0.0, 0.25, 0.5, 0.75]
    out = pruning_sweep(model, NEO, sparsities, ids, batch_size=3, evaluate=evaluate)
    assert out["sparsity"] == sparsities
    total = sum(model.get_submodule(n).weight.numel() for n in NEO)
    assert out["achieved_sparsity"] == [round(s * total) / total for s in sparsities]
    assert calls == [0.0] + out["achieved_sparsity"]  # baseline first, then each level
    base = perplexity(model, ids, batch_size=3)
    assert out["delta_perplexity"][0] == pytest.approx(0.0, abs=1e-9)
    assert out["delta_perplexity"] == pytest.approx([p - base for p in out["perplexity"]])
    assert out["delta_score"][0] == pytest.approx(0.0) and out["delta_score"][-1] < 0
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_sweep_restores_the_model_on_error():
    model = tiny_gpt_neo(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def evaluate(m):
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("evaluation failed")
        return 0.0

    ids = torch.randint(128, (2, 8), generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="evaluation failed"):
        pruning_sweep(model, NEO, [0.3, 0.6], ids, evaluate=evaluate)
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)


@pytest.mark.parametrize("bad", [[1.0], [-0.1], [], [0.2, 1.5], [math.nan]])
def test_sparsities_outside_0_1_are_an_error(bad):
    with pytest.raises(ValueError, match=r"sparsities must be .* in \[0, 1\)"):
        check_sparsities(bad)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        pruning_sweep(tiny_gpt_neo(), NEO, bad, torch.zeros(1, 4, dtype=torch.long))


def test_unknown_module_names_are_an_error():
    with pytest.raises(ValueError, match="not found: \\['transformer.h.9.mlp.c_fc'\\]"):
        l1_prune(tiny_gpt_neo(), ["transformer.h.9.mlp.c_fc"], 0.5)
    with pytest.raises(ValueError, match="empty list"):
        l1_prune(tiny_gpt_neo(), [], 0.5)
