import pytest
import torch
from torch import nn
from topoloss import LaplacianPyramid, TopoLoss

from conftest import tiny_gpt2
from hf_toponets import TopoConfig, sheet_loss, sheet_losses, topo_loss, topo_losses
from hf_toponets.core.loss import blur_sheet
from hf_toponets.core.resample import apply_axes


def reference(model, names, factor=3.0, interpolation="bilinear"):
    """topoloss 0.0.2 on the named layers: (mean, {name: value})."""
    ref = TopoLoss([LaplacianPyramid(n, factor, factor, interpolation) for n in names])
    per_layer = ref.compute(model, reduce_mean=False)
    return sum(per_layer.values()) / len(per_layer), per_layer


def rel(a, b):
    return float((a - b).norm() / b.norm())


def grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


LAYERS = [
    nn.Linear(20, 36),  # 6 x 6, square
    nn.Linear(7, 3072),  # 48 x 64
    nn.Linear(16, 40),  # 5 x 8
    nn.Linear(9, 24),  # 4 x 6
    nn.Conv2d(3, 64, 3),  # 8 x 8, d = 27
    nn.Conv2d(4, 30, (1, 2)),  # 5 x 6, d = 8
]


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("factor", [3.0, 2.0, 2.5])
def test_matches_reference_on_linear_and_conv(interpolation, factor):
    torch.manual_seed(0)
    model = nn.ModuleList([type(l)(*_args(l)) for l in LAYERS])
    names = [str(i) for i in range(len(LAYERS))]
    cfg = TopoConfig(target_modules=names, factor_h=factor, factor_w=factor, interpolation=interpolation)
    ours = topo_losses(model, cfg)
    ref_mean, ref = reference(model, names, factor, interpolation)
    for n in names:
        assert abs(ours[n].item() - ref[n].item()) <= 1e-6 * ref[n].item(), n
    mean = topo_loss(model, cfg)
    assert abs(mean.item() - ref_mean.item()) <= 1e-6 * ref_mean.item()
    g_ours, g_ref = grads(model, mean), grads(model, ref_mean)
    assert g_ours.keys() == g_ref.keys()
    for n in g_ref:
        assert rel(g_ours[n], g_ref[n]) < 1e-5, n


def _args(layer):
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels, layer.kernel_size


def test_matches_reference_on_12_gpt_neo_125m_c_fc_layers():
    torch.manual_seed(1)
    model = nn.ModuleList([nn.Linear(768, 3072) for _ in range(12)])
    for layer in model:
        nn.init.normal_(layer.weight, std=0.02)
    names = [str(i) for i in range(12)]
    cfg = TopoConfig(target_modules=names)
    ours = topo_loss(model, cfg)
    ref, _ = reference(model, names)
    assert abs(ours.item() - ref.item()) <= 1e-6 * ref.item()
    g_ours, g_ref = grads(model, ours), grads(model, ref)
    for n in g_ref:
        assert rel(g_ours[n], g_ref[n]) < 1e-5, n


def test_gpt2_conv1d_equals_reference_on_transposed_linear():
    model = tiny_gpt2(hidden=32, layers=2)
    cfg = TopoConfig(target_modules=["c_fc"])
    ours = topo_losses(model, cfg)
    linears = nn.ModuleList()
    for block in model.transformer.h:
        lin = nn.Linear(32, 128)
        lin.weight.data = block.mlp.c_fc.weight.data.t().clone()
        linears.append(lin)
    _, ref = reference(linears, ["0", "1"])
    assert abs(ours["transformer.h.0.mlp.c_fc"].item() - ref["0"].item()) <= 1e-6 * ref["0"].item()
    assert abs(ours["transformer.h.1.mlp.c_fc"].item() - ref["1"].item()) <= 1e-6 * ref["1"].item()
    g_ours = grads(model, topo_loss(model, cfg))["transformer.h.1.mlp.c_fc.weight"]
    g_ref = grads(linears, sum(reference(linears, ["0", "1"])[1].values()) / 2)["1.weight"]
    assert rel(g_ours.t(), g_ref) < 1e-5


def test_bf16_weights_stay_close_and_finite():
    torch.manual_seed(2)
    layer = nn.Linear(64, 3072).to(torch.bfloat16)
    sheet = layer.weight.view(48, 64, 64)
    low = sheet_loss(sheet)
    high = sheet_loss(sheet.float())
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert abs(low.item() - high.item()) < 1e-3
    low.backward()
    assert layer.weight.grad.dtype == torch.bfloat16 and torch.isfinite(layer.weight.grad.float()).all()


