"""Held-out perplexity of a causal language model, and the token blocks it is measured on."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def perplexity(model: nn.Module, input_ids: torch.LongTensor | Sequence[torch.LongTensor], batch_size: int = 8) -> float:
    """Perplexity of a causal LM on ``input_ids (n, t)`` (or a sequence of ``(b, t)`` batches):
    ``exp(sum of next-token NLL / number of predicted tokens)``. ``model(input_ids)`` must
    return an output with ``.logits (b, t, vocab)``; it runs in eval mode (its mode is restored).
    """
    batches = list(input_ids.split(batch_size)) if isinstance(input_ids, torch.Tensor) else list(input_ids)
    if not batches or any(b.ndim != 2 or b.shape[1] < 2 for b in batches) or sum(b.shape[0] for b in batches) == 0:
        raise ValueError("perplexity: input_ids must be a non-empty (n, t) LongTensor (or batches) with t >= 2")
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    try:
        for batch in batches:
            batch = batch.to(device)
            logits = model(batch).logits[:, :-1].float()  # (b, t - 1, vocab)
            target = batch[:, 1:]
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
            count += target.numel()
    finally:
        model.train(training)
    return math.exp(nll / count)


def token_blocks(ids: Sequence[int], seq_len: int, max_blocks: int | None = None) -> torch.Tensor:
    """Consecutive non-overlapping ``(n_blocks, seq_len)`` windows of a token stream (the tail dropped)."""
    n_blocks = len(ids) // seq_len if max_blocks is None else min(len(ids) // seq_len, max_blocks)
    if seq_len < 2 or n_blocks < 1:
        raise ValueError(f"the text gives {len(ids)} tokens: too few for one block of seq_len={seq_len} (>= 2)")
    return torch.as_tensor(list(ids[: n_blocks * seq_len]), dtype=torch.long).reshape(n_blocks, seq_len)
