"""TopoNet -> a smaller GPT: resample each topographic ``c_fc`` sheet to fewer units.

Each target ``c_fc`` has ``n = h * w`` units with fan-in rows ``W (n, d)`` and bias ``b (n,)``;
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
from ..core.resample import apply_axes, check_interpolation, interpolation_matrix
from ..core.metadata import attach_topo_config, read_topo_config
from ..core.sheet import is_supported, layer_sheet_shape, sheet_shape, unit_weight
from ..core.targets import TopoTarget, resolve_targets

MODES = ("shrink", "reconstruct")

# model_type -> (config field holding the MLP width, MLP input projection, its output projection).
# Another MLP family whose block reads `fc -> act -> proj` is one more row.
MLP_LAYOUTS = {
    "gpt_neo": ("intermediate_size", "c_fc", "c_proj"),
    "gpt2": ("n_inner", "c_fc", "c_proj"),
}


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


def _select_targets(model: nn.Module, targets) -> tuple[dict[str, TopoTarget], TopoConfig]:
    """The target layers and the TopoConfig to carry over (the model's own, or one for ``targets``)."""
    if targets is not None:
        config = TopoConfig(target_modules=targets)
        return resolve_targets(model, config), config
    config = read_topo_config(model)
    if config is None:
        raise ValueError(
            f"{type(model).__name__} has no 'topo' entry in its config (it was not trained or saved by "
            "hf_toponets); pass targets=, e.g. targets=['c_fc']"
        )
    modules = dict(model.named_modules())
    return {name: TopoTarget(modules[name], tuple(shape)) for name, shape in config.sheets.items()}, config


def _mlp_layout(model: nn.Module) -> tuple[str, str, str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MLP_LAYOUTS:
        raise ValueError(
            f"downsample_model: model_type {model_type!r} of {type(model).__name__} has no MLP layout; "
            f"supported: {sorted(MLP_LAYOUTS)} (add a row to hf_toponets.conversion.downsample.MLP_LAYOUTS)"
        )
    return MLP_LAYOUTS[model_type]


def _output_projections(model: nn.Module, targets: dict[str, TopoTarget], fc: str, proj: str) -> dict[str, str]:
    """``{target name: name of the projection that reads its units}``, checked."""
    modules = dict(model.named_modules())
    out = {}
    for name, target in targets.items():
        parent, _, leaf = name.rpartition(".")
        proj_name = f"{parent}.{proj}" if parent else proj
        module = modules.get(proj_name)
        if leaf != fc or module is None or not is_supported(module) or layer_sheet_shape(module, proj_name)[2] != target.shape[0] * target.shape[1]:
            raise ValueError(
                f"cannot find the output projection of target {name}: downsampling needs an MLP input "
                f"projection '{fc}' whose sibling '{proj}' reads its {target.shape[0] * target.shape[1]} units "
                f"(found {type(module).__name__ if module is not None else 'nothing'} at {proj_name})"
            )
        out[name] = proj_name
    return out


def _check_targets(model: nn.Module, targets: dict[str, TopoTarget], fc: str, mode: str) -> tuple[int, int, int]:
    shapes = {name: tuple(t.shape) for name, t in targets.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{n}: {list(s)}" for n, s in shapes.items())
        raise ValueError(f"target layers must share one sheet shape (a config has one MLP width); got {listing}")
    n_mlps = sum(1 for name, _ in model.named_modules() if name.rpartition(".")[2] == fc)
    if mode == "shrink" and len(targets) != n_mlps:
        raise ValueError(
            f"mode='shrink' changes the MLP width of all {n_mlps} blocks, but targets cover {len(targets)} "
            f"'{fc}' layers; target every '{fc}' or use mode='reconstruct'"
        )
    return next(iter(shapes.values()))


def downsample_model(model: nn.Module, keep: float = 0.2, mode: str = "shrink", interpolation: str = "bilinear", targets=None) -> nn.Module:
    """A new model whose target ``c_fc`` sheets keep a fraction ``keep`` of their units.

    ``targets``: module names (a list, or a regex ``str``, PEFT rules); default: the sheets of
    the model's ``topo`` entry. ``mode``: ``"shrink"`` (MLP width ``h' w'``) or ``"reconstruct"``
    (same architecture). The source model is left untouched. Formulas in the module docstring.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_interpolation(interpolation, "downsample_model")
    width_field, fc, proj = _mlp_layout(model)
    chosen, topo = _select_targets(model, targets)
    projections = _output_projections(model, chosen, fc, proj)
    h, w, d = _check_targets(model, chosen, fc, mode)
    h_small, w_small = downsampled_shape(h, w, keep)
    modules = dict(model.named_modules())
    replaced = {}
    for name, target in chosen.items():
        proj_module = modules[projections[name]] if mode == "shrink" else None
        replaced.update(_resample_mlp(name, target.module, projections[name], proj_module, (h_small, w_small), interpolation))
    sheet = (h_small, w_small, d) if mode == "shrink" else (h, w, d)
    new_model = _rebuild(model, {width_field: h_small * w_small} if mode == "shrink" else {}, replaced)
    new_modules = dict(new_model.named_modules())
    attach_topo_config(new_model, topo, {name: TopoTarget(new_modules[name], sheet) for name in chosen})
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
def _resample_mlp(fc_name, fc, proj_name, proj, size, interpolation) -> dict[str, tuple]:
    """``{module name: (unit rows, bias or None)}`` replacing one MLP's layers (float64).

    ``proj`` given (shrink): ``c_fc <- D [W b]`` and ``c_proj <- P U``. ``proj`` None
    (reconstruct): ``c_fc <- U D [W b]``.
    """
    rows = unit_weight(fc, fc_name)  # (n, d)
    n, d = rows.shape
    h, w = sheet_shape(n)
    has_bias = fc.bias is not None
    sheet = torch.cat([rows, fc.bias[:, None]], 1) if has_bias else rows  # bias as one more channel
    small = resample_sheet(sheet.reshape(h, w, -1), size, interpolation)  # (h', w', d [+1])
    if proj is None:
        full = resample_sheet(small, (h, w), interpolation).reshape(n, -1)
        return {fc_name: (full[:, :d], full[:, d] if has_bias else None)}
    small = small.reshape(size[0] * size[1], -1)
    # P U = (U^T P^T)^T: the transposed 1-D operators act on P^T laid out as a (h, w, d_out) sheet
    p_t = unit_weight(proj, proj_name).t().double().reshape(h, w, -1)
    ops = (_resize(size[0], h, interpolation).t(), _resize(size[1], w, interpolation).t())
    proj_rows = apply_axes(p_t, *(op.to(p_t.device) for op in ops)).reshape(size[0] * size[1], -1).t()  # (d_out, n')
    return {fc_name: (small[:, :d], small[:, d] if has_bias else None), proj_name: (proj_rows, None)}


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


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total": ..., "mlp": ...}``: all parameters (tied ones once) and those of every MLP's
    input and output projection (``c_fc`` + its sibling ``c_proj``; GPT-2's ``attn.c_proj`` is not one)."""
    _, fc, proj = _mlp_layout(model)
    modules = dict(model.named_modules())
    mlp = 0
    for name, module in modules.items():
        parent, _, leaf = name.rpartition(".")
        if leaf == fc:
            sibling = modules[f"{parent}.{proj}" if parent else proj]
            mlp += sum(p.numel() for p in (*module.parameters(), *sibling.parameters()))
    return {"total": sum(p.numel() for p in model.parameters()), "mlp": mlp}


__all__ = ["MLP_LAYOUTS", "count_parameters", "downsample_model", "downsampled_shape", "resample_sheet"]
