"""``target_modules`` / ``exclude_modules`` -> the model's topographic layers, with PEFT's semantics.

A ``str`` is a regex that must match the whole dotted module name (``re.fullmatch``); a ``list``
matches a name exactly or as a ``.suffix`` (``"c_fc"`` matches ``transformer.h.0.mlp.c_fc``).
Exclusions are applied first. Zero matches is an error that lists real module names.

Names are those of the model PEFT wraps: for a ``PeftModel`` (whose modules sit under
``base_model.model.``) they are matched and stored without that prefix, so the metadata of a
LoRA run names the modules of the merged model. Inside a LoRA layer, a match on ``base_layer``
or on a ``lora_A`` / ``lora_B`` part stands for the LoRA layer itself, whose effective weight
``W + s B A`` gets the loss (the frozen ``base_layer`` alone would take no step).

``target_modules=None`` picks the model family's MLP from :data:`FAMILY_TARGETS` by
``config.model_type``, the way PEFT maps default LoRA targets.
"""

from __future__ import annotations

import dataclasses
import re
from typing import NamedTuple

import torch
from torch import nn

from .config import TopoConfig
from .sheet import (check_sheet_fits, is_lora, layer_kind, is_supported, layer_sheet_shape, shared_unit_weight, sheet_shape, to_sheet,
                    unit_weight)

_GATED = (["up_proj"], {"up_proj": "gate_proj"})  # act(gate_proj x) * up_proj x, then down_proj
# model_type -> (target_modules, shared_sheets): the layer whose output units are the MLP's hidden units,
# as the paper's GPT-Neo c_fc; a gated MLP's unit is [gate row | up row] (TopoConfig.shared_sheets)
FAMILY_TARGETS: dict[str, tuple[list[str], dict[str, str] | None]] = {
    "gpt2": (["c_fc"], None),
    "gpt_neo": (["c_fc"], None),
    "gptj": (["fc_in"], None),
    "opt": (["fc1"], None),
    "gpt_neox": (["dense_h_to_4h"], None),
    "bloom": (["dense_h_to_4h"], None),
    "falcon": (["dense_h_to_4h"], None),
    "llama": _GATED,
    "mistral": _GATED,
    "qwen2": _GATED,
    "gemma": _GATED,
    "phi3": (["gate_up_proj"], {"gate_up_proj": "gate_up_proj"}),  # fused: rows [gate; up]
    "vit": (["fc2"], None),  # the paper's ViT-B/32 choice: the MLP's second linear (torchvision's mlp.3)
    "bert": (["intermediate.dense"], None),
}


class TopoTarget(NamedTuple):
    """A matched layer: the module, its sheet shape ``(h, w, d)`` and, for a shared (gated) sheet,
    its gate partner (the module itself when fused)."""

    module: nn.Module
    shape: tuple[int, int, int]
    partner: nn.Module | None = None


def name_matches(name: str, pattern: str | list[str] | None) -> bool:
    """PEFT's rule: regex full match for a ``str``, exact or ``.suffix`` match for a list."""
    if pattern is None:
        return False
    if isinstance(pattern, str):
        return re.fullmatch(pattern, name) is not None
    return any(name == p or name.endswith("." + p) for p in pattern)


def topo_root(model: nn.Module) -> nn.Module:
    """The module whose dotted names targets and metadata use: a PEFT model's wrapped model
    (its child ``base_model`` with a child ``model``, i.e. names under ``base_model.model.``), else ``model``."""
    base = dict(model.named_children()).get("base_model")
    inner = dict(base.named_children()).get("model") if base is not None else None
    return inner if inner is not None else model


def with_family_defaults(model: nn.Module, config: TopoConfig) -> TopoConfig:
    """``config`` with ``target_modules`` (and ``shared_sheets``) filled from :data:`FAMILY_TARGETS`
    when ``target_modules`` is None; unchanged otherwise."""
    if config.target_modules is not None:
        return config
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILY_TARGETS:
        raise ValueError(
            f"TopoConfig(target_modules=None) picks the family's MLP, but {type(model).__name__} (model_type "
            f"{model_type!r}) has no default; families with one: {', '.join(sorted(FAMILY_TARGETS))}. Pass "
            f"target_modules=, e.g. one of its layers: {', '.join(example_layer_names(model))}"
        )
    targets, shared = FAMILY_TARGETS[model_type]
    filled = dataclasses.replace(config, target_modules=list(targets),
                                 shared_sheets=config.shared_sheets if config.shared_sheets is not None else shared)
    filled.sheets = config.sheets
    return filled


def _lora_layers(root: nn.Module) -> dict[str, str]:
    """``{name of a module inside a LoRA layer: the LoRA layer's name}``."""
    inside = {}
    for name, module in root.named_modules():
        if name and is_lora(module):
            inside.update({f"{name}.{child}": name for child, _ in module.named_modules() if child})
    return inside


