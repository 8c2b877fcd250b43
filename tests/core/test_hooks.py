"""TopoHooks: the term's gradient attached to a target's output, safe for in-place consumers."""

import pytest
import torch
from torch import nn

from hf_toponets import TopoConfig, resolve_targets, topo_loss
from hf_toponets.core.hooks import TopoHooks


def conv_net():
    """A torchvision-style stack: conv -> ReLU(inplace), conv -> BN -> ReLU(inplace), linear -> ReLU(inplace)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 36, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(36, 36, 3, padding=1), nn.BatchNorm2d(36), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(36, 36), nn.ReLU(inplace=True), nn.Linear(36, 5),
    )


@pytest.mark.parametrize("targets", [["0"], ["0", "2", "7"], ["7"]])
def test_in_place_consumers_get_the_exact_gradient(targets):
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    tau, cfg = 3.0, TopoConfig(target_modules=targets)
    oracle = conv_net()  # the plain network, its loss written out
    (oracle(x).square().mean() + tau * topo_loss(oracle, cfg)).backward()

    model = conv_net()
    hooks = TopoHooks(resolve_targets(model, cfg), cfg)
    hooks.coef, hooks.active = tau / len(targets), True
    model(x).square().mean().backward()  # ReLU(inplace=True) writes into the hooked outputs
    assert set(hooks.pop_values()) == set(targets)
    for (name, a), b in zip(model.named_parameters(), oracle.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
