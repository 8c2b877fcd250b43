"""Where each family's MLP lives: the table of MLP layouts, and the rows that are its hidden units.

A transformer block's MLP reads ``x`` with an input projection ``fc`` (``n`` hidden units), applies
a nonlinearity and writes back with ``proj`` (``d_out x n``). A gated MLP computes
``proj(act(gate x) * fc x)``: hidden unit ``u`` owns row ``u`` of ``gate`` and of ``fc``
(``up_proj``); Phi-3 fuses both into one layer of ``2n`` rows, gate first (``chunk(2)``). Downsampling
resamples all of a unit's rows with one operator and composes ``proj`` with the upsampler.

>>> MLP_LAYOUTS["llama"]
MlpLayout(width='intermediate_size', fc='up_proj', proj='down_proj', gate='gate_proj')
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..core.sheet import fan_in, is_supported, n_units, unit_weight


class MlpLayout(NamedTuple):
    """One family's MLP, names relative to the block (dotted suffixes of module names)."""

    width: str | None  # the config field holding the MLP width; None: fixed by the architecture (no shrink)
    fc: str  # the input projection, whose output units are the MLP's hidden units
    proj: str  # the output projection, reading those units
    gate: str | None = None  # gated MLPs: the gate (a sibling of fc), or fc itself when fused [gate; up]


_GATED = MlpLayout("intermediate_size", "up_proj", "down_proj", "gate_proj")
# model_type -> its MLP; another family is one more row
MLP_LAYOUTS = {
    "gpt_neo": MlpLayout("intermediate_size", "c_fc", "c_proj"),
    "gpt2": MlpLayout("n_inner", "c_fc", "c_proj"),
    "gptj": MlpLayout("n_inner", "fc_in", "fc_out"),
    "opt": MlpLayout("ffn_dim", "fc1", "fc2"),
    "gpt_neox": MlpLayout("intermediate_size", "dense_h_to_4h", "dense_4h_to_h"),
    "falcon": MlpLayout("ffn_hidden_size", "dense_h_to_4h", "dense_4h_to_h"),
    "bloom": MlpLayout(None, "dense_h_to_4h", "dense_4h_to_h"),  # 4 * hidden_size, hard-coded
    "llama": _GATED,
    "mistral": _GATED,
    "qwen2": _GATED,
    "gemma": _GATED,
    "phi3": MlpLayout("intermediate_size", "gate_up_proj", "down_proj", "gate_up_proj"),
    "vit": MlpLayout("intermediate_size", "fc1", "fc2"),
    "bert": MlpLayout("intermediate_size", "intermediate.dense", "output.dense"),
}


class MlpNames(NamedTuple):
    """One block's MLP modules by full dotted name (``gate`` None when not gated, ``== fc`` when fused)."""

    fc: str
    proj: str
    gate: str | None


def mlp_layout(model: nn.Module) -> MlpLayout:
    """The model's row of :data:`MLP_LAYOUTS` (by ``config.model_type``); ``ValueError`` listing the table."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MLP_LAYOUTS:
        raise ValueError(
            f"downsample_model: model_type {model_type!r} of {type(model).__name__} has no MLP layout; "
            f"supported: {sorted(MLP_LAYOUTS)} (add a row to hf_toponets.conversion.downsample.MLP_LAYOUTS)"
        )
    return MLP_LAYOUTS[model_type]


def _block_names(name: str, layout: MlpLayout) -> MlpNames | None:
    """The MLP around input projection ``name``, or None when ``name`` is not a ``layout.fc``."""
    if name != layout.fc and not name.endswith("." + layout.fc):
        return None
    block = name[: len(name) - len(layout.fc)]  # "" or "...mlp."
    return MlpNames(name, block + layout.proj, None if layout.gate is None else block + layout.gate)


def mlp_names(model: nn.Module, layout: MlpLayout, targets) -> dict[str, MlpNames]:
    """``{target name: its MLP}``, checked: the target is the layout's ``fc`` and its ``proj`` (and ``gate``)
    read (and share) its hidden units."""
    modules = dict(model.named_modules())
    out = {}
    for name in targets:
        if name == layout.proj or name.endswith("." + layout.proj):  # e.g. the paper's ViT TopoNets, topographic in fc2
            raise ValueError(
                f"target {name} is its MLP's output projection '{layout.proj}': its units are the model's hidden size "
                f"(the residual stream), which downsampling cannot change; downsample the input projection's sheet "
                f"instead: targets=['{layout.fc}'] (CLI: --target-modules {layout.fc})"
            )
        names = _block_names(name, layout)
        proj = modules.get(names.proj) if names else None
        found = f"{type(proj).__name__ if proj is not None else 'nothing'} at {names.proj if names else layout.proj}"
        width = hidden_width(modules, names) if names and proj is not None and is_supported(proj) else None
        if width is None or fan_in(proj, names.proj) != width:
            raise ValueError(
                f"cannot find the output projection of target {name}: downsampling needs an MLP input "
                f"projection '{layout.fc}' whose sibling '{layout.proj}' reads its hidden units (found {found})"
            )
        out[name] = names
    return out


def hidden_width(modules: dict[str, nn.Module], names: MlpNames) -> int | None:
    """Number of hidden units of one MLP (None when the gate does not match its input projection)."""
    n = n_units(modules[names.fc], names.fc)
    if names.gate is None:
        return n
    if names.gate == names.fc:
        return n // 2 if n % 2 == 0 else None
    gate = modules.get(names.gate)
    return n if gate is not None and is_supported(gate) and n_units(gate, names.gate) == n else None


def hidden_unit_rows(modules: dict[str, nn.Module], names: MlpNames) -> list[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """The tensors whose rows are the MLP's ``n`` hidden units: ``[(module name, rows (n, d), bias (n,) or None)]``,
    gate first. A fused layer appears twice (its gate half, then its up half)."""
    fc = modules[names.fc]
    rows, bias = unit_weight(fc, names.fc), fc.bias
    if names.gate == names.fc:
        halves = bias.chunk(2) if bias is not None else (None, None)
        return [(names.fc, rows.chunk(2)[0], halves[0]), (names.fc, rows.chunk(2)[1], halves[1])]
    parts = [(names.fc, rows, bias)]
    if names.gate is not None:
        gate = modules[names.gate]
        parts.insert(0, (names.gate, unit_weight(gate, names.gate), gate.bias))
    return parts


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total": ..., "mlp": ...}``: all parameters (tied ones once) and those of every MLP's
    input, gate and output projections (GPT-2's ``attn.c_proj`` is not one)."""
    layout = mlp_layout(model)
    modules = dict(model.named_modules())
    mlp = 0
    for name in modules:
        names = _block_names(name, layout)
        if names is not None:
            parts = {names.fc, names.proj, names.gate} - {None}
            mlp += sum(p.numel() for part in parts for p in modules[part].parameters())
    return {"total": sum(p.numel() for p in model.parameters()), "mlp": mlp}
