"""core.resample: the one-axis interpolation matrices are F.interpolate's, and apply_axes applies them
to the sheet in either order (oracle: F.interpolate on the whole sheet, and einsum)."""

import pytest
import torch
import torch.nn.functional as F

from hf_toponets.core.resample import apply_axes, check_interpolation, interpolation_matrix


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("h, w, size, scale", [(9, 12, (3, 4), None), (48, 64, None, 1 / 3), (5, 7, (11, 2), None), (6, 6, None, 0.4)])
def test_separable_matrices_equal_f_interpolate_on_the_sheet(h, w, size, scale, interpolation):
    sheet = torch.randn(h, w, 5)
    ref = F.interpolate(sheet.permute(2, 0, 1)[None], size=size, scale_factor=scale, mode=interpolation)[0].permute(1, 2, 0)
    ops = [interpolation_matrix(n, interpolation, size=None if size is None else s, scale_factor=scale)
           for n, s in zip((h, w), size or (None, None))]
    torch.testing.assert_close(apply_axes(sheet, *ops), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape_h, shape_w", [((3, 7), (4, 9)), ((10, 7), (2, 9)), ((7, 7), (9, 9))])
@pytest.mark.parametrize("rest", [(), (5,), (2, 3)])
def test_apply_axes_is_the_bilinear_form_in_either_order(shape_h, shape_w, rest):
    x = torch.randn(7, 9, *rest, dtype=torch.float64)
    op_h, op_w = torch.randn(*shape_h, dtype=torch.float64), torch.randn(*shape_w, dtype=torch.float64)
    expected = torch.einsum("ir,jc,rc...->ij...", op_h, op_w, x)
    torch.testing.assert_close(apply_axes(x, op_h, op_w), expected)


def test_rows_are_convex_and_nearest_selects_one_unit():
    for mode in ("bilinear", "nearest"):
        op = interpolation_matrix(7, mode, size=16, dtype=torch.float64)
        assert op.shape == (16, 7) and op.dtype == torch.float64
        torch.testing.assert_close(op.sum(1), torch.ones(16, dtype=op.dtype))
        assert op.min() >= 0
    assert ((interpolation_matrix(7, "nearest", size=16) > 0).sum(1) == 1).all()


def test_unknown_interpolation_names_the_caller_and_the_choices():
    with pytest.raises(ValueError, match=r"downsample_model: interpolation must be one of \('bilinear', 'nearest'\), got 'area'"):
        check_interpolation("area", "downsample_model")
