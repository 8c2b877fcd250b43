"""TopoTrainer: a ``transformers.Trainer`` that adds ``tau * mean_layers(TopoLoss)`` to training.

The topographic term is computed by :class:`~hf_toponets.hooks.TopoHooks`, in a forward hook on
each target module (where the full weight exists even under FSDP2 / ZeRO-3 sharding), and its
gradient is attached to the module's output with ``coef = tau / (n_layers * accumulation_steps)``.
So per optimizer step the weights receive exactly ``tau * d mean_layers(TopoLoss) / dW`` on one
process, under DDP (every rank adds the same term; gradients are averaged), FSDP, gradient
accumulation (whatever the Trainer does to normalise the task loss) and activation checkpointing.
The task loss, ``eval_loss`` included, is left untouched; the term is logged separately.

Logged metrics (averaged over the micro-steps since the last log): ``topo/loss`` (mean over
layers), ``topo/<module name>`` per layer, ``topo/tau`` (the tau the logged steps used).
"""

from __future__ import annotations

import torch
from transformers import Trainer

from .config import TopoConfig
from .hooks import TopoHooks
from .metadata import attach_topo_config, read_topo_config
from .targets import resolve_targets


class TopoTrainer(Trainer):
    """A ``Trainer`` that trains TopoNets; ``topo_config`` is passed beside the training arguments.

    >>> trainer = TopoTrainer(model=model, args=TrainingArguments("out"), train_dataset=ds,
    ...                       topo_config=TopoConfig(target_modules=["c_fc"], tau=5.0))  # doctest: +SKIP

    Without ``topo_config`` the model's own ``topo`` entry (a saved TopoNet) is used. The config,
    with each target's sheet shape, is written into ``model.config.topo`` and so into every
    checkpoint's ``config.json``.
    """

    def __init__(self, model=None, args=None, *trainer_args, topo_config: TopoConfig | None = None, **kwargs):
        if model is None:
            raise ValueError("TopoTrainer: model is required (model_init is not supported)")
        stored = read_topo_config(model)  # raises when a loaded topo entry does not fit the weights
        topo_config = topo_config or stored
        if topo_config is None:
            raise ValueError(
                "TopoTrainer: pass topo_config=TopoConfig(target_modules=[...], tau=...); "
                f"{type(model).__name__}'s config has no 'topo' entry to train with"
            )
        if not isinstance(topo_config, TopoConfig):
            raise ValueError(f"TopoTrainer: topo_config must be a TopoConfig, got {type(topo_config).__name__}")
        self.topo_targets = resolve_targets(model, topo_config)  # the unwrapped model, before any wrapping
        self.topo_config = attach_topo_config(model, topo_config, self.topo_targets)
        super().__init__(model, args, *trainer_args, **kwargs)
        self.topo_hooks = TopoHooks(self.topo_targets, self.topo_config)
        self._topo_sums: dict[str, torch.Tensor] = {}
        self._topo_count = 0
        self._topo_tau_sum = 0.0

    def current_tau(self) -> float:
        """tau at the current optimizer step (the schedule is a function of ``state.global_step``)."""
        return self.topo_config.tau_at(self.state.global_step)

    def training_step(self, model, inputs, num_items_in_batch=None):
        tau = self.current_tau()
        coef = tau / (len(self.topo_targets) * self.current_gradient_accumulation_steps)
        scaler = getattr(self.accelerator, "scaler", None)
        if coef and scaler is not None and scaler.is_enabled():  # fp16: the task loss is scaled, so is the term
            coef *= scaler.get_scale()
        self.topo_hooks.coef = coef / max(1, self.args.n_gpu)  # nn.DataParallel replicas each add the term
        self.topo_hooks.active = True
        try:
            loss = super().training_step(model, inputs, num_items_in_batch)
        finally:
            self.topo_hooks.active = False
        values = self.topo_hooks.pop_values()
        for name, value in values.items():
            self._topo_sums[name] = self._topo_sums.get(name, 0.0) + value
        if values:
            self._topo_count += 1
            self._topo_tau_sum += tau
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._topo_count:  # a training log: merge the topo metrics since the last one
            per_layer = {name: float(total) / self._topo_count for name, total in self._topo_sums.items()}
            logs["topo/loss"] = sum(per_layer.values()) / len(per_layer)
            logs.update({f"topo/{name}": value for name, value in per_layer.items()})
            logs["topo/tau"] = self._topo_tau_sum / self._topo_count
            self._topo_sums, self._topo_count, self._topo_tau_sum = {}, 0, 0.0
        super().log(logs, start_time)
