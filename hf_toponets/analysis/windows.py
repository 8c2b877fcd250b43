"""Temporal integration windows of a language model's units: the TopoNets paper's Fig. 5B.

The word-swap method of Skrill & Norman-Haignere (NeurIPS 2023; TopoNets section "Temporal window
analyses", eq. 3). For every sequence of ``L`` words (see :mod:`.word_swap`) the model runs the
original and the ``L`` copies with one word swapped, and each unit's response ``r_u(t)`` to word
``t`` (its tokens' mean) gives

    S[Delta, t, u] = sum over sequences |r_u(t; word t - Delta swapped) - r_u(t; original)|

accumulated sequence by sequence in forward hooks, ``(Delta_max + 1, L, n_units)`` per layer:
activations are never stored beyond one forward batch. Then (``D = S / n_sequences``):

- ``theta_t[Delta] = D[Delta, t] / D[0, t]`` for targets ``t = max_delta .. L - 1`` (every
  ``Delta <= max_delta`` in range); ``theta_norm[Delta]`` = its median over targets (a target
  with ``D[0, t] = 0`` left out), fitted by eq. 3 (:func:`.window_fit.fit_windows`).
- a **dead unit**, whose median ``D[0, t]`` is at most ``dead_tol`` times the layer's median,
  is excluded (nan; counted in ``n_excluded``).
- **yoking index** (sequences of ``sentence_length``-word sentences): at each sentence start
  ``b`` after the first, ``mean_{k = 0 .. sentence_length - 2} (D[k, b + k] - D[k, b - 1 + k])``,
  divided by the unit's median ``D[0, t]`` over all ``t``, then averaged over the starts
  (the authors' first-order difference at the boundary): a swap of a sentence's first word against
  one of the previous sentence's last word, at matched distance. About 0 for position-yoked units,
  > 0 when the boundary cuts integration off.

**Responses** are the layer's module outputs, read by a forward hook: for GPT's ``c_fc`` that is
**before** the activation function (the MLP applies GELU after ``c_fc``). Every copy starts with
the tokenizer's BOS token when it has one (GPT-2/GPT-Neo: ``<|endoftext|>``, the document start
these models were trained on), so that the first word is not the attention sink; the authors fed
the words alone. Copies of different token lengths are right-padded: the model must be causal,
so padding never reaches the real positions.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.sheet import layer_sheet_shape
from .activations import run_hooked
from .report import analysis_layers
from .window_fit import fit_windows
from .word_swap import encode_words, swap_variants, swap_vocabulary


class LayerWindows(NamedTuple):
    """One layer's integration windows; per-unit tensors in unit order, nan for excluded units."""

    sheet: tuple[int, int]  # (h, w): unit u at row u // w
    theta: torch.Tensor  # (n_units, max_delta + 1) float32: theta_norm per unit, theta[:, 0] = 1
    a: torch.Tensor  # (n_units,) float32 power-law exponent of eq. 3
    b: torch.Tensor  # (n_units,) exponential rate
    c: torch.Tensor  # (n_units,) power-law weight
    r2: torch.Tensor  # (n_units,) R^2 of the fit
    yoking: torch.Tensor  # (n_units,) yoking index (all nan without sentence_length)
    excluded: torch.Tensor  # (n_units,) bool: dead units

    @property
    def theta_median(self) -> torch.Tensor:
        """``(max_delta + 1,)``: the median over the units that were not excluded (nan if none is left)."""
        alive = self.theta[~self.excluded]
        return alive.quantile(0.5, dim=0) if len(alive) else torch.full(self.theta.shape[1:], float("nan"))


