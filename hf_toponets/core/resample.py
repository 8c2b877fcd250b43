"""Separable interpolation of sheets: the one definition of the interpolation modes and their matrices.

``F.interpolate`` on an ``(h, w, d)`` sheet is linear and separable, so resizing is ``A_h X A_w^T`` on
every feature channel with one matrix per axis. The matrices are built by running ``F.interpolate``
on the identity, so their weights (and output sizes) are the kernel's own; the 1-D kernel of
``bilinear`` is ``linear`` (``align_corners=False``). TopoLoss's blur (:mod:`loss`) and the
downsampler (:mod:`hf_toponets.conversion.downsample`) both use :func:`interpolation_matrix` and
:func:`apply_axes`; they differ only in the dtype they ask for (see there).

>>> interpolation_matrix(4, "bilinear", size=2).tolist()
[[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INTERPOLATIONS = ("bilinear", "nearest")


def check_interpolation(interpolation: str, where: str = "interpolation") -> None:
    """``ValueError`` naming ``where`` unless ``interpolation`` is one of :data:`INTERPOLATIONS`."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{where}: interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


def interpolation_matrix(n_in: int, interpolation: str, *, size: int | None = None, scale_factor: float | None = None,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(n_out, n_in)`` matrix of ``F.interpolate(x, size=size)`` (or ``scale_factor=``) along one axis.

    ``dtype`` is the dtype the kernel computes in: float32 reproduces exactly what ``F.interpolate``
    does to float32 weights (TopoLoss must match the reference package to 1e-6); float64 avoids the
    ~1e-6 relative error that float32 source coordinates put into the weights (the downsampler
    composes these matrices into saved weights).
    """
    check_interpolation(interpolation)
    mode = "linear" if interpolation == "bilinear" else interpolation
    eye = torch.eye(n_in, dtype=dtype).unsqueeze(1)  # (n_in, 1, n_in): row k is e_k
    return F.interpolate(eye, size=size, scale_factor=scale_factor, mode=mode)[:, 0, :].t().contiguous()


def selection_slice(op: torch.Tensor) -> slice | None:
    """``slice(start, stop, step)`` when ``op (n_out, n_in)`` selects every ``step``-th unit from
    ``start`` (each row a single exact 1), else ``None``; ``x[selection_slice(op)] == op @ x``, a view.
    Downsampling by an odd integer factor is one: ``bilinear`` then samples pixel centres
    (``3 i + 1`` for factor 3); so is ``nearest`` by an integer factor.

    >>> selection_slice(interpolation_matrix(7, "bilinear", scale_factor=1 / 3))
    slice(1, 5, 3)
    """
    nonzero = op != 0
    if not bool((nonzero.sum(1) == 1).all()) or not bool((op[nonzero] == 1).all()):
        return None
    picks = nonzero.to(torch.int8).argmax(1).tolist()
    start, step = picks[0], (picks[1] - picks[0] if len(picks) > 1 else 1)
    if step < 1 or picks != list(range(start, start + step * len(picks), step)):
        return None
    return slice(start, picks[-1] + 1, step)


def apply_axes(x: torch.Tensor, op_h: torch.Tensor, op_w: torch.Tensor) -> torch.Tensor:
    """``x'[i, j] = sum_{r, c} op_h[i, r] op_w[j, c] x[r, c]`` for ``x (h, w, *rest)``: ``(h', w', *rest)``.

    The axis whose operator shrinks more is applied first, so the second product runs on the
    smaller tensor. Matrix products on ``(h, w d)`` views: no transposed copies of ``x``.
    """
    h, w = x.shape[:2]
    rest = x.shape[2:]
    x3 = x.reshape(h, w, -1)
    if op_h.shape[0] * w <= h * op_w.shape[0]:  # h first
        t = torch.matmul(op_h, x3.reshape(h, -1)).reshape(op_h.shape[0], w, -1)  # (h', w, d)
        out = torch.matmul(op_w, t)  # (w', w) @ (h', w, d) -> (h', w', d)
    else:  # w first
        t = torch.matmul(op_w, x3)  # (h, w', d)
        out = torch.matmul(op_h, t.reshape(h, -1)).reshape(op_h.shape[0], op_w.shape[0], -1)
    return out.reshape(op_h.shape[0], op_w.shape[0], *rest)
