"""PEFT LoRA / DoRA targets: TopoLoss on the effective weight, exact gradients, names, clear errors.

Oracle: PEFT's own code path, ``get_delta_weight`` (differentiable) and ``merge_and_unload``.
"""

import pytest
import torch
from torch import nn

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets import TopoConfig, resolve_targets, topo_loss
from hf_toponets.core.loss import sheet_loss
from hf_toponets.core.metadata import attach_topo_config, read_topo_config
from hf_toponets.core.sheet import is_lora, to_sheet

peft = pytest.importorskip("peft")
from peft import LoraConfig, get_peft_model  # noqa: E402


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 36, 3, padding=1)
        self.head = nn.Linear(36, 4)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def lora(model, targets, seed=1, **kw):
    torch.manual_seed(seed)  # init_lora_weights=False: B is random too, so B A != 0
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, **kw))


def merged_rows(layer, dora: bool):
    """Oracle: PEFT's merged weight as one row per unit, differentiable in lora_A / lora_B / magnitude."""
    base = layer.base_layer
    delta = layer.get_delta_weight("default")  # PEFT's orientation: the base weight's storage
    weight = base.weight + delta
    rows = weight.t() if getattr(layer, "fan_in_fan_out", False) else weight.flatten(1)  # Conv1D stores (in, out)
    if dora:  # PEFT's merge: m / |W + delta|_row * (W + delta), here without detaching the norm
        rows = rows * (layer.lora_magnitude_vector["default"].weight.reshape(-1) / rows.norm(dim=1))[:, None]
    return rows


CASES = {
    "linear": (lambda: tiny_gpt_neo(), ["c_fc"], {}),
    "conv1d": (lambda: tiny_gpt2(), ["c_fc"], dict(fan_in_fan_out=True)),
    "conv2d": (ConvNet, ["conv"], {}),
    "dora_linear": (lambda: tiny_gpt_neo(), ["c_fc"], dict(use_dora=True)),
    "dora_conv1d": (lambda: tiny_gpt2(), ["c_fc"], dict(use_dora=True, fan_in_fan_out=True)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_equals_autograd_through_the_merged_weight(case):
    build, targets, kw = CASES[case]
    model = lora(build(), targets, **kw)
    layers = {n: m for n, m in model.named_modules() if is_lora(m)}
    params = [p for p in model.parameters() if p.requires_grad]
    cfg = TopoConfig(target_modules=targets)
    ours = torch.autograd.grad(topo_loss(model, cfg), params)
    oracle = torch.stack([sheet_loss(to_sheet(merged_rows(m, kw.get("use_dora", False)))) for m in layers.values()]).mean()
    expected = torch.autograd.grad(oracle, params)
    assert float(oracle.detach()) == pytest.approx(float(topo_loss(model, cfg).detach()), rel=1e-6)
    for name, a, b in zip([n for n, p in model.named_parameters() if p.requires_grad], ours, expected):
        assert "lora_" in name
        assert float(b.norm()) > 0
        assert float((a - b).norm() / b.norm()) < 1e-6, name  # Conv2d: PEFT merges by a convolution, ~2e-7 apart


@pytest.mark.parametrize("case", list(CASES))
def test_value_equals_the_merged_models(case):
    build, targets, kw = CASES[case]
    model = lora(build(), targets, **kw)
    cfg = TopoConfig(target_modules=targets)
    value = topo_loss(model, cfg).item()
    merged = model.merge_and_unload()
    assert value == pytest.approx(float(topo_loss(merged, cfg)), rel=1e-6)


def test_disabled_adapters_give_the_base_weight():
    base = tiny_gpt_neo()
    plain = float(topo_loss(base, TopoConfig(target_modules=["c_fc"])))
    model = lora(base, ["c_fc"])
    with model.disable_adapter():
        assert float(topo_loss(model, TopoConfig(target_modules=["c_fc"]))) == plain
    assert float(topo_loss(model, TopoConfig(target_modules=["c_fc"]))) != plain


@pytest.mark.parametrize("pattern", [["c_fc"], r".*\.c_fc", r".*c_fc\.base_layer", r".*\.c_fc.*"])
def test_names_are_the_base_models_and_parts_stand_for_the_lora_layer(pattern):
    model = lora(tiny_gpt_neo(), ["c_fc"])
    targets = resolve_targets(model, TopoConfig(target_modules=pattern))
    assert list(targets) == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    assert all(is_lora(t.module) and t.shape == (8, 16, 32) for t in targets.values())


def test_a_saved_toponet_loads_into_peft_and_back(tmp_path):
    base = tiny_gpt_neo()
    stored = attach_topo_config(base, TopoConfig(target_modules=["c_fc"], tau=2.0))
    base.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    model = lora(AutoModelForCausalLM.from_pretrained(tmp_path), ["c_fc"])
    assert read_topo_config(model) == stored  # names without the base_model.model. prefix
    merged = model.merge_and_unload()
    assert read_topo_config(merged) == stored


@pytest.mark.parametrize("adapter, match", [
    ("loha", r"c_fc of type Linear \(a PEFT adapter other than LoRA/DoRA\)"),
    ("embedding", r"Embedding \(LoRA around Embedding\)"),
])
def test_unsupported_wrappers_are_named(adapter, match):
    if adapter == "loha":
        model = get_peft_model(tiny_gpt_neo(), peft.LoHaConfig(target_modules=["c_fc"]))
        pattern = ["c_fc"]
    else:
        model = lora(tiny_gpt_neo(), ["wte", "c_fc"])
        pattern = ["wte"]
    with pytest.raises(ValueError, match=match):
        resolve_targets(model, TopoConfig(target_modules=pattern))


def test_autocast_does_not_touch_the_effective_weight():
    """The composition W + s B A runs in float32 like the loss (a bf16 B A was 0.4% off under TRL's autocast)."""
    model = lora(tiny_gpt_neo(), ["c_fc"])
    params = [p for p in model.parameters() if p.requires_grad]
    plain = torch.autograd.grad(topo_loss(model, TopoConfig(target_modules=["c_fc"])), params)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the forward under autocast, backward outside (as Trainer does)
        loss = topo_loss(model, TopoConfig(target_modules=["c_fc"]))
    cast = torch.autograd.grad(loss, params)
    for a, b in zip(cast, plain):
        assert torch.equal(a, b)
