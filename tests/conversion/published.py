"""Minimal re-implementations of the paper's source architectures, saved exactly as the published files are.

Written from the documented structure of karpathy/nanoGPT's ``model.py``, torchvision's ``vit_b_32`` and
``resnet18/50`` and FFCV's BlurPool, with their key names, and independent of the converter's own
reference forwards (nn.MultiheadAttention and a masked softmax here, functional code there):

- :func:`save_nanogpt`: nanoGPT ``train.py``'s dict, keys ``_orig_mod.``-prefixed (a compiled model);
- :func:`save_vit`: torchvision's reference-trainer dict, an ``argparse.Namespace`` under ``"args"``;
- :func:`save_resnet`: a plain state dict with BlurPool's ``.conv.weight`` / ``.blur_filter`` keys.
"""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

# ----------------------------------------------------------------------------- nanoGPT


class NanoAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.n_head = n_head

    def forward(self, x):  # x: (b, t, c)
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.n_head)  # (b, nh, t, t)
        att = att.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        return self.c_proj((att @ v).transpose(1, 2).reshape(b, t, c))


class NanoMLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()  # exact
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class NanoBlock(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = NanoAttention(n_embd, n_head, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = NanoMLP(n_embd, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's GPT: token + position embeddings, pre-LN blocks, final LayerNorm, head tied to wte."""

    def __init__(self, n_layer=2, n_head=4, n_embd=32, block_size=32, vocab_size=50304, bias=False, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                               vocab_size=vocab_size, dropout=0.0)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([NanoBlock(n_embd, n_head, bias) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, bias=bias)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        with torch.no_grad():  # LayerNorm affine parameters away from 1 / 0, so that a dropped one shows
            for name, p in self.named_parameters():
                if ".ln_" in name or name.startswith("transformer.ln_f"):
                    p.add_(0.1 * torch.randn_like(p))

    def forward(self, idx):  # (b, t) -> (b, t, vocab)
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def save_nanogpt(model: NanoGPT, path) -> None:
    """nanoGPT ``train.py``'s checkpoint of a compiled model."""
    state = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4).state_dict()
    config = {"batch_size": 12, "learning_rate": 6e-4, "dataset": "fineweb10B", "compile": True}
    torch.save({"model": state, "optimizer": optimizer, "model_args": model.model_args, "iter_num": 100,
                "best_val_loss": torch.tensor(3.25), "config": config}, path)


# ----------------------------------------------------------------------------- torchvision ViT


class EncoderBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, mlp), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp, d), nn.Dropout(0.0))

    def forward(self, x):
        h = self.ln_1(x)
        x = x + self.self_attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, tokens: int, d: int, heads: int, mlp: int, layers: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(0.02 * torch.randn(1, tokens, d))
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(d, heads, mlp)) for i in range(layers)))
        self.ln = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        return self.ln(self.layers(x + self.pos_embedding))


