"""Per-family default targets and gated MLPs' shared sheets, on tiny models of each family."""

import pytest
import torch
from torch import nn
from topoloss import LaplacianPyramid, TopoLoss

from families import FAMILIES, build_family, family_inputs
from hf_toponets import TopoConfig, resolve_targets, topo_loss
from hf_toponets.core.hooks import TopoHooks
from hf_toponets.core.metadata import attach_topo_config, read_topo_config

# family -> (the default targets' names in block 0, sheet (h, w, d), gate partner's leaf name or None)
EXPECTED = {
    "gpt2": ("transformer.h.0.mlp.c_fc", (6, 6, 16), None),
    "gpt_neo": ("transformer.h.0.mlp.c_fc", (6, 6, 16), None),
    "gptj": ("transformer.h.0.mlp.fc_in", (6, 6, 16), None),
    "opt": ("model.decoder.layers.0.fc1", (6, 6, 16), None),
    "gpt_neox": ("gpt_neox.layers.0.mlp.dense_h_to_4h", (6, 6, 16), None),
    "bloom": ("transformer.h.0.mlp.dense_h_to_4h", (6, 6, 9), None),
    "falcon": ("transformer.h.0.mlp.dense_h_to_4h", (6, 6, 16), None),
    "llama": ("model.layers.0.mlp.up_proj", (6, 6, 32), "gate_proj"),
    "mistral": ("model.layers.0.mlp.up_proj", (6, 6, 32), "gate_proj"),
    "qwen2": ("model.layers.0.mlp.up_proj", (6, 6, 32), "gate_proj"),
    "gemma": ("model.layers.0.mlp.up_proj", (6, 6, 32), "gate_proj"),
    "phi3": ("model.layers.0.mlp.gate_up_proj", (6, 6, 32), "gate_up_proj"),
    "vit": ("vit.layers.0.mlp.fc2", (6, 6, 36), None),
    "bert": ("bert.encoder.layer.0.intermediate.dense", (6, 6, 16), None),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_default_targets_are_the_familys_mlp(family, tmp_path):
    model = build_family(family)
    first, shape, partner = EXPECTED[family]
    targets = resolve_targets(model, TopoConfig())
    assert list(targets) == [first, first.replace(".0.", ".1.")]
    assert all(t.shape == shape for t in targets.values())
    modules = dict(model.named_modules())
    expected_partner = None if partner is None else modules[first.rsplit(".", 1)[0] + "." + partner]
    assert targets[first].partner is expected_partner
    stored = attach_topo_config(model, TopoConfig(tau=2.0))  # the resolved family default is written out
    assert stored.target_modules is not None and stored.sheets[first] == list(shape)
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert read_topo_config(loaded) == stored
    assert topo_loss(loaded, read_topo_config(loaded)).item() == pytest.approx(topo_loss(model, stored).item(), rel=1e-6)


def fused_reference(rows_per_unit: torch.Tensor) -> nn.Linear:
    """A plain Linear whose row u is unit u's concatenated vector: the oracle's layer."""
    layer = nn.Linear(rows_per_unit.shape[1], rows_per_unit.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(rows_per_unit)
    return layer


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_shared_sheet_matches_the_reference_on_concatenated_rows(family):
    model = build_family(family)
    mlp = model.model.layers[0].mlp
    if family == "llama":
        gate, up = mlp.gate_proj.weight, mlp.up_proj.weight
    else:
        gate, up = mlp.gate_up_proj.weight.chunk(2, dim=0)  # Phi-3: chunk(2) of the output -> gate, up
    oracle = fused_reference(torch.cat([gate, up], dim=1).detach())
    ref = TopoLoss([LaplacianPyramid("0", 3.0, 3.0, "bilinear")]).compute(nn.ModuleList([oracle]), reduce_mean=True)
    ref.backward()
    cfg = TopoConfig(exclude_modules=r"model\.layers\.1\..*")
    ours = topo_loss(model, cfg)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    ours.backward()
    if family == "llama":
        got = torch.cat([mlp.gate_proj.weight.grad, mlp.up_proj.weight.grad], dim=1)
    else:
        got = torch.cat(mlp.gate_up_proj.weight.grad.chunk(2, dim=0), dim=1)
    assert float((got - oracle.weight.grad).norm() / oracle.weight.grad.norm()) < 1e-5


@pytest.mark.parametrize("family", ["llama", "phi3", "opt"])
def test_hooks_give_the_gated_term_exactly(family):
    """The term attached at up_proj's output reaches gate_proj too: one backward = autograd of the sum."""
    tau, cfg = 2.0, TopoConfig()
    oracle = build_family(family)
    out = oracle(**family_inputs(oracle)).logits.square().mean()
    (out + tau * topo_loss(oracle, cfg)).backward()
    model = build_family(family)
    targets = resolve_targets(model, cfg)
    hooks = TopoHooks(targets, attach_topo_config(model, cfg))
    hooks.coef, hooks.active = tau / len(targets), True
    model(**family_inputs(model)).logits.square().mean().backward()
    for (name, a), b in zip(model.named_parameters(), oracle.parameters()):
        if b.grad is not None:
            assert float((a.grad - b.grad).norm()) <= 1e-5 * float(b.grad.norm()) + 1e-9, name


def test_unknown_family_names_the_choices_and_real_layers():
    model = nn.Sequential(nn.Linear(4, 36), nn.ReLU(), nn.Linear(36, 2))
    with pytest.raises(ValueError, match=r"model_type None\) has no default; families with one: bert, bloom, .*, vit\. "
                                         r"Pass target_modules=, e\.g\. one of its layers: 0, 2"):
        resolve_targets(model, TopoConfig())


@pytest.mark.parametrize("shared, match", [
    ({"up_proj": "gate"}, r"pairs model\.layers\.0\.mlp\.up_proj with its gate model\.layers\.0\.mlp\.gate, which is not"),
    ({"up_proj": "down_proj"}, r"up_proj: its gate has 16 units but it has 36"),
])
def test_bad_gate_pairs_are_named(shared, match):
    with pytest.raises(ValueError, match=match):
        resolve_targets(build_family("llama"), TopoConfig(target_modules=["up_proj"], shared_sheets=shared))


def test_explicit_targets_do_not_pair_and_json_pairs_parse():
    model = build_family("llama")
    alone = resolve_targets(model, TopoConfig(target_modules=["up_proj"]))
    assert all(t.partner is None and t.shape == (6, 6, 16) for t in alone.values())
    paired = resolve_targets(model, TopoConfig(target_modules=["up_proj"], shared_sheets='{"up_proj": "gate_proj"}'))
    assert all(t.shape == (6, 6, 32) for t in paired.values())
