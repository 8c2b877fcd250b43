"""TopoLoss: 1 - mean cosine similarity between a cortical sheet and its blurred copy.

For a sheet ``X`` of shape ``(h, w, d)`` (one fan-in vector per unit, see :mod:`sheet`), the blur
is interpolation down by ``(factor_h, factor_w)`` and back up to ``(h, w)``, exactly as
``F.interpolate(..., scale_factor=1/f)`` then ``F.interpolate(..., size=(h, w))`` in the
reference package ``topoloss`` 0.0.2. Interpolation is linear and separable, so the blur is
``Y = (U_h D_h) X (U_w D_w)^T`` on every feature channel, with the one-axis operators ``D``
(down) and ``U`` (up) built from the interpolation kernels::

    loss(X) = 1 - (1 / (h w)) * sum_u  <x_u, y_u> / (max(|x_u|, eps) * max(|y_u|, eps))

Range ``[0, 2]``; lower is smoother (0 = the sheet equals its blur). Everything runs in float32,
whatever the weights' dtype or an enclosing autocast.

>>> import torch
>>> x = torch.randn(48, 64, 768)
>>> float(sheet_loss(x)) > 0.5  # a random sheet is far from its blur
True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .config import TopoConfig
from .resample import apply_axes, check_interpolation, interpolation_matrix, selection_slice
from .sheet import check_sheet_fits
from .targets import resolve_targets, target_sheet

_EPS = 1e-8  # F.cosine_similarity's default


class BlurOperators(NamedTuple):
    """The blur's one-axis operators of an ``h x w`` sheet, on one device, in one dtype.

    ``down_h (h', h)``, ``up_h (h, h')``, ``down_w (w', w)``, ``up_w (w, w')``; ``pick_h`` / ``pick_w``:
    the slice of units that ``down_h`` / ``down_w`` keeps when it is a regular selection (the default
    factor 3 samples pixel centres ``1::3``, see :func:`resample.selection_slice`), else ``None``.
    """

    down_h: torch.Tensor
    up_h: torch.Tensor
    down_w: torch.Tensor
    up_w: torch.Tensor
    pick_h: slice | None
    pick_w: slice | None


@functools.lru_cache(maxsize=128)
def _cached_operators(h, w, factor_h, factor_w, interpolation, device, dtype) -> BlurOperators:
    ops = []
    for n, factor in ((h, factor_h), (w, factor_w)):
        # built in float32 (the reference interpolates float32 weights), then cast once per dtype
        down = interpolation_matrix(n, interpolation, scale_factor=1.0 / factor)
        ops += [down, interpolation_matrix(down.shape[0], interpolation, size=n)]
    picks = [selection_slice(ops[0]), selection_slice(ops[2])]
    return BlurOperators(*(t.to(device=device, dtype=dtype) for t in ops), *picks)


def blur_operators(
    h: int, w: int, factor_h: float = 3.0, factor_w: float = 3.0, interpolation: str = "bilinear",
    device=None, dtype: torch.dtype = torch.float32,
) -> BlurOperators:
    """The :class:`BlurOperators` of an ``h x w`` sheet, built once per (shape, factors, device, dtype):
    a forward pass makes no host-to-device copy."""
    check_interpolation(interpolation, "blur_operators")
    device = torch.device("cpu" if device is None else device)
    return _cached_operators(h, w, float(factor_h), float(factor_w), interpolation, device, dtype)


def blur_sheet(
    sheet: torch.Tensor, factor_h: float = 3.0, factor_w: float = 3.0, interpolation: str = "bilinear"
) -> torch.Tensor:
    """Blur a ``(h, w, d)`` sheet: down by the factors, back up to ``(h, w)``. Same shape out."""
    h, w, _ = sheet.shape
    check_sheet_fits(h, w, factor_h, factor_w)
    ops = blur_operators(h, w, factor_h, factor_w, interpolation, sheet.device, sheet.dtype)
    return apply_axes(apply_axes(sheet, ops.down_h, ops.down_w), ops.up_h, ops.up_w)


def _down(x: torch.Tensor, ops: BlurOperators) -> torch.Tensor:
    """``Z = D_h X D_w^T``: ``(h, w, d) -> (h', w', d)``; a selection is a view of ``x``."""
    if ops.pick_h is not None and ops.pick_w is not None:
        return x[ops.pick_h, ops.pick_w]
    return apply_axes(x, ops.down_h, ops.down_w)


def _add_down_transposed(grad: torch.Tensor, s: torch.Tensor, ops: BlurOperators) -> None:
    """``grad += D_h^T S D_w`` for ``S (h', w', d)``, in place; a selection touches only its units."""
    if ops.pick_h is not None and ops.pick_w is not None:
        grad[ops.pick_h, ops.pick_w] += s
    else:
        grad += apply_axes(s, ops.down_h.t(), ops.down_w.t())


def _row_norms(x: torch.Tensor) -> torch.Tensor:
    """``|x_u|`` of ``(h, w, d) -> (h, w)``; ``vector_norm`` reduces a strided last axis (GPT-2's
    ``Conv1D`` sheet, a transposed view) ~30x slower than ``vecdot``, which does not mind."""
    if x.stride(-1) == 1:
        return torch.linalg.vector_norm(x, dim=-1)
    return torch.linalg.vecdot(x, x).sqrt_()


def _add_bmm(out: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> None:
    """``out += b1 @ b2`` batched, in place; a ``d``-major ``out`` (a ``Conv1D`` sheet's gradient) as
    ``out^T += b2^T b1^T``, which BLAS writes directly instead of one small product per batch."""
    if out.stride(-1) == 1:
        out.baddbmm_(b1, b2)
    else:
        out.transpose(1, 2).baddbmm_(b2.transpose(1, 2), b1.transpose(1, 2))


def _sheet_forward(x: torch.Tensor, ops: BlurOperators):
    """``(loss, saved)`` of one sheet without materialising the blur ``Y = U_h Z U_w^T``.

    With ``R = U_h Z`` (``(h, w', d)``, row ``i`` of the blur before ``U_w``), ``y_ij = sum_p U_w[j, p] r_ip``:
    ``<x_ij, y_ij> = sum_p U_w[j, p] (R_i X_i^T)[p, j]`` and ``|y_ij|^2 = U_w[j] (R_i R_i^T) U_w[j]^T``,
    so the sheet-sized work is two reads of ``X`` (a matrix product and the norms).
    """
    h, w, d = x.shape
    z = _down(x, ops)  # (h', w', d)
    r = (ops.up_h @ z.reshape(z.shape[0], -1)).reshape(h, -1, d)  # (h, w', d)
    nx = _row_norms(x)  # (h, w)
    dot = (torch.bmm(r, x.transpose(1, 2)) * ops.up_w.t()).sum(1)  # (h, w' , w) -> (h, w)
    gram = torch.bmm(r, r.transpose(1, 2))  # (h, w', w')
    ny = ((ops.up_w @ gram) * ops.up_w).sum(-1).clamp_min_(0).sqrt_()  # (h, w)
    cos = dot / (nx.clamp_min(_EPS) * ny.clamp_min(_EPS))
    return 1.0 - cos.mean(), (r, nx, ny, cos)


def _sheet_backward(x: torch.Tensor, grad: torch.Tensor, ops: BlurOperators, saved) -> torch.Tensor:
    """``dL/dX`` from ``grad = dL/dloss``, ``(h, w, d)``, written once (its layout follows ``x``'s).

    With ``c_u = <x_u, y_u> / (|x_u| |y_u|)``, ``g = -grad / (h w)``, ``a_u = g / (|x_u| |y_u|)``,
    ``k^x_u = g c_u / |x_u|^2`` and ``k^y_u = g c_u / |y_u|^2``::

        dL/dY = a X - k^y Y                dL/dX = a Y - k^x X + B^T dL/dY,   B^T = D^T U^T

    ``U^T dL/dY`` is formed row by row on the small side: ``U_w^T diag(a_i) X_i - (U_w^T diag(k^y_i) U_w) R_i``,
    then ``U_h^T``; ``a Y`` is ``diag(a_i) U_w R_i``, accumulated into the gradient by one matrix product.
    """
    r, nx, ny, cos = saved
    h, w, d = x.shape
    g = grad / (-h * w)
    a = g / (nx.clamp_min(_EPS) * ny.clamp_min(_EPS))  # (h, w)
    # clamp_min passes no gradient below eps, as in F.cosine_similarity
    kx = torch.where(nx >= _EPS, g * cos / nx.clamp_min(_EPS) ** 2, 0.0)
    ky = torch.where(ny >= _EPS, g * cos / ny.clamp_min(_EPS) ** 2, 0.0)
    up_w = ops.up_w
    rows = torch.bmm(up_w.t() * a[:, None, :], x)  # (h, w', d): U_w^T diag(a_i) X_i
    rows.baddbmm_(torch.einsum("jp,ij,jq->ipq", up_w, ky, up_w), r, alpha=-1)  # - U_w^T diag(k^y_i) Y_i
    s = (ops.up_h.t() @ rows.reshape(h, -1)).reshape(-1, rows.shape[1], d)  # (h', w', d): U^T dL/dY
    grad_x = torch.mul(x, -kx[..., None])
    _add_bmm(grad_x, a[..., None] * up_w, r)  # + a Y
    _add_down_transposed(grad_x, s, ops)
    return grad_x


class _SheetLoss(torch.autograd.Function):
    """TopoLoss of one ``(h, w, d)`` sheet with the operators ``ops``; hand-written backward.

    Autograd of the naive expression keeps the blur and a dozen sheet-sized temporaries; here
    the forward keeps ``R`` (a third of the sheet for factor 3) and the backward writes the
    gradient and little else (the work is memory-bound on CPU).
    """

    @staticmethod
    def forward(ctx, x, ops):
        loss, saved = _sheet_forward(x, ops)
        ctx.save_for_backward(x, *saved)
        ctx.ops = ops
        return loss

    @staticmethod
    def backward(ctx, grad):
        x, *saved = ctx.saved_tensors
        return _sheet_backward(x, grad, ctx.ops, saved), None


def sheet_losses(
    sheets: Sequence[torch.Tensor],
    factor_h: float = 3.0,
    factor_w: float = 3.0,
    interpolation: str = "bilinear",
    names: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Per-sheet TopoLoss of ``(h, w, d)`` sheets -> list of scalar float32 tensors.

    ``names`` (one per sheet) only serve error messages; every sheet is checked before any is computed.
    """
    check_interpolation(interpolation)
    names = list(names) if names is not None else [f"sheet {i}" for i in range(len(sheets))]
    for name, s in zip(names, sheets):
        if s.ndim != 3:
            raise ValueError(f"{name}: expected a (h, w, d) sheet, got shape {tuple(s.shape)}")
        check_sheet_fits(s.shape[0], s.shape[1], factor_h, factor_w, name)
    out = []
    for s in sheets:
        ops = blur_operators(s.shape[0], s.shape[1], factor_h, factor_w, interpolation, s.device)
        with torch.autocast(s.device.type, enabled=False):
            out.append(_SheetLoss.apply(s.float(), ops))
    return out


def sheet_loss(
    sheet: torch.Tensor, factor_h: float = 3.0, factor_w: float = 3.0, interpolation: str = "bilinear"
) -> torch.Tensor:
    """TopoLoss of one ``(h, w, d)`` sheet -> scalar float32 tensor with gradients."""
    return sheet_losses([sheet], factor_h, factor_w, interpolation)[0]


def topo_losses(model: nn.Module, config: TopoConfig, targets=None) -> dict[str, torch.Tensor]:
    """``{module name: TopoLoss}`` of every target layer (unscaled, float32, with gradients).

    ``targets`` (from :func:`resolve_targets`) skips resolving the config again.
    """
    targets = resolve_targets(model, config) if targets is None else targets
    names = list(targets)
    sheets = [target_sheet(t, n) for n, t in targets.items()]
    values = sheet_losses(sheets, config.factor_h, config.factor_w, config.interpolation, names)
    return dict(zip(names, values))


def topo_loss(model: nn.Module, config: TopoConfig, targets=None) -> torch.Tensor:
    """Mean TopoLoss over the target layers: a scalar float32 tensor with gradients.

    ``tau`` is not applied (the trainer applies it).

    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(8, 36), nn.ReLU(), nn.Linear(36, 4))
    >>> loss = topo_loss(model, TopoConfig(target_modules=["0"]))
    >>> loss.shape, loss.requires_grad
    (torch.Size([]), True)
    """
    return torch.stack(list(topo_losses(model, config, targets).values())).mean()
