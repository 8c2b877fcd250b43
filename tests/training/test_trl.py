"""TRL's trainers with TopoTrainerMixin: SFT (full and with PEFT's peft_config) and DPO.

Oracle: one SGD step of ``class Topo<X>Trainer(TopoTrainerMixin, <X>Trainer)`` minus the same step of the plain
``<X>Trainer`` is exactly ``-lr * tau * d mean_layers(TopoLoss) / dW`` at the initial weights, whatever <X>'s loss.
"""

import pytest
import torch
from datasets import Dataset

from conftest import tiny_gpt_neo
from hf_toponets import TopoConfig, TopoTrainerMixin, topo_loss

trl = pytest.importorskip("trl")
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer  # noqa: E402

TAU, LR = 2.0, 0.5
TOPO = TopoConfig(target_modules=["c_fc"], tau=TAU)


class TopoSFTTrainer(TopoTrainerMixin, SFTTrainer):
    pass


class TopoDPOTrainer(TopoTrainerMixin, DPOTrainer):
    pass


@pytest.fixture(scope="module")
def tokenizer():
    from hf_toponets.training.data import embedded_corpus, train_tokenizer

    tok = train_tokenizer(embedded_corpus()[:100], 300)
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


def step_args(config_class, tmp_path, **kw):
    return config_class(output_dir=str(tmp_path), per_device_train_batch_size=6, max_steps=1, learning_rate=LR, optim="sgd",
                        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, report_to=[], save_strategy="no",
                        logging_steps=1, use_cpu=True, disable_tqdm=True, seed=0, **kw)


def topo_gradients(model):
    """d mean_layers(TopoLoss) / dW of every trainable parameter at the model's current weights."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(topo_loss(model, TOPO), list(params.values()), allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads)}


def assert_step_difference(topo_model, plain_model, expected_grads):
    plain = dict(plain_model.named_parameters())
    checked = 0
    for name, p in topo_model.named_parameters():
        if name in expected_grads:
            diff = p.detach() - plain[name].detach()
            expected = -LR * TAU * expected_grads[name]
            assert float((diff - expected).norm()) <= 1e-5 * float(expected.norm()) + 1e-7, name
            checked += float(expected.norm()) > 0
    assert checked >= 2  # the c_fc weights (and biases, or LoRA B) moved by the term


def sft_data(tokenizer):
    g = torch.Generator().manual_seed(0)
    return Dataset.from_dict({"input_ids": torch.randint(1, len(tokenizer) - 1, (6, 16), generator=g).tolist()})


def test_topo_sft_trainer_step_is_sft_plus_the_exact_term(tmp_path, tokenizer):
    expected = topo_gradients(tiny_gpt_neo(vocab=len(tokenizer)))
    runs = {}
    for name, cls in (("topo", TopoSFTTrainer), ("plain", SFTTrainer)):
        model = tiny_gpt_neo(vocab=len(tokenizer))
        kw = {"topo_config": TOPO} if cls is TopoSFTTrainer else {}
        trainer = cls(model=model, args=step_args(SFTConfig, tmp_path / name), train_dataset=sft_data(tokenizer),
                      processing_class=tokenizer, **kw)
        trainer.train()
        runs[name] = (model, trainer)
    assert_step_difference(runs["topo"][0], runs["plain"][0], expected)
    log = runs["topo"][1].state.log_history[0]
    assert log["topo/tau"] == TAU and log["topo/loss"] == pytest.approx(topo_loss(tiny_gpt_neo(vocab=len(tokenizer)), TOPO).item())
    assert log["loss"] == pytest.approx(runs["plain"][1].state.log_history[0]["loss"], rel=1e-6)  # the task loss alone


def test_topo_sft_trainer_with_peft_config_trains_the_adapters(tmp_path, tokenizer):
    peft = pytest.importorskip("peft")
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_fc"], lora_dropout=0.0)
    runs = {}
    for name, cls in (("topo", TopoSFTTrainer), ("plain", SFTTrainer)):
        kw = {"topo_config": TOPO} if cls is TopoSFTTrainer else {}
        torch.manual_seed(1)  # LoRA's A init
        runs[name] = cls(model=tiny_gpt_neo(vocab=len(tokenizer)), args=step_args(SFTConfig, tmp_path / name),
                         train_dataset=sft_data(tokenizer), processing_class=tokenizer, peft_config=lora, **kw)
    for (name, a), b in zip(runs["topo"].model.named_parameters(), runs["plain"].model.parameters()):
        assert torch.equal(a, b), name  # the same start
    expected = topo_gradients(runs["topo"].model)  # at the initial weights: B = 0, so only lora_B moves
    for trainer in runs.values():
        trainer.train()
    assert list(runs["topo"].topo_targets) == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    assert_step_difference(runs["topo"].model, runs["plain"].model, expected)
    runs["topo"].save_model(str(tmp_path / "adapter"))
    assert TopoConfig.from_pretrained(str(tmp_path / "adapter")).sheets == runs["topo"].topo_config.sheets


@pytest.mark.slow
def test_topo_dpo_trainer_step_is_dpo_plus_the_exact_term(tmp_path, tokenizer):
    data = Dataset.from_dict({"prompt": ["The cat", "A dog", "Some text"] * 2,
                              "chosen": [" sleeps.", " barks.", " is here."] * 2,
                              "rejected": [" sleep.", " bark.", " are here."] * 2})
    expected = topo_gradients(tiny_gpt_neo(vocab=len(tokenizer)))
    runs = {}
    for name, cls in (("topo", TopoDPOTrainer), ("plain", DPOTrainer)):
        kw = {"topo_config": TOPO} if cls is TopoDPOTrainer else {}
        model = tiny_gpt_neo(vocab=len(tokenizer))
        trainer = cls(model=model, ref_model=tiny_gpt_neo(vocab=len(tokenizer)), args=step_args(DPOConfig, tmp_path / name),
                      train_dataset=data, processing_class=tokenizer, **kw)
        trainer.train()
        runs[name] = (model, trainer)
    assert_step_difference(runs["topo"][0], runs["plain"][0], expected)
    assert runs["topo"][1].state.log_history[0]["topo/tau"] == TAU