def integration_windows(
    model: nn.Module,
    tokenizer,
    sequences: list[list[str]],
    layers: list[str] | None = None,
    max_delta: int = 20,
    sentence_length: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    dead_tol: float = 1e-6,
    progress: bool = True,
) -> dict[str, LayerWindows]:
    """Integration window, eq. 3 fit and yoking index of every unit of ``layers`` (exact names or
    ``.suffix``es; default: the model's ``topo`` sheets; see :func:`.report.analysis_layers`).

    ``sequences``: word lists of one length ``L > max_delta`` (e.g. from
    :func:`.word_swap.sentence_sequences`); ``sentence_length``: words per sentence, for the yoking
    index. ``L + 1`` forwards per sequence, ``batch_size`` copies per forward, on the model's device.
    Swap words are drawn with ``random.Random(seed)``.

    >>> windows = integration_windows(model, tokenizer, sentence_sequences(sentences), sentence_length=8)  # doctest: +SKIP
    >>> windows["transformer.h.5.mlp.c_fc"].theta_median  # doctest: +SKIP
    """
    _check_sequences(sequences, max_delta, sentence_length)
    if batch_size < 1:
        raise ValueError(f"integration_windows: batch_size must be >= 1, got {batch_size}")
    modules = analysis_layers(model, layers)
    n_delta = max(max_delta, (sentence_length or 0) - 2) + 1
    sums = swap_sums(model, tokenizer, sequences, modules, n_delta, batch_size, seed, progress)
    result = {}
    for name, module in tqdm(modules.items(), desc="fits", unit="layer", disable=not progress):
        theta, dead = window_theta(sums[name], max_delta, dead_tol)
        units = theta.shape[0]
        params = torch.full((4, units), float("nan"), dtype=torch.float64, device=theta.device)
        if bool((~dead).any()):
            fit = fit_windows(theta[~dead])
            params[:, ~dead] = torch.stack([fit.a, fit.b, fit.c, fit.r2])
        yoking = torch.full((units,), float("nan"), device=theta.device)
        if sentence_length is not None:
            yoking = yoking_index(sums[name], sentence_length).masked_fill(dead, float("nan"))
        h, w, _ = layer_sheet_shape(module, name)
        a, b, c, r2 = params.float().cpu()
        result[name] = LayerWindows((h, w), theta.float().cpu(), a, b, c, r2, yoking.float().cpu(), dead.cpu())
    return result


def _check_sequences(sequences, max_delta: int, sentence_length: int | None) -> int:
    """The common length ``L`` of ``sequences``, after checking them and the Delta / sentence sizes."""
    where = "integration_windows"
    if isinstance(max_delta, bool) or not isinstance(max_delta, int) or max_delta < 2:
        raise ValueError(f"{where}: max_delta must be an int >= 2 (eq. 3 has 3 parameters), got {max_delta!r}")
    if not sequences or any(isinstance(s, str) or not all(isinstance(w, str) for w in s) for s in sequences):
        raise ValueError(f"{where}: sequences must be a non-empty list of word lists (lists of str)")
    lengths = sorted({len(s) for s in sequences})
    if len(lengths) > 1:
        raise ValueError(f"{where}: sequences must all have the same number of words, got lengths {lengths}")
    length = lengths[0]
    if length <= max_delta:
        raise ValueError(
            f"{where}: sequences of {length} words are too short for max_delta={max_delta}; "
            f"each needs at least max_delta + 1 = {max_delta + 1} words"
        )
    if sentence_length is not None and (sentence_length < 2 or length % sentence_length or length < 2 * sentence_length):
        raise ValueError(
            f"{where}: sentence_length={sentence_length} must be >= 2 and divide the sequences' {length} words "
            "into at least 2 sentences (or None: no yoking index)"
        )
    return length


