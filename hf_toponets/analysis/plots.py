"""Topographic maps and curves as PNG files (matplotlib's Agg canvas; imported only when drawing).

Every function takes plain arrays / dicts (numpy arrays, CPU tensors or lists) and a path, and
writes the PNG atomically (a temporary file in the same folder, then ``os.replace``). No pyplot:
figures are built on a ``FigureCanvasAgg``, so no display and no global state are involved.

>>> import os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "map.png")
>>> plot_sheet_maps({"c_fc PC1": np.random.randn(6, 8)}, path)
>>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from ..core.files import atomic_path
from ..core.sheet import sheet_shape


def _figure(n_panels: int, ncols: int, panel_size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110, palette: bool = False) -> None:
    """Write ``fig`` as PNG to ``path`` atomically (parent folders are created). ``palette``: an
    adaptive 256-colour palette (Pillow, matplotlib's own dependency): line and scatter plots come out
    about 3x smaller with no visible change; not for colour maps."""
    with atomic_path(path) as tmp:
        if not palette:
            fig.savefig(tmp, format="png", dpi=dpi)
            return
        import io

        from PIL import Image

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        buffer.seek(0)
        Image.open(buffer).convert("RGB").quantize(colors=256).save(tmp, format="PNG", optimize=True)


def _as_sheet(values, name: str) -> np.ndarray:
    """``(h, w)`` float array; a flat ``(n,)`` one is laid out on :func:`sheet_shape`'s sheet."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(sheet_shape(arr.size))
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name}: a sheet map must be (n_units,) or (h, w), got shape {arr.shape}")
    return arr


def plot_sheet_maps(
    maps: Mapping[str, object],
    path: str | os.PathLike,
    cmap: str = "RdBu_r",
    label: str | None = None,
    symmetric: bool = True,
    ncols: int = 4,
) -> None:
    """One panel per ``{title: values}``, values ``(h, w)`` or ``(n_units,)`` (unit ``u`` at row
    ``u // w``); nan cells are blank. ``symmetric`` centres the colour scale on 0 (PC scores,
    t-values)."""
    if not maps:
        raise ValueError("plot_sheet_maps: maps is empty; give {title: values}")
    sheets = {title: _as_sheet(v, title) for title, v in maps.items()}
    fig, axes = _figure(len(sheets), ncols, (4.0, 3.2))
    for ax, (title, arr) in zip(axes, sheets.items()):
        finite = arr[np.isfinite(arr)]
        top = float(np.abs(finite).max()) if finite.size else 1.0
        limits = dict(vmin=-top, vmax=top) if symmetric else {}
        image = ax.imshow(np.ma.masked_invalid(arr), cmap=cmap, interpolation="nearest", **limits)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    save_figure(fig, path)


def plot_correlation_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    title: str = "Response correlation vs distance on the sheet",
) -> None:
    """One line per ``{label: (distances, mean correlations)}`` (empty bins as nan are skipped)."""
    if not curves:
        raise ValueError("plot_correlation_curves: curves is empty; give {label: (distances, correlations)}")
    fig, (ax,) = _figure(1, 1, (6.0, 4.0))
    for label, (dist, corr) in curves.items():
        x, y = np.asarray(dist, dtype=float), np.asarray(corr, dtype=float)
        keep = np.isfinite(y)
        ax.plot(x[keep], y[keep], marker="o", markersize=3, label=label)
    ax.set_xlabel("distance on the sheet (units)")
    ax.set_ylabel("mean pairwise correlation")
    ax.set_title(title, fontsize=10)
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.legend(fontsize=6, ncols=2 if len(curves) > 8 else 1)
    save_figure(fig, path)


def plot_sweep(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    path: str | os.PathLike,
    xlabel: str = "fraction of weights pruned",
    styles: Mapping[str, tuple[str | None, str]] | None = None,
    invert_x: bool = False,
    palette: bool = False,
) -> None:
    """Performance sweeps: one panel per ``{ylabel: {label: (x, y)}}``, one line per label, e.g.
    ``{"change in perplexity": {"tau=1": (sparsity, delta_perplexity)}}`` from
    :func:`hf_toponets.analysis.pruning.pruning_sweep`, or the shrink / reconstruct / prune lines of
    :func:`hf_toponets.analysis.sweep.plot_sweep_results`. ``styles``: ``{label: (colour, line style)}``
    (default: matplotlib's colours, solid lines); ``invert_x``: largest x on the left (fraction kept);
    ``palette``: see :func:`save_figure`.
    """
    if not panels or not all(panels.values()):
        raise ValueError("plot_sweep: panels is empty; give {ylabel: {label: (x, y)}}")
    fig, axes = _figure(len(panels), len(panels), (6.0, 4.0))
    for ax, (ylabel, series) in zip(axes, panels.items()):
        for label, (x, y) in series.items():
            x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
            if x.shape != y.shape:
                raise ValueError(f"plot_sweep: {label} has {x.size} x values but {y.size} y values")
            color, style = (styles or {}).get(label, (None, "-"))
            ax.plot(x, y, style, marker="o", color=color, label=label)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if invert_x:
            ax.invert_xaxis()
        ax.legend(fontsize=7)
    save_figure(fig, path, palette=palette)


class ScatterPanel(NamedTuple):
    """One scatter panel: a point per ``(x[i], y[i])``, annotated ``labels[i]``, coloured ``colors[i]``."""

    x: Sequence[float]
    y: Sequence[float]
    labels: Sequence[str]
    xlabel: str
    ylabel: str
    title: str = ""
    colors: Sequence[str] | None = None


def plot_scatter(panels: Sequence[ScatterPanel], path: str | os.PathLike, ncols: int = 3, palette: bool = False) -> None:
    """Scatter panels (e.g. one point per model: smoothness vs performance), each point labelled, with
    the least-squares line through the points when x varies (the trend a correlation measures);
    ``palette``: see :func:`save_figure`."""
    if not panels:
        raise ValueError("plot_scatter: panels is empty; give ScatterPanel(x, y, labels, xlabel, ylabel)")
    fig, axes = _figure(len(panels), ncols, (4.2, 3.6))
    for ax, panel in zip(axes, panels):
        x, y = np.asarray(panel.x, dtype=float), np.asarray(panel.y, dtype=float)
        if not (x.shape == y.shape == (len(panel.labels),)):
            raise ValueError(f"plot_scatter: {panel.ylabel} vs {panel.xlabel}: {x.size} x, {y.size} y, {len(panel.labels)} labels")
        if np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            ends = np.array([x.min(), x.max()])
            ax.plot(ends, slope * ends + intercept, "--", color="grey", linewidth=1)
        ax.scatter(x, y, c=list(panel.colors) if panel.colors else None, s=36, zorder=3)
        for xi, yi, label in zip(x, y, panel.labels):
            ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.set_title(panel.title, fontsize=9)
        ax.ticklabel_format(useOffset=False)
    save_figure(fig, path, palette=palette)
