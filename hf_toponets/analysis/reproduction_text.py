"""``report/README.md`` of a tau sweep: the figures and a table of every number in ``report.json``.

Pure rendering of the report dict that :func:`hf_toponets.analysis.reproduction.write_report` builds.
"""

from __future__ import annotations

from collections.abc import Sequence

from .reproduction import FIGURES, METHOD_LABELS, QUANTITIES
from .sweep import METHODS


def _num(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows), ""]


def _models_table(report: dict) -> list[str]:
    header = ["tau", "held-out ppl", "in-domain ppl", "BLiMP", "smooth. (weights)", "smooth. (act.)", "eff. dim", "TopoLoss"]
    rows = [[tau, _num(s["perplexity"], ".2f"), _num(s["in_domain_perplexity"], ".2f"), _num(s["blimp"]),
             _num(s["smoothness_weights"]), _num(s["smoothness_activations"]), _num(s["effective_dim"], ".2f"),
             _num(s["topo_loss"], ".4f")] for tau, s in report["summary"].items()]
    return _table(header, rows)


def _correlation_table(report: dict) -> list[str]:
    rows = [[QUANTITIES[c["y"]], QUANTITIES[c["x"]], _num(c["r"], "+.3f"), _num(c["p"], ".3g"), str(c["n"])]
            for c in report["correlations"].values()]
    return _table(["y", "x", "Pearson r", "p (two-sided)", "models"], rows)


def _layers_table(report: dict) -> list[str]:
    rows = []
    for tau, m in report["models"].items():
        for name, layer in m["analysis"]["layers"].items():
            rows.append([tau, f"`{name}`", "x".join(map(str, layer["sheet"])), _num(layer["smoothness_weights"]),
                         _num(layer["smoothness_activations"]), _num(layer["effective_dim"], ".2f")])
    return _table(["tau", "layer", "sheet", "smooth. (weights)", "smooth. (act.)", "eff. dim"], rows)


def _sweep_table(report: dict, metric: str) -> list[str]:
    """One row per (tau, method): the metric at each fraction kept, and its change from the intact model."""
    models = report["models"]
    first = next(iter(models.values()))["sweep"]
    if first["metrics"].get(metric) is None:
        return []
    fractions = [f"{p['kept_fraction']:.3f}" for p in first["points"]]
    rows = []
    for tau, m in models.items():
        base = m["sweep"]["metrics"][metric]
        for method in METHODS:
            cells = []
            for point in m["sweep"]["points"]:
                value = point["methods"][method]["metrics"][metric]
                change = f"{100 * (value - base) / base:+.1f}%" if metric == "perplexity" else f"{value - base:+.3f}"
                cells.append(f"{value:.3f} ({change})")
            rows.append([tau, METHOD_LABELS[method], *cells])
    return _table(["tau", "method", *(f"kept {f}" for f in fractions)], rows)


def _blimp_table(report: dict) -> list[str]:
    models = {tau: m["evaluate"]["blimp"] for tau, m in report["models"].items()}
    if any(b is None for b in models.values()) or not models:
        return []
    paradigms = sorted(next(iter(models.values()))["paradigms"])
    rows = [[f"`{uid}`", *(_num(b["paradigms"][uid]["accuracy"]) for b in models.values())] for uid in paradigms]
    rows.append(["**overall** (mean of paradigms)", *(_num(b["overall"]) for b in models.values())])
    return _table(["paradigm", *(f"tau={t}" for t in models)], rows)


def _windows_table(report: dict) -> list[str]:
    rows = []
    for tau, m in report["models"].items():
        for name, layer in m.get("windows", {"layers": {}})["layers"].items():
            med, smooth = layer["median"], layer["smoothness"]
            rows.append([tau, f"`{name}`", str(layer["n_excluded"]), *(_num(med[k]) for k in ("a", "b", "c", "r2", "yoking")),
                         " / ".join(_num(smooth[k], ".2f") for k in ("a", "b", "c", "yoking"))])
    header = ["tau", "layer", "excluded", "a", "b", "c", "R^2", "yoking", "map smoothness a / b / c / yoking"]
    return _table(header, rows) if rows else []


