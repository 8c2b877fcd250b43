"""TopoTrainer: exact gradients per optimizer step, logging, checkpoints, resume, a real run."""

import json
import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, TrainingArguments

from conftest import sgd_step, tiny_gpt2, tiny_gpt_neo
from hf_toponets import TopoConfig, TopoTrainer, topo_loss
from hf_toponets.core.metadata import read_topo_config

TARGETS = ["c_fc"]


def token_dataset(n=8, t=16, vocab=128, seed=0, pad_some=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 1, (n, t), generator=g)
    labels = ids.clone()
    if pad_some:  # uneven numbers of valid labels per sample: token normalisation matters
        for i in range(n):
            labels[i, t - 1 - i % 5 :] = -100
    return Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})


def args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=1,
        learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0,
        report_to=[], save_strategy="no", logging_steps=1, seed=0, use_cpu=True, disable_tqdm=True,
        dataloader_drop_last=False,
    )
    base.update(kw)
    return TrainingArguments(**base)


def causal_lm(build, seed=0):
    model = build(seed=seed)
    # transformers 5.24 names no loss_type for GPT2LMHeadModel, so its Trainer counts label position 0
    # in num_items_in_batch (t instead of t - 1 per row); the model's loss shifts anyway. Name it.
    model.loss_type = "ForCausalLM"
    return model


def train_one_step(tmp_path, build=tiny_gpt_neo, tau=2.0, accepts_loss_kwargs=None, dataset=None, **kw):
    model = causal_lm(build)
    trainer = TopoTrainer(model=model, args=args(tmp_path, **kw), train_dataset=dataset or token_dataset(),
                          topo_config=TopoConfig(target_modules=TARGETS, tau=tau))
    if accepts_loss_kwargs is not None:
        trainer.model_accepts_loss_kwargs = accepts_loss_kwargs
    trainer.train()
    return model, trainer


def manual_step(build, tau, dataset, lr=0.5):
    """Oracle: one SGD step on the full batch with loss = task + tau * topo_loss, by hand."""
    model = build(seed=0)
    ids = torch.tensor(dataset["input_ids"])
    labels = torch.tensor(dataset["labels"])
    out = model(input_ids=ids, labels=labels)
    loss = out.loss + tau * topo_loss(model, TopoConfig(target_modules=TARGETS))
    return sgd_step(model, loss, lr)


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def fc_weights(model):
    return {n: p.detach() for n, p in model.named_parameters() if "c_fc.weight" in n}


@pytest.mark.parametrize("build", [tiny_gpt_neo, tiny_gpt2])
@pytest.mark.parametrize("token_normalised", [True, False])
def test_accumulation_equals_full_batch_and_oracle(tmp_path, build, token_normalised):
    data = token_dataset(pad_some=token_normalised)
    accepts = None if token_normalised else False
    big, _ = train_one_step(tmp_path / "a", build, dataset=data, accepts_loss_kwargs=accepts)
    acc, _ = train_one_step(tmp_path / "b", build, dataset=data, accepts_loss_kwargs=accepts,
                            per_device_train_batch_size=2, gradient_accumulation_steps=4)
    oracle = manual_step(build, 2.0, data)
    w_big, w_acc, w_or = fc_weights(big), fc_weights(acc), fc_weights(oracle)
    w0 = fc_weights(build(seed=0))
    for n in w_or:
        step = w_or[n] - w0[n]
        assert rel_err(w_acc[n] - w0[n], step) < 1e-5, n
        assert rel_err(w_big[n] - w0[n], step) < 1e-5, n
        assert rel_err(w_acc[n], w_big[n]) < 1e-6, n


def test_tau_zero_changes_nothing_but_logs(tmp_path):
    data = token_dataset()
    model, trainer = train_one_step(tmp_path, tau=0.0, dataset=data)
    oracle = manual_step(tiny_gpt_neo, 0.0, data)
    for n, w in fc_weights(oracle).items():
        assert torch.allclose(fc_weights(model)[n], w, rtol=0, atol=1e-6)
    logged = [h for h in trainer.state.log_history if "topo/loss" in h]
    assert logged and logged[0]["topo/tau"] == 0.0


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_step(tmp_path, reentrant):
    data = token_dataset()
    plain, _ = train_one_step(tmp_path / "p", dataset=data)
    ckpt, trainer = train_one_step(tmp_path / "c", dataset=data, activation_checkpointing=True,
                                   activation_checkpointing_kwargs={"use_reentrant": reentrant})
    for n, w in fc_weights(plain).items():
        assert rel_err(fc_weights(ckpt)[n], w) < 1e-6, n
    logged = [h for h in trainer.state.log_history if "topo/loss" in h]
    assert len(logged) == 1  # the recomputation does not add log entries


def test_logging_averages_micro_steps_and_names_layers(tmp_path):
    _, trainer = train_one_step(tmp_path, max_steps=4, logging_steps=2, per_device_train_batch_size=2,
                                gradient_accumulation_steps=2)
    logs = [h for h in trainer.state.log_history if "loss" in h and "eval_loss" not in h]
    assert [h["step"] for h in logs] == [2, 4]
    for h in logs:
        layers = [v for k, v in h.items() if k.startswith("topo/transformer.")]
        assert len(layers) == 2
        assert h["topo/loss"] == pytest.approx(sum(layers) / 2)
        assert h["topo/tau"] == 2.0
    assert logs[1]["topo/loss"] < logs[0]["topo/loss"]  # the term is being minimised


