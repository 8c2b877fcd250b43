"""compute_loss as the override point: once per optimizer step, any Trainer subclass, fp16 scaling, torch.compile."""

import pytest
import torch
from torch import nn
from topoloss import LaplacianPyramid, TopoLoss
from transformers import Trainer, TrainerCallback

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets import TopoConfig, TopoTrainer, TopoTrainerMixin, topo_loss
from test_trainer import TARGETS, args, causal_lm, fc_weights, rel_err, token_dataset


class PerMicroStep(TopoTrainer):
    """The old rule as a second code path: the term on every micro-step with coef / accumulation steps."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and torch.is_grad_enabled():
            self._topo_tau = self.current_tau()
            coef = self.topo_coef(self._topo_tau) / self.current_gradient_accumulation_steps
            self.topo_hooks.set_coef(coef, self.args.device)
            self.topo_hooks.active = True
        return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


class HandWrittenStep(Trainer):
    """A trainer whose training_step is its own (as some TRL trainers'): only compute_loss is shared."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        model.train()
        loss = self.compute_loss(model, self._prepare_inputs(inputs), num_items_in_batch=num_items_in_batch)
        loss = loss / self.current_gradient_accumulation_steps
        self.accelerator.backward(loss)
        return loss.detach()


class TopoHandWritten(TopoTrainerMixin, HandWrittenStep):
    pass


class TermPerStep(TrainerCallback):
    """Records mean_layers(TopoLoss) of the weights at the start of each optimizer step (a second code path)."""

    def __init__(self, model):
        self.model, self.values = model, []

    def on_step_begin(self, args, state, control, **kwargs):
        with torch.no_grad():
            self.values.append(topo_loss(self.model, TopoConfig(target_modules=TARGETS)).item())


def count_terms(trainer):
    """Wrap the hooks' recording so that every computed term is counted."""
    calls = []
    original = trainer.topo_hooks.pop_values

    def pop_values():
        values = original()
        calls.append(len(values))
        return values

    trainer.topo_hooks.pop_values = pop_values
    return calls


def reference_step(build, tau, dataset, lr=0.5):
    """Oracle independent of hf_toponets' loss: one SGD step on task + tau * topoloss 0.0.2, the target layers
    copied into nn.Linear (GPT-2's Conv1D weight transposed), their gradients added back by hand."""
    model = causal_lm(build)
    names = [n for n, m in model.named_modules() if n.endswith(TARGETS[0])]
    linears = nn.ModuleDict()
    for n in names:
        module = model.get_submodule(n)
        weight = module.weight.detach().t() if type(module).__name__ == "Conv1D" else module.weight.detach()
        linears[n.replace(".", "_")] = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        linears[n.replace(".", "_")].weight.data.copy_(weight)
    reference = TopoLoss([LaplacianPyramid(k, factor_h=3.0, factor_w=3.0, interpolation="bilinear") for k in linears])
    (tau * reference.compute(linears, reduce_mean=True)).backward()
    ids, labels = torch.tensor(dataset["input_ids"]), torch.tensor(dataset["labels"])
    model(input_ids=ids, labels=labels).loss.backward()
    with torch.no_grad():
        for n in names:
            module, grad = model.get_submodule(n), linears[n.replace(".", "_")].weight.grad
            module.weight.grad += grad.t() if type(module).__name__ == "Conv1D" else grad
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    return model


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_gpt_neo])
def test_one_term_per_optimizer_step_equals_the_reference_and_per_micro_step(tmp_path, build):
    data = token_dataset(pad_some=True)
    kw = dict(per_device_train_batch_size=2, gradient_accumulation_steps=4)
    trainer = TopoTrainer(model=causal_lm(build), args=args(tmp_path / "a", **kw), train_dataset=data,
                          topo_config=TopoConfig(target_modules=TARGETS, tau=2.0))
    terms = count_terms(trainer)
    trainer.train()
    assert terms == [2, 0, 0, 0]  # the term (2 layers) at the first micro-step only
    micro = PerMicroStep(model=causal_lm(build), args=args(tmp_path / "b", **kw), train_dataset=data,
                         topo_config=TopoConfig(target_modules=TARGETS, tau=2.0))
    micro.train()
    oracle, w0 = reference_step(build, 2.0, data), fc_weights(causal_lm(build))
    for n, w in fc_weights(oracle).items():
        step = w - w0[n]
        assert rel_err(fc_weights(trainer.model)[n] - w0[n], step) < 1e-5, n
        assert rel_err(fc_weights(micro.model)[n], fc_weights(trainer.model)[n]) < 1e-6, n


