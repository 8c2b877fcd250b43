"""Top-1 accuracy of image classifiers: from logits, from a Trainer's predictions, and over a stimulus set.

``top1 = (1 / n) sum_i [argmax_k logits_ik == y_i]``, in ``[0, 1]``, higher is better; ties in the
logits go to the lowest class index (``argmax``'s rule). Pure torch: models are only called.

>>> top1_accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]), torch.tensor([1, 0, 0]))
0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn


def top1_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of ``logits (n, n_classes)`` whose largest entry is at ``labels (n,)``."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1] or labels.numel() == 0:
        raise ValueError(f"top1_accuracy: expected logits (n, n_classes) and labels (n,) with n >= 1, "
                         f"got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return float((logits.argmax(dim=1) == labels).double().mean())


def compute_accuracy(eval_prediction) -> dict[str, float]:
    """``compute_metrics`` for ``Trainer``: ``{"accuracy": top-1}``, logged as ``eval_accuracy``.

    ``eval_prediction``: transformers' ``EvalPrediction`` (``predictions`` the logits, or a tuple
    whose first entry they are; ``label_ids`` the classes), numpy arrays.
    """
    logits = eval_prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": top1_accuracy(torch.from_numpy(np.asarray(logits)), torch.from_numpy(np.asarray(eval_prediction.label_ids)))}


@torch.no_grad()
def evaluate_top1(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy of ``model(pixel_values).logits`` over ``(pixel_values (b, 3, H, W), labels (b,))``
    batches, in eval mode (the caller's mode is restored). An iterable that can be read again gives
    the same batches to every model of a sweep."""
    training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct, total = 0, 0
    try:
        for pixel_values, labels in batches:
            logits = model(pixel_values.to(device)).logits
            correct += int((logits.argmax(dim=1).cpu() == labels).sum())
            total += labels.numel()
    finally:
        model.train(training)
    if total == 0:
        raise ValueError("evaluate_top1: the batches hold no image")
    return correct / total
