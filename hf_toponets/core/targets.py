"""``target_modules`` / ``exclude_modules`` -> the model's topographic layers, with PEFT's semantics.

A ``str`` is a regex that must match the whole dotted module name (``re.fullmatch``); a ``list``
matches a name exactly or as a ``.suffix`` (``"c_fc"`` matches ``transformer.h.0.mlp.c_fc``).
Exclusions are applied first. Zero matches is an error that lists real module names.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from torch import nn

from .config import TopoConfig
from .sheet import check_sheet_fits, is_supported, layer_sheet_shape


class TopoTarget(NamedTuple):
    """A matched layer: the module itself and its sheet shape ``(h, w, d)``."""

    module: nn.Module
    shape: tuple[int, int, int]


def name_matches(name: str, pattern: str | list[str] | None) -> bool:
    """PEFT's rule: regex full match for a ``str``, exact or ``.suffix`` match for a list."""
    if pattern is None:
        return False
    if isinstance(pattern, str):
        return re.fullmatch(pattern, name) is not None
    return any(name == p or name.endswith("." + p) for p in pattern)


def resolve_targets(model: nn.Module, config: TopoConfig) -> dict[str, TopoTarget]:
    """``{dotted name: TopoTarget}`` for every module the config selects, in model order.

    Raises ``ValueError`` for no match (listing some real layer names), for a match that is
    not Linear/Conv1D/Conv2d, and for a sheet smaller than the blur factors.
    """
    targets: dict[str, TopoTarget] = {}
    for name, module in model.named_modules():
        if not name or name_matches(name, config.exclude_modules) or not name_matches(name, config.target_modules):
            continue
        if not is_supported(module):
            raise ValueError(
                f"target_modules {config.target_modules!r} matched {name} of type {type(module).__name__}; "
                "topographic layers must be nn.Linear, transformers Conv1D or nn.Conv2d"
            )
        shape = layer_sheet_shape(module, name)
        check_sheet_fits(shape[0], shape[1], config.factor_h, config.factor_w, name)
        targets[name] = TopoTarget(module, shape)
    if not targets:
        raise ValueError(
            f"target_modules {config.target_modules!r} (exclude_modules {config.exclude_modules!r}) matched no module "
            f"of {type(model).__name__}; some of its layers: {', '.join(example_layer_names(model))}"
        )
    return targets


def example_layer_names(model: nn.Module, limit: int = 6) -> list[str]:
    """A few distinct supported-layer names, by their last component, for error messages."""
    seen: dict[str, str] = {}
    for name, module in model.named_modules():
        if name and is_supported(module):
            seen.setdefault(name.rsplit(".", 1)[-1], name)
    return list(seen.values())[:limit] or ["(none: the model has no Linear/Conv1D/Conv2d layer)"]
