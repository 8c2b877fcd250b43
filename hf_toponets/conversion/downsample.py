"""TopoNet -> a smaller model: resample each topographic MLP sheet to fewer units.

Written for GPT's ``c_fc -> act -> c_proj``; every family of :data:`MLP_LAYOUTS` (:mod:`.mlp`) is the
same with its own names. Each target ``c_fc`` has ``n = h * w`` units with fan-in rows ``W (n, d)`` and bias ``b (n,)``;
its MLP's output projection reads those units with ``P (d_out, n)`` (``c_proj`` as
``out x in``, whatever its storage, see :func:`hf_toponets.core.sheet.unit_weight`). Following the paper
(section 3.3 / Fig. 4B: "projecting [the layers] into the cortical space and then performing a
downsample operation along the height and width dimensions of the cortical sheet"), the sheet
``(h, w, d)`` and the bias sheet ``(h, w)`` are resized to ``(h', w')`` with
``F.interpolate(size=(h', w'), mode=interpolation)`` (``align_corners=False``, no antialias),
the ``f_down`` of the blur (Eq. 1) with the target size given explicitly. (Appendix A.5, which
details the paper's procedure, is not in the text we hold; the size rule of
:func:`downsampled_shape` is ours.)
Interpolation is separable and linear, so with the 1-D operators ``D_h (h', h)``, ``D_w (w', w)``
(down) and ``U_h (h, h')``, ``U_w (w, w')`` (up) of :func:`hf_toponets.core.resample.interpolation_matrix`, and row-major unit
order (unit ``r * w + c``)::

    D = D_h (x) D_w    (n', n)        U = U_h (x) U_w    (n, n')      (Kronecker products)
    W' = D W,  b' = D b                                  the small sheet, n' = h' * w'

(applied one axis at a time, :func:`resample_sheet`, never as dense ``n' x n`` matrices).

- ``reconstruct`` (the paper's measurement: n' d stored numbers, same architecture and compute):
  ``c_fc <- (U W', U b') = (U D W, U D b)``; ``c_proj`` unchanged.
- ``shrink`` (a genuinely smaller model, MLP width ``n'``): ``c_fc <- (W', b')`` and
  ``c_proj <- P' = P U`` ``(d_out, n')``, bias unchanged. The reconstructed MLP computes
  ``P act(U z')`` with ``z' = W' x + b'``; the shrunk one ``P U act(z')``. Nearest-neighbour
  ``U`` copies one small unit into each large unit (one 1 per row), so
  ``act(U z') = U act(z')`` and both models agree exactly; bilinear ``U`` mixes up to four
  neighbours, so they agree as far as ``act`` is linear over neighbouring units.

Gated MLPs (``P (act(G x) * (W x))``: LLaMA, Mistral, Qwen2, Gemma, Phi-3) resample the gate rows
``G`` and the up rows ``W`` (biases too) with the same ``D`` (one sheet, the unit's ``[g_u | w_u]``) and
compose ``P U`` likewise. Nearest ``U`` copies units, so ``act(U g') * (U w') = U (act(g') * w')``
and shrink == reconstruct exactly again; bilinear ``U`` mixes neighbours inside ``act`` *and* the
product, so the two differ more than for GPT (measured on tiny random models in the tests).

``(h', w')`` keeps the aspect: see :func:`downsampled_shape`. ``keep = 1`` gives the source
function back exactly. The result is a regular transformers model of the source's class whose
config carries the ``topo`` entry (new sheets) and ``topo_downsample`` (provenance).

>>> from transformers import GPTNeoConfig, GPTNeoForCausalLM
>>> model = GPTNeoForCausalLM(GPTNeoConfig(hidden_size=64, num_layers=2, num_heads=2, bos_token_id=0, eos_token_id=0,
...     attention_types=[[["global", "local"], 1]], vocab_size=100))
>>> small = downsample_model(model, keep=0.25, targets=["c_fc"])
>>> small.config.intermediate_size, small.config.topo_downsample["sheet"]
(64, [8, 8])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.config import TopoConfig
from ..core.metadata import attach_topo_config, read_topo_config, stored_targets
from ..core.resample import apply_axes, check_interpolation, interpolation_matrix
from ..core.sheet import sheet_shape, unit_weight
from ..core.targets import TopoTarget, resolve_targets, topo_root
from .mlp import MLP_LAYOUTS, MlpLayout, MlpNames, count_parameters, hidden_unit_rows, hidden_width, mlp_layout, mlp_names

MODES = ("shrink", "reconstruct")


def downsampled_shape(h: int, w: int, keep: float) -> tuple[int, int]:
    """The small sheet ``(h', w')`` for a ``h x w`` sheet keeping a fraction ``keep`` of its units.

    Each side is scaled by ``s = sqrt(keep)``. Among sides within ``r`` of ``(h s, w s)``
    (``floor``/``ceil`` first, ``r`` widened until one qualifies), take the sheet that is
    hf_toponets' own layout of its unit count (``sheet_shape(h' w') == (h', w')``, so the
    metadata and the loss see the small sheet as it was built) with ``h' w'`` closest to
    ``keep h w``, then the aspect closest to ``w / h``.

    >>> downsampled_shape(48, 64, 0.2)  # 616 units for a target of 614.4
    (22, 28)
    """
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep!r}")
    s = math.sqrt(keep)
    if min(h, w) * s < 0.5:
        raise ValueError(
            f"keep={keep} would shrink the {h} x {w} sheet to {h * s:.2f} x {w * s:.2f}: a side rounds "
            f"to zero units; use keep >= {(0.5 / min(h, w)) ** 2:.4g}"
        )
    target = keep * h * w
    for r in range(1, max(h, w) + 1):
        sides_h = range(max(1, math.floor(h * s) - r + 1), min(h, math.ceil(h * s) + r - 1) + 1)
        sides_w = range(max(1, math.floor(w * s) - r + 1), min(w, math.ceil(w * s) + r - 1) + 1)
        fits = [(a, b) for a in sides_h for b in sides_w if sheet_shape(a * b) == (a, b)]
        if fits:
            return min(fits, key=lambda ab: (abs(ab[0] * ab[1] - target), abs(math.log(ab[1] / ab[0] * h / w))))
    raise AssertionError("unreachable: (h, w) itself qualifies")


def resample_sheet(sheet: torch.Tensor, size: tuple[int, int], interpolation: str = "bilinear") -> torch.Tensor:
    """``(h, w, *rest)`` -> ``(h', w', *rest)``, float64: ``F.interpolate(size=size)`` on every channel.

    >>> x = torch.arange(4.0).reshape(2, 2, 1)
    >>> resample_sheet(x, (1, 1), "nearest").flatten().tolist()
    [0.0]
    """
    h, w = sheet.shape[:2]
    ops = (_resize(h, size[0], interpolation), _resize(w, size[1], interpolation))
    return apply_axes(sheet.double(), *(op.to(sheet.device) for op in ops))


def _resize(n_in: int, n_out: int, interpolation: str) -> torch.Tensor:
    """``(n_out, n_in)`` float64 resize along one axis (float64: these weights are composed into saved ones)."""
    return interpolation_matrix(n_in, interpolation, size=n_out, dtype=torch.float64)


def _select_targets(model: nn.Module, targets, layout: MlpLayout) -> tuple[dict[str, TopoTarget], TopoConfig]:
    """The target layers and the TopoConfig to carry over (the model's own, or one for ``targets``;
    a gated layout pairs gate and up on one sheet, as TopoConfig's family default does)."""
    if targets is not None:
        fc_leaf, gate_leaf = layout.fc.rpartition(".")[2], (layout.gate or "").rpartition(".")[2]
        config = TopoConfig(target_modules=targets, shared_sheets={fc_leaf: gate_leaf} if layout.gate else None)
        return resolve_targets(model, config), config
    config = read_topo_config(model)
    if config is None:
        raise ValueError(
            f"{type(model).__name__} has no 'topo' entry in its config (it was not trained or saved by "
            "hf_toponets); pass targets=, e.g. targets=['c_fc']"
        )
    return stored_targets(model, config), config


def _check_targets(model: nn.Module, targets: dict[str, TopoTarget], mlps: dict[str, MlpNames], layout: MlpLayout,
                   mode: str) -> tuple[int, int, int]:
    """The one sheet shape ``(h, w, d)`` the targets share, checked against their MLPs' hidden units."""
    shapes = {name: tuple(t.shape) for name, t in targets.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{n}: {list(s)}" for n, s in shapes.items())
        raise ValueError(f"target layers must share one sheet shape (a config has one MLP width); got {listing}")
    h, w, d = next(iter(shapes.values()))
    modules = dict(model.named_modules())
    name, names = next(iter(mlps.items()))
    n = hidden_width(modules, names)
    if h * w != n:
        raise ValueError(f"target {name}'s {h} x {w} sheet does not hold its MLP's {n} hidden units; a gated MLP's "
                         "gate and up projections must share one sheet (TopoConfig.shared_sheets)")
    n_mlps = sum(1 for name, _ in model.named_modules() if name == layout.fc or name.endswith("." + layout.fc))
    if mode == "shrink" and len(targets) != n_mlps:
        raise ValueError(
            f"mode='shrink' changes the MLP width of all {n_mlps} blocks, but targets cover {len(targets)} "
            f"'{layout.fc}' layers; target every '{layout.fc}' or use mode='reconstruct'"
        )
    if mode == "shrink" and layout.width is None:
        raise ValueError(f"mode='shrink' needs a config field for the MLP width, but {model.config.model_type}'s MLP is "
                         "fixed by the architecture (BLOOM: 4 * hidden_size); use mode='reconstruct'")
    return h, w, d


def _refuse_conv_sheets(model: nn.Module, targets) -> None:
    """``ValueError`` when a target is a Conv2d sheet: the paper (sec. 3.3) found that downsampling conv
    weights drops performance to 0, so convolutional TopoNets are measured by L1 pruning instead."""
    config = TopoConfig(target_modules=targets) if targets is not None else read_topo_config(model)
    if config is None:
        return  # _select_targets names the problem
    modules = dict(model.named_modules())
    names = resolve_targets(model, config) if targets is not None else config.sheets
    convs = [name for name in names if isinstance(modules.get(name), nn.Conv2d)]
    if convs:
        raise ValueError(
            f"downsample_model: {len(convs)} target(s) are Conv2d sheets ({', '.join(convs[:3])}{', ...' if len(convs) > 3 else ''}); "
            "downsampling convolution weights is not supported (the paper, sec. 3.3: it drops performance to 0); "
            "measure a convolutional TopoNet's efficiency with L1 pruning instead (hf-toponets sweep)"
        )


def downsample_model(model: nn.Module, keep: float = 0.2, mode: str = "shrink", interpolation: str = "bilinear", targets=None) -> nn.Module:
    """A new model whose target MLP sheets keep a fraction ``keep`` of their units.

    ``targets``: module names (a list, or a regex ``str``, PEFT rules); default: the sheets of
    the model's ``topo`` entry. ``mode``: ``"shrink"`` (MLP width ``h' w'``) or ``"reconstruct"``
    (same architecture). The source model is left untouched. Formulas in the module docstring.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_interpolation(interpolation, "downsample_model")
    _refuse_conv_sheets(model, targets)
    layout = mlp_layout(model)
    if topo_root(model) is not model:
        raise ValueError("downsample_model: merge the PEFT adapters first (model.merge_and_unload())")
    chosen, topo = _select_targets(model, targets, layout)
    mlps = mlp_names(model, layout, chosen)
    h, w, d = _check_targets(model, chosen, mlps, layout, mode)
    h_small, w_small = downsampled_shape(h, w, keep)
    modules = dict(model.named_modules())
    replaced = {}
    for names in mlps.values():
        replaced.update(_resample_mlp(modules, names, (h_small, w_small), interpolation, mode == "shrink"))
    sheet = (h_small, w_small, d) if mode == "shrink" else (h, w, d)
    new_model = _rebuild(model, {layout.width: h_small * w_small} if mode == "shrink" else {}, replaced)
    new_modules = dict(new_model.named_modules())
    new_targets = {name: TopoTarget(new_modules[name], sheet, None if t.partner is None else new_modules[mlps[name].gate])
                   for name, t in chosen.items()}
    attach_topo_config(new_model, topo, new_targets)
    new_model.config.topo_downsample = {
        "source": getattr(model, "name_or_path", "") or None,
        "keep": float(keep),
        "mode": mode,
        "interpolation": interpolation,
        "source_sheet": [h, w],
        "sheet": [h_small, w_small],
        "kept_fraction": h_small * w_small / (h * w),
    }
    return new_model


@torch.no_grad()
def _resample_mlp(modules: dict[str, nn.Module], names: MlpNames, size: tuple[int, int], interpolation: str,
                  shrink: bool) -> dict[str, tuple]:
    """``{module name: (unit rows, bias or None)}`` replacing one MLP's layers (float64).

    All rows of the hidden units (gate and up, with biases, as channels of one ``(h, w, C)`` sheet)
    are resampled together. Shrink: ``fc <- D [W b]`` and ``proj <- P U``; reconstruct: ``fc <- U D [W b]``.
    """
    parts = hidden_unit_rows(modules, names)  # [(name, rows (n, d), bias)], gate first
    n = parts[0][1].shape[0]
    h, w = sheet_shape(n)
    channels = [t for _, rows, bias in parts for t in (rows, bias[:, None] if bias is not None else None) if t is not None]
    small = resample_sheet(torch.cat(channels, 1).reshape(h, w, -1), size, interpolation)  # (h', w', C)
    units = (small if shrink else resample_sheet(small, (h, w), interpolation)).reshape(-1, small.shape[-1])
    out: dict[str, tuple] = {}
    col = 0
    for name, rows, bias in parts:  # split the channels back; a fused layer's halves join as [gate; up]
        new_rows, col = units[:, col : col + rows.shape[1]], col + rows.shape[1]
        new_bias = None if bias is None else units[:, col]
        col += bias is not None
        if name in out:
            old_rows, old_bias = out[name]
            new_rows = torch.cat([old_rows, new_rows])
            new_bias = None if bias is None else torch.cat([old_bias, new_bias])
        out[name] = (new_rows, new_bias)
    if shrink:  # P U = (U^T P^T)^T: the transposed 1-D operators act on P^T laid out as a (h, w, d_out) sheet
        p_t = unit_weight(modules[names.proj], names.proj).t().double().reshape(h, w, -1)
        ops = (_resize(size[0], h, interpolation).t(), _resize(size[1], w, interpolation).t())
        out[names.proj] = (apply_axes(p_t, *(op.to(p_t.device) for op in ops)).reshape(size[0] * size[1], -1).t(), None)
    return out


def _rebuild(model: nn.Module, config_changes: dict, replaced: dict) -> nn.Module:
    """A fresh ``type(model)`` of the source config with ``config_changes``; every tensor copied from
    the source or taken from ``replaced``, shapes asserted."""
    from transformers.initialization import no_init_weights  # every tensor is overwritten below

    data = {**model.config.to_dict(), **config_changes}
    data.pop("topo", None), data.pop("topo_downsample", None)  # rewritten by the caller
    param = next(model.parameters())
    with no_init_weights():
        new_model = type(model)(type(model.config).from_dict(data))
    new_model.tie_weights()  # no_init_weights skips the tying (lm_head <- wte)
    new_model.to(device=param.device, dtype=param.dtype).train(model.training)
    old = {**dict(model.named_parameters(remove_duplicate=False)), **dict(model.named_buffers())}
    new = {**dict(new_model.named_parameters(remove_duplicate=False)), **dict(new_model.named_buffers())}
    for name, (rows, bias) in replaced.items():
        new.pop(f"{name}.weight")
        if bias is not None:
            new.pop(f"{name}.bias")  # a None bias is kept: copied from the source with the rest
    modules = dict(new_model.named_modules())
    with torch.no_grad():
        for name, (rows, bias) in replaced.items():
            view = unit_weight(modules[name], name)  # writes through to the stored orientation (Conv1D: transposed)
            assert view.shape == rows.shape, (name, tuple(view.shape), tuple(rows.shape))
            view.copy_(rows)
            if bias is not None:
                assert modules[name].bias.shape == bias.shape, (name, tuple(bias.shape))
                modules[name].bias.copy_(bias)
        for key, tensor in new.items():
            assert key in old and tensor.shape == old[key].shape, (key, tuple(tensor.shape))
            tensor.copy_(old[key])
    return new_model


__all__ = ["MLP_LAYOUTS", "count_parameters", "downsample_model", "downsampled_shape", "resample_sheet"]
