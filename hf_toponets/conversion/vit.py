"""torchvision ViT checkpoints (the reference classification trainer's dict) -> transformers' ``ViTForImageClassification``.

torchvision's ``vit_b_32`` and its siblings name their weights

    conv_proj                  the patch embedding, a Conv2d with kernel = stride = patch size
    class_token                (1, 1, D)
    encoder.pos_embedding      (1, 1 + (image_size / patch)^2, D)
    encoder.layers.encoder_layer_{i}.ln_1, .ln_2                 LayerNorms, eps 1e-6
    encoder.layers.encoder_layer_{i}.self_attention.in_proj_*    q, k, v stacked: (3 D, D)
    encoder.layers.encoder_layer_{i}.self_attention.out_proj
    encoder.layers.encoder_layer_{i}.mlp.0, .mlp.3               the MLP's two Linears (exact GELU between)
    encoder.ln, heads.head                                        final LayerNorm, classifier

transformers' ViT computes the same function (pre-LN blocks, class token first, classifier on it); the
stacked projection is split into q/k/v. Every size is read from the shapes except the head count, which
no weight shows: it comes from the torchvision model name in the checkpoint's ``args`` or from the caller.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F
from transformers import ViTConfig, ViTForImageClassification

from .weights import check_keys, count_indexed, load_weights

FORMAT = "vit"
DEFAULT_TARGETS = ["mlp.fc2"]  # the paper: "the mlp.3 module in each transformer block", the MLP's second Linear
TORCHVISION_HEADS = {"vit_b_16": 12, "vit_b_32": 12, "vit_l_16": 16, "vit_l_32": 16, "vit_h_14": 16}
LAYER = "encoder.layers.encoder_layer_"
EPS = 1e-6  # torchvision's ViT LayerNorms
_LAYER_KEYS = ("ln_1.weight", "ln_1.bias", "self_attention.in_proj_weight", "self_attention.in_proj_bias",
               "self_attention.out_proj.weight", "self_attention.out_proj.bias", "ln_2.weight", "ln_2.bias",
               "mlp.0.weight", "mlp.0.bias", "mlp.3.weight", "mlp.3.bias")
_RENAMED = {"ln_1": "layernorm_before", "ln_2": "layernorm_after", "self_attention.out_proj": "attention.o_proj",
            "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}


def is_vit(state: dict[str, torch.Tensor]) -> bool:
    """Whether a (prefix-stripped) state dict has torchvision ViT's key names."""
    return "conv_proj.weight" in state and "class_token" in state


def num_heads_for(model_name: str | None, num_heads: int | None) -> int:
    """The head count: ``num_heads`` when given, else from a torchvision model name (``vit_b_32`` -> 12)."""
    if num_heads is not None:
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"convert_checkpoint: num_heads must be a positive int, got {num_heads!r}")
        return num_heads
    if model_name in TORCHVISION_HEADS:
        return TORCHVISION_HEADS[model_name]
    raise ValueError(f"convert_checkpoint: a ViT's head count cannot be read from its weights and the checkpoint's "
                     f"args name the model {model_name!r}, not one of {sorted(TORCHVISION_HEADS)}; pass num_heads "
                     "(--num-heads N)")


def vit_config(state: dict[str, torch.Tensor], num_heads: int) -> ViTConfig:
    """The ``ViTConfig`` of a torchvision ViT state dict: every size from the tensors' shapes."""
    hidden, channels, patch, patch_w = state["conv_proj.weight"].shape
    n_tokens = state["encoder.pos_embedding"].shape[1]
    side = math.isqrt(n_tokens - 1)
    if patch != patch_w or side * side != n_tokens - 1 or hidden % num_heads:
        raise ValueError(f"convert_checkpoint: ViT patches {patch} x {patch_w}, {n_tokens - 1} patch positions and "
                         f"width {hidden} with {num_heads} heads fit no layout (square patches, a square grid of "
                         "positions and a width divisible by the head count are needed)")
    return ViTConfig(hidden_size=hidden, num_hidden_layers=count_indexed(state, LAYER, ".self_attention.in_proj_weight"),
                     num_attention_heads=num_heads, intermediate_size=state[f"{LAYER}0.mlp.0.weight"].shape[0],
                     hidden_act="gelu", layer_norm_eps=EPS, image_size=side * patch, patch_size=patch,
                     num_channels=channels, qkv_bias=True, encoder_stride=patch,
                     num_labels=state["heads.head.weight"].shape[0])