def _maps(report: dict) -> list[str]:
    """Links to each model's maps (paths relative to report/)."""
    lines = []
    for tau, m in report["models"].items():
        folder = "../" + m["analysis"]["folder"]
        links = [f"[{name.split('.')[-3] if name.count('.') >= 2 else name}]({folder}/{file})"
                 for name, file in m["analysis"]["maps"].items()]
        line = f"- tau={tau}: first principal component of the weights: " + ", ".join(links)
        if "windows" in m:
            line += "; integration windows: " + ", ".join(f"[{name.split('.')[-3] if name.count('.') >= 2 else name}]"
                                                          f"({folder}/{file})" for name, file in m["windows"]["maps"].items())
        lines.append(line)
    return [*lines, ""]


def _steps_table(report: dict) -> list[str]:
    rows = [[f"`{name}`", f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}"] for name, r in report["steps"].items()]
    total = [sum(r[k] for r in report["steps"].values()) for k in ("seconds", "cpu_seconds")]
    rows.append(["**total**", f"{total[0]:.1f}", f"{total[1]:.1f}"])
    return _table(["step", "wall s (when computed)", "CPU s (process time)"], rows)


def render_readme(report: dict) -> str:
    """The report's ``README.md``: how it was made, the figures, then every number."""
    d, h, s = report["description"], report["held_out"], report["settings"]
    lines = ["# TopoNets: the paper's language results at this scale", ""]
    if d.get("command"):
        lines += ["Regenerate (cached steps are reused):", "", "```bash", d["command"], "```", ""]
    lines += [f"- {key}: {value}" for key, value in d.items() if key != "command"]
    lines += [f"- tau: {', '.join(f'{t:g}' for t in s['taus'])} (same seed, data and steps; tau = 0 is the baseline)",
              f"- held-out English: {h['source']}: {h['documents']} documents in {h['blocks']} blocks of {h['block_size']} "
              f"tokens ({h['tokens']} tokens); " + ("not checked against the training corpus" if h["dropped_as_seen"] is None
                                                  else f"{h['dropped_as_seen']} candidates found verbatim in the training corpus were dropped"),
              f"- BLiMP: {len(report['blimp_paradigms'])} paradigm(s)" + (": " + ", ".join(report["blimp_paradigms"])
                                                                         if report["blimp_paradigms"] else " (no data given)"),
              "- one point per model: smoothness and effective dimensionality are means over its topographic layers", ""]
    captions = {"fig2b": "Fig. 2B: topography (smoothness) against task performance",
                "fig3": "Fig. 3: effective dimensionality against performance and against smoothness",
                "fig4": "Fig. 4: change in performance against the fraction of c_fc units kept"}
    for fig, file in FIGURES.items():
        if fig in report["figures"]:
            lines += [f"## {captions[fig]}", "", f"![{captions[fig]}]({file})", ""]
    lines += ["## Models", "", *_models_table(report), "## Correlations across the models", "", *_correlation_table(report),
              "## Layers", "", *_layers_table(report)]
    for metric, title in (("perplexity", "held-out perplexity"), ("blimp", "BLiMP accuracy")):
        table = _sweep_table(report, metric)
        if table:
            lines += [f"## Pruning and downsampling: {title} (change from the intact model)", "", *table]
    blimp = _blimp_table(report)
    if blimp:
        lines += ["## BLiMP by paradigm", "", *blimp]
    windows = _windows_table(report)
    if windows:
        lines += ["## Integration windows (Fig. 5B): medians over units, and how smooth their maps are", "", *windows]
    lines += ["## Maps", "", *_maps(report)]
    lines += ["## Cost of each step", "", *_steps_table(report)]
    return "\n".join(lines)
