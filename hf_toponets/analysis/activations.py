"""Layer responses over a dataset, collected with forward hooks, in memory that does not grow with it.

A layer's activation statistics are the first two moments of its responses, accumulated batch
by batch (Chan et al.'s pairwise update, float64), so 1024 sequences x 128 tokens x 3072 units
never sit in memory. For ``nn.Linear`` / ``Conv1D`` layers with fewer inputs than units (GPT's
``c_fc``: 768 -> 3072) the moments of the *input* are kept instead: the outputs ``y = W x + b``
have covariance ``W cov(x) W^T``, exact and 16x cheaper to accumulate. Every token position is
one observation (row); a Conv2d's every spatial position likewise.

Pure torch: models are only called, never imported.

>>> from torch import nn
>>> model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 36))
>>> acts = collect_activations(model, {"1": model[1]}, [torch.randint(10, (2, 8))])
>>> acts["1"].n_rows, tuple(acts["1"].cov.shape), tuple(acts["1"].proj.shape)
(16, (4, 4), (36, 4))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn

from ..core.sheet import fan_in, is_conv1d, n_units, unit_weight


class Moments:
    """Running count, mean ``(d,)`` and scatter ``sum (x - mean)(x - mean)^T`` ``(d, d)`` of rows."""

    def __init__(self, dim: int, device=None):
        self.n = 0
        self.mean = torch.zeros(dim, dtype=torch.float64, device=device)
        self.scatter = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor) -> None:
        """Add rows ``x (r, d)``: batch moments in float32 (the matmul), merged in float64."""
        x = x.detach().float()
        r = x.shape[0]
        if r == 0:
            return
        mean_b = x.mean(0)
        xc = x - mean_b
        delta = mean_b.double() - self.mean
        n = self.n + r
        self.scatter += (xc.T @ xc).double()
        self.scatter += torch.outer(delta, delta) * (self.n * r / n)
        self.mean += delta * (r / n)
        self.n = n

    def covariance(self) -> torch.Tensor:
        """Unbiased covariance ``scatter / (n - 1)``, float64 ``(d, d)``."""
        if self.n < 2:
            raise ValueError(f"a covariance needs >= 2 observations, got {self.n}")
        return self.scatter / (self.n - 1)


class LayerActivations(NamedTuple):
    """A layer's response statistics: the units' covariance is ``proj @ cov @ proj.T``."""

    n_rows: int  # observations (token positions) seen
    cov: torch.Tensor  # (d, d) float64: of the inputs when proj is given, else of the outputs
    proj: torch.Tensor | None  # (n_units, d) float32 weight rows, or None


def _uses_input(module: nn.Module, name: str) -> bool:
    """Keep the input's moments when the layer is linear in it and has fewer inputs than units."""
    linear = isinstance(module, nn.Linear) or is_conv1d(module)
    return linear and fan_in(module, name) < n_units(module, name)


def _output_rows(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """``(..., n_units)`` -> ``(rows, n_units)``; a Conv2d's ``(b, c, H, W)`` -> ``(b H W, c)``."""
    if isinstance(module, nn.Conv2d):
        return output.movedim(1, -1).reshape(-1, output.shape[1])
    return output.reshape(-1, output.shape[-1])


class _StopForward(Exception):
    """Raised by the last hook of a forward pass: the layers after it are not needed."""


def run_hooked(model: nn.Module, modules: dict[str, nn.Module], batches: Iterable[torch.Tensor], record, progress=None) -> int:
    """Call ``model(batch)`` on each batch under no_grad in eval mode (restored after), with
    ``record(name, module, input, output)`` as every module's forward hook; the forward stops
    once every hooked module has run (modules called once per forward). Returns the number of
    batches."""
    if not modules:
        raise ValueError("no layers to collect activations from")
    device = next(model.parameters()).device
    fired: set[str] = set()

    def hook(name):
        def fn(module, args, output):
            record(name, module, args[0], output)
            fired.add(name)
            if len(fired) == len(modules):
                raise _StopForward

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    count, training = 0, model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                fired.clear()
                try:
                    model(batch.to(device))
                except _StopForward:
                    pass
                count += 1
                if progress is not None:
                    progress.update(1)
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    if count == 0:
        raise ValueError("the dataset gave no batch: it is empty")
    return count


def collect_activations(
    model: nn.Module, modules: dict[str, nn.Module], batches: Iterable[torch.Tensor], progress=None
) -> dict[str, LayerActivations]:
    """``{name: LayerActivations}`` of each module's outputs over ``batches`` of ``(b, t)``
    token ids; ``progress`` (e.g. a tqdm bar) is advanced once per batch."""
    use_input = {n: _uses_input(m, n) for n, m in modules.items()}
    device = next(model.parameters()).device
    moments = {
        n: Moments(fan_in(m, n) if use_input[n] else n_units(m, n), device) for n, m in modules.items()
    }

    def record(name, module, inp, out):
        moments[name].update(inp.reshape(-1, inp.shape[-1]) if use_input[name] else _output_rows(module, out))

    run_hooked(model, modules, batches, record, progress)
    return {
        n: LayerActivations(
            moments[n].n, moments[n].covariance().cpu(), unit_weight(m, n).detach().float().cpu() if use_input[n] else None
        )
        for n, m in modules.items()
    }


def collect_responses(model: nn.Module, modules: dict[str, nn.Module], batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: (n_sequences, n_units)}``: each sequence's response per unit, its output averaged
    over token positions (over spatial positions for a Conv2d). The stimuli of :func:`selectivity`."""
    out: dict[str, list[torch.Tensor]] = {n: [] for n in modules}

    def record(name, module, inp, output):
        dims = (2, 3) if isinstance(module, nn.Conv2d) else tuple(range(1, output.ndim - 1))
        out[name].append(output.float().mean(dim=dims).cpu())

    run_hooked(model, modules, batches, record)
    return {n: torch.cat(v) for n, v in out.items()}
