"""BlurPool ResNet: transformers' ResNet with FFCV's anti-aliasing blur before every strided convolution.

The paper's ResNets were trained with FFCV's ImageNet recipe, which wraps each ``nn.Conv2d`` with
stride > 1 and at least 16 input channels in a BlurPool layer: a fixed depthwise 3 x 3 blur

    B = [1, 2, 1]^T [1, 2, 1] / 16        (stride 1, zero padding 1, one copy per channel)

applied before the strided convolution. transformers' ``ResNetForImageClassification`` has no such
blur, and folding it into the convolutions is not exact at the borders (zero padding happens twice),
so converted checkpoints need this small subclass. The weights keep transformers' ResNet names (the
blur has no parameters), the blur is computed on the fly (no buffer to load or to move).

This file imports only torch and transformers: ``save_pretrained`` copies it next to the weights
(``auto_map`` in config.json), so ``trust_remote_code=True`` users load a converted model without
hf_toponets; ``import hf_toponets`` registers the classes with the Auto classes instead.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.nn import functional as F
from transformers import ResNetConfig, ResNetForImageClassification

MIN_BLUR_CHANNELS = 16  # FFCV blurs strided convolutions with at least this many input channels


@strict
class BlurPoolResNetConfig(ResNetConfig):
    """A ``ResNetConfig`` whose model blurs before every strided convolution (see the module docstring)."""

    model_type = "blurpool_resnet"


class BlurConv2d(nn.Conv2d):
    """``nn.Conv2d`` preceded by the fixed depthwise blur ``[1, 2, 1]^T [1, 2, 1] / 16`` (zero padding 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, c_in, H, W)
        taps = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
        kernel = (torch.outer(taps, taps) / 16).expand(self.in_channels, 1, 3, 3)
        x = F.conv2d(x, kernel, padding=1, groups=self.in_channels)  # same (batch, c_in, H, W)
        return super().forward(x)


def needs_blur(conv: nn.Conv2d) -> bool:
    """FFCV's rule: a convolution with stride > 1 and at least 16 input channels gets the blur."""
    return max(conv.stride) > 1 and conv.in_channels >= MIN_BLUR_CHANNELS


def blur_strided_convolutions(model: nn.Module) -> list[str]:
    """Replace every convolution that :func:`needs_blur` by a :class:`BlurConv2d` sharing its parameters.

    Returns the dotted names of the blurred convolutions, in model order.
    """
    blurred = []
    for name, module in list(model.named_modules()):
        for child_name, conv in list(module.named_children()):
            if type(conv) is nn.Conv2d and needs_blur(conv):
                new = BlurConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                 conv.dilation, conv.groups, conv.bias is not None, device=conv.weight.device,
                                 dtype=conv.weight.dtype)
                new.weight = conv.weight  # keep the initialisation (and the parameter object)
                if conv.bias is not None:
                    new.bias = conv.bias
                setattr(module, child_name, new)
                blurred.append(f"{name}.{child_name}" if name else child_name)
    return blurred


class BlurPoolResNetForImageClassification(ResNetForImageClassification):
    """transformers' ``ResNetForImageClassification`` with the BlurPool blur before each strided convolution."""

    config_class = BlurPoolResNetConfig

    def __init__(self, config: BlurPoolResNetConfig):
        super().__init__(config)
        blur_strided_convolutions(self)


# save_pretrained copies this file into the folder and writes config.json's auto_map
BlurPoolResNetConfig.register_for_auto_class()
BlurPoolResNetForImageClassification.register_for_auto_class("AutoModelForImageClassification")
