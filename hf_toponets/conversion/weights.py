"""Moving a source state dict onto a transformers model, key by key, with every mismatch a clear error.

Shared by the converters of published checkpoints (:mod:`.nanogpt`, :mod:`.vit`, :mod:`.resnet`): each
builds ``{target name: tensor}`` from the source keys, then :func:`load_weights` checks names and shapes
before anything is copied, as nanoGPT's ``GPT.from_pretrained`` does with one assert per tensor.
"""

from __future__ import annotations

import torch
from torch import nn

WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DataParallel / DistributedDataParallel


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``_orig_mod.`` / ``module.`` prefixes that compiled or DDP-wrapped models add to every key.

    >>> list(strip_prefixes({"_orig_mod.lm_head.weight": torch.zeros(1)}))
    ['lm_head.weight']
    """
    out = {}
    for key, value in state.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _listing(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_keys(state: dict[str, torch.Tensor], expected: set[str], fmt: str) -> None:
    """Raise ``ValueError`` unless ``state`` holds exactly the ``expected`` keys of a ``fmt`` checkpoint.

    Missing keys mean a truncated or different file; extra keys mean a layout the converter does not
    know (it would otherwise drop weights silently).
    """
    missing, extra = expected - set(state), set(state) - expected
    if missing:
        raise ValueError(f"convert_checkpoint: the {fmt} checkpoint is missing keys {_listing(missing)}; "
                         "is the file complete and of this format?")
    if extra:
        raise ValueError(f"convert_checkpoint: the {fmt} checkpoint has keys that fit no known {fmt} layout: "
                         f"{_listing(extra)}")


def load_weights(model: nn.Module, weights: dict[str, torch.Tensor], fmt: str) -> None:
    """Copy ``weights`` (``{model state-dict name: tensor}``) into ``model``; names and shapes must match exactly."""
    target = model.state_dict()
    check_keys(weights, set(target), f"{fmt} -> {type(model).__name__}")
    for name, tensor in weights.items():
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ValueError(f"convert_checkpoint: {fmt} weight for {name} has shape {tuple(tensor.shape)} but "
                             f"{type(model).__name__} needs {tuple(target[name].shape)}; the shapes fit no known layout")
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in weights.items()}, strict=True)


def count_indexed(state: dict[str, torch.Tensor], prefix: str, suffix: str) -> int:
    """Number of consecutive ``prefix{i}suffix`` keys from ``i = 0`` (blocks, layers, stages)."""
    n = 0
    while f"{prefix}{n}{suffix}" in state:
        n += 1
    return n
