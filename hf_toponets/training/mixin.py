"""TopoTrainerMixin: the topographic term, its logs, BLiMP at evaluation and TopoNet saving, for any Trainer.

Mixed in front of ``transformers.Trainer`` or a subclass of it (TRL's ``SFTTrainer``, ``DPOTrainer``, ...)::

    class TopoSFTTrainer(TopoTrainerMixin, SFTTrainer):
        pass

    trainer = TopoSFTTrainer(model=model, args=SFTConfig("out"), train_dataset=ds,
                             topo_config=TopoConfig(target_modules=["c_fc"], tau=5.0))

**The override point is** :meth:`compute_loss`. At the first micro-step of each optimizer step it arms
:class:`~hf_toponets.core.hooks.TopoHooks` with ``coef = tau_t / n_layers`` (times the fp16 loss scale);
the hooks attach each layer's term to its output during the forward that ``super().compute_loss`` runs,
so its gradient joins the task gradient in the same backward. The weights do not change between the
micro-steps of gradient accumulation, so attaching the term once per optimizer step gives exactly
``tau * d mean_layers(TopoLoss) / dW`` per step, whatever the Trainer does to normalise the task loss,
under DDP (every rank adds the same term, gradients are averaged), FSDP and activation checkpointing.
The hooks stay armed until :meth:`training_step` returns, because checkpointing recomputes the forward
(and with it the term) during backward. The returned loss, and so the logged ``loss`` and
``eval_loss``, is the task loss alone; the objective minimised is ``loss + topo/tau * topo/loss``.

A subclass that overrides ``compute_loss`` keeps the term as long as it calls ``super().compute_loss``
or runs the model's forward after it (the mixin must come first in the bases).
"""

from __future__ import annotations

import math
import os

import torch
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.trainer_utils import HubStrategy
from transformers.utils.hub import PushInProgress

from ..core.config import ADAPTER_CONFIG_FILE, TopoConfig
from ..core.files import write_json_atomic
from ..core.hooks import TopoHooks
from ..core.metadata import attach_topo_config, read_topo_config
from ..core.targets import check_trainable, resolve_targets
from ..evaluation.blimp import blimp_log_metrics, evaluate_blimp
from ..evaluation.blimp_data import load_blimp
from ..hub.cards import TRAINING_KEYS
from ..hub.folder import last_eval_loss, write_model_card
from ..hub.loading import model_task
from .publishing import card_facts, copy_checkpoint, start_push

BLIMP_FILE = "blimp_results.json"