def test_eval_loss_is_the_task_loss(tmp_path):
    data = token_dataset()
    model = tiny_gpt_neo(seed=0)
    trainer = TopoTrainer(model=model, args=args(tmp_path, per_device_eval_batch_size=8), train_dataset=data,
                          eval_dataset=data, topo_config=TopoConfig(target_modules=TARGETS, tau=50.0))
    metrics = trainer.evaluate()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(data["input_ids"]), labels=torch.tensor(data["labels"])).loss
    assert metrics["eval_loss"] == pytest.approx(expected.item(), rel=1e-5)


def test_checkpoint_carries_sheets_and_reloads(tmp_path):
    model, trainer = train_one_step(tmp_path / "run", build=tiny_gpt2)
    trainer.save_model(str(tmp_path / "final"))
    config = json.loads((tmp_path / "final" / "config.json").read_text())
    assert config["topo"]["sheets"] == {f"transformer.h.{i}.mlp.c_fc": [8, 16, 32] for i in range(2)}
    assert config["topo"]["tau"] == 2.0 and config["topo"]["hf_toponets_version"]
    assert (tmp_path / "final" / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    for (n, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), n
    assert TopoConfig.from_pretrained(str(tmp_path / "final")) == read_topo_config(loaded)


def test_resume_continues_exactly_with_a_schedule(tmp_path):
    sched = dict(max_steps=4, per_device_train_batch_size=2, save_strategy="steps", save_steps=2, learning_rate=0.1)
    topo = TopoConfig(target_modules=TARGETS, tau=3.0, tau_schedule=["linear:3:0:1"])
    data = token_dataset()
    full = TopoTrainer(model=tiny_gpt_neo(seed=0), args=args(tmp_path / "full", **sched), train_dataset=data, topo_config=topo)
    full.train()
    part = TopoTrainer(model=tiny_gpt_neo(seed=0), args=args(tmp_path / "part", **{**sched, "max_steps": 2}),
                       train_dataset=data, topo_config=topo)
    part.train()
    # a fresh model (other seed) resumed from the checkpoint: weights, schedule and data order come back
    resumed = TopoTrainer(model=tiny_gpt_neo(seed=1), args=args(tmp_path / "part", **sched), train_dataset=data,
                          topo_config=topo)
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-2"))

    def history(t):
        return {h["step"]: (h["loss"], h["topo/loss"], h["topo/tau"]) for h in t.state.log_history if "topo/loss" in h}

    assert history(resumed)[3] == pytest.approx(history(full)[3], rel=1e-6)
    assert history(resumed)[4] == pytest.approx(history(full)[4], rel=1e-6)
    assert [history(full)[s][2] for s in (1, 2, 3, 4)] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    for n, w in fc_weights(full.model).items():
        assert rel_err(fc_weights(resumed.model)[n], w) < 1e-6


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="pass topo_config"):
        TopoTrainer(model=tiny_gpt_neo(), args=args(tmp_path), train_dataset=token_dataset())
    with pytest.raises(ValueError, match="matched no module of GPTNeoForCausalLM; some of its layers"):
        TopoTrainer(model=tiny_gpt_neo(), args=args(tmp_path), train_dataset=token_dataset(),
                    topo_config=TopoConfig(target_modules=["fc1"]))
    with pytest.raises(ValueError, match="GPTNeoMLP"):
        TopoTrainer(model=tiny_gpt_neo(), args=args(tmp_path), topo_config=TopoConfig(target_modules=["mlp"]))
    wrong = tiny_gpt_neo(inner=64)
    wrong.config.topo = TopoConfig().with_sheets({"transformer.h.0.mlp.c_fc": [8, 16, 32]}).to_dict()
    with pytest.raises(ValueError, match="does not belong to these weights"):
        TopoTrainer(model=wrong, args=args(tmp_path), topo_config=TopoConfig())


@pytest.mark.slow
def test_real_run_gets_smoother_than_tau_zero(tmp_path):
    data = token_dataset(n=64, t=32, seed=3)
    kw = dict(max_steps=30, per_device_train_batch_size=8, optim="adamw_torch", learning_rate=3e-3, logging_steps=10)
    topo, t1 = train_one_step(tmp_path / "t", tau=5.0, dataset=data, **kw)
    base, t0 = train_one_step(tmp_path / "b", tau=0.0, dataset=data, **kw)
    logs = [h["topo/loss"] for h in t1.state.log_history if "topo/loss" in h]
    assert logs[-1] < logs[0]
    cfg = TopoConfig(target_modules=TARGETS)
    assert topo_loss(topo, cfg).item() < 0.5 * topo_loss(base, cfg).item()
    final_task = [h["loss"] for h in t1.state.log_history if "loss" in h]
    assert all(math.isfinite(x) for x in final_task)
