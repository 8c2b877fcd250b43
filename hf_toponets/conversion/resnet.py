"""torchvision ResNet state dicts (FFCV-trained, with BlurPool) -> transformers' ResNet classifiers.

torchvision names a ResNet's weights ``conv1``/``bn1`` (the 7 x 7 stem), ``layer{s}.{j}.conv{k}``/``bn{k}``
(block ``j`` of stage ``s``; k = 1..2 for BasicBlock, ResNet-18/34; 1..3 for Bottleneck, ResNet-50/101/152),
``layer{s}.{j}.downsample.0``/``.1`` (the projection shortcut) and ``fc``. FFCV's BlurPool wraps every
convolution with stride > 1 and >= 16 input channels: its weight moves to ``<name>.conv.weight`` beside a
``<name>.blur_filter`` buffer ``(c_in, 1, 3, 3)`` holding ``[1, 2, 1]^T [1, 2, 1] / 16``.

A file with blur filters becomes a :class:`~.blurpool_resnet.BlurPoolResNetForImageClassification`, one
without a plain ``ResNetForImageClassification``. Depth and block type come from the keys; widths and
classes from the shapes. torchvision strides the first block of stages 2, 3, ..., in a Bottleneck on its
3 x 3 convolution (transformers' ``downsample_in_bottleneck=False``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers import ResNetConfig, ResNetForImageClassification

from .blurpool_resnet import BlurConv2d, BlurPoolResNetConfig, BlurPoolResNetForImageClassification
from .weights import check_keys, count_indexed, load_weights

FORMAT = "resnet"
# the paper: every convolution of the residual blocks (their projection shortcuts included), not the stem
DEFAULT_TARGETS = r"resnet\.encoder\.stages\.\d+\.layers\.\d+\.(layer\.\d+|shortcut)\.convolution"
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
BLUR = torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])) / 16  # (3, 3)


def is_resnet(state: dict[str, torch.Tensor]) -> bool:
    """Whether a (prefix-stripped) state dict has torchvision ResNet's key names."""
    return "fc.weight" in state and any(k.startswith("layer1.0.conv1.") for k in state)