class TopoTrainerMixin:
    """Adds ``topo_config``, ``blimp_data``, ``blimp_paradigms`` and ``model_card`` to a Trainer's arguments.

    Without ``topo_config`` the model's own ``topo`` entry (a saved TopoNet) is used. The config,
    with each target's sheet shape, is written into ``model.config.topo`` and so into every
    checkpoint's ``config.json``.

    ``blimp_data``: a folder of BLiMP ``<UID>.jsonl`` files, or ``"hub"`` for ``nyu-mll/blimp``;
    when set, every evaluation also scores BLiMP (``blimp_paradigms``: a subset) with the
    ``processing_class`` tokenizer. ``model_card``: card facts only the user knows (keys of
    :data:`hf_toponets.hub.cards.TRAINING_KEYS`, e.g. ``datasets``, ``license``, ``base_model``).
    """

    def __init__(self, *trainer_args, topo_config: TopoConfig | None = None, blimp_data: str | None = None,
                 blimp_paradigms: list[str] | None = None, model_card: dict | None = None, **kwargs):
        # positional arguments pass through in the base's own order (DPOTrainer's second one is ref_model)
        name = type(self).__name__
        if (trainer_args[0] if trainer_args else kwargs.get("model")) is None:
            raise ValueError(f"{name}: model is required (model_init is not supported)")
        unknown = set(model_card or {}) - set(TRAINING_KEYS)
        if unknown:
            raise ValueError(f"{name}: model_card has unknown keys {sorted(unknown)}; valid: {sorted(TRAINING_KEYS)}")
        if topo_config is not None and not isinstance(topo_config, TopoConfig):
            raise ValueError(f"{name}: topo_config must be a TopoConfig, got {type(topo_config).__name__}")
        super().__init__(*trainer_args, **kwargs)
        if self.args.push_to_hub and self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            raise ValueError(f"{name}: hub_strategy={self.args.hub_strategy.value!r} uploads the optimizer, scheduler and "
                             "RNG states, which Trainer saves as pickles, and hf_toponets publishes no pickle; use "
                             "hub_strategy='every_save' or 'end' (checkpoints to resume from stay in output_dir)")
        model = self.model  # a model id given to a TRL trainer is loaded by now
        stored = read_topo_config(model)  # raises when a loaded topo entry does not fit the weights
        topo_config = topo_config or stored
        if topo_config is None:
            raise ValueError(f"{name}: pass topo_config=TopoConfig(target_modules=[...], tau=...); "
                             f"{type(model).__name__}'s config has no 'topo' entry to train with")
        self.topo_targets = resolve_targets(model, topo_config)  # the unwrapped model: train() wraps it later
        if topo_config.tau > 0:
            check_trainable(self.topo_targets, name)  # a frozen target (PEFT froze the base) would take no step
        self.topo_config = attach_topo_config(model, topo_config, self.topo_targets)
        self.topo_hooks = TopoHooks(self.topo_targets, self.topo_config)
        self.blimp_results: dict | None = None
        self._blimp_pairs, self._blimp_prefix = None, None
        if blimp_data is not None:
            if self.processing_class is None:
                raise ValueError(f"{name}: blimp_data needs the tokenizer; pass processing_class=tokenizer")
            if is_deepspeed_zero3_enabled():  # its per-module gathers would need equal forwards on every rank
                raise ValueError(f"{name}: blimp_data is not supported under DeepSpeed ZeRO-3 (use ZeRO-2, DDP or "
                                 "FSDP2, or score the saved model with `hf-toponets blimp`)")
            self._blimp_pairs = self._load_blimp_once(blimp_data, blimp_paradigms)
        self.model_card_info = dict(model_card or {})
        self._topo_armed_at = None  # (state, global_step) of the optimizer step whose term is attached
        self._topo_tau = 0.0
        self._topo_sums: dict[str, torch.Tensor] = {}
        self._topo_count = 0
        self._topo_tau_sum = 0.0

    # ---- the term -------------------------------------------------------------------------------
    def current_tau(self) -> float:
        """tau at the current optimizer step (the schedule is a function of ``state.global_step``)."""
        return self.topo_config.tau_at(self.state.global_step)

    def loss_scale(self) -> float:
        """The factor the task loss is multiplied by before backward: fp16's dynamic loss scale, else 1.

        accelerate's ``GradScaler``; under DeepSpeed fp16 the scale lives in the engine's (ZeRO) optimizer,
        which multiplies the loss by its ``loss_scale`` in ``engine.backward``.
        """
        if self.is_deepspeed_enabled:
            engine = self.model_wrapped  # the DeepSpeedEngine once train() has prepared it
            return float(engine.optimizer.loss_scale) if engine.fp16_enabled() else 1.0
        scaler = getattr(self.accelerator, "scaler", None)
        return scaler.get_scale() if scaler is not None and scaler.is_enabled() else 1.0

    def topo_coef(self, tau: float) -> float:
        """The hooks' gradient weight: ``tau / n_layers * loss_scale`` (over nn.DataParallel replicas)."""
        coef = tau / len(self.topo_targets)
        if coef:
            coef *= self.loss_scale()
        return coef / max(1, self.args.n_gpu)  # nn.DataParallel replicas each add the term

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The task loss of ``super().compute_loss``; at an optimizer step's first micro-step its forward also
        attaches the topographic term to the backward (see the module docstring)."""
        step = (self.state, self.state.global_step)
        armed = self._topo_armed_at
        if model.training and torch.is_grad_enabled() and (armed is None or armed[0] is not step[0] or armed[1] != step[1]):
            self._topo_armed_at, self._topo_tau = step, self.current_tau()
            self.topo_hooks.set_coef(self.topo_coef(self._topo_tau), self.args.device)
            self.topo_hooks.active = True
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def training_step(self, *args, **kwargs):
        try:
            return super().training_step(*args, **kwargs)
        finally:  # armed until now: activation checkpointing recomputes the term during backward
            self.topo_hooks.active = False
            values = self.topo_hooks.pop_values()
            for name, value in values.items():
                self._topo_sums[name] = self._topo_sums.get(name, 0.0) + value
            if values:
                self._topo_count += 1
                self._topo_tau_sum += self._topo_tau

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._topo_count:  # a training log: merge the topo metrics since the last one
            per_layer = {name: float(total) / self._topo_count for name, total in self._topo_sums.items()}
            logs["topo/loss"] = sum(per_layer.values()) / len(per_layer)
            logs.update({f"topo/{name}": value for name, value in per_layer.items()})
            logs["topo/tau"] = self._topo_tau_sum / self._topo_count
            self._topo_sums, self._topo_count, self._topo_tau_sum = {}, 0, 0.0
        super().log(logs, *args, **kwargs)

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """``Trainer.evaluate``; with ``blimp_data``, BLiMP too, once per call whatever the number of eval datasets.

        BLiMP's metrics (``<prefix>_blimp_overall``, ``<prefix>_blimp_<phenomenon>``) join the first eval
        dataset's: logged with them, seen by callbacks' ``on_evaluate`` and returned, so
        ``metric_for_best_model="blimp_overall"`` works. Without an eval dataset, BLiMP alone is evaluated.
        """
        if self._blimp_pairs is None or self._blimp_prefix is not None:  # no BLiMP, or Trainer's loop over datasets
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        self._blimp_prefix = metric_key_prefix  # pending until the first evaluation loop of this call
        try:
            if eval_dataset is not None or self.eval_dataset is not None:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            metrics = self._blimp_metrics()
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics
        finally:
            self._blimp_prefix = None

    def evaluation_loop(self, *args, **kwargs):
        output = super().evaluation_loop(*args, **kwargs)
        if self._blimp_prefix:  # BLiMP is pending in this evaluate() call
            output.metrics.update(self._blimp_metrics())
        return output

    def _blimp_metrics(self) -> dict[str, float]:
        """Score BLiMP (sequences shared out across ranks, results on all); ``<prefix>_blimp_*`` metrics."""
        prefix, self._blimp_prefix = self._blimp_prefix, ""  # "": scored in this call
        self.blimp_results = evaluate_blimp(self.model, self.processing_class, self._blimp_pairs,
                                            batch_size=self.args.per_device_eval_batch_size * 2, progress=False,
                                            across_ranks=self.args.world_size > 1)
        return blimp_log_metrics(self.blimp_results, f"{prefix}_")

    def _load_blimp_once(self, data: str, paradigms: list[str] | None):
        """``load_blimp`` on the main process only, its pairs (or its error) broadcast to the other ranks."""
        from accelerate.utils import broadcast_object_list

        payload = [None]
        if self.accelerator.is_main_process:
            try:
                payload = [load_blimp(None if data == "hub" else data, paradigms)]
            except (ValueError, OSError) as error:  # raised on every rank, not left for the others to wait on
                payload = [error]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(payload, from_process=0)
        if isinstance(payload[0], Exception):
            raise payload[0]
        return payload[0]

    # ---- saving, the card, the Hub (helpers in training/publishing.py) -----------------------------
    def card_training_info(self) -> dict:
        """What the card says about training: this run's facts, then the user's ``model_card`` ones."""
        info = {"tau": self.topo_config.tau, "tau_schedule": self.topo_config.tau_schedule,
                "max_steps": self.state.global_step}
        if self.state.num_input_tokens_seen:
            info["tokens_seen"] = int(self.state.num_input_tokens_seen)
        return {**info, **self.model_card_info}

    def _card_results(self) -> dict:
        """The last evaluation's headline: an image classifier's top-1 ``eval_accuracy`` (from
        ``compute_metrics``), a language model's perplexity ``exp(eval_loss)``."""
        history = self.state.log_history
        if model_task(self.model.config) == "image-classification":
            accuracy = [h["eval_accuracy"] for h in history if "eval_accuracy" in h]
            return {"accuracy": accuracy[-1]} if accuracy else {}
        loss = last_eval_loss(history)
        return {"perplexity": math.exp(loss)} if loss is not None and loss < 50 else {}

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save weights and ``config.json`` (with its ``topo`` entry), BLiMP results, trainer_state.json and the card.

        With ``push_to_hub`` a save by the user publishes the folder just saved (Trainer's would save again).
        """
        super().save_model(output_dir, _internal_call=True)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save and os.path.isfile(os.path.join(output_dir, "adapter_config.json")):
            # a PEFT adapter (no config.json): the TopoConfig goes beside PEFT's adapter_config.json
            write_json_atomic(os.path.join(output_dir, ADAPTER_CONFIG_FILE), self.topo_config.to_dict())
        elif self.args.should_save and os.path.isfile(os.path.join(output_dir, "config.json")):
            if self.blimp_results is not None:
                write_json_atomic(os.path.join(output_dir, BLIMP_FILE), self.blimp_results)
            # the card's inputs stay in the folder, so `hf-toponets card` re-renders it with them
            self.state.save_to_json(os.path.join(output_dir, "trainer_state.json"))
            self.create_model_card(output_dir=output_dir)
        if self.args.push_to_hub and not _internal_call and self.is_world_process_zero():
            self._push(output_dir, "Model save", blocking=True)

    def create_model_card(self, output_dir: str | None = None, **card_arguments) -> None:
        """Write the TopoNet card into ``output_dir`` (replaces Trainer's draft). Trainer's card arguments
        (``license``, ``tags``, ``finetuned_from``, ``dataset``, ``language``, ...) become card facts and stay
        for later saves and pushes."""
        if not self.args.should_save:
            return
        self.model_card_info = card_facts(self.accelerator.unwrap_model(self.model), self.model_card_info,
                                          **card_arguments)
        write_model_card(output_dir or self.args.output_dir, training=self.card_training_info(),
                         results=self._card_results(), model_id=self.hub_model_id)

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, token: str | None = None,
                    revision: str | None = None, private: bool | None = None, **card_arguments):
        """Save once, write the card (with ``card_arguments``: see :meth:`create_model_card`), then publish
        ``output_dir`` in one commit (safetensors, config with ``topo``, tokenizer, card, maps; no pickle).

        Returns :class:`hf_toponets.hub.push.PushResult` (``blocking=False``: a ``Future`` of it) on the main
        process, ``None`` elsewhere.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)  # Trainer's: names the repo <user>/<output_dir name>
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**card_arguments)
        self._finish_current_push()
        return self._push(self.args.output_dir, commit_message, blocking, token, revision, private)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Trainer's mid-training push (``hub_strategy`` ``every_save``), without its pickles: this checkpoint's
        model files are copied into ``output_dir`` (no second gather), which is published in the background."""
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return  # Trainer's rule: skip while the previous push runs
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        copy_checkpoint(checkpoint_folder, self.args.output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(self.args.output_dir)
        self._push(self.args.output_dir, f"Training in progress, step {self.state.global_step}", blocking=False)

    def _push(self, folder, commit_message, blocking, token=None, revision=None, private=None):
        result = start_push(folder, self.hub_model_id, blocking, commit_message=commit_message,
                            private=bool(private if private is not None else self.args.hub_private_repo),
                            revision=revision or self.args.hub_revision, token=token or self.args.hub_token)
        if not blocking:  # Trainer's _finish_current_push (end of training, next push) waits for it
            self.push_in_progress = PushInProgress([result])
        return result
