"""TopoTrainer: a ``transformers.Trainer`` that adds ``tau * mean_layers(TopoLoss)`` to training.

``TopoTrainer = TopoTrainerMixin + Trainer``: everything topographic lives in
:class:`~hf_toponets.training.mixin.TopoTrainerMixin`, which other trainers (TRL's) mix in the same way.
The term is computed by :class:`~hf_toponets.core.hooks.TopoHooks` in a forward hook on each target
module (where the full weight exists even under FSDP2 / ZeRO-3 sharding), armed in ``compute_loss``
once per optimizer step with ``coef = tau / n_layers``. So per optimizer step the weights receive
exactly ``tau * d mean_layers(TopoLoss) / dW`` on one process, under DDP, FSDP, gradient accumulation
and activation checkpointing. The task loss, ``loss`` and ``eval_loss`` in the logs, is left untouched;
the term is logged separately.

Logged metrics (averaged over the optimizer steps since the last log): ``topo/loss`` (mean over
layers), ``topo/<module name>`` per layer, ``topo/tau`` (the tau the logged steps used); with
``blimp_data``, once per evaluation: ``eval_blimp_overall`` and ``eval_blimp_<phenomenon>`` (beside
``eval_loss``, so ``metric_for_best_model="blimp_overall"`` works), scored with the sequences shared out
across ranks under DDP and FSDP2 and the data loaded by the main process only.

A PEFT model (``get_peft_model(base, LoraConfig(...))``) trains its adapters on the effective weights
``W + s B A`` of LoRA targets; saving it writes the adapter and, beside PEFT's ``adapter_config.json``,
``topo_config.json`` (the TopoConfig); ``merge_and_unload`` keeps ``config.topo``.

Saving a full model writes, beside the weights, ``blimp_results.json`` (the last BLiMP evaluation),
``trainer_state.json`` (steps, logs, eval loss) and the model card ``README.md``; ``push_to_hub`` publishes the saved folder in one commit.
"""

from __future__ import annotations

from transformers import Trainer

from .mixin import BLIMP_FILE, TopoTrainerMixin

__all__ = ["BLIMP_FILE", "TopoTrainer"]


class TopoTrainer(TopoTrainerMixin, Trainer):
    """A ``Trainer`` that trains TopoNets; ``topo_config`` is passed beside the training arguments.

    >>> trainer = TopoTrainer(model=model, args=TrainingArguments("out"), train_dataset=ds,
    ...                       topo_config=TopoConfig(target_modules=["c_fc"], tau=5.0))  # doctest: +SKIP

    Arguments beyond ``Trainer``'s: see :class:`~hf_toponets.training.mixin.TopoTrainerMixin`.
    """
