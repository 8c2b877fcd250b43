"""Category-selectivity maps (the paper's Fig. 5A): each unit's t-value for each stimulus category, on the sheet.

A unit's response to an image is one number: its output averaged over positions (a ``Conv2d`` channel
over the ``H x W`` of its feature map, so spatial position is averaged out before any statistic; a
``Linear`` unit of a ViT over every token, the class token included). For category ``c`` with
responses ``R_c (n_c, units)`` and the pooled other categories ``R_o (n_o, units)``, the map is the
eq. 2 t-value of every unit (:func:`~hf_toponets.analysis.selectivity.selectivity`, Welch's t):

    t_c = (mu_c - mu_o) / sqrt(s_c^2 / n_c + s_o^2 / n_o)          (units,) -> (h, w) on the sheet

The smoothness of a map is its Moran's I over the sheet's 4-neighbour (rook) adjacency::

    I = (n / W) * sum_{i~j} z_i z_j / sum_i z_i^2,     z = t - mean(t),   W = number of ordered neighbour pairs

``I`` lies in about ``[-1, 1]``: near 1 for a map that varies slowly across the sheet (large
selective regions, the paper's point), about ``-1 / (n - 1)`` for a shuffled map, -1 for a
checkerboard; higher is smoother. Units with an undefined t (no variance in either
set) are left out of ``I``, blank on the map and ``null`` in JSON.

``selectivity.json`` (written by :func:`selectivity_maps`)::

    {"categories": {"<category>": n_images}, "response": "<how a unit's response is reduced>",
     "layers": {"<module>": {"sheet": [h, w, d], "map": "maps/<module>.png",
                             "smoothness": {"<category>": I}, "t": {"<category>": [[t, ...], ...]}}}}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.files import write_json_atomic
from ..core.sheet import layer_sheet_shape
from ..evaluation.image_folder import image_batches
from .activations import collect_responses
from .selectivity import selectivity
from .plots import plot_sheet_maps
from .report import analysis_layers

RESPONSE = "Conv2d: each channel's output averaged over the feature map's H x W; Linear: each unit's output averaged over tokens"


def category_t_values(responses: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """``(n_categories, units)`` t-values of each category against all the others pooled (eq. 2).

    ``responses (n, units)``: the rows of category 0 first (``counts[0]`` of them), then category 1, ...
    Each category needs >= 2 images, and so do the others together (for the variances).
    """
    if responses.ndim != 2 or sum(counts) != responses.shape[0] or len(counts) < 2:
        raise ValueError(f"category_t_values: responses {tuple(responses.shape)} must be (n, units) with n = sum(counts) "
                         f"= {sum(counts)} over >= 2 categories, got counts {list(counts)}")
    bounds = torch.tensor([0, *counts]).cumsum(0).tolist()
    rows = []
    for c in range(len(counts)):
        inside = torch.zeros(responses.shape[0], dtype=torch.bool)
        inside[bounds[c] : bounds[c + 1]] = True
        rows.append(selectivity(responses[inside], responses[~inside]))
    return torch.stack(rows)


def moran_i(values: torch.Tensor) -> float:
    """Moran's I of a map ``values (h, w)`` over 4-neighbour adjacency (nan cells left out); nan when
    fewer than two cells are finite, the finite cells are constant, or no two finite cells are neighbours.

    >>> round(moran_i(torch.tensor([[1.0, -1.0], [-1.0, 1.0]])), 6)  # a checkerboard
    -1.0
    """
    if values.ndim != 2:
        raise ValueError(f"moran_i: values must be a (h, w) map, got shape {tuple(values.shape)}")
    x = values.double()
    finite = x.isfinite()
    if int(finite.sum()) < 2:
        return math.nan
    z = torch.where(finite, x - x[finite].mean(), 0.0)
    denominator = float((z * z).sum())
    # each unordered neighbour pair once: right neighbours, then lower neighbours
    pairs = [(z[:, :-1] * z[:, 1:], finite[:, :-1] & finite[:, 1:]), (z[:-1] * z[1:], finite[:-1] & finite[1:])]
    n_pairs = sum(int(m.sum()) for _, m in pairs)
    if denominator == 0 or n_pairs == 0:
        return math.nan
    cross = sum(float(p[m].sum()) for p, m in pairs)
    return int(finite.sum()) * (2 * cross) / (2 * n_pairs * denominator)


def _json_map(t: torch.Tensor) -> list[list[float | None]]:
    return [[round(v, 6) if math.isfinite(v) else None for v in row] for row in t.tolist()]


def selectivity_maps(model: nn.Module, categories: Mapping[str, Sequence[Path]], processor, output_dir: str | os.PathLike,
                     layers: list[str] | None = None, batch_size: int = 32, progress: bool = True) -> dict:
    """Selectivity maps of ``layers`` (default: the model's topographic sheets, see
    :func:`~hf_toponets.analysis.report.analysis_layers`) for the images of ``categories``
    (``{name: paths}``, e.g. :func:`~hf_toponets.evaluation.image_folder.read_image_folder`), preprocessed
    by ``processor``. Writes ``output_dir/maps/<layer>.png`` (one panel per category) and
    ``output_dir/selectivity.json`` (schema in the module docstring); returns that dict."""
    small = [name for name, paths in categories.items() if len(paths) < 2]
    if len(categories) < 2 or small:
        raise ValueError(f"selectivity_maps: need >= 2 categories of >= 2 images each (for the variances); "
                         f"got {len(categories)} categories, too few images in {small}")
    modules = analysis_layers(model, layers)
    paths = [p for name in categories for p in categories[name]]
    batches = tqdm(image_batches(paths, processor, batch_size), total=math.ceil(len(paths) / batch_size),
                   desc="images", unit="batch", disable=not progress)
    responses = collect_responses(model, modules, batches)  # {layer: (n_images, units)}
    counts = [len(p) for p in categories.values()]
    out_dir = Path(output_dir)
    result = {"categories": dict(zip(categories, counts)), "response": RESPONSE, "layers": {}}
    for name, module in modules.items():
        h, w, d = layer_sheet_shape(module, name)
        t = category_t_values(responses[name], counts).reshape(len(counts), h, w)
        smooth = {c: moran_i(t[i]) for i, c in enumerate(categories)}
        map_file = f"maps/{name}.png"
        plot_sheet_maps({f"{c}  (Moran's I {smooth[c]:.2f})": t[i] for i, c in enumerate(categories)},
                        out_dir / map_file, label="t (category vs rest)", ncols=min(5, len(counts)))
        result["layers"][name] = {"sheet": [h, w, d], "map": map_file,
                                  "smoothness": {c: None if math.isnan(v) else v for c, v in smooth.items()},
                                  "t": {c: _json_map(t[i]) for i, c in enumerate(categories)}}
    write_json_atomic(out_dir / "selectivity.json", result)
    return result
