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
"""

from __future__ import annotations

import torch

from .config import TopoConfig
from .loss import sheet_loss
from .targets import TopoTarget, target_sheet


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