def resolve_targets(model: nn.Module, config: TopoConfig) -> dict[str, TopoTarget]:
    """``{dotted name: TopoTarget}`` for every module the config selects, in model order.

    Raises ``ValueError`` for no match (listing some real layer names), for a match that is
    not Linear/Conv1D/Conv2d (or LoRA around one), for a gate partner that is missing or of
    another width, and for a sheet smaller than the blur factors.
    """
    config = with_family_defaults(model, config)
    root = topo_root(model)
    inside = _lora_layers(root)
    modules = dict(root.named_modules())
    targets: dict[str, TopoTarget] = {}
    for name in modules:
        if not name or name_matches(name, config.exclude_modules) or not name_matches(name, config.target_modules):
            continue
        name = inside.get(name, name)  # a part of a LoRA layer stands for the layer
        if name not in targets and not name_matches(name, config.exclude_modules):
            targets[name] = target_at(modules, name, config)
    if not targets:
        raise ValueError(
            f"target_modules {config.target_modules!r} (exclude_modules {config.exclude_modules!r}) matched no module "
            f"of {type(model).__name__}; some of its layers: {', '.join(example_layer_names(model))}"
        )
    return targets


def target_at(modules: dict[str, nn.Module], name: str, config: TopoConfig, check_fit: bool = True) -> TopoTarget:
    """The target ``name`` of ``modules`` (``dict(topo_root(model).named_modules())``), with its gate
    partner from ``config.shared_sheets`` (keyed by the target's leaf name) and its sheet shape
    (with ``check_fit``: checked against the blur factors)."""
    module = modules.get(name)
    if module is None or not is_supported(module):
        kind = "nothing" if module is None else layer_kind(module)
        raise ValueError(f"target_modules {config.target_modules!r} matched {name} of type {kind}; topographic layers "
                         "must be nn.Linear, transformers Conv1D or nn.Conv2d (or a PEFT LoRA/DoRA layer around one)")
    parent, _, leaf = name.rpartition(".")
    partner_leaf = (config.shared_sheets or {}).get(leaf)
    if partner_leaf is None:
        h, w, d = layer_sheet_shape(module, name)
    else:
        partner_name = f"{parent}.{partner_leaf}" if parent else partner_leaf
        partner = module if partner_leaf == leaf else modules.get(partner_name)
        if partner is None or not is_supported(partner):
            found = "nothing" if partner is None else layer_kind(partner)
            raise ValueError(f"shared_sheets pairs {name} with its gate {partner_name}, which is not a Linear/Conv1D/Conv2d "
                             f"layer (found {found}); shared_sheets maps a leaf name to a sibling's")
        n, d = _shared_rows_shape(module, partner, name)
        h, w = sheet_shape(n)
    if check_fit:
        check_sheet_fits(h, w, config.factor_h, config.factor_w, name)
    return TopoTarget(module, (h, w, d), partner if partner_leaf is not None else None)


def _shared_rows_shape(module: nn.Module, partner: nn.Module, name: str) -> tuple[int, int]:
    """``(n, d_gate + d_up)`` of a shared sheet, from the shapes alone (no weight data touched)."""
    h, w, d = layer_sheet_shape(module, name)
    if partner is module:
        if (h * w) % 2:
            raise ValueError(f"{name}: a fused gate/up layer needs an even number of rows, got {h * w}")
        return h * w // 2, 2 * d
    hp, wp, dp = layer_sheet_shape(partner, name)
    if hp * wp != h * w:
        raise ValueError(f"{name}: its gate has {hp * wp} units but it has {h * w}; they cannot share a sheet")
    return h * w, d + dp


def target_sheet(target: TopoTarget, name: str = "module") -> torch.Tensor:
    """The target's weight as its cortical sheet ``(h, w, d)`` (differentiable); a shared sheet
    holds ``[gate_u | up_u]`` per unit (:func:`hf_toponets.core.sheet.shared_unit_weight`)."""
    if target.partner is None:
        rows = unit_weight(target.module, name)
    else:
        rows = shared_unit_weight(target.module, target.partner, name)
    return to_sheet(rows, target.shape[:2])


def check_trainable(targets: dict[str, TopoTarget], where: str = "TopoTrainer") -> None:
    """``ValueError`` naming the targets whose weights (effective, gate included) have no trainable
    parameter: their TopoLoss would take no step (e.g. a PEFT model whose LoRA adapters sit elsewhere)."""
    frozen = [name for name, t in targets.items()
              if not any(p.requires_grad for m in (t.module, t.partner) if m is not None for p in m.parameters())]
    if frozen:
        raise ValueError(
            f"{where}: the topographic layers {frozen} have no trainable weight, so TopoLoss would not change them; "
            "give them LoRA adapters (LoraConfig(target_modules=[...]) naming them) or unfreeze them"
        )


def example_layer_names(model: nn.Module, limit: int = 6) -> list[str]:
    """A few distinct supported-layer names, by their last component, for error messages."""
    root = topo_root(model)
    inside = _lora_layers(root)
    seen: dict[str, str] = {}
    for name, module in root.named_modules():
        if name and name not in inside and is_supported(module):
            seen.setdefault(name.rsplit(".", 1)[-1], name)
    return list(seen.values())[:limit] or ["(none: the model has no Linear/Conv1D/Conv2d layer)"]
