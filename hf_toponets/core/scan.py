"""Which layers are topographic: TopoLoss of every Linear / Conv1D / Conv2d layer of a model.

A layer trained with TopoLoss scores far lower than its untrained neighbours (random or task-only
weights score about 0.5-0.9 with the default blur), so a scan tells which layers a published TopoNet
was trained on, whatever its metadata says. Pure torch.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 36), torch.nn.Linear(36, 4))
>>> list(scan_layers(model))  # the 4-unit layer's 2 x 2 sheet is smaller than the blur: left out
['0']
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .loss import sheet_losses
from .sheet import is_lora, is_supported, layer_sheet_shape, weight_to_sheet


@torch.no_grad()
def scan_layers(model: nn.Module, factor_h: float = 3.0, factor_w: float = 3.0,
                interpolation: str = "bilinear") -> dict[str, float]:
    """``{module name: TopoLoss}`` of every supported layer whose sheet is at least the blur factors, in model order.

    A PEFT LoRA layer counts once, with its effective weight (not its ``base_layer`` and adapters apart).

    Same loss as training (:func:`~hf_toponets.core.loss.sheet_losses`): ``1 - mean_u cos(X_u, B(X)_u)``,
    in [0, 2]; lower is more topographic.
    """
    names, sheets, inside = [], [], ""
    for name, module in model.named_modules():
        if inside and name.startswith(inside):  # a LoRA layer's base_layer / lora_A / lora_B: scored as one layer
            continue
        inside = f"{name}." if is_lora(module) else inside
        if name and is_supported(module):
            h, w, _ = layer_sheet_shape(module, name)
            if h >= factor_h and w >= factor_w:
                names.append(name)
                sheets.append(weight_to_sheet(module, name).detach())
    values = sheet_losses(sheets, factor_h, factor_w, interpolation, names) if sheets else []
    return {name: float(value) for name, value in zip(names, values)}


def compare_targets(scan: dict[str, float], targets: Iterable[str]) -> str | None:
    """``None`` when the stated ``targets`` are exactly the lowest-TopoLoss layers of ``scan``, else why not.

    Agreement means ``max_{t in targets} scan[t] < min_{o not in targets} scan[o]``: every stated target
    is more topographic than every other layer.
    """
    targets = [t for t in targets if t in scan]
    others = [o for o in scan if o not in set(targets)]
    if not targets or not others:
        return None
    worst = max(targets, key=scan.__getitem__)
    below = sorted((o for o in others if scan[o] <= scan[worst]), key=scan.__getitem__)
    if not below:
        return None
    return (f"{len(below)} layer(s) that are not stated targets score a TopoLoss at or below the stated target "
            f"{worst} ({scan[worst]:.3f}), e.g. {below[0]} ({scan[below[0]]:.3f}): either the stated targets are not "
            "the layers trained with TopoLoss, or more layers were")
