"""GPU checks (marked ``gpu``; skipped without CUDA): the loss and a TopoTrainer step on the device."""

import pytest
import torch

from conftest import tiny_gpt_neo
from hf_toponets import TopoConfig, sheet_loss, topo_loss

pytestmark = pytest.mark.gpu


def test_loss_and_gradient_on_cuda_equal_cpu():
    torch.manual_seed(0)
    x = torch.randn(48, 64, 768, requires_grad=True)
    xc = x.detach().cuda().requires_grad_()
    a, b = sheet_loss(x), sheet_loss(xc)
    assert abs(a.item() - b.item()) <= 1e-6 * a.item()
    a.backward()
    b.backward()
    assert float((xc.grad.cpu() - x.grad).norm() / x.grad.norm()) < 1e-5


def test_bf16_autocast_on_cuda_stays_float32():
    model = tiny_gpt_neo().cuda().to(torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        value = topo_loss(model, TopoConfig(target_modules=["c_fc"]))
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_trainer_bf16_step_on_cuda_matches_cpu_float32(tmp_path):
    from test_trainer import args, fc_weights, rel_err, token_dataset
    from hf_toponets import TopoTrainer

    def run(**kw):
        model = tiny_gpt_neo(seed=0)
        trainer = TopoTrainer(model=model, args=args(tmp_path / str(len(kw)), **kw), train_dataset=token_dataset(),
                              topo_config=TopoConfig(target_modules=["c_fc"], tau=2.0))
        trainer.train()
        return {k: v.float().cpu() for k, v in fc_weights(model).items()}

    cpu = run()
    gpu = run(use_cpu=False, bf16=True)
    for name, w in cpu.items():
        assert rel_err(gpu[name], w) < 1e-2, name
