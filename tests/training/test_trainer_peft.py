"""TopoTrainer on a PEFT LoRA model: the exact step, smoother merged weights, adapter save / load / merge."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import tiny_gpt_neo
from hf_toponets import TopoConfig, TopoTrainer, topo_loss
from hf_toponets.core.metadata import attach_topo_config, read_topo_config
from test_trainer import args, token_dataset

peft = pytest.importorskip("peft")
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

TOPO = TopoConfig(target_modules=["c_fc"], tau=2.0)


def lora_model(seed=0, **kw):
    torch.manual_seed(seed + 1)  # init_lora_weights=False: random B, so B A != 0 from the start
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_fc", "c_proj"], init_lora_weights=False, **kw)
    return get_peft_model(tiny_gpt_neo(seed=seed), config)


def lora_params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("dora", [False, True])
def test_one_step_equals_the_hand_computed_one(tmp_path, dora):
    data = token_dataset()
    model = lora_model(use_dora=dora)
    TopoTrainer(model=model, args=args(tmp_path), train_dataset=data, topo_config=TOPO).train()
    oracle = lora_model(use_dora=dora)  # one SGD step on task + tau * TopoLoss(W + s B A), by hand
    loss = oracle(input_ids=torch.tensor(data["input_ids"]), labels=torch.tensor(data["labels"])).loss
    (loss + TOPO.tau * topo_loss(oracle, TOPO)).backward()
    before = lora_params(lora_model(use_dora=dora))
    for name, p in oracle.named_parameters():
        if p.requires_grad:
            expected = p.detach() - 0.5 * p.grad
            assert torch.allclose(lora_params(model)[name], expected, rtol=1e-5, atol=1e-7), name
            assert not torch.equal(expected, before[name]), name


@pytest.mark.slow
def test_lora_run_makes_the_merged_weights_smoother_than_tau_zero(tmp_path):
    data = token_dataset(n=32, t=16, seed=3)
    kw = dict(max_steps=30, optim="adamw_torch", learning_rate=1e-2, logging_steps=10)
    merged = {}
    for tau in (0.0, 5.0):
        model = lora_model()
        TopoTrainer(model=model, args=args(tmp_path / str(tau), **kw), train_dataset=data,
                    topo_config=TopoConfig(target_modules=["c_fc"], tau=tau)).train()
        merged[tau] = topo_loss(model.merge_and_unload(), TOPO).item()
    start = topo_loss(lora_model().merge_and_unload(), TOPO).item()
    assert merged[5.0] < 0.9 * merged[0.0] and merged[5.0] < 0.9 * start


def test_adapter_save_load_merge_round_trip(tmp_path):
    model = lora_model()
    trainer = TopoTrainer(model=model, args=args(tmp_path / "run"), train_dataset=token_dataset(), topo_config=TOPO)
    trainer.train()
    out = tmp_path / "adapter"
    trainer.save_model(str(out))
    assert {"adapter_config.json", "adapter_model.safetensors", "topo_config.json"} <= {p.name for p in out.iterdir()}
    stored = TopoConfig.from_pretrained(str(out))
    assert stored == trainer.topo_config
    assert stored.sheets == {f"transformer.h.{i}.mlp.c_fc": [8, 16, 32] for i in range(2)}  # the base model's names

    loaded = PeftModel.from_pretrained(tiny_gpt_neo(seed=0), out)  # a fresh base + the saved adapter
    assert topo_loss(loaded, stored).item() == pytest.approx(topo_loss(model, stored).item(), rel=1e-6)
    merged = loaded.merge_and_unload()
    attach_topo_config(merged, stored)
    merged.save_pretrained(tmp_path / "merged")
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["topo"]["sheets"] == stored.sheets
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert read_topo_config(plain) == stored
    ours = model.merge_and_unload()  # the trained PeftModel shares its base config: the entry is there already
    assert read_topo_config(ours) == stored
    for (name, a), b in zip(ours.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_saved_toponet_trains_on_as_lora_without_topo_config(tmp_path):
    base = tiny_gpt_neo()
    attach_topo_config(base, TopoConfig(target_modules=["c_fc"], tau=3.0))
    base.save_pretrained(tmp_path / "toponet")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "toponet"), LoraConfig(target_modules=["c_fc"]))
    trainer = TopoTrainer(model=model, args=args(tmp_path / "run"), train_dataset=token_dataset())
    assert trainer.topo_config.tau == 3.0 and list(trainer.topo_targets) == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    trainer.train()
    logged = [h for h in trainer.state.log_history if "topo/transformer.h.0.mlp.c_fc" in h]
    assert logged


def test_a_frozen_target_is_refused(tmp_path):
    model = get_peft_model(tiny_gpt_neo(), LoraConfig(target_modules=["c_proj"]))  # adapters elsewhere: c_fc frozen
    with pytest.raises(ValueError, match=r"TopoTrainer: the topographic layers \['transformer\.h\.0\.mlp\.c_fc', "
                                         r"'transformer\.h\.1\.mlp\.c_fc'\] have no trainable weight"):
        TopoTrainer(model=model, args=args(tmp_path), train_dataset=token_dataset(), topo_config=TOPO)
    TopoTrainer(model=model, args=args(tmp_path), train_dataset=token_dataset(),
                topo_config=TopoConfig(target_modules=["c_fc"], tau=0.0))  # tau = 0 only measures: allowed
