"""Cortical-sheet geometry: where each output unit of a layer sits on a 2-D sheet.

A layer with ``n`` output units is laid out as an ``h x w`` sheet, ``h * w == n``, with
``h`` the largest divisor of ``n`` not above ``sqrt(n)`` and ``w = n // h`` (the rule of the
reference package ``topoloss``). Unit ``u`` sits at row ``u // w``, column ``u % w``. Each unit
carries its fan-in vector of length ``d``, so a weight becomes a sheet of shape ``(h, w, d)``:

- ``nn.Linear``: weight ``(out, in)`` -> ``(h, w, in)``;
- transformers' ``Conv1D`` (GPT-2): weight stored ``(in, out)`` -> transposed first;
- ``nn.Conv2d``: weight ``(c_out, c_in, k_h, k_w)`` -> ``(h, w, c_in * k_h * k_w)``;
- a PEFT LoRA layer around one of these: its *effective* weight, the one ``merge_and_unload`` would
  write, ``W + sum_a s_a B_a A_a`` over the active, unmerged adapters ``a`` (``A_a (r, d)``,
  ``B_a (n, r)``, flattened for Conv2d; ``B A`` is in unit-row orientation whatever the base's storage),
  so TopoLoss's gradient reaches ``lora_A`` / ``lora_B``. DoRA adapters rescale each unit's row:
  ``V = W + s B A``, ``W' = m * V / |V|_row`` (``m``: the magnitude vector), differentiated through
  the norm (PEFT's forward detaches it; the merged weight is the function we differentiate).

A gated MLP's unit has two weight rows, its gate's and its up projection's: :func:`shared_unit_weight`
puts them side by side, ``[gate_u | up_u]``, so both lie on one sheet.

This module is pure torch: it recognises ``Conv1D`` by its class name and LoRA layers by their
structure (:func:`is_lora`), so that it never imports transformers or peft.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SUPPORTED_LAYERS = ("nn.Linear", "transformers Conv1D", "nn.Conv2d", "a PEFT LoRA/DoRA layer around one of these")


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


def is_lora(module: nn.Module) -> bool:
    """True for a PEFT LoRA layer (``peft.tuners.lora.Linear``, ``Conv2d``, ...), recognised by its structure
    (peft is never imported): a ``base_layer`` module, ``lora_A`` / ``lora_B`` ``ModuleDict``s (one entry
    per adapter), a ``scaling`` dict and ``active_adapters``. DoRA adds ``use_dora`` and
    ``lora_magnitude_vector``; merged adapters are listed in ``merged_adapters``."""
    return (
        isinstance(getattr(module, "base_layer", None), nn.Module)
        and isinstance(getattr(module, "lora_A", None), nn.ModuleDict)
        and isinstance(getattr(module, "lora_B", None), nn.ModuleDict)
        and isinstance(getattr(module, "scaling", None), dict)
        and hasattr(module, "active_adapters")
    )


def _base(module: nn.Module) -> nn.Module:
    """The plain layer whose geometry a layer has: a LoRA layer's ``base_layer``, else the layer."""
    return module.base_layer if is_lora(module) else module


def is_supported(module: nn.Module) -> bool:
    """True when :func:`unit_weight` knows the module's weight layout."""
    base = _base(module)
    return isinstance(base, (nn.Linear, nn.Conv2d)) or is_conv1d(base)


def layer_kind(module: nn.Module) -> str:
    """The module's type for error messages, saying what a PEFT wrapper wraps."""
    if is_lora(module):
        return f"{type(module).__name__} (LoRA around {type(module.base_layer).__name__})"
    if isinstance(getattr(module, "base_layer", None), nn.Module):
        return f"{type(module).__name__} (a PEFT adapter other than LoRA/DoRA)"
    return type(module).__name__


def _unsupported(module: nn.Module, name: str) -> ValueError:
    return ValueError(f"{name}: unsupported layer type {layer_kind(module)}; topographic layers must be one of "
                      f"{', '.join(SUPPORTED_LAYERS)}")


def _plain_unit_weight(module: nn.Module, name: str) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return module.weight
    if isinstance(module, nn.Conv2d):
        return module.weight.flatten(1)
    if is_conv1d(module):
        return module.weight.t()
    raise _unsupported(module, name)


