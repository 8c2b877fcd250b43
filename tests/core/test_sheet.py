import math

import pytest
import torch
from torch import nn

from hf_toponets.core.sheet import check_sheet_fits, layer_sheet_shape, sheet_positions, sheet_shape, to_sheet, weight_to_sheet


def naive_sheet_shape(n):
    h = max(d for d in range(1, n + 1) if n % d == 0 and d * d <= n)
    return h, n // h


@pytest.mark.parametrize("n", [1, 2, 12, 13, 36, 100, 128, 768, 3072, 3000, 4096, 49, 97 * 89])
def test_sheet_shape_matches_divisor_rule(n):
    assert sheet_shape(n) == naive_sheet_shape(n)


def test_sheet_shape_gpt_neo_c_fc():
    assert sheet_shape(3072) == (48, 64)


def test_sheet_shape_matches_reference():
    from topoloss.cortical_sheet.common import find_cortical_sheet_size

    for n in [6, 64, 200, 1000, 3072, 5000]:
        ref = find_cortical_sheet_size(n)
        assert sheet_shape(n) == (ref.height, ref.width)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "12"])
def test_sheet_shape_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="n_units"):
        sheet_shape(bad)


def test_linear_sheet_is_unit_rows():
    layer = nn.Linear(5, 12)
    sheet = weight_to_sheet(layer)
    assert sheet.shape == (3, 4, 5)
    for u in range(12):  # unit u sits at row u // w, column u % w
        assert torch.equal(sheet[u // 4, u % 4], layer.weight[u])
    assert layer_sheet_shape(layer) == (3, 4, 5)


def test_conv1d_sheet_transposes():
    from transformers.pytorch_utils import Conv1D

    layer = Conv1D(12, 5)  # nf=12 outputs, nx=5 inputs; weight stored (5, 12)
    linear = nn.Linear(5, 12)
    linear.weight.data = layer.weight.data.t().clone()
    assert torch.equal(weight_to_sheet(layer), weight_to_sheet(linear))
    assert layer_sheet_shape(layer) == (3, 4, 5)
    x = torch.randn(2, 5)  # same function as well as the same sheet
    assert torch.allclose(layer(x) - layer.bias, linear(x) - linear.bias, atol=1e-6)


def test_conv2d_sheet_flattens_kernel():
    layer = nn.Conv2d(3, 16, kernel_size=(2, 3))
    sheet = weight_to_sheet(layer)
    assert sheet.shape == (4, 4, 3 * 2 * 3)
    assert torch.equal(sheet[2, 1], layer.weight[9].flatten())


def test_unsupported_layer_is_named():
    with pytest.raises(ValueError, match=r"blocks\.0: unsupported layer type Embedding"):
        weight_to_sheet(nn.Embedding(10, 4), "blocks.0")


def test_sheet_too_small_for_factor():
    with pytest.raises(ValueError, match=r"mlp: its 1 x 13 sheet is smaller"):
        check_sheet_fits(*sheet_shape(13), 3.0, 3.0, "mlp")
    check_sheet_fits(3, 3, 3.0, 3.0)  # equal is fine


def test_to_sheet_rejects_wrong_count():
    with pytest.raises(ValueError, match="cannot hold"):
        to_sheet(torch.zeros(12, 2), (5, 2))


def test_positions_follow_unit_order():
    pos = sheet_positions(3, 4)
    assert pos.shape == (12, 2)
    assert pos[7].tolist() == [1.0, 3.0]
    assert math.isclose(float(pos[:, 0].max()), 2.0)
