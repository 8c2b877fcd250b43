"""TopoLoss: 1 - mean cosine similarity between a cortical sheet and its blurred copy.

For a sheet ``X`` of shape ``(h, w, d)`` (one fan-in vector per unit, see :mod:`sheet`), the blur
is interpolation down by ``(factor_h, factor_w)`` and back up to ``(h, w)``, exactly as
``F.interpolate(..., scale_factor=1/f)`` then ``F.interpolate(..., size=(h, w))`` in the
reference package ``topoloss`` 0.0.2. Interpolation is linear and separable, so the blur is
``Y = (U_h D_h) X (U_w D_w)^T`` on every feature channel, with the one-axis operators ``D``
(down) and ``U`` (up) built once per ``(n, factor, mode)`` from the interpolation kernels::

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

import torch
from torch import nn

from .config import TopoConfig
from .resample import apply_axes, check_interpolation, interpolation_matrix
from .sheet import check_sheet_fits
from .targets import resolve_targets, target_sheet

_EPS = 1e-8  # F.cosine_similarity's default


@functools.lru_cache(maxsize=64)
def _axis_operators(n: int, factor: float, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(D, U)``: down ``(n', n)`` by ``1 / factor`` and back up ``(n, n')`` along one axis, float32
    (the reference interpolates float32 weights; :func:`resample.interpolation_matrix`)."""
    down = interpolation_matrix(n, mode, scale_factor=1.0 / factor)
    return down, interpolation_matrix(down.shape[0], mode, size=n)


def blur_operators(
    h: int, w: int, factor_h: float = 3.0, factor_w: float = 3.0, interpolation: str = "bilinear", device=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(D_h, U_h, D_w, U_w)``, float32: ``D_h (h', h)``, ``U_h (h, h')``, likewise for ``w``."""
    check_interpolation(interpolation, "blur_operators")
    d_h, u_h = _axis_operators(h, float(factor_h), interpolation)
    d_w, u_w = _axis_operators(w, float(factor_w), interpolation)
    return tuple(t.to(device) for t in (d_h, u_h, d_w, u_w))


def _blur(x: torch.Tensor, d_h, u_h, d_w, u_w) -> torch.Tensor:
    """``U_h D_h X D_w^T U_w^T`` for ``X (h, w, d)``."""
    return apply_axes(apply_axes(x, d_h, d_w), u_h, u_w)


def blur_sheet(
    sheet: torch.Tensor, factor_h: float = 3.0, factor_w: float = 3.0, interpolation: str = "bilinear"
) -> torch.Tensor:
    """Blur a ``(h, w, d)`` sheet: down by the factors, back up to ``(h, w)``. Same shape out."""
    h, w, _ = sheet.shape
    check_sheet_fits(h, w, factor_h, factor_w)
    d_h, u_h, d_w, u_w = blur_operators(h, w, factor_h, factor_w, interpolation, sheet.device)
    return _blur(sheet, *(t.to(sheet.dtype) for t in (d_h, u_h, d_w, u_w)))


class _SheetLosses(torch.autograd.Function):
    """Losses ``(L,)`` of ``L`` float32 sheets of one shape, one autograd node, hand-written backward.

    With ``c_u = <x_u, y_u> / (|x_u| |y_u|)``, ``y = B x`` and ``g = -grad / n``::

        dL/dy_u = g (x_u / (|x||y|) - c_u y_u / |y|^2)
        dL/dx_u = g (y_u / (|x||y|) - c_u x_u / |x|^2) + (B^T dL/dy)_u

    Autograd of the naive expression allocates a dozen sheet-sized temporaries; this needs
    three per sheet, which is most of the speed-up on CPU (the work is memory-bound). The
    sheets are not stacked: a 12 x 9 MB copy costs more than the loss itself.
    """

    @staticmethod
    def forward(ctx, factor_h, factor_w, interpolation, *sheets):
        h, w, d = sheets[0].shape
        ops = blur_operators(h, w, factor_h, factor_w, interpolation, sheets[0].device)
        losses, saved = [], []
        for x in sheets:
            y = _blur(x, *ops)
            xf, yf = x.reshape(h * w, d), y.reshape(h * w, d)
            nx, ny = torch.linalg.vector_norm(xf, dim=1), torch.linalg.vector_norm(yf, dim=1)
            cos = torch.linalg.vecdot(xf, yf) / (nx.clamp_min(_EPS) * ny.clamp_min(_EPS))
            losses.append(1.0 - cos.mean())
            saved += [x, y, nx, ny, cos]
        ctx.save_for_backward(*saved)
        ctx.ops = ops
        return torch.stack(losses)

    @staticmethod
    def backward(ctx, grad):
        d_h, u_h, d_w, u_w = ctx.ops
        saved = ctx.saved_tensors
        grads = []
        for i in range(len(saved) // 5):
            x, y, nx, ny, cos = saved[5 * i : 5 * i + 5]
            h, w, d = x.shape
            g = -grad[i] / (h * w)
            inv = g / (nx.clamp_min(_EPS) * ny.clamp_min(_EPS))
            # clamp_min passes no gradient below eps, as in F.cosine_similarity
            kx = torch.where(nx >= _EPS, g * cos / nx.clamp_min(_EPS) ** 2, 0.0)
            ky = torch.where(ny >= _EPS, g * cos / ny.clamp_min(_EPS) ** 2, 0.0)
            xf, yf = x.reshape(h * w, d), y.reshape(h * w, d)
            grad_y = torch.mul(xf, inv[:, None]).sub_(yf * ky[:, None])
            # B^T = (U_h D_h)^T (x) (U_w D_w)^T: apply the transposed operators in reverse
            grad_x = _blur(grad_y.reshape(h, w, d), u_h.t(), d_h.t(), u_w.t(), d_w.t())
            grad_x = grad_x.reshape(h * w, d).addcmul_(yf, inv[:, None]).sub_(xf * kx[:, None])
            grads.append(grad_x.reshape(h, w, d))
        return (None, None, None, *grads)


def sheet_losses(
    sheets: Sequence[torch.Tensor],
    factor_h: float = 3.0,
    factor_w: float = 3.0,
    interpolation: str = "bilinear",
    names: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Per-sheet TopoLoss of ``(h, w, d)`` sheets -> list of scalar float32 tensors.

    Sheets of one shape share their blur operators and one autograd node. ``names`` (one per
    sheet) only serve error messages.
    """
    check_interpolation(interpolation)
    names = list(names) if names is not None else [f"sheet {i}" for i in range(len(sheets))]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(sheets):
        if s.ndim != 3:
            raise ValueError(f"{names[i]}: expected a (h, w, d) sheet, got shape {tuple(s.shape)}")
        check_sheet_fits(s.shape[0], s.shape[1], factor_h, factor_w, names[i])
        groups.setdefault(tuple(s.shape), []).append(i)
    out: list[torch.Tensor] = [None] * len(sheets)  # type: ignore[list-item]
    device_type = sheets[0].device.type if sheets else "cpu"
    with torch.autocast(device_type, enabled=False):
        for idx in groups.values():
            group = [sheets[i].float() for i in idx]
            values = _SheetLosses.apply(float(factor_h), float(factor_w), interpolation, *group)
            for i, value in zip(idx, values.unbind(0)):
                out[i] = value
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
