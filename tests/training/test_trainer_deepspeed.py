"""DeepSpeed: ZeRO-2 and ZeRO-3 steps on 2 CPU ranks equal one process; the fp16 loss scale is DeepSpeed's."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from safetensors.torch import load_file

from conftest import tiny_gpt2
from test_trainer import args, causal_lm, token_dataset
from test_trainer_distributed import rel, torchrun

from hf_toponets import TopoConfig, TopoTrainer

WORKER = Path(__file__).with_name("deepspeed_worker.py")


@pytest.mark.slow
def test_zero2_and_zero3_steps_equal_one_process(tmp_path):
    pytest.importorskip("deepspeed")
    folder = tmp_path / "gpt2"
    tiny_gpt2(seed=0).save_pretrained(folder)  # GPT-2: Conv1D, whose fan-in ZeRO-3 hides from weight.shape
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    model.loss_type = "ForCausalLM"
    one = TopoTrainer(model=model, args=args(tmp_path / "one"), train_dataset=token_dataset(),
                      topo_config=TopoConfig(target_modules=["c_fc"], tau=2.0))
    one.train()
    reference = {n: p.detach() for n, p in model.named_parameters() if "c_fc" in n}
    printed = torchrun(tmp_path / "ds", str(folder), worker=WORKER)
    assert "ZERO3 shape at load (0,)" in printed  # really partitioned at load
    sheets = {f"transformer.h.{i}.mlp.c_fc": [8, 16, 32] for i in range(2)}
    assert printed.count(f"sheets {sheets}") == 2
    for stage in (2, 3):
        step = load_file(tmp_path / f"ds.zero{stage}.safetensors")
        assert step.keys() == reference.keys()
        for name, w in reference.items():
            assert rel(step[name], w) < 1e-6, (stage, name)


class FakeEngine:
    """What TopoTrainer reads of a DeepSpeedEngine: fp16_enabled() and its (ZeRO) optimizer's loss_scale."""

    def __init__(self, fp16: bool, scale: float):
        self.optimizer = SimpleNamespace(loss_scale=scale)
        self._fp16 = fp16

    def fp16_enabled(self) -> bool:
        return self._fp16


@pytest.mark.parametrize("fp16, expected", [(True, 65536.0), (False, 1.0)])
def test_the_loss_scale_under_deepspeed_is_the_engines(tmp_path, fp16, expected):
    trainer = TopoTrainer(model=causal_lm(tiny_gpt2), args=args(tmp_path), train_dataset=token_dataset(),
                          topo_config=TopoConfig(target_modules=["c_fc"], tau=4.0))
    trainer.is_deepspeed_enabled, trainer.model_wrapped = True, FakeEngine(fp16, 65536.0)
    assert trainer.loss_scale() == expected
    assert trainer.topo_coef(4.0) == pytest.approx(4.0 / 2 * expected)


def test_blimp_under_zero3_is_refused(tmp_path, monkeypatch):
    import hf_toponets.training.mixin as mixin

    monkeypatch.setattr(mixin, "is_deepspeed_zero3_enabled", lambda: True)
    with pytest.raises(ValueError, match="blimp_data is not supported under DeepSpeed ZeRO-3"):
        TopoTrainer(model=causal_lm(tiny_gpt2), args=args(tmp_path), train_dataset=token_dataset(), processing_class=object(),
                    blimp_data=str(tmp_path), topo_config=TopoConfig(target_modules=["c_fc"], tau=1.0))