def unwrap_blurpool(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``(state with X.conv.weight renamed X.weight and the blur buffers dropped, [X, ...] blurred)``.

    Raises ``ValueError`` when a blur filter is not FFCV's fixed ``[1, 2, 1]^T [1, 2, 1] / 16``.
    """
    blurred = sorted(k[: -len(".blur_filter")] for k in state if k.endswith(".blur_filter"))
    out = {k: v for k, v in state.items() if not k.endswith(".blur_filter")}
    for name in blurred:
        blur = state[f"{name}.blur_filter"]
        if blur.ndim != 4 or blur.shape[1:] != (1, 3, 3) or not torch.equal(blur.float(), BLUR.expand_as(blur)):
            raise ValueError(f"convert_checkpoint: {name}.blur_filter of shape {tuple(blur.shape)} is not FFCV's fixed "
                             "depthwise [1, 2, 1] x [1, 2, 1] / 16 blur; the shapes fit no BlurPool layout")
        if f"{name}.conv.weight" not in out:
            raise ValueError(f"convert_checkpoint: the resnet checkpoint has {name}.blur_filter but is missing keys "
                             f"{name}.conv.weight")
        out[f"{name}.weight"] = out.pop(f"{name}.conv.weight")
    return out, blurred


def _stage_depths(state: dict[str, torch.Tensor]) -> list[int]:
    depths = []
    while f"layer{len(depths) + 1}.0.conv1.weight" in state:
        depths.append(count_indexed(state, f"layer{len(depths) + 1}.", ".conv1.weight"))
    return depths


def module_names(state: dict[str, torch.Tensor], depths: list[int], bottleneck: bool) -> dict[str, str]:
    """``{torchvision module: transformers module}`` for the stem, every block's conv/bn pairs, shortcuts and fc."""
    names = {"conv1": "resnet.embedder.embedder.convolution", "bn1": "resnet.embedder.embedder.normalization",
             "fc": "classifier.1"}
    for s, depth in enumerate(depths):
        for j in range(depth):
            src, dst = f"layer{s + 1}.{j}", f"resnet.encoder.stages.{s}.layers.{j}"
            for k in range(3 if bottleneck else 2):
                names[f"{src}.conv{k + 1}"] = f"{dst}.layer.{k}.convolution"
                names[f"{src}.bn{k + 1}"] = f"{dst}.layer.{k}.normalization"
        if f"layer{s + 1}.0.downsample.0.weight" in state:  # a projection shortcut, first block only
            names[f"layer{s + 1}.0.downsample.0"] = f"resnet.encoder.stages.{s}.layers.0.shortcut.convolution"
            names[f"layer{s + 1}.0.downsample.1"] = f"resnet.encoder.stages.{s}.layers.0.shortcut.normalization"
    return names


def _params(module: str) -> tuple[str, ...]:
    if module == "fc":
        return ("weight", "bias")
    is_bn = module.endswith("downsample.1") or module.rsplit(".", 1)[-1].startswith("bn")
    return BN_KEYS if is_bn else ("weight",)


def resnet_config(state: dict[str, torch.Tensor], depths: list[int], bottleneck: bool) -> dict:
    """The ``ResNetConfig`` arguments: widths, classes and channels from the shapes, depths from the keys."""
    stem = state["conv1.weight"]
    if stem.ndim != 4 or stem.shape[2:] != (7, 7) or not depths:
        raise ValueError(f"convert_checkpoint: a resnet stem conv1 of shape {tuple(stem.shape)} and stage depths {depths} "
                         "fit no torchvision ResNet layout (a 7 x 7 stem, then stages layer1, layer2, ...)")
    last = "conv3" if bottleneck else "conv2"
    return dict(num_channels=stem.shape[1], embedding_size=stem.shape[0], depths=depths,
                hidden_sizes=[state[f"layer{s + 1}.0.{last}.weight"].shape[0] for s in range(len(depths))],
                layer_type="bottleneck" if bottleneck else "basic", hidden_act="relu",
                downsample_in_first_stage=False, downsample_in_bottleneck=False, num_labels=state["fc.weight"].shape[0])


def build_model(state: dict[str, torch.Tensor]) -> ResNetForImageClassification:
    """A (BlurPool) ResNet classifier holding a torchvision ResNet state dict's weights (in eval mode)."""
    state, blurred = unwrap_blurpool(state)
    depths, bottleneck = _stage_depths(state), "layer1.0.conv3.weight" in state
    names = module_names(state, depths, bottleneck)
    check_keys(state, {f"{m}.{p}" for m in names for p in _params(m)}, FORMAT)
    config = resnet_config(state, depths, bottleneck)
    model = (BlurPoolResNetForImageClassification(BlurPoolResNetConfig(**config)) if blurred
             else ResNetForImageClassification(ResNetConfig(**config)))
    load_weights(model, {f"{names[m]}.{p}": state[f"{m}.{p}"] for m in names for p in _params(m)}, FORMAT)
    if blurred:
        stated = sorted(names.get(b, b) for b in blurred)
        rule = sorted(n for n, m in model.named_modules() if isinstance(m, BlurConv2d))
        if stated != rule:
            raise ValueError(f"convert_checkpoint: the resnet checkpoint blurs {sorted(blurred)}, but FFCV's BlurPool "
                             f"rule (stride > 1, >= 16 input channels) blurs {rule}; the layout fits no BlurPool ResNet")
    return model.eval()


def _conv(x: torch.Tensor, state: dict, name: str, stride: int) -> torch.Tensor:
    if f"{name}.blur_filter" in state:  # BlurPool: blur (stride 1, zero padding 1), then the strided conv
        x = F.conv2d(x, state[f"{name}.blur_filter"], padding=1, groups=x.shape[1])
        name = f"{name}.conv"
    weight = state[f"{name}.weight"]
    return F.conv2d(x, weight, stride=stride, padding=weight.shape[-1] // 2)


def _bn(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                        state[f"{name}.bias"], training=False, eps=1e-5)


@torch.no_grad()
def reference_logits(state: dict[str, torch.Tensor], pixel_values: torch.Tensor) -> torch.Tensor:
    """torchvision's (BlurPool) ResNet forward from its state dict: ``(batch, c, H, W)`` -> ``(batch, classes)``."""
    x = F.max_pool2d(F.relu(_bn(_conv(pixel_values, state, "conv1", 2), state, "bn1")), 3, 2, 1)
    bottleneck, s = "layer1.0.conv3.weight" in state or "layer1.0.conv3.conv.weight" in state, 1
    while any(k.startswith(f"layer{s}.0.") for k in state):
        for j in range(count_indexed(state, f"layer{s}.", ".bn1.weight")):
            block, stride = f"layer{s}.{j}", 2 if s > 1 and j == 0 else 1
            convs = (1, 2, 3) if bottleneck else (1, 2)
            out = x
            for k in convs:  # the stride sits on the 3 x 3 convolution: conv2 in a Bottleneck, conv1 in a BasicBlock
                strided = k == (2 if bottleneck else 1)
                out = _bn(_conv(out, state, f"{block}.conv{k}", stride if strided else 1), state, f"{block}.bn{k}")
                out = F.relu(out) if k != convs[-1] else out
            if f"{block}.downsample.1.weight" in state:
                x = _bn(_conv(x, state, f"{block}.downsample.0", stride), state, f"{block}.downsample.1")
            x = F.relu(out + x)
        s += 1
    return F.linear(x.mean(dim=(2, 3)), state["fc.weight"], state["fc.bias"])


def example_input(config: ResNetConfig, generator: torch.Generator) -> torch.Tensor:
    """Two random normalised 224 x 224 images ``(2, channels, 224, 224)``."""
    return torch.randn(2, config.num_channels, 224, 224, generator=generator)
