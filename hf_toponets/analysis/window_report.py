"""``windows.json`` and the PNGs of the integration-window analysis (:mod:`.windows`).

``windows.json`` (read by the model-card writer)::

    {"layers": {"<module name>": {"sheet": [h, w], "a": [...], "b": [...], "c": [...], "r2": [...],
                                  "yoking": [...], "theta_median": [theta_norm[0], ..., theta_norm[max_delta]],
                                  "n_excluded": int, "smoothness": {"a": float | null, "b": ..., "c": ..., "yoking": ...}}},
     "max_delta": 20, "n_sequences": N,
     "maps": {"<module name>": "maps/windows_<module name>.png"}, "curves": "maps/windows_theta_median.png"}

Per-unit lists are in unit order, with null for excluded units (and for every unit's ``yoking``
without sentences). ``n_excluded``, ``smoothness``, ``maps`` and ``curves`` come on top of the
issue's schema. A map's **smoothness** is :func:`map_smoothness`. The PNGs sit under ``maps/`` beside
``analyze``'s, so that a model folder's card shows them and ``hf-toponets push`` publishes them.
"""

from __future__ import annotations

import math
import os

import torch

from ..core.files import write_json_atomic
from .smoothness import MAX_UNITS, correlation_curve, pair_correlations, sample_units
from .plots import plot_sheet_maps, plot_sweep
from .windows import LayerWindows

MAPS = {"a": "a: power-law exponent", "b": "b: exponential rate", "c": "c: power-law weight", "yoking": "yoking index"}
CURVES_FILE = "maps/windows_theta_median.png"


def map_smoothness(values: torch.Tensor, shape: tuple[int, int], max_units: int = MAX_UNITS, seed: int = 0) -> float | None:
    """Smoothness of a scalar map ``values (h * w,)`` on an ``(h, w)`` sheet (nan cells left out).

    TDANN's correlation-vs-distance curve (:func:`.smoothness.correlation_curve`) with, for a pair
    ``(i, j)``, the product ``z_i z_j`` of the standardised values ``z = (x - mean) / std`` in place
    of a response correlation: its mean at distance ``d`` is the map's spatial autocorrelation
    (correlogram). ``max - min`` of the binned curve: about 0 for a shuffled map, higher for a
    clustered one. ``None`` when fewer than 3 cells are finite or the map is constant.

    >>> col = torch.arange(64.0) % 8  # a gradient along each row of an 8 x 8 sheet
    >>> map_smoothness(col, (8, 8)) > map_smoothness(col[torch.randperm(64)], (8, 8))
    True
    """
    x = values.detach().double().flatten()
    if x.numel() != shape[0] * shape[1]:
        raise ValueError(f"map_smoothness: a sheet of shape {tuple(shape)} cannot hold {x.numel()} values")
    finite = torch.isfinite(x)
    if int(finite.sum()) < 3 or float(x[finite].std()) == 0.0:
        return None
    z = (x - x[finite].mean()) / x[finite].std()  # nan stays nan: its pairs are left out
    units = sample_units(x.numel(), max_units, seed)
    return correlation_curve(*pair_correlations(torch.outer(z[units], z[units]).float(), units, shape)).smoothness


def _unit_list(values: torch.Tensor) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.double().tolist()]


def write_windows(windows: dict[str, LayerWindows], output_dir: str | os.PathLike, n_sequences: int) -> dict:
    """Write ``windows.json``, one PNG of the ``a``, ``b``, ``c`` and yoking maps per layer and the
    median-window curves under ``output_dir``; return the JSON dict."""
    out_dir = os.fspath(output_dir)
    if not windows:
        raise ValueError("write_windows: windows is empty; give integration_windows' result")
    max_delta = next(iter(windows.values())).theta.shape[1] - 1
    result = {"layers": {}, "max_delta": max_delta, "n_sequences": n_sequences, "maps": {}, "curves": CURVES_FILE}
    curves = {}
    for name, w in windows.items():
        maps = {key: getattr(w, key) for key in MAPS if bool(torch.isfinite(getattr(w, key)).any())}  # no yoking
        theta_median = w.theta_median
        result["layers"][name] = {
            "sheet": list(w.sheet),
            **{key: _unit_list(getattr(w, key)) for key in ("a", "b", "c", "r2", "yoking")},
            "theta_median": _unit_list(theta_median),
            "n_excluded": int(w.excluded.sum()),
            "smoothness": {key: map_smoothness(getattr(w, key), w.sheet) for key in MAPS},
        }
        map_file = f"maps/windows_{name}.png"
        plot_sheet_maps({f"{name}\n{MAPS[k]}": v.reshape(w.sheet) for k, v in maps.items()},
                        os.path.join(out_dir, map_file), cmap="viridis", symmetric=False)
        result["maps"][name] = map_file
        curves[name] = (list(range(max_delta + 1)), theta_median.tolist())
    plot_sweep({"median over units of theta_norm[Delta]": curves}, os.path.join(out_dir, CURVES_FILE),
               xlabel="Delta (words from the swapped word back to the target)")
    write_json_atomic(os.path.join(out_dir, "windows.json"), result)
    return result
