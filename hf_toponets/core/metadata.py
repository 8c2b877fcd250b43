"""The ``topo`` entry of a model's ``config.json``: write it, read it back, check it fits the weights.

``model.config.topo`` holds :meth:`TopoConfig.to_dict` with ``sheets`` filled in
(``{module name: [h, w, d]}``) and the hf_toponets version. transformers keeps unknown config
attributes, so ``save_pretrained`` writes the entry into ``config.json`` and plain
``from_pretrained`` (no remote code) gives it back.
"""

from __future__ import annotations

from torch import nn

from .config import CONFIG_KEY, TopoConfig
from .sheet import is_supported, layer_sheet_shape
from .targets import TopoTarget, resolve_targets


def attach_topo_config(model: nn.Module, config: TopoConfig, targets: dict[str, TopoTarget] | None = None) -> TopoConfig:
    """Record ``config`` and each target's sheet shape in ``model.config.topo``; return the stored config."""
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


def check_topo_config(model: nn.Module, config: TopoConfig) -> None:
    """Raise ``ValueError`` unless every stored sheet names a supported layer of that shape."""
    if not config.sheets:
        raise ValueError(f"the '{CONFIG_KEY}' entry of {type(model).__name__}'s config lists no sheets")
    modules = dict(model.named_modules())
    for name, shape in config.sheets.items():
        module = modules.get(name)
        if module is None or not is_supported(module):
            raise ValueError(
                f"the '{CONFIG_KEY}' entry names {name}, which is not a Linear/Conv1D/Conv2d layer of "
                f"{type(model).__name__}; the metadata does not belong to these weights"
            )
        actual = list(layer_sheet_shape(module, name))
        if actual != list(shape):
            raise ValueError(
                f"the '{CONFIG_KEY}' entry gives {name} a sheet {shape} (h, w, d) but its weight "
                f"makes {actual}; the metadata does not belong to these weights"
            )