class TinyViT(nn.Module):
    """torchvision's VisionTransformer: patch conv, class token first, encoder, head on the class token."""

    def __init__(self, image_size=32, patch=8, d=48, heads=12, mlp=96, layers=2, classes=10, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, d, kernel_size=patch, stride=patch)
        self.class_token = nn.Parameter(0.02 * torch.randn(1, 1, d))
        self.encoder = Encoder((image_size // patch) ** 2 + 1, d, heads, mlp, layers)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(d, classes)))

    def forward(self, images):  # (b, 3, H, W) -> (b, classes)
        x = self.conv_proj(images).reshape(images.shape[0], self.class_token.shape[-1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def save_vit(model: TinyViT, path, model_name: str = "vit_b_32") -> None:
    """torchvision's reference classification trainer's checkpoint."""
    args = argparse.Namespace(model=model_name, lr=0.003, epochs=300, batch_size=512, opt="adamw",
                              output_dir="out", label_smoothing=0.11, mixup_alpha=0.2)
    optimizer = torch.optim.AdamW(model.parameters()).state_dict()
    torch.save({"model": model.state_dict(), "optimizer": optimizer, "lr_scheduler": {"last_epoch": 3},
                "epoch": 3, "args": args}, path)


# ----------------------------------------------------------------------------- FFCV BlurPool ResNet


class BlurPoolConv2d(nn.Module):
    """FFCV's BlurPool: a fixed depthwise [1,2,1] x [1,2,1] / 16 blur (padding 1), then the wrapped conv."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv
        taps = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
        self.register_buffer("blur_filter", taps.repeat(conv.in_channels, 1, 1, 1))

    def forward(self, x):
        return self.conv(F.conv2d(x, self.blur_filter, padding=1, groups=self.conv.in_channels))


def _conv_bn(c_in, c_out, k, stride):
    return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, 1)
        self.downsample = (nn.Sequential(*_conv_bn(c_in, planes, 1, stride))
                           if stride != 1 or c_in != planes else None)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 1, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)  # torchvision (v1.5): the stride on the 3 x 3
        self.conv3, self.bn3 = _conv_bn(planes, 4 * planes, 1, 1)
        self.downsample = (nn.Sequential(*_conv_bn(c_in, 4 * planes, 1, stride))
                           if stride != 1 or c_in != 4 * planes else None)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(nn.Module):
    """torchvision's ResNet (7 x 7 stem, max-pool, stages, average pool, fc) with FFCV's BlurPool applied."""

    def __init__(self, block=BasicBlock, depths=(2, 1, 1), width=16, classes=10, blurpool=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1, self.bn1 = _conv_bn(3, width, 7, 2)
        c_in = width
        for s, depth in enumerate(depths):
            planes = width * 2 ** s
            blocks = [block(c_in if j == 0 else planes * block.expansion, planes, 2 if s and not j else 1)
                      for j in range(depth)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            c_in = planes * block.expansion
        self.fc = nn.Linear(c_in, classes)
        with torch.no_grad():  # trained-looking batch-norm statistics
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
                    m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
        if blurpool:
            self._blur(self)
        self.eval()

    def _blur(self, module):
        for name, child in module.named_children():
            if isinstance(child, nn.Conv2d) and max(child.stride) > 1 and child.in_channels >= 16:
                setattr(module, name, BlurPoolConv2d(child))
            else:
                self._blur(child)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        s = 1
        while hasattr(self, f"layer{s}"):
            x = getattr(self, f"layer{s}")(x)
            s += 1
        return self.fc(x.mean(dim=(2, 3)))


def save_resnet(model: TinyResNet, path) -> None:
    """FFCV's ``torch.save(model.state_dict())``."""
    torch.save(model.state_dict(), path)


# ----------------------------------------------------------------------------- trained-looking topography


@torch.no_grad()
def make_topographic(layer: nn.Module, seed: int = 0) -> None:
    """Give a Linear/Conv2d the weights of a perfect TopoNet layer: each unit's weight vector a bilinear
    blend of four random corner vectors by its place on the ``h x w`` sheet (TopoLoss close to 0)."""
    from hf_toponets.core.sheet import sheet_shape

    rows = layer.weight.flatten(1)  # (units, d)
    (h, w), d = sheet_shape(rows.shape[0]), rows.shape[1]
    g = torch.Generator().manual_seed(seed)
    a, b, c, e = (rows.std() * torch.randn(d, generator=g) for _ in range(4))
    r, s = torch.linspace(0, 1, h)[:, None, None], torch.linspace(0, 1, w)[None, :, None]
    sheet = (1 - r) * (1 - s) * a + (1 - r) * s * b + r * (1 - s) * c + r * s * e  # (h, w, d)
    layer.weight.copy_(sheet.reshape(layer.weight.shape))


def topographic_nanogpt(seed: int = 0, **kwargs) -> NanoGPT:
    """A nanoGPT whose every ``mlp.c_fc`` looks trained with TopoLoss (the paper's targets)."""
    model = NanoGPT(seed=seed, **kwargs)
    for i, block in enumerate(model.transformer.h):
        make_topographic(block.mlp.c_fc, seed + i)
    return model


def topographic_vit(seed: int = 0, **kwargs) -> TinyViT:
    """A ViT whose every ``mlp.3`` looks trained with TopoLoss (the paper's targets)."""
    model = TinyViT(seed=seed, **kwargs)
    for i, layer in enumerate(model.encoder.layers):
        make_topographic(layer.mlp[3], seed + i)
    return model.eval()


def topographic_resnet(seed: int = 0, **kwargs) -> TinyResNet:
    """A BlurPool ResNet whose every convolution inside a residual block looks trained with TopoLoss."""
    model = TinyResNet(seed=seed, **kwargs)
    convs = [m for name, m in model.named_modules() if name.startswith("layer") and isinstance(m, nn.Conv2d)]
    for i, conv in enumerate(convs):
        make_topographic(conv, seed + i)
    return model