def test_logged_term_is_the_mean_over_the_steps_since_the_last_log(tmp_path):
    model = causal_lm(tiny_gpt_neo)
    trainer = TopoTrainer(model=model, args=args(tmp_path, max_steps=4, logging_steps=2, per_device_train_batch_size=2,
                                                 gradient_accumulation_steps=2, learning_rate=2.0),
                          train_dataset=token_dataset(), topo_config=TopoConfig(target_modules=TARGETS, tau=50.0))
    per_step = TermPerStep(model)
    trainer.add_callback(per_step)
    trainer.train()
    logged = [h["topo/loss"] for h in trainer.state.log_history if "topo/loss" in h]
    values = per_step.values
    assert len(values) == 4 and values[0] != pytest.approx(values[1], rel=1e-3)  # the steps differ: the mean matters
    assert logged == pytest.approx([(values[0] + values[1]) / 2, (values[2] + values[3]) / 2], rel=1e-6)


def test_a_trainer_with_its_own_training_step_gets_the_term_through_compute_loss(tmp_path):
    data = token_dataset()
    trainer = TopoHandWritten(model=causal_lm(tiny_gpt2), args=args(tmp_path), train_dataset=data,
                              topo_config=TopoConfig(target_modules=TARGETS, tau=2.0))
    trainer.train()
    oracle, w0 = reference_step(tiny_gpt2, 2.0, data), fc_weights(causal_lm(tiny_gpt2))
    for n, w in fc_weights(oracle).items():
        assert rel_err(fc_weights(trainer.model)[n] - w0[n], w - w0[n]) < 1e-5, n
    assert [h for h in trainer.state.log_history if "topo/loss" in h]


def test_fp16_loss_scale_scales_the_term_like_the_task_loss(tmp_path):
    """With a loss scale S the whole gradient, term included, is S times the unscaled one."""
    data = token_dataset(n=4)
    grads = []
    for scale in (None, 1024.0):
        trainer = TopoTrainer(model=causal_lm(tiny_gpt_neo), args=args(tmp_path / str(scale)), train_dataset=data,
                              topo_config=TopoConfig(target_modules=TARGETS, tau=50.0))
        if scale is not None:
            trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
        trainer.current_gradient_accumulation_steps = 1  # set by train() otherwise
        batch = {k: torch.tensor(v) for k, v in data[:4].items()}
        trainer.training_step(trainer.model, batch)
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if "c_fc.weight" in n})
    for n, g in grads[0].items():
        assert rel_err(grads[1][n] / 1024.0, g) < 1e-6, n


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager"])
def test_compiled_steps_equal_eager_with_a_schedule(tmp_path, backend):
    """torch_compile=True with a tau schedule (coef changes every step) and accumulation: the same weights."""
    torch._dynamo.reset()
    kw = dict(max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=2, learning_rate=0.1)
    runs, models = {}, {}
    for compiled, tau in ((False, 0.0), (False, 30.0), (True, 30.0)):
        topo = TopoConfig(target_modules=TARGETS, tau=tau, tau_schedule=["linear:3:0:1"])
        models[compiled, tau] = causal_lm(tiny_gpt_neo)
        compile_kw = dict(torch_compile=True, torch_compile_backend=backend) if compiled else {}  # a backend alone compiles
        trainer = TopoTrainer(model=models[compiled, tau], train_dataset=token_dataset(), topo_config=topo,
                              args=args(tmp_path / f"{compiled}{tau}", **compile_kw, **kw))
        trainer.train()
        runs[compiled, tau] = trainer
    assert runs[True, 30.0].model_wrapped is not models[True, 30.0]  # really compiled
    assert runs[False, 30.0].model_wrapped is models[False, 30.0]
    plain, eager, compiled = (fc_weights(models[k]) for k in ((False, 0.0), (False, 30.0), (True, 30.0)))
    for n, w in eager.items():
        assert rel_err(compiled[n], w) < 1e-5, n
        assert rel_err(plain[n], w) > 1e-3, n  # the term matters: dropping it would show
    logs = [[h["topo/tau"] for h in runs[k].state.log_history if "topo/tau" in h] for k in ((False, 30.0), (True, 30.0))]
    assert logs[0] == logs[1] == pytest.approx([0.0, 10.0, 20.0])
