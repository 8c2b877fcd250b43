"""The ``topo`` entry of a model's ``config.json``: write it, read it back, check it fits the weights.

``model.config.topo`` holds :meth:`TopoConfig.to_dict` with ``sheets`` filled in
(``{module name: [h, w, d]}``), ``target_modules`` / ``shared_sheets`` as resolved (a family default
written out) and the hf_toponets version. transformers keeps unknown config attributes, so
``save_pretrained`` writes the entry into ``config.json`` and plain ``from_pretrained`` (no remote
code) gives it back. A ``PeftModel`` shares its base model's config, so the entry survives
``merge_and_unload``; module names are the base model's (:func:`hf_toponets.core.targets.topo_root`).
"""

from __future__ import annotations

from torch import nn

from .config import CONFIG_KEY, TopoConfig
from .targets import TopoTarget, resolve_targets, target_at, topo_root, with_family_defaults


def attach_topo_config(model: nn.Module, config: TopoConfig, targets: dict[str, TopoTarget] | None = None) -> TopoConfig:
    """Record ``config`` and each target's sheet shape in ``model.config.topo``; return the stored config."""
    config = with_family_defaults(model, config)
    targets = resolve_targets(model, config) if targets is None else targets
    stored = config.with_sheets({name: list(t.shape) for name, t in targets.items()})
    model.config.topo = stored.to_dict()  # plain JSON types, written by save_pretrained
    return stored


def read_topo_config(model: nn.Module, check: bool = True) -> TopoConfig | None:
    """The model's stored TopoConfig, or ``None`` when its config has no ``topo`` entry.

    With ``check``, raises ``ValueError`` when the stored sheets do not fit the weights.
    """
    data = getattr(getattr(model, "config", None), CONFIG_KEY, None)
    if data is None:
        return None
    config = TopoConfig.from_dict(data)
    if check:
        check_topo_config(model, config)
    return config


def stored_targets(model: nn.Module, config: TopoConfig) -> dict[str, TopoTarget]:
    """``{name: TopoTarget}`` of the sheets a stored config names (with their gate partners)."""
    modules = dict(topo_root(model).named_modules())
    return {name: target_at(modules, name, config, check_fit=False) for name in config.sheets or {}}


def check_topo_config(model: nn.Module, config: TopoConfig) -> None:
    """Raise ``ValueError`` unless every stored sheet names a supported layer (or gated pair) of that shape."""
    if not config.sheets:
        raise ValueError(f"the '{CONFIG_KEY}' entry of {type(model).__name__}'s config lists no sheets")
    modules = dict(topo_root(model).named_modules())
    for name, shape in config.sheets.items():
        try:
            actual = list(target_at(modules, name, config, check_fit=False).shape)
        except ValueError as err:
            raise ValueError(
                f"the '{CONFIG_KEY}' entry names {name}, which is not a Linear/Conv1D/Conv2d layer (or gated pair) of "
                f"{type(model).__name__}; the metadata does not belong to these weights ({err})"
            ) from None
        if actual != list(shape):
            raise ValueError(
                f"the '{CONFIG_KEY}' entry gives {name} a sheet {shape} (h, w, d) but its weight "
                f"makes {actual}; the metadata does not belong to these weights"
            )
