"""The paper's Fig. 4: performance against the fraction of ``c_fc`` parameters kept.

For each ``keep``, three ways to spend the same budget on the ``c_fc`` weights of ``L`` MLPs
(``n = h w`` units of fan-in ``d``, read by a ``c_proj`` with ``d_out`` outputs), with
``n' = h' w'`` the downsampled sheet's units (:func:`hf_toponets.conversion.downsample.downsampled_shape`):

- ``shrink``      a smaller model: ``total - L (n - n') (d + 1 + d_out)`` parameters;
- ``reconstruct`` the paper's measurement: ``L (n - n') (d + 1)`` fewer *stored* numbers
  (``c_fc`` kept as its small sheet and upsampled at load), same compute;
- ``prune``       ``torch.nn.utils.prune`` L1-unstructured on each ``c_fc`` weight with
  ``amount = 1 - n'/n`` (the kept fraction of downsampling itself, within 1% of ``1 - keep``):
  ``L (n - n') d`` weights zeroed, biases kept.

``mlp`` counts ``c_fc`` + ``c_proj`` likewise. Each variant gets held-out perplexity (lower is
better) and BLiMP accuracy (higher is better); the plot shows their change from the source model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..evaluation.blimp import evaluate_blimp
from ..evaluation.perplexity import perplexity
from ..conversion.downsample import count_parameters, downsample_model
from ..core.metadata import read_topo_config
from .plots import plot_sweep
from .pruning import l1_prune

METHODS = ("shrink", "reconstruct", "prune")
METRICS = ("perplexity", "blimp")


def parameter_budgets(base: Mapping[str, int], n_layers: int, n: int, n_small: int, d: int, d_out: int) -> dict:
    """``{method: {"total", "mlp"}}``: parameters (kept, stored or non-zero) of each method.

    >>> parameter_budgets({"total": 100, "mlp": 60}, n_layers=1, n=8, n_small=2, d=3, d_out=3)["shrink"]
    {'total': 58, 'mlp': 18}
    """
    cut = {
        "shrink": n_layers * (n - n_small) * (d + 1 + d_out),
        "reconstruct": n_layers * (n - n_small) * (d + 1),
        "prune": n_layers * (n - n_small) * d,
    }
    return {m: {"total": base["total"] - c, "mlp": base["mlp"] - c} for m, c in cut.items()}


def check_keeps(keeps: Sequence[float]) -> list[float]:
    values = [float(k) for k in keeps]
    if not values or any(not 0 < k <= 1 for k in values):
        raise ValueError(f"keep: give fractions in (0, 1], got {list(keeps)!r}")
    return sorted(set(values), reverse=True)


def sweep_model(
    model: nn.Module,
    keeps: Sequence[float],
    evaluate: Callable[[nn.Module], dict[str, float]],
    interpolation: str = "bilinear",
    targets=None,
) -> dict:
    """Evaluate the source and, for each ``keep``, its shrink, reconstruct and pruned variants.

    ``evaluate(model) -> {metric: value}`` (e.g. perplexity, BLiMP). Returns a JSON-ready dict:
    ``{"source", "sheet", "parameters", "metrics", "points": [{"keep", "sheet", "kept_fraction",
    "methods": {method: {"parameters": {"total", "mlp"}, "metrics": {...}}}}]}``. The source is
    left unchanged (pruning works on a copy).
    """
    base_counts, base_metrics = count_parameters(model), evaluate(model)
    points = []
    for keep in check_keeps(keeps):
        small = downsample_model(model, keep, "shrink", interpolation, targets)
        info = small.config.topo_downsample
        (h, w), (h2, w2) = info["source_sheet"], info["sheet"]
        sheets = read_topo_config(small).sheets
        d = next(iter(sheets.values()))[2]
        budgets = parameter_budgets(base_counts, len(sheets), h * w, h2 * w2, d, model.config.hidden_size)
        assert budgets["shrink"] == count_parameters(small), (budgets["shrink"], count_parameters(small))
        methods = {m: {"parameters": budgets[m], "metrics": dict(base_metrics)} for m in METHODS}
        if h2 * w2 < h * w:  # keep 1 is the identity: the source's metrics stand
            methods["shrink"]["metrics"] = evaluate(small)
            del small
            rebuilt = downsample_model(model, keep, "reconstruct", interpolation, targets)
            methods["reconstruct"]["metrics"] = evaluate(rebuilt)
            del rebuilt
            pruned = copy.deepcopy(model)
            l1_prune(pruned, list(sheets), 1 - h2 * w2 / (h * w), global_=False)
            methods["prune"]["metrics"] = evaluate(pruned)
            del pruned
        points.append({"keep": keep, "sheet": [h2, w2], "kept_fraction": h2 * w2 / (h * w), "methods": methods})
    return {"source": getattr(model, "name_or_path", "") or None, "sheet": [h, w], "parameters": base_counts,
            "metrics": base_metrics, "points": points}


def make_evaluate(tokenizer=None, input_ids: torch.Tensor | None = None, blimp_pairs=None, batch_size: int = 8):
    """``evaluate(model) -> {"perplexity": ..., "blimp": ...}`` over what is given: held-out
    ``input_ids (n, t)`` and/or BLiMP pairs from :func:`hf_toponets.evaluation.blimp_data.load_blimp` (overall accuracy)."""
    if input_ids is None and blimp_pairs is None:
        raise ValueError("the sweep needs held-out text (input_ids) and/or BLiMP pairs to evaluate")

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = {}
        if input_ids is not None:
            out["perplexity"] = perplexity(model, input_ids, batch_size)
        if blimp_pairs is not None:
            out["blimp"] = evaluate_blimp(model, tokenizer, blimp_pairs, progress=False)["overall"]
        return out

    return evaluate


def sweep_series(results: Mapping[str, dict], metric: str) -> dict[str, tuple[list[float], list[float]]]:
    """``{"<label> <method>": (kept fractions, metric - source's metric)}`` for plotting."""
    series = {}
    for label, result in results.items():
        if result["metrics"].get(metric) is None:
            continue
        for method in METHODS:
            x = [p["kept_fraction"] for p in result["points"]]
            y = [p["methods"][method]["metrics"][metric] - result["metrics"][metric] for p in result["points"]]
            series[f"{label} {method}"] = (x, y)
    return series


def plot_sweep_results(results: Mapping[str, dict], path) -> None:
    """One panel per metric present; colour = model (first in red, second black, ...), line style = method."""
    metrics = [m for m in METRICS if sweep_series(results, m)]
    if not metrics:
        raise ValueError("plot_sweep_results: no metric to plot; evaluate perplexity and/or BLiMP")
    colors = dict(zip(results, ("tab:red", "black", "tab:blue", "tab:green")))
    line = {"shrink": "-", "reconstruct": "--", "prune": ":"}
    panels, styles = {}, {}
    for metric in metrics:
        ylabel = f"change in {'perplexity (lower is better)' if metric == 'perplexity' else 'BLiMP accuracy'}"
        panels[ylabel] = sweep_series(results, metric)
        for name in panels[ylabel]:
            label, method = name.rsplit(" ", 1)
            styles[name] = (colors.get(label), line[method])
    plot_sweep(panels, path, "fraction of c_fc parameters kept", styles, invert_x=True)
