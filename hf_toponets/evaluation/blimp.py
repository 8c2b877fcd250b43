"""BLiMP scoring and aggregation, with lm-evaluation-harness 0.4.x's protocol (task group ``blimp``).

Each sentence ``s`` is the continuation ``" " + s`` of an empty context, encoded without special
tokens, after one prefix token ``p`` (the tokenizer's BOS, else its EOS); when the encoding already
starts with ``p`` it is its own prefix. With ``x = [p] + enc(" " + s)`` (``n + 1`` tokens)::

    ll(s) = sum_{t=1..n} log softmax(f(x_{<t}))[x_t]        (log-softmax in float32)

A pair is correct when ``ll(good) >= ll(bad)`` (ties count: 7 published pairs are identical).
Paradigm accuracy = mean over its pairs, with the harness's ``acc_stderr``
``sqrt(p (1 - p) / (n - 1))`` (the sample standard deviation over sqrt(n)); phenomenon = mean of its
paradigms' accuracies; overall = unweighted mean of the paradigm accuracies. Sequences longer than the model's context ``L`` keep
their last ``L + 1`` tokens, the harness's window ``x[-(L+1):]`` (input ``[:-1]``, targets ``[1:]``).

>>> result = evaluate_blimp(model, tokenizer, "../shared/data/blimp", paradigms="passive_1")  # doctest: +SKIP
>>> result["paradigms"]["passive_1"], blimp_log_metrics(result)["blimp_overall"]  # doctest: +SKIP
({'accuracy': 0.871, 'n': 1000, 'stderr': 0.0106}, 0.871)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from statistics import fmean

import torch
from torch import nn
from transformers import GenerationMixin

from .blimp_data import PHENOMENA, BlimpPair, load_blimp, resolve_paradigms
from .prefix_scoring import score_sequences
from .sharding import score_across_ranks, unsharded

DEFAULT_CONTEXT_LENGTH = 2048  # the harness's fallback when neither config nor tokenizer gives one
_CONTEXT_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")  # the harness's order
_TOKENIZER_INFINITY = int(1e30)  # transformers' "no limit" model_max_length is ~1e30


def evaluate_blimp(
    model: nn.Module,
    tokenizer,
    data: str | Path | Mapping[str, list[BlimpPair]] | None = None,
    paradigms: str | Iterable[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    per_pair: bool = False,
    progress: bool = True,
    across_ranks: bool = False,
) -> dict:
    """BLiMP accuracy of a causal LM: overall, per phenomenon (12) and per paradigm (67).

    ``data``: a folder of ``<UID>.jsonl`` files, ``None`` for the Hub dataset ``nyu-mll/blimp``, or
    the output of :func:`load_blimp` (load once, evaluate often). ``paradigms``: a subset by name.
    ``batch_size``: sequences per forward pass (a pair's two sentences always share one).
    ``device``: where to run (the model is moved there); default the model's own.
    ``across_ranks``: call on every rank of an initialised process group (DDP or FSDP2 model); each rank
    scores a share of the sequences and all return the whole result, equal to one process's.

    Returns ``{"overall": float, "phenomena": {name: float}, "paradigms": {uid: {"accuracy", "n"}},
    "n_pairs": int}`` (a paradigm's ``"stderr"`` is None below 2 pairs) plus, with ``per_pair``, ``"pairs": {uid: [{"pair_id", "ll_good", "ll_bad"}]}``.
    """
    check_causal_lm(model)
    if not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"batch_size: {batch_size!r}; give an int >= 2 (a pair's two sentences share a batch)")
    if isinstance(data, Mapping):
        uids = resolve_paradigms(paradigms if paradigms is not None else list(data))
        missing = [uid for uid in uids if not data.get(uid)]
        if missing:
            raise ValueError(f"data: the loaded pairs lack paradigm(s) {missing} (absent or empty); loaded: {sorted(data)}")
        pairs = {uid: data[uid] for uid in uids}
    else:
        pairs = load_blimp(data, paradigms)
    if device is not None:
        model.to(device)
    flat = [pair for uid in pairs for pair in pairs[uid]]
    encoded = encode_sentences(tokenizer, [s for pair in flat for s in (pair.good, pair.bad)])
    lls = score_pairs(model, list(zip(encoded[0::2], encoded[1::2])), batch_size,
                      context_length(model, tokenizer), progress, across_ranks)
    scored, rows = iter(lls), {}
    for uid, uid_pairs in pairs.items():
        rows[uid] = [{"pair_id": p.pair_id, "ll_good": g, "ll_bad": b} for p, (g, b) in zip(uid_pairs, scored)]
    result = aggregate(rows)
    if per_pair:
        result["pairs"] = rows
    return result


def blimp_log_metrics(result: dict, prefix: str = "") -> dict[str, float]:
    """``{"<prefix>blimp_overall": ..., "<prefix>blimp_<phenomenon>": ...}`` from :func:`evaluate_blimp`'s result.

    TopoTrainer logs them with ``prefix="eval_"``, so ``metric_for_best_model="blimp_overall"`` finds them.
    """
    metrics = {f"{prefix}blimp_overall": result["overall"]}
    metrics.update({f"{prefix}blimp_{name}": value for name, value in result["phenomena"].items()})
    return metrics


def aggregate(pairs: Mapping[str, list[dict]]) -> dict:
    """Paradigm accuracy = mean of ``ll_good >= ll_bad``; phenomenon = mean of its paradigms; overall = mean of all.

    Only phenomena with at least one evaluated paradigm appear.
    """
    paradigms = {uid: _accuracy(rows) for uid, rows in pairs.items()}
    phenomena = {
        name: fmean(paradigms[uid]["accuracy"] for uid in uids if uid in paradigms)
        for name, uids in PHENOMENA.items()
        if any(uid in paradigms for uid in uids)
    }
    return {
        "overall": fmean(p["accuracy"] for p in paradigms.values()),
        "phenomena": phenomena,
        "paradigms": paradigms,
        "n_pairs": sum(p["n"] for p in paradigms.values()),
    }


def _accuracy(rows: list[dict]) -> dict:
    p, n = fmean(r["ll_good"] >= r["ll_bad"] for r in rows), len(rows)
    return {"accuracy": p, "n": n, "stderr": math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None}


def check_causal_lm(model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``model`` is a decoder-only language model (an AutoModelForCausalLM class)."""
    config = getattr(model, "config", None)
    if not isinstance(model, GenerationMixin) or getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"model: {type(model).__name__} is not a causal language model; BLiMP needs next-token "
            "log-probabilities from an AutoModelForCausalLM class (e.g. GPTNeoForCausalLM)"
        )


def prefix_token_id(tokenizer) -> int:
    """The token every sentence is conditioned on: BOS, else EOS (50256 for GPT-2)."""
    for name in ("bos_token_id", "eos_token_id"):
        token = getattr(tokenizer, name, None)
        if token is not None:
            return token
    raise ValueError(
        f"tokenizer: {type(tokenizer).__name__} has neither a BOS nor an EOS token; BLiMP conditions each "
        "sentence on one of them (set tokenizer.bos_token or tokenizer.eos_token)"
    )


def encode_sentences(tokenizer, sentences: list[str]) -> list[list[int]]:
    """``[p] + enc(" " + s)`` per sentence, or ``enc(" " + s)`` when it already starts with ``p``."""
    prefix = prefix_token_id(tokenizer)
    ids = tokenizer([" " + s for s in sentences], add_special_tokens=False)["input_ids"]
    encoded = [list(x) if x[:1] == [prefix] else [prefix, *x] for x in ids]
    for s, x in zip(sentences, encoded):
        if len(x) < 2:
            raise ValueError(f"data: the sentence {s!r} encodes to no token to score")
    return encoded


def context_length(model: nn.Module, tokenizer) -> int:
    """The model's context ``L``, found as the harness does: config, then tokenizer, then 2048."""
    config = getattr(model.config, "text_config", None) or model.config
    for attr in _CONTEXT_ATTRS:
        value = getattr(config, attr, None)
        if value is not None:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if limit is not None and limit < _TOKENIZER_INFINITY else DEFAULT_CONTEXT_LENGTH


def score_pairs(model: nn.Module, pairs: list[tuple[list[int], list[int]]], batch_size: int,
                max_length: int, progress: bool = True, across_ranks: bool = False) -> list[tuple[float, float]]:
    """``(ll(good), ll(bad))`` per pair of encoded sequences; each distinct sequence runs once (on one rank)."""
    window = max_length + 1  # the harness's left truncation: keep the last L + 1 tokens
    keys = [(tuple(good[-window:]), tuple(bad[-window:])) for good, bad in pairs]
    index: dict[tuple[int, ...], int] = {}
    groups = []  # per pair: the indices of the sequences first seen in it (0, 1 or 2)
    for pair in keys:
        new = [k for k in dict.fromkeys(pair) if k not in index]
        groups.append([index.setdefault(k, len(index)) for k in new])
    sequences = list(index)
    was_training = model.training
    model.eval()
    try:
        batches = pack_batches(groups, [len(x) for x in sequences], batch_size)
        with unsharded(model):  # FSDP2: full parameters on every rank while scoring
            if across_ranks:
                scores = score_across_ranks(lambda seqs, bs: score_sequences(model, seqs, bs, progress), sequences,
                                            batches, next(model.parameters()).device)
            else:
                scores = score_sequences(model, sequences, batches, progress)
    finally:
        model.train(was_training)
    values = scores.tolist()
    return [(values[index[good]], values[index[bad]]) for good, bad in keys]


def pack_batches(groups: list[list[int]], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Whole groups (a pair's sequences) packed into batches of at most ``batch_size``, longest first.

    Sorting by length keeps right padding short; longest first makes a memory error show at once.
    """
    order = sorted((g for g in groups if g), key=lambda g: (-max(lengths[i] for i in g), g))
    batches, current = [], []
    for group in order:
        if len(current) + len(group) > batch_size:
            batches.append(current)
            current = []
        current.extend(group)
    return [*batches, current] if current else batches