def swap_sums(model, tokenizer, sequences, modules: dict[str, nn.Module], n_delta: int, batch_size: int = 16,
              seed: int = 0, progress: bool = True) -> dict[str, torch.Tensor]:
    """``{name: S (n_delta, L, n_units)}``: summed ``|r(t; t - Delta swapped) - r(t; original)|``
    (float64, on the model's device; ``S[Delta, t] = 0`` where ``t < Delta``)."""
    cache: dict[str, list[int]] = {}
    vocabulary = swap_vocabulary(sequences, tokenizer, cache)
    device = next(model.parameters()).device
    positions_limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    length = len(sequences[0])
    sums: dict[str, torch.Tensor] = {}
    state: dict = {}  # the batch being run: its word-averaging matrix and swap positions
    original: dict[str, torch.Tensor] = {}

    def record(name, module, inp, out):
        words = torch.bmm(state["average"], out.float())  # (B, L, n_units): each word's mean token response
        positions = state["positions"]
        if state["original_first"]:  # the sequence's first batch: copy 0 is the original
            original[name], words, positions = words[0], words[1:], positions[1:]
        if name not in sums:
            sums[name] = torch.zeros(n_delta, length, words.shape[-1], dtype=torch.float64, device=device)
        _add_band(sums[name], words, original[name], positions)

    def batches():
        rng = random.Random(seed)
        for words in sequences:
            encoded = [encode_words(v, tokenizer, cache) for v in swap_variants(words, vocabulary, rng)]
            for start in range(0, len(encoded), batch_size):
                ids, average = _pad_batch(encoded[start : start + batch_size], tokenizer.bos_token_id, length)
                if positions_limit is not None and ids.shape[1] > positions_limit:
                    raise ValueError(
                        f"integration_windows: a sequence of {length} words takes {ids.shape[1]} tokens, more than "
                        f"the model's max_position_embeddings={positions_limit}; give shorter sequences"
                    )
                state["average"] = average.to(device)
                state["positions"] = torch.arange(start - 1, start - 1 + len(ids), device=device)  # -1: original
                state["original_first"] = start == 0
                yield ids

    total = len(sequences) * -(-(length + 1) // batch_size)
    with tqdm(total=total, desc="word swaps", unit="forward", disable=not progress) as bar:
        run_hooked(model, modules, batches(), record, bar)
    return sums


def _pad_batch(encoded, bos_token_id: int | None, n_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids ``(B, T)`` and the word-averaging matrix ``(B, n_words, T)`` (rows sum to 1)."""
    prefix = [] if bos_token_id is None else [bos_token_id]
    longest = max(len(ids) for ids, _ in encoded) + len(prefix)
    ids = torch.full((len(encoded), longest), prefix[0] if prefix else 0, dtype=torch.long)
    average = torch.zeros(len(encoded), n_words, longest)
    for i, (tokens, owner) in enumerate(encoded):
        cols = torch.arange(len(prefix), len(prefix) + len(tokens))
        ids[i, cols] = torch.tensor(tokens)
        average[i, torch.tensor(owner), cols] = 1.0
    return ids, average / average.sum(2, keepdim=True)


def _add_band(band: torch.Tensor, words: torch.Tensor, original: torch.Tensor, positions: torch.Tensor) -> None:
    """``band[Delta, t] += |words[i, t] - original[t]|`` at ``t = s + Delta`` for each copy ``i`` swapped at
    ``s = positions[i]``: ``words (k, L, n_units)``, ``original (L, n_units)``; only the band is computed."""
    n_delta, length = band.shape[:2]
    delta = torch.arange(n_delta, device=band.device)
    target = positions[:, None] + delta[None, :]  # (k, n_delta)
    keep = target < length
    rows = torch.arange(len(positions), device=band.device)[:, None].expand_as(target)[keep]
    t = target[keep]
    band.index_put_((delta.expand_as(target)[keep], t), (words[rows, t] - original[t]).abs_().double(), accumulate=True)


def window_theta(sums: torch.Tensor, max_delta: int, dead_tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(theta_norm (n_units, max_delta + 1), dead (n_units,))`` from ``S (n_delta, L, n_units)``:
    the median over targets ``t >= max_delta`` of ``S[Delta, t] / S[0, t]`` (see the module doc)."""
    band = sums[: max_delta + 1, max_delta:].double()  # (max_delta + 1, n_targets, n_units)
    own = band[0]
    ratio = torch.where(own > 0, band / own.clamp_min(1e-300), float("nan"))
    theta = ratio.nanquantile(0.5, dim=1).T  # (n_units, max_delta + 1); numpy's median (mean of the middle two)
    level = own.quantile(0.5, dim=0)  # (n_units,)
    dead = level <= dead_tol * level.quantile(0.5)
    return theta.masked_fill(dead[:, None], float("nan")), dead


def yoking_index(sums: torch.Tensor, sentence_length: int) -> torch.Tensor:
    """``(n_units,)`` yoking index from ``S (n_delta >= sentence_length - 1, L, n_units)`` (see the
    module doc); nan for a unit that never responds."""
    n_delta, length = sums.shape[:2]
    if n_delta < sentence_length - 1:
        raise ValueError(f"yoking_index: sums cover Delta < {n_delta}, sentence_length={sentence_length} needs {sentence_length - 1}")
    k = torch.arange(sentence_length - 1, device=sums.device)
    diffs = [(sums[k, b + k] - sums[k, b - 1 + k]).mean(0) for b in range(sentence_length, length, sentence_length)]
    scale = sums[0].quantile(0.5, dim=0)  # (n_units,): the median response to a swap of the word itself
    return torch.where(scale > 0, torch.stack(diffs).mean(0) / scale.clamp_min(1e-300), float("nan"))
