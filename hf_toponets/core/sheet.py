"""Cortical-sheet geometry: where each output unit of a layer sits on a 2-D sheet.

A layer with ``n`` output units is laid out as an ``h x w`` sheet, ``h * w == n``, with
``h`` the largest divisor of ``n`` not above ``sqrt(n)`` and ``w = n // h`` (the rule of the
reference package ``topoloss``). Unit ``u`` sits at row ``u // w``, column ``u % w``. Each unit
carries its fan-in vector of length ``d``, so a weight becomes a sheet of shape ``(h, w, d)``:

- ``nn.Linear``: weight ``(out, in)`` -> ``(h, w, in)``;
- transformers' ``Conv1D`` (GPT-2): weight stored ``(in, out)`` -> transposed first;
- ``nn.Conv2d``: weight ``(c_out, c_in, k_h, k_w)`` -> ``(h, w, c_in * k_h * k_w)``.

This module is pure torch: it recognises ``Conv1D`` by its class name so that it never imports
transformers.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SUPPORTED_LAYERS = ("nn.Linear", "transformers Conv1D", "nn.Conv2d")


def sheet_shape(n_units: int) -> tuple[int, int]:
    """Return ``(h, w)`` with ``h * w == n_units``, ``h`` the largest divisor ``<= sqrt(n)``.

    >>> sheet_shape(3072)
    (48, 64)
    >>> sheet_shape(13)  # a prime gives a 1 x n strip
    (1, 13)
    """
    if isinstance(n_units, bool) or not isinstance(n_units, int) or n_units < 1:
        raise ValueError(f"sheet_shape: n_units must be a positive int, got {n_units!r}")
    h = math.isqrt(n_units)
    while n_units % h:
        h -= 1
    return h, n_units // h


def check_sheet_fits(h: int, w: int, factor_h: float, factor_w: float, name: str = "sheet") -> None:
    """Raise ``ValueError`` when a ``h x w`` sheet is smaller than the blur factors."""
    if h < factor_h or w < factor_w:
        raise ValueError(
            f"{name}: its {h} x {w} sheet is smaller than the blur factors "
            f"(factor_h={factor_h}, factor_w={factor_w}); each side must be >= its factor "
            "(a prime number of units gives a 1 x n sheet)"
        )


def is_conv1d(module: nn.Module) -> bool:
    """True for transformers' ``Conv1D`` (GPT-2's linear layer with a transposed weight)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_supported(module: nn.Module) -> bool:
    """True when :func:`unit_weight` knows the module's weight layout."""
    return isinstance(module, (nn.Linear, nn.Conv2d)) or is_conv1d(module)


def unit_weight(module: nn.Module, name: str = "module") -> torch.Tensor:
    """The weight as one row per output unit: ``(n_units, d)``.

    The only place that knows each layer type's orientation. ``Conv1D`` gives a transposed
    (non-contiguous) view; the others give views of the parameter.
    """
    if isinstance(module, nn.Linear):
        return module.weight
    if isinstance(module, nn.Conv2d):
        return module.weight.flatten(1)
    if is_conv1d(module):
        return module.weight.t()
    raise ValueError(
        f"{name}: unsupported layer type {type(module).__name__}; "
        f"topographic layers must be one of {', '.join(SUPPORTED_LAYERS)}"
    )


def n_units(module: nn.Module, name: str = "module") -> int:
    """Number of output units of a supported layer (without touching the weight's data)."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if is_conv1d(module):
        return module.nf
    unit_weight(module, name)  # raises the error for unsupported types
    raise AssertionError("unreachable")


def fan_in(module: nn.Module, name: str = "module") -> int:
    """Length ``d`` of each unit's weight vector."""
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.Conv2d):
        return module.in_channels // module.groups * math.prod(module.kernel_size)
    if is_conv1d(module):
        return module.weight.shape[0]
    unit_weight(module, name)
    raise AssertionError("unreachable")


def layer_sheet_shape(module: nn.Module, name: str = "module") -> tuple[int, int, int]:
    """``(h, w, d)`` of a supported layer's sheet."""
    h, w = sheet_shape(n_units(module, name))
    return h, w, fan_in(module, name)


def to_sheet(unit_rows: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """``(n_units, d)`` -> ``(h, w, d)``; a copy only when the rows are not contiguous."""
    if unit_rows.ndim != 2:
        raise ValueError(f"to_sheet: expected (n_units, d), got shape {tuple(unit_rows.shape)}")
    h, w = shape if shape is not None else sheet_shape(unit_rows.shape[0])
    if h * w != unit_rows.shape[0]:
        raise ValueError(f"to_sheet: a {h} x {w} sheet cannot hold {unit_rows.shape[0]} units")
    return unit_rows.reshape(h, w, unit_rows.shape[1])


def weight_to_sheet(module: nn.Module, name: str = "module") -> torch.Tensor:
    """A layer's weight as its cortical sheet ``(h, w, d)`` (differentiable)."""
    return to_sheet(unit_weight(module, name))


def sheet_positions(h: int, w: int) -> torch.Tensor:
    """``(h * w, 2)`` float ``(row, col)`` of each unit on the sheet, in unit order."""
    rows = torch.arange(h).repeat_interleave(w)
    cols = torch.arange(w).repeat(h)
    return torch.stack([rows, cols], dim=1).float()
