"""TopoLoss where the weight is whole: forward hooks that attach each layer's term to its output.

Under FSDP2 / ZeRO-3 a module's full weight exists only inside its forward and backward, so the
term ``L_l`` of each target layer is computed in a forward hook, and :class:`_AttachTerm` (an
identity on the module's output) sends ``coef`` as the gradient of ``L_l`` when backward reaches
that output. The weights thus receive ``coef * dL_l/dW`` per forward, in the same backward as
the task loss, with no change to the loss value. With ``coef = tau / n_layers`` on one forward per
optimizer step (the weights do not change between accumulation micro-steps) an optimizer step
applies exactly ``tau * d mean_l(L_l) / dW``.

``coef`` is a 0-dim tensor updated in place (:meth:`TopoHooks.set_coef`), so a compiled graph
reads it as an input instead of specialising on a Python float that a tau schedule or a loss
scale changes every step.

Recomputation under activation checkpointing runs the hooks again: without grad (the reentrant
first pass) they do nothing; with grad they recompute the same term, whose value overwrites
the stored one. Pure torch: no transformers import.

For a hand-written loop (plain PyTorch, accelerate) :func:`topo_hooks` sets the hooks up and
weights every training forward by ``tau / (n_layers * accumulation_steps)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .config import TopoConfig
from .loss import sheet_loss
from .metadata import read_topo_config
from .targets import TopoTarget, check_trainable, resolve_targets, target_sheet


class _AttachTerm(torch.autograd.Function):
    """``output`` unchanged; in backward, ``coef`` flows into ``term`` (a scalar loss).

    Returns ``output.detach()``: the same storage (no copy) but not an autograd view, so that an
    in-place consumer (``nn.ReLU(inplace=True)``) may modify it; a view made in a custom Function
    refuses in-place ops. A producer that saved its own output is still caught by the version check.
    """

    @staticmethod
    def forward(ctx, output, term, coef):
        ctx.save_for_backward(coef)
        ctx.term_dtype, ctx.term_device = term.dtype, term.device
        return output.detach()

    @staticmethod
    def backward(ctx, grad_output):
        (coef,) = ctx.saved_tensors
        return grad_output, coef.to(ctx.term_device, ctx.term_dtype), None


class TopoHooks:
    """Forward hooks on the target modules; active only while ``active`` is set and grad is on.

    ``coef`` (a 0-dim float32 tensor; ``hooks.coef = 0.5`` or :meth:`set_coef` writes into it) multiplies
    each layer's gradient; while ``attach`` is False (``coef`` 0) the terms are only measured, without a graph.
    ``values`` holds each layer's last term (detached) until :meth:`pop_values`.
    """

    def __init__(self, targets: dict[str, TopoTarget], config: TopoConfig):
        self.config = config
        self.active = False
        self.attach = False
        self._coef = torch.zeros((), dtype=torch.float32)
        self.values: dict[str, torch.Tensor] = {}
        self._handles = [t.module.register_forward_hook(self._hook(name, t)) for name, t in targets.items()]

    def _hook(self, name: str, target: TopoTarget):
        cfg = self.config

        def hook(module, args, output):
            if not (self.active and torch.is_grad_enabled()):
                return None  # evaluation, or the no-grad first pass of reentrant checkpointing
            with torch.set_grad_enabled(self.attach):
                term = sheet_loss(target_sheet(target, name), cfg.factor_h, cfg.factor_w, cfg.interpolation)
            self.values[name] = term.detach()
            return _AttachTerm.apply(output, term, self._coef) if self.attach else None

        return hook

    @property
    def coef(self) -> torch.Tensor:
        return self._coef

    @coef.setter
    def coef(self, value: float) -> None:
        self.set_coef(value)

    def set_coef(self, value: float, device: torch.device | str | None = None) -> None:
        """``coef = value`` in place (moved to ``device`` first if given); ``attach = value != 0``."""
        if device is not None and self._coef.device != torch.device(device):
            self._coef = torch.zeros((), dtype=torch.float32, device=device)
        self._coef.fill_(value)
        self.attach = value != 0.0

    def pop_values(self) -> dict[str, torch.Tensor]:
        """This forward's term per layer, then forget them."""
        values, self.values = self.values, {}
        return values

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class TopoLoopHooks(TopoHooks):
    """:class:`TopoHooks` armed for a hand-written loop: every training forward is weighted by
    ``coef = tau_t / (n_layers * accumulation_steps)``, ``tau_t`` the config's tau at optimizer step ``t``."""

    def __init__(self, targets: dict[str, TopoTarget], config: TopoConfig, accumulation_steps: int, device):
        super().__init__(targets, config)
        self.n_layers, self.accumulation_steps, self.device = len(targets), accumulation_steps, device
        self.set_step(0)
        self.active = True

    def set_step(self, step: int) -> None:
        """Weight the following forwards with tau at optimizer step ``step`` (``TopoConfig.tau_schedule``)."""
        self.set_coef(self.config.tau_at(step) / (self.n_layers * self.accumulation_steps), self.device)


@contextlib.contextmanager
def topo_hooks(model: nn.Module, topo_config: TopoConfig | None = None, accumulation_steps: int = 1) -> Iterator[TopoLoopHooks]:
    """TopoLoss in a hand-written training loop: inside the block, every forward of ``model`` with grad
    enabled adds ``tau / accumulation_steps * d mean_layers(TopoLoss) / dW`` to the weights' gradients in
    the same backward as the task loss (whose value is unchanged). ``accumulation_steps`` forwards (the
    micro-batches of one optimizer step, between which the weights do not move) thus apply exactly
    ``tau * d mean_layers(TopoLoss) / dW`` per step, as :class:`~hf_toponets.TopoTrainer` does.

    ``topo_config``: default, the model's ``topo`` entry (a saved TopoNet). Give the unwrapped model
    (before ``accelerator.prepare`` or ``accelerator.unwrap_model(model)``): DDP averages gradients and
    every rank adds the same term. The yielded :class:`TopoLoopHooks` offers ``set_step(step)`` (tau of a
    ``tau_schedule`` at optimizer step ``step``) and ``pop_values()`` (each layer's term of the last forward).
    Forwards under ``torch.no_grad()`` (evaluation) add nothing. The hooks are removed on exit.

    >>> with topo_hooks(model, TopoConfig(target_modules=["c_fc"], tau=5.0), accumulation_steps=2) as topo:  # doctest: +SKIP
    ...     for i, batch in enumerate(loader):
    ...         topo.set_step(i // 2)                       # only needed with a tau_schedule
    ...         accelerator.backward(model(**batch).loss / 2)
    ...         if i % 2 == 1:
    ...             optimizer.step(); optimizer.zero_grad()
    ...             print(topo.pop_values())                # {"transformer.h.0.mlp.c_fc": tensor(0.93), ...}
    """
    if isinstance(accumulation_steps, bool) or not isinstance(accumulation_steps, int) or accumulation_steps < 1:
        raise ValueError(f"topo_hooks: accumulation_steps must be a positive int, got {accumulation_steps!r}")
    config = topo_config if topo_config is not None else read_topo_config(model)
    if config is None:
        raise ValueError(f"topo_hooks: pass topo_config=TopoConfig(...); {type(model).__name__}'s config has no 'topo' entry")
    targets = resolve_targets(model, config)
    if config.tau > 0:
        check_trainable(targets, "topo_hooks")
    hooks = TopoLoopHooks(targets, config, accumulation_steps, next(model.parameters()).device)
    try:
        yield hooks
    finally:
        hooks.active = False
        hooks.remove()
