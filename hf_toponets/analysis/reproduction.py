"""The paper's language figures from a tau sweep's measurements: Fig. 2B, Fig. 3, Fig. 4, a table of
every number (``README.md``) and ``report.json``.

Input: ``models = {tau: {"train": {...}, "evaluate": {"perplexity", "blimp"}, "analysis": analyze()'s
metrics, "sweep": sweep_model()'s result, "folder": ...}}``, as
:func:`hf_toponets.training.reproduce.run_reproduction` collects them. Each model is one point: its
smoothness and effective dimensionality are the means over its topographic layers, as in the paper.

- Fig. 2B: smoothness (weights, activations) against task performance (held-out perplexity, BLiMP);
- Fig. 3: effective dimensionality against performance and against smoothness, with Pearson's r and
  its two-sided p-value (:func:`hf_toponets.analysis.correlation.pearson`, t distribution, n - 2 df);
- Fig. 4: change in held-out perplexity against the fraction of ``c_fc`` units kept, one panel per
  method (L1 pruning, ``shrink``, ``reconstruct``), TopoNets in colour, the tau = 0 baseline in black.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from statistics import fmean

from ..core.files import write_json_atomic, write_text_atomic
from .correlation import pearson
from .plots import ScatterPanel, plot_scatter, plot_sweep
from .sweep import METHODS, sweep_series

QUANTITIES = {  # summary key -> axis label
    "perplexity": "held-out perplexity (lower is better)",
    "blimp": "BLiMP accuracy (higher is better)",
    "smoothness_weights": "smoothness of the weights",
    "smoothness_activations": "smoothness of the activations",
    "effective_dim": "effective dimensionality",
}
FIG2B = [(x, y) for y in ("perplexity", "blimp") for x in ("smoothness_weights", "smoothness_activations")]
FIG3 = [("perplexity", "effective_dim"), ("blimp", "effective_dim"),
        ("smoothness_weights", "effective_dim"), ("smoothness_activations", "effective_dim")]
FIGURES = {"fig2b": "fig2b_smoothness_vs_performance.png", "fig3": "fig3_dimensionality.png",
           "fig4": "fig4_compression.png"}
METHOD_LABELS = {"prune": "L1 pruning", "shrink": "downsampled (shrink)", "reconstruct": "downsampled (reconstruct)"}
PALETTE = ("tab:orange", "tab:red", "tab:purple", "tab:blue", "tab:green", "tab:brown", "tab:pink", "tab:olive")


def tau_label(tau: float) -> str:
    return f"tau={tau:g}"


def tau_colors(taus) -> dict[float, str]:
    """The baseline (tau = 0) black, TopoNets in colour by increasing tau."""
    topo = [t for t in sorted(taus) if t != 0]
    return {**{t: PALETTE[i % len(PALETTE)] for i, t in enumerate(topo)}, **({0.0: "black"} if 0 in taus else {})}


def _layer_mean(layers: Mapping[str, dict], key: str) -> float | None:
    values = [entry[key] for entry in layers.values()]
    return fmean(values) if values and all(v is not None for v in values) else None


def summarize(models: Mapping[float, dict]) -> dict[float, dict]:
    """``{tau: {quantity: value or None}}``: one point per model (layer means for the topography)."""
    out = {}
    for tau, m in sorted(models.items()):
        layers, blimp = m["analysis"]["layers"], m["evaluate"]["blimp"]
        out[tau] = {"perplexity": m["evaluate"]["perplexity"], "blimp": None if blimp is None else blimp["overall"],
                    **{k: _layer_mean(layers, k) for k in ("smoothness_weights", "smoothness_activations", "effective_dim")},
                    "in_domain_perplexity": m["train"].get("eval_perplexity"), "topo_loss": m["evaluate"].get("topo_loss")}
    return out


def correlations(summary: Mapping[float, dict]) -> dict[str, dict]:
    """``{"<y>_vs_<x>": {"x", "y", "r", "p", "n"}}`` across the models, for every pair of Fig. 2B and 3 whose
    values exist for all of them (``p`` None below 3 models or for a constant quantity)."""
    out = {}
    for x, y in FIG2B + FIG3:
        xs, ys = [s[x] for s in summary.values()], [s[y] for s in summary.values()]
        if any(v is None for v in xs + ys):
            continue
        c = pearson(xs, ys)
        out[f"{y}_vs_{x}"] = {"x": x, "y": y, "r": None if math.isnan(c.r) else c.r,
                              "p": None if math.isnan(c.p) else c.p, "n": c.n}
    return out


def _stat(c: dict) -> str:
    r = "nan" if c["r"] is None else f"{c['r']:+.2f}"
    return f"r = {r}, p = {'n/a' if c['p'] is None else format(c['p'], '.3g')} (n = {c['n']})"


def scatter_panels(summary: Mapping[float, dict], corr: Mapping[str, dict], pairs) -> list[ScatterPanel]:
    """The panels of Fig. 2B or 3 (``pairs`` = FIG2B or FIG3): one point per model, x and y from ``summary``."""
    colors = tau_colors(summary)
    panels = []
    for x, y in pairs:
        c = corr.get(f"{y}_vs_{x}")
        if c is None:
            continue
        taus = list(summary)
        panels.append(ScatterPanel([summary[t][x] for t in taus], [summary[t][y] for t in taus],
                                   [tau_label(t) for t in taus], QUANTITIES[x], QUANTITIES[y], _stat(c),
                                   [colors[t] for t in taus]))
    return panels


def fig4_panels(models: Mapping[float, dict]) -> tuple[dict, dict]:
    """``(panels, styles)`` for :func:`plot_sweep`: one panel per method and metric swept,
    ``{tau label: (fraction kept, metric - the model's own unpruned metric)}`` from :func:`sweep_series`."""
    colors = tau_colors(models)
    panels, styles = {}, {}
    for metric, name in (("perplexity", "perplexity"), ("blimp", "BLiMP")):
        series = sweep_series({tau_label(t): m["sweep"] for t, m in sorted(models.items())}, metric)
        for method in METHODS:
            lines = {label.rsplit(" ", 1)[0]: xy for label, xy in series.items() if label.endswith(f" {method}")}
            if lines:
                panels[f"change in {name}, {METHOD_LABELS[method]}"] = lines
    for t in models:
        styles[tau_label(t)] = (colors[t], "-" if t != 0 else "--")
    return panels, styles


def write_report(models: Mapping[float, dict], run: dict, report_dir: str | Path) -> dict:
    """Draw the figures, write ``report.json`` and ``README.md`` under ``report_dir``; return the report."""
    from .reproduction_text import render_readme

    report_dir = Path(report_dir)
    summary = summarize(models)
    corr = correlations(summary)
    figures = {}
    for fig, pairs in (("fig2b", FIG2B), ("fig3", FIG3)):
        panels = scatter_panels(summary, corr, pairs)
        if panels:
            plot_scatter(panels, report_dir / FIGURES[fig], ncols=2, palette=True)
            figures[fig] = FIGURES[fig]
    panels, styles = fig4_panels(models)
    plot_sweep(panels, report_dir / FIGURES["fig4"], "fraction of c_fc units kept", styles, invert_x=True, palette=True)
    figures["fig4"] = FIGURES["fig4"]
    report = {**run, "summary": {f"{t:g}": s for t, s in summary.items()}, "correlations": corr, "figures": figures,
              "models": {f"{t:g}": m for t, m in sorted(models.items())}}
    write_json_atomic(report_dir / "report.json", report)
    write_text_atomic(report_dir / "README.md", render_readme(report))
    return report