def test_float32_under_autocast():
    torch.manual_seed(3)
    x = torch.randn(12, 16, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = sheet_loss(x)
    assert inside.dtype == torch.float32
    assert inside.item() == pytest.approx(sheet_loss(x).item(), rel=1e-6)


def smooth_sheet(h=24, w=32, d=16):
    i = torch.linspace(0, 1, h)[:, None, None]
    j = torch.linspace(0, 1, w)[None, :, None]
    k = torch.arange(d)[None, None, :]
    return torch.sin(2 * i + 3 * j + k) + torch.cos(1.5 * i * (k + 1) / d + j)


def test_smooth_sheet_near_zero_random_sheet_large():
    torch.manual_seed(4)
    smooth = sheet_loss(smooth_sheet()).item()
    noisy = sheet_loss(torch.randn(24, 32, 16)).item()
    assert smooth < 0.01
    assert noisy > 0.5
    assert sheet_loss(torch.ones(9, 9, 4)).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_descent_lowers_loss():
    torch.manual_seed(5)
    x = torch.randn(12, 12, 8, requires_grad=True)
    opt = torch.optim.SGD([x], lr=20.0)
    first = sheet_loss(x).item()
    for _ in range(30):
        opt.zero_grad()
        loss = sheet_loss(x)
        loss.backward()
        opt.step()
    assert sheet_loss(x).item() < 0.5 * first


def test_grouped_equals_one_by_one():
    torch.manual_seed(6)
    sheets = [torch.randn(6, 8, 5), torch.randn(9, 9, 3), torch.randn(6, 8, 5)]
    together = sheet_losses(sheets)
    for s, value in zip(sheets, together):
        assert value.item() == pytest.approx(sheet_loss(s).item(), rel=1e-7)


def test_autograd_gradcheck_in_double_precision_path():
    # the hand-written backward against finite differences (float32 inside, so loose tolerances)
    torch.manual_seed(7)
    x = torch.randn(6, 6, 3, requires_grad=True)
    loss = sheet_loss(x)
    (g,) = torch.autograd.grad(loss, x)
    eps = 1e-2
    for idx in [(0, 0, 0), (2, 3, 1), (5, 5, 2)]:
        xp, xm = x.detach().clone(), x.detach().clone()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (sheet_loss(xp) - sheet_loss(xm)).item() / (2 * eps)
        assert g[idx].item() == pytest.approx(fd, rel=2e-2, abs=1e-4)


def test_blur_matches_interpolate_2d():
    torch.manual_seed(8)
    x = torch.randn(10, 14, 4)
    grid = x.permute(2, 0, 1).unsqueeze(0)
    down = torch.nn.functional.interpolate(grid, scale_factor=(1 / 3, 1 / 3), mode="bilinear")
    up = torch.nn.functional.interpolate(down, size=(10, 14), mode="bilinear")
    assert torch.allclose(blur_sheet(x), up[0].permute(1, 2, 0), atol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sheet_loss(torch.randn(1, 13, 4)), "1 x 13 sheet is smaller"),
        (lambda: sheet_loss(torch.randn(13, 4)), "expected a \\(h, w, d\\) sheet"),
        (lambda: sheet_loss(torch.randn(6, 6, 2), interpolation="area"), "interpolation must be one of"),
        (lambda: sheet_losses([torch.randn(6, 6, 2), torch.randn(2, 7, 2)], names=["a", "b.c_fc"]), "b.c_fc: its 2 x 7"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# The hand-written forward and backward (core.loss._SheetLoss) on their two code paths: a selection
# down-operator (factor 3 bilinear, nearest) and a dense one (factor 2 / 2.5 bilinear).
PATHS = [(3.0, "bilinear"), (3.0, "nearest"), (2.0, "bilinear"), (2.5, "bilinear"), (2.5, "nearest")]


@pytest.mark.parametrize("factor, interpolation", PATHS)
def test_backward_passes_gradcheck_in_float64(factor, interpolation):
    from hf_toponets.core.loss import _SheetLoss, blur_operators

    torch.manual_seed(9)
    x = torch.randn(6, 7, 2, dtype=torch.float64, requires_grad=True)
    ops = blur_operators(6, 7, factor, factor, interpolation, dtype=torch.float64)
    if interpolation == "bilinear":  # the selection path (a view) for factor 3, the dense one otherwise
        assert (ops.pick_h is not None) == (factor == 3.0)
    assert torch.autograd.gradcheck(lambda t: _SheetLoss.apply(t, ops), (x,), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("factor, interpolation", PATHS)
def test_forward_and_backward_equal_autograd_of_the_naive_expression(factor, interpolation):
    # oracle: F.cosine_similarity between the sheet and its explicitly materialised blur, autograd
    from hf_toponets.core.loss import _SheetLoss, blur_operators

    torch.manual_seed(10)
    x = torch.randn(9, 12, 5, dtype=torch.float64)
    x[2, 3] = 0.0  # a dead unit: |x_u| < eps passes no gradient through the norm
    ops = blur_operators(9, 12, factor, factor, interpolation, dtype=torch.float64)
    ours_x, naive_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = _SheetLoss.apply(ours_x, ops)
    blur = apply_axes(apply_axes(naive_x, ops.down_h, ops.down_w), ops.up_h, ops.up_w)
    naive = 1 - torch.nn.functional.cosine_similarity(naive_x, blur, dim=-1).mean()
    assert ours.item() == pytest.approx(naive.item(), rel=1e-12)
    ours.backward()
    naive.backward()
    torch.testing.assert_close(ours_x.grad, naive_x.grad, rtol=1e-9, atol=1e-12)


def test_dead_units_match_reference_in_float32():
    torch.manual_seed(11)
    model = nn.ModuleList([nn.Linear(10, 48)])
    with torch.no_grad():
        model[0].weight[[0, 17, 30]] = 0.0
    cfg = TopoConfig(target_modules=["0"])
    ours, (ref, _) = topo_loss(model, cfg), reference(model, ["0"])
    assert abs(ours.item() - ref.item()) <= 1e-6 * ref.item()
    assert rel(grads(model, ours)["0.weight"], grads(model, ref)["0.weight"]) < 1e-5


def test_blur_operators_are_built_once_per_device_and_dtype():
    from hf_toponets.core.loss import blur_operators

    first = blur_operators(48, 64)
    assert blur_operators(48, 64, 3, 3, "bilinear", "cpu") is first  # no rebuild (no copy to a device) per forward
    assert (first.pick_h, first.pick_w) == (slice(1, 47, 3), slice(1, 62, 3))
    double = blur_operators(48, 64, dtype=torch.float64)
    assert double is not first and double.up_w.dtype == torch.float64
    torch.testing.assert_close(double.up_w.float(), first.up_w, rtol=0, atol=0)


@pytest.mark.parametrize("factor", [3.0, 2.0])
def test_transposed_sheet_layout_gives_the_same_loss_and_gradient(factor):
    # GPT-2's Conv1D sheet is a transposed view (d-major storage): its own code paths, same numbers
    from hf_toponets.core.loss import _SheetLoss, blur_operators

    torch.manual_seed(12)
    ops = blur_operators(9, 12, factor, factor, dtype=torch.float64)
    stored = torch.randn(5, 9 * 12, dtype=torch.float64, requires_grad=True)  # (d, n), as Conv1D keeps it
    rows = stored.detach().t().contiguous().requires_grad_()  # (n, d)
    strided, dense = _SheetLoss.apply(stored.t().reshape(9, 12, 5), ops), _SheetLoss.apply(rows.view(9, 12, 5), ops)
    assert strided.item() == pytest.approx(dense.item(), rel=1e-12)
    (strided + dense).backward()
    torch.testing.assert_close(stored.grad.t(), rows.grad, rtol=1e-10, atol=1e-13)
    assert stored.grad.is_contiguous()  # written in the weight's own layout, no transposing copy


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("factor_h, factor_w", [(2.0, 4.0), (4.0, 2.0), (3.0, 2.0)])
def test_uneven_factors_match_the_reference_by_keyword(factor_h, factor_w, interpolation):
    """factor_h applies to the sheet's rows, factor_w to its columns: swapping them is ~2% off at (2, 4)."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"a": nn.Linear(12, 48), "b": nn.Conv2d(3, 40, 2)})  # 6 x 8 and 5 x 8 sheets
    cfg = TopoConfig(target_modules=["a", "b"], factor_h=factor_h, factor_w=factor_w, interpolation=interpolation)
    ref = TopoLoss([LaplacianPyramid(layer_name=n, factor_h=factor_h, factor_w=factor_w, interpolation=interpolation)
                    for n in ("a", "b")]).compute(model, reduce_mean=False)
    ours = topo_losses(model, cfg)
    for n in ("a", "b"):
        assert abs(ours[n].item() - ref[n].item()) <= 1e-6 * ref[n].item(), n
    g_ours, g_ref = grads(model, sum(ours.values())), grads(model, sum(ref.values()))
    for n in g_ref:
        assert rel(g_ours[n], g_ref[n]) < 1e-5, n
