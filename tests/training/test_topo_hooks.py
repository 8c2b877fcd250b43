"""topo_hooks: a hand-written loop's optimizer step equals TopoTrainer's; schedules, frozen targets, bad input."""

import pytest
import torch

from conftest import tiny_gpt_neo
from hf_toponets import TopoConfig, TopoTrainer, topo_hooks, topo_loss
from test_trainer import args, fc_weights, rel_err, token_dataset

TOPO = TopoConfig(target_modules=["c_fc"], tau=2.0)


def manual_loop(data, accumulation_steps, topo=TOPO, lr=0.5):
    """Plain PyTorch: SGD, mean token loss per micro-batch / accumulation steps, the term from topo_hooks."""
    model = tiny_gpt_neo(seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    ids, labels = torch.tensor(data["input_ids"]), torch.tensor(data["labels"])
    with topo_hooks(model, topo, accumulation_steps=accumulation_steps) as hooks:
        for chunk_ids, chunk_labels in zip(ids.chunk(accumulation_steps), labels.chunk(accumulation_steps)):
            (model(input_ids=chunk_ids, labels=chunk_labels).loss / accumulation_steps).backward()
        optimizer.step()
        values = hooks.pop_values()
    assert not model.transformer.h[0].mlp.c_fc._forward_hooks  # removed on exit
    return model, values


@pytest.mark.parametrize("accumulation_steps", [1, 2])
def test_a_manual_step_equals_topo_trainers(tmp_path, accumulation_steps):
    data = token_dataset()  # 8 rows of 16 tokens, no padding: per-micro-batch means average to the full mean
    trainer_model = tiny_gpt_neo(seed=0)
    TopoTrainer(model=trainer_model, args=args(tmp_path, per_device_train_batch_size=8 // accumulation_steps,
                                               gradient_accumulation_steps=accumulation_steps),
                train_dataset=data, topo_config=TOPO).train()
    model, values = manual_loop(data, accumulation_steps)
    w0 = fc_weights(tiny_gpt_neo(seed=0))
    for name, w in fc_weights(trainer_model).items():
        assert rel_err(fc_weights(model)[name] - w0[name], w - w0[name]) < 1e-5, name
    assert values.keys() == {"transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"}
    assert sum(v.item() for v in values.values()) / 2 == pytest.approx(topo_loss(tiny_gpt_neo(seed=0), TOPO).item())


def test_set_step_follows_the_schedule_and_no_grad_adds_nothing():
    model = tiny_gpt_neo()
    config = TopoConfig(target_modules=["c_fc"], tau=4.0, tau_schedule=["linear:10:0:1"])
    with topo_hooks(model, config, accumulation_steps=2) as hooks:
        assert hooks.coef.item() == 0.0 and not hooks.attach  # tau_at(0) = 0: measured only
        hooks.set_step(5)
        assert hooks.coef.item() == pytest.approx(config.tau_at(5) / (2 * 2))  # tau_t / (n_layers * accumulation)
        with torch.no_grad():
            model(input_ids=torch.zeros(1, 4, dtype=torch.long))
        assert hooks.pop_values() == {}


def test_frozen_targets_and_bad_input_are_named():
    model = tiny_gpt_neo()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match=r"topo_hooks: the topographic layers \['transformer\.h\.0\.mlp\.c_fc', .* no trainable"):
        with topo_hooks(model, TOPO):
            pass
    with pytest.raises(ValueError, match=r"accumulation_steps must be a positive int, got 0"):
        with topo_hooks(tiny_gpt_neo(), TOPO, accumulation_steps=0):
            pass
    with pytest.raises(ValueError, match=r"topo_hooks: pass topo_config=.*no 'topo' entry"):
        with topo_hooks(tiny_gpt_neo()):
            pass
