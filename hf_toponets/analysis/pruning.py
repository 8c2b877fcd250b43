"""L1 unstructured pruning (``torch.nn.utils.prune``) and sweeps of performance (perplexity, top-1 accuracy) against sparsity.

TopoNets section 2.3 / Fig. 4A: set the smallest-magnitude ``n%`` of the weights to zero and
measure the change in performance. ``prune.L1Unstructured`` zeroes exactly
``round(amount * n_weights)`` weights (over all the named layers together with ``global_``,
else in each layer).

Pure torch: models are only called, never imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from ..evaluation.perplexity import perplexity


def check_sparsities(sparsities: Sequence[float]) -> list[float]:
    """The sparsities as floats; ``ValueError`` unless each lies in ``[0, 1)``."""
    values = [float(s) for s in sparsities]
    bad = [s for s in values if not (0.0 <= s < 1.0) or math.isnan(s)]
    if not values or bad:
        raise ValueError(f"sparsities must be a non-empty list of fractions in [0, 1), got {list(sparsities)!r}")
    return values


def _modules(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    found = dict(model.named_modules())
    missing = [n for n in names if n not in found or not isinstance(getattr(found[n], "weight", None), nn.Parameter)]
    if not names or missing:
        raise ValueError(
            f"names must list modules of {type(model).__name__} that have a weight; not found: {missing or '(empty list)'}"
        )
    return {n: found[n] for n in names}


def weight_sparsity(model: nn.Module, names: Sequence[str]) -> float:
    """Fraction of exactly-zero entries over the named modules' weights together."""
    weights = [m.weight for m in _modules(model, names).values()]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def l1_prune(model: nn.Module, names: Sequence[str], amount: float, global_: bool = True) -> dict[str, float]:
    """Zero the ``amount`` fraction of smallest-|w| weights of the named modules, **in place and
    permanently** (the pruning reparametrisation is removed). ``global_``: one threshold over all
    the named weights together (``prune.global_unstructured``); else each layer loses ``amount``
    of its own. Returns ``{name: fraction of zeros in its weight}``.

    >>> layer = nn.Linear(10, 10)
    >>> l1_prune(nn.Sequential(layer), ["0"], 0.3)["0"]
    0.3
    """
    (amount,) = check_sparsities([amount])
    modules = _modules(model, names)
    params = [(m, "weight") for m in modules.values()]
    if global_:
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for m, _ in params:
            prune.l1_unstructured(m, "weight", amount=amount)
    for m, _ in params:
        prune.remove(m, "weight")  # weight_orig's data becomes the pruned tensor; the Parameter stays
    return {n: int((m.weight == 0).sum()) / m.weight.numel() for n, m in modules.items()}


def pruning_sweep(
    model: nn.Module,
    names: Sequence[str],
    sparsities: Sequence[float],
    input_ids: torch.LongTensor | None = None,
    batch_size: int = 8,
    global_: bool = True,
    evaluate: Callable[[nn.Module], float] | None = None,
) -> dict[str, list[float]]:
    """Perplexity on held-out ``input_ids (n, t)`` after L1-pruning the named layers to each
    sparsity, as differences from the unpruned model; ``evaluate(model) -> float`` (e.g. a BLiMP
    or an image classifier's top-1 accuracy) is reported likewise; give either or both. The
    model's weights are restored after each level and on error: the caller's model is left as it came.

    Returns lists aligned with ``sparsities``: ``sparsity``, ``achieved_sparsity`` (zeros counted
    over the named weights) and, with ``input_ids``, ``perplexity`` and ``delta_perplexity``
    (pruned - unpruned); with ``evaluate``, ``score`` and ``delta_score``.
    """
    sparsities = check_sparsities(sparsities)
    if input_ids is None and evaluate is None:
        raise ValueError("pruning_sweep: give input_ids (for perplexity) and/or evaluate (model -> score)")
    modules = _modules(model, names)
    originals = {n: m.weight.detach().clone() for n, m in modules.items()}
    base_ppl = perplexity(model, input_ids, batch_size) if input_ids is not None else None
    base_score = evaluate(model) if evaluate is not None else None
    out: dict[str, list[float]] = {"sparsity": [], "achieved_sparsity": []}
    if input_ids is not None:
        out.update(perplexity=[], delta_perplexity=[])
    if evaluate is not None:
        out.update(score=[], delta_score=[])
    try:
        for s in sparsities:
            l1_prune(model, names, s, global_)
            out["sparsity"].append(s)
            out["achieved_sparsity"].append(weight_sparsity(model, names))
            if input_ids is not None:
                ppl = perplexity(model, input_ids, batch_size)
                out["perplexity"].append(ppl)
                out["delta_perplexity"].append(ppl - base_ppl)
            if evaluate is not None:
                score = float(evaluate(model))
                out["score"].append(score)
                out["delta_score"].append(score - base_score)
            _restore(modules, originals)
    finally:
        _restore(modules, originals)
    return out


@torch.no_grad()
def _restore(modules: dict[str, nn.Module], originals: dict[str, torch.Tensor]) -> None:
    for n, m in modules.items():
        m.weight.copy_(originals[n])
