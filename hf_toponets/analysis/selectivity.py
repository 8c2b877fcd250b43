"""Category selectivity of units (TopoNets eq. 2): Welch's t between responses to a target set of
stimuli and to the other sets. Pure torch."""

from __future__ import annotations

import torch

def selectivity(target: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Per-unit t-value (TopoNets eq. 2) of ``target (n_c, n_units)`` against ``other (n_o, n_units)``:

    ``t = (mu_c - mu_o) / sqrt(s_c^2 / n_c + s_o^2 / n_o)`` with sample variances ``s^2``
    (``n - 1``). Positive: the unit prefers the target set. nan where both sets have no variance.
    Returns ``(n_units,)`` float32.

    >>> selectivity(torch.tensor([[2.0], [4.0]]), torch.tensor([[0.0], [2.0]])).tolist()
    [1.4142135381698608]
    """
    if target.ndim != 2 or other.ndim != 2 or target.shape[1] != other.shape[1]:
        raise ValueError(
            f"selectivity: target and other must be (n_stimuli, n_units) with the same n_units, "
            f"got {tuple(target.shape)} and {tuple(other.shape)}"
        )
    if min(target.shape[0], other.shape[0]) < 2:
        raise ValueError(
            f"selectivity: each set needs >= 2 stimuli for a variance, got {target.shape[0]} target "
            f"and {other.shape[0]} other"
        )
    t, o = target.double(), other.double()
    den = (t.var(0) / t.shape[0] + o.var(0) / o.shape[0]).sqrt()
    return torch.where(den > 0, (t.mean(0) - o.mean(0)) / den, float("nan")).float()
