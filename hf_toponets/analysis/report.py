"""``analyze``: every topographic measurement of a model's layers, written as ``metrics.json`` + PNGs.

``metrics.json`` (read by the model-card writer; the schema is fixed)::

    {"layers": {"<module name>": {"sheet": [h, w, d], "smoothness_weights": float,
                                  "smoothness_activations": float | null, "effective_dim": float | null}},
     "maps": {"<module name>": "maps/<file>.png"},
     "curves": "maps/<file>.png" | null,
     "n_samples": int | null}

``n_samples`` counts the sequences the activations were collected over (every token position is
one observation); without data only the data-free weight metrics are filled in.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from tqdm.auto import tqdm

from .activations import collect_activations
from ..core.config import TopoConfig
from ..core.files import write_json_atomic
from ..core.metadata import read_topo_config, stored_targets
from .dimensionality import check_samples, effective_dimensionality_from_covariance, leading_component
from .smoothness import covariance_smoothness_curve, smoothness_curve
from .plots import plot_correlation_curves, plot_sheet_maps
from ..core.sheet import layer_sheet_shape, n_units
from ..core.targets import TopoTarget, resolve_targets, target_sheet, topo_root

CURVES_FILE = "maps/correlation_vs_distance.png"


def analysis_layers(model: nn.Module, layers: list[str] | None = None) -> dict[str, nn.Module]:
    """The layers to measure: ``layers`` (exact names or ``.suffix``es, as ``target_modules``) or,
    by default, the sheets of the model's ``topo`` entry. With a ``topo`` entry, naming a layer
    outside it is an error; a model without one (a plain baseline) needs ``layers``."""
    topo = read_topo_config(model)
    if layers is None:
        if topo is None:
            raise ValueError(
                f"{type(model).__name__} has no 'topo' entry in its config (not saved by hf_toponets): "
                "name the layers to measure, e.g. --layers c_fc"
            )
        return {name: topo_root(model).get_submodule(name) for name in topo.sheets}
    targets = resolve_targets(model, TopoConfig(target_modules=list(layers)))
    if topo is not None:
        outside = [name for name in targets if name not in topo.sheets]
        if outside:
            raise ValueError(
                f"layers {outside} are not topographic in this model; its topographic layers are {list(topo.sheets)}"
            )
    return {name: t.module for name, t in targets.items()}


def analyze(
    model: nn.Module,
    output_dir: str | os.PathLike,
    layers: list[str] | None = None,
    input_ids: torch.LongTensor | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict:
    """Measure ``layers`` (see :func:`analysis_layers`), draw them and write ``metrics.json``
    under ``output_dir``; return the metrics dict. ``input_ids (n, t)``: held-out sequences for
    the activation metrics (smoothness and effective dimensionality of the layers' outputs)."""
    modules = analysis_layers(model, layers)
    topo = read_topo_config(model)
    sheets = stored_targets(model, topo) if topo is not None else {}  # a gated pair's sheet is [gate_u | up_u]
    acts = None
    if input_ids is not None:
        fused = [name for name in modules if name in sheets and sheets[name].partner is modules[name]]
        if fused:
            raise ValueError(f"activation metrics of fused gate/up layers {fused} are not supported (their outputs are "
                             "gate and up halves); measure the weights only (no data)")
        if input_ids.ndim != 2 or input_ids.numel() == 0:
            raise ValueError(f"input_ids must be a non-empty (n, t) tensor of token ids, got shape {tuple(input_ids.shape)}")
        for name, module in modules.items():  # fail before the forward passes, not after
            check_samples(input_ids.numel(), n_units(module, name))
        with tqdm(total=math.ceil(len(input_ids) / batch_size), desc="activations", unit="batch", disable=not progress) as bar:
            acts = collect_activations(model, modules, input_ids.split(batch_size), bar)
    out_dir = os.fspath(output_dir)
    result = {"layers": {}, "maps": {}, "curves": None, "n_samples": None if input_ids is None else len(input_ids)}
    curves = {}
    for name, module in tqdm(modules.items(), desc="layers", unit="layer", disable=not progress):
        target = sheets.get(name, TopoTarget(module, layer_sheet_shape(module, name)))
        h, w, d = target.shape
        rows = target_sheet(target, name).detach().reshape(h * w, d)
        weights = smoothness_curve(rows)
        entry = {"sheet": [h, w, d], "smoothness_weights": weights.smoothness,
                 "smoothness_activations": None, "effective_dim": None}
        curves[f"{name} (weights)"] = (weights.distances, weights.correlations)
        if acts is not None:
            a = acts[name]
            activations = covariance_smoothness_curve(a.cov, a.proj, (h, w))
            entry["smoothness_activations"] = activations.smoothness
            entry["effective_dim"] = effective_dimensionality_from_covariance(a.cov, a.n_rows, a.proj)
            curves[f"{name} (activations)"] = (activations.distances, activations.correlations)
        result["layers"][name] = entry
        map_file = f"maps/{name}.png"
        pc1 = leading_component(rows).reshape(h, w)
        plot_sheet_maps({f"{name}\n1st principal component of the weights": pc1}, os.path.join(out_dir, map_file))
        result["maps"][name] = map_file
    plot_correlation_curves(curves, os.path.join(out_dir, CURVES_FILE))
    result["curves"] = CURVES_FILE
    write_json_atomic(os.path.join(out_dir, "metrics.json"), result)
    return result
