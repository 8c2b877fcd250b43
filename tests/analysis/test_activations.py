import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets.analysis.activations import Moments, collect_activations, collect_responses, run_hooked


def naive_outputs(model, modules, batches):
    """Oracle: every output row of each module, kept in full by a plain hook over a full forward."""
    rows = {n: [] for n in modules}
    handles = []
    for n, m in modules.items():
        def hook(module, args, out, n=n):
            rows[n].append(out.movedim(1, -1).reshape(-1, out.shape[1]) if isinstance(module, nn.Conv2d)
                           else out.reshape(-1, out.shape[-1]))
        handles.append(m.register_forward_hook(hook))
    with torch.no_grad():
        for b in batches:
            model(b)
    for h in handles:
        h.remove()
    return {n: torch.cat(r).double() for n, r in rows.items()}


@pytest.mark.parametrize("sizes", [[7, 1, 30, 2], [100], [3, 3, 3, 3, 3]])
def test_moments_match_torch_cov(sizes):
    gen = torch.Generator().manual_seed(len(sizes))
    rows = [torch.randn(s, 5, generator=gen) * 3 + 10 for s in sizes]  # an offset mean: the merge must centre
    m = Moments(5)
    for r in rows:
        m.update(r)
    x = torch.cat(rows).double()
    assert m.n == x.shape[0]
    torch.testing.assert_close(m.mean, x.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(m.covariance(), torch.cov(x.T), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("make, names", [
    (lambda: tiny_gpt_neo(seed=1), ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"]),
    (lambda: tiny_gpt2(seed=2), ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_proj"]),  # Conv1D
])
def test_collected_covariance_matches_stored_outputs(make, names):
    """Input moments mapped through W (c_fc: 32 -> 128) or output moments (c_proj) == the outputs' covariance."""
    model = make().eval()
    modules = {n: model.get_submodule(n) for n in names}
    batches = list(torch.randint(128, (10, 16), generator=torch.Generator().manual_seed(0)).split(4))
    acts = collect_activations(model, modules, batches)
    outputs = naive_outputs(model, modules, batches)
    for n in names:
        a = acts[n]
        cov = a.cov if a.proj is None else a.proj.double() @ a.cov @ a.proj.double().T
        assert a.n_rows == 160
        assert (a.proj is None) == n.endswith("c_proj")
        torch.testing.assert_close(cov, torch.cov(outputs[n].T), atol=1e-6, rtol=1e-4)


def test_conv2d_outputs_are_rows_per_position():
    model = nn.Sequential(nn.Unflatten(1, (3, 6, 6)), nn.Conv2d(3, 16, 3))
    batches = [torch.randn(4, 108), torch.randn(2, 108)]
    acts = collect_activations(model, {"1": model[1]}, batches)
    expected = torch.cov(naive_outputs(model, {"1": model[1]}, batches)["1"].T)
    assert acts["1"].n_rows == 6 * 16 and acts["1"].proj is None
    torch.testing.assert_close(acts["1"].cov, expected, atol=1e-6, rtol=1e-4)


def test_collect_responses_average_over_tokens():
    model = tiny_gpt_neo(seed=0).eval()
    name = "transformer.h.0.mlp.c_fc"
    ids = torch.randint(128, (5, 12), generator=torch.Generator().manual_seed(0))
    got = collect_responses(model, {name: model.get_submodule(name)}, ids.split(2))[name]
    rows = naive_outputs(model, {name: model.get_submodule(name)}, [ids])[name].reshape(5, 12, -1)
    np.testing.assert_allclose(got.numpy(), rows.mean(1).numpy(), atol=1e-6)


def test_empty_dataset_and_hooks_removed():
    model = tiny_gpt_neo(seed=0)
    c_fc = model.transformer.h[0].mlp.c_fc
    with pytest.raises(ValueError, match="empty"):
        collect_activations(model, {"c_fc": c_fc}, [])
    with pytest.raises(ValueError, match="no layers"):
        collect_activations(model, {}, [torch.zeros(1, 4, dtype=torch.long)])

    def record(*args):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_hooked(model, {"c_fc": c_fc}, [torch.zeros(1, 4, dtype=torch.long)], record)
    assert not c_fc._forward_hooks  # removed even on error