def _source_keys(n_layers: int) -> set[str]:
    keys = {"conv_proj.weight", "conv_proj.bias", "class_token", "encoder.pos_embedding", "encoder.ln.weight",
            "encoder.ln.bias", "heads.head.weight", "heads.head.bias"}
    return keys | {f"{LAYER}{i}.{k}" for i in range(n_layers) for k in _LAYER_KEYS}


def vit_weights(state: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """``{ViTForImageClassification name: tensor}``; the stacked q/k/v projection split in three."""
    out = {"vit.embeddings.cls_token": state["class_token"],
           "vit.embeddings.position_embeddings": state["encoder.pos_embedding"],
           "vit.embeddings.patch_embeddings.projection.weight": state["conv_proj.weight"],
           "vit.embeddings.patch_embeddings.projection.bias": state["conv_proj.bias"],
           "vit.layernorm.weight": state["encoder.ln.weight"], "vit.layernorm.bias": state["encoder.ln.bias"],
           "classifier.weight": state["heads.head.weight"], "classifier.bias": state["heads.head.bias"]}
    for i in range(n_layers):
        src, dst = f"{LAYER}{i}", f"vit.layers.{i}"
        for old, new in _RENAMED.items():
            for p in ("weight", "bias"):
                out[f"{dst}.{new}.{p}"] = state[f"{src}.{old}.{p}"]
        qkv_w = state[f"{src}.self_attention.in_proj_weight"].chunk(3, dim=0)  # 3 x (D, D): q, k, v in this order
        qkv_b = state[f"{src}.self_attention.in_proj_bias"].chunk(3, dim=0)
        for name, w, b in zip(("q_proj", "k_proj", "v_proj"), qkv_w, qkv_b):
            out[f"{dst}.attention.{name}.weight"], out[f"{dst}.attention.{name}.bias"] = w, b
    return out


def build_model(state: dict[str, torch.Tensor], model_name: str | None = None,
                num_heads: int | None = None) -> ViTForImageClassification:
    """A ``ViTForImageClassification`` holding a torchvision ViT state dict's weights (in eval mode).

    The head count: ``num_heads``, else that of the torchvision ``model_name`` (see :func:`num_heads_for`).
    """
    n_layers = count_indexed(state, LAYER, ".self_attention.in_proj_weight")
    check_keys(state, _source_keys(max(n_layers, 1)), FORMAT)
    config = vit_config(state, num_heads_for(model_name, num_heads))
    model = ViTForImageClassification(config)
    load_weights(model, vit_weights(state, n_layers), FORMAT)
    return model.eval()


def _layer_norm(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], EPS)


@torch.no_grad()
def reference_logits(state: dict[str, torch.Tensor], num_heads: int, pixel_values: torch.Tensor) -> torch.Tensor:
    """torchvision ViT's forward from its state dict: ``(batch, c, H, W)`` images -> ``(batch, classes)`` logits."""
    patch = state["conv_proj.weight"].shape[-1]
    x = F.conv2d(pixel_values, state["conv_proj.weight"], state["conv_proj.bias"], stride=patch)  # (b, d, h', w')
    x = x.flatten(2).transpose(1, 2)  # (b, h' w', d), patches in row-major order
    b, _, d = x.shape
    x = torch.cat([state["class_token"].expand(b, -1, -1), x], dim=1) + state["encoder.pos_embedding"]
    for i in range(count_indexed(state, LAYER, ".self_attention.in_proj_weight")):
        src = f"{LAYER}{i}"
        qkv = F.linear(_layer_norm(x, state, f"{src}.ln_1"), state[f"{src}.self_attention.in_proj_weight"],
                       state[f"{src}.self_attention.in_proj_bias"])
        q, k, v = (z.unflatten(-1, (num_heads, d // num_heads)).transpose(1, 2) for z in qkv.chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)  # (b, tokens, d)
        x = x + F.linear(y, state[f"{src}.self_attention.out_proj.weight"], state[f"{src}.self_attention.out_proj.bias"])
        h = F.gelu(F.linear(_layer_norm(x, state, f"{src}.ln_2"), state[f"{src}.mlp.0.weight"], state[f"{src}.mlp.0.bias"]))
        x = x + F.linear(h, state[f"{src}.mlp.3.weight"], state[f"{src}.mlp.3.bias"])
    return F.linear(_layer_norm(x, state, "encoder.ln")[:, 0], state["heads.head.weight"], state["heads.head.bias"])


def example_input(config: ViTConfig, generator: torch.Generator) -> torch.Tensor:
    """Two random normalised images ``(2, channels, image_size, image_size)``."""
    return torch.randn(2, config.num_channels, config.image_size, config.image_size, generator=generator)
