import pytest
import torch
from torch import nn
from topoloss import LaplacianPyramid, TopoLoss

from conftest import tiny_gpt2
from hf_toponets.core.scan import compare_targets, scan_layers


class Mixed(nn.Module):
    """Linear, Conv2d, a layer too small for the blur and a non-layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(12, 40)  # 5 x 8
        self.conv = nn.Conv2d(3, 36, 3)  # 6 x 6, d = 27
        self.tiny = nn.Linear(40, 4)  # 2 x 2: smaller than the blur, left out
        self.norm = nn.LayerNorm(4)


def test_every_layer_matches_the_reference_package():
    model = tiny_gpt2()
    scan = scan_layers(model)
    supported = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
    assert list(scan) == supported  # c_attn, attn.c_proj, c_fc, mlp.c_proj per block, lm_head; model order
    # topoloss 0.0.2 reads nn.Linear/Conv2d only: compare it on a transposed Conv1D copy, layer by layer
    for name, value in scan.items():
        module = model.get_submodule(name)
        weight = module.weight.t() if type(module).__name__ == "Conv1D" else module.weight
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        linear.weight.data.copy_(weight)
        expected = TopoLoss([LaplacianPyramid("layer", 3.0, 3.0)]).compute(nn.ModuleDict({"layer": linear}))
        assert value == pytest.approx(float(expected.detach()), rel=1e-6), name


def test_leaves_out_small_sheets_and_other_modules():
    scan = scan_layers(Mixed())
    assert list(scan) == ["fc", "conv"]
    assert all(0.0 <= v <= 2.0 for v in scan.values())
    assert list(scan_layers(Mixed(), factor_h=6.0, factor_w=6.0)) == ["conv"]  # fc's 5 x 8 sheet is now too small


def test_smooth_layer_scores_lowest():
    model = Mixed()
    with torch.no_grad():  # a bilinear ramp across the sheet: neighbours nearly equal
        r, c = torch.linspace(0, 1, 6)[:, None, None], torch.linspace(0, 1, 6)[None, :, None]
        a, b, d, e = torch.randn(4, 1, 1, 27)
        model.conv.weight.copy_(((1 - r) * (1 - c) * a + (1 - r) * c * b + r * (1 - c) * d + r * c * e).reshape(36, 3, 3, 3))
    scan = scan_layers(model)
    assert scan["conv"] < 0.05 < scan["fc"]


@pytest.mark.parametrize("targets, expected", [
    (["a", "b"], None),  # the two lowest
    (["a"], None),
    (["a", "c"], "1 layer(s) that are not stated targets score a TopoLoss at or below the stated target c (0.900), e.g. b (0.200)"),
    (["c"], "2 layer(s) that are not stated targets score a TopoLoss at or below the stated target c (0.900), e.g. a (0.100)"),
    ([], None),  # nothing to compare
    (["a", "b", "c"], None),  # every layer a target
])
def test_compare_targets(targets, expected):
    message = compare_targets({"a": 0.1, "b": 0.2, "c": 0.9}, targets)
    assert message is None if expected is None else message.startswith(expected)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft asks transformers a deprecated question
def test_a_lora_layer_counts_once_with_its_effective_weight():
    peft = pytest.importorskip("peft")
    model = tiny_gpt2()
    config = peft.LoraConfig(target_modules=["c_fc"], r=4, init_lora_weights=False, fan_in_fan_out=True)
    lora = peft.get_peft_model(model, config)
    scan = {name.removeprefix("base_model.model."): v for name, v in scan_layers(lora).items()}
    merged = scan_layers(lora.merge_and_unload())  # oracle: PEFT's own merge W + s B A
    assert list(scan) == list(merged)  # no base_layer / lora_A / lora_B entries
    assert scan == pytest.approx(merged, rel=1e-5)