def unit_weight(module: nn.Module, name: str = "module") -> torch.Tensor:
    """The weight as one row per output unit: ``(n_units, d)``.

    The only place that knows each layer type's orientation. ``Conv1D`` gives a transposed
    (non-contiguous) view; Linear and Conv2d give views of the parameter; a LoRA layer gives its
    effective weight (a new float32 tensor, computed outside autocast, differentiable in ``lora_A``,
    ``lora_B`` and DoRA's magnitude).
    """
    if not is_lora(module):
        return _plain_unit_weight(module, name)
    rows = _plain_unit_weight(module.base_layer, name)  # (n, d)
    if module.disable_adapters:
        return rows
    with torch.autocast(rows.device.type, enabled=False):  # float32, as the loss: a bf16 autocast B A is ~0.4% off
        return _lora_rows(module, rows.float(), name)


def _lora_rows(module: nn.Module, rows: torch.Tensor, name: str) -> torch.Tensor:
    """``W + s B A`` (DoRA: rescaled rows) over the active, unmerged adapters, float32."""
    for adapter in module.active_adapters:
        if adapter not in module.lora_A or adapter in module.merged_adapters:  # merged: already inside W
            continue
        a, b = module.lora_A[adapter].weight.float(), module.lora_B[adapter].weight.float()  # (r, d...), (n, r[, 1, 1])
        if isinstance(module.base_layer, nn.Conv2d) and module.base_layer.groups != 1:
            raise ValueError(f"{name}: LoRA on a grouped Conv2d (groups={module.base_layer.groups}) is not supported")
        rows = rows + module.scaling[adapter] * (b.flatten(1) @ a.flatten(1))  # W + s B A, (n, d)
        if getattr(module, "use_dora", {}).get(adapter, False):
            magnitude = module.lora_magnitude_vector[adapter].weight.reshape(-1).float()  # (n,)
            rows = rows * (magnitude / torch.linalg.vector_norm(rows, dim=1))[:, None]
        elif adapter in getattr(module, "lora_variant", {}):
            variant = type(module.lora_variant[adapter]).__name__
            raise ValueError(f"{name}: LoRA variant {variant} of adapter {adapter!r} is not supported (LoRA and DoRA are)")
    return rows


def shared_unit_weight(module: nn.Module, partner: nn.Module, name: str = "module") -> torch.Tensor:
    """A gated MLP's units, gate row then up row: ``(n, d_gate + d_up)``.

    ``partner`` is the gate (``gate_proj``) of the up projection ``module`` (``up_proj``); both have
    ``n`` rows and row ``u`` of each belongs to hidden unit ``u`` of ``act(gate x) * up x``.
    ``partner is module``: a fused layer of ``2n`` rows, gate rows first (Phi-3's ``gate_up_proj``,
    whose output is ``chunk(2)``-ed into gate, up). Cosine similarity of the concatenated vectors
    weighs both halves by their norms.
    """
    rows = unit_weight(module, name)
    if partner is module:
        if rows.shape[0] % 2:
            raise ValueError(f"{name}: a fused gate/up layer needs an even number of rows, got {rows.shape[0]}")
        gate, up = rows.chunk(2, dim=0)
    else:
        gate, up = unit_weight(partner, f"{name}'s gate"), rows
        if gate.shape[0] != up.shape[0]:
            raise ValueError(f"{name}: its gate has {gate.shape[0]} units but it has {up.shape[0]}; they cannot share a sheet")
    return torch.cat([gate, up], dim=1)


def n_units(module: nn.Module, name: str = "module") -> int:
    """Number of output units of a supported layer (without touching the weight's data)."""
    base = _base(module)
    if isinstance(base, nn.Linear):
        return base.out_features
    if isinstance(base, nn.Conv2d):
        return base.out_channels
    if is_conv1d(base):
        return base.nf
    raise _unsupported(module, name)


def fan_in(module: nn.Module, name: str = "module") -> int:
    """Length ``d`` of each unit's weight vector, from the module's attributes, never ``weight.shape``: under
    DeepSpeed ZeRO-3 (``zero.Init``) a parameter outside its module's forward is an empty partition."""
    base = _base(module)
    if isinstance(base, nn.Linear):
        return base.in_features
    if isinstance(base, nn.Conv2d):
        return base.in_channels // base.groups * math.prod(base.kernel_size)
    if is_conv1d(base):
        return base.nx  # weight (nx, nf)
    raise _unsupported(module, name)


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
