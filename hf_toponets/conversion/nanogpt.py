"""nanoGPT checkpoints (karpathy/nanoGPT ``train.py``) -> transformers' ``GPT2LMHeadModel``.

A checkpoint is ``{"model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"}``; ``model``
is the state dict, its keys prefixed ``_orig_mod.`` when the model was compiled. nanoGPT is GPT-2 with:

- ``nn.Linear`` weights ``(out, in)`` where GPT-2's ``Conv1D`` stores ``(in, out)``: the four linear
  layers of each block are transposed (:data:`TRANSPOSED`);
- ``bias=False`` (the paper's runs): no LayerNorm or Linear biases; GPT-2's are set to zero;
- exact GELU: ``activation_function="gelu"`` (GPT-2's default ``gelu_new`` is the tanh approximation
  and moves the logits by ~4e-4);
- ``lm_head`` tied to ``wte``, and the vocabulary padded (GPT-2's 50257 -> 50304); the padded rows are kept
  so that the logits are identical everywhere.

:func:`reference_logits` is nanoGPT's forward written from its documented structure, used to measure
the conversion (pre-LN blocks, causal attention, exact GELU, tied head; LayerNorm eps 1e-5).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from .weights import check_keys, count_indexed, load_weights

FORMAT = "nanogpt"
DEFAULT_TARGETS = ["c_fc"]  # the paper: TopoLoss on every block's mlp.c_fc
TRANSPOSED = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # nn.Linear (out, in) -> Conv1D (in, out)
LAYER_NORMS = ("ln_1", "ln_2")
MODEL_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size", "dropout")  # nanoGPT's GPTConfig


def is_nanogpt(state: dict[str, torch.Tensor]) -> bool:
    """Whether a (prefix-stripped) state dict has nanoGPT's key names."""
    return "transformer.wte.weight" in state and "transformer.h.0.attn.c_attn.weight" in state


def _source_keys(n_layer: int, bias: bool) -> set[str]:
    keys = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight", "lm_head.weight"}
    for i in range(n_layer):
        block = f"transformer.h.{i}"
        keys |= {f"{block}.{m}.weight" for m in (*LAYER_NORMS, *TRANSPOSED)}
        if bias:
            keys |= {f"{block}.{m}.bias" for m in (*LAYER_NORMS, *TRANSPOSED)}
    return keys | ({"transformer.ln_f.bias"} if bias else set())


def drop_causal_masks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without flash attention nanoGPT registers its causal mask ``attn.bias`` (1, 1, T, T) as a buffer: not a weight."""
    return {k: v for k, v in state.items() if not (k.endswith(".attn.bias") and v.ndim == 4)}


def gpt2_config(state: dict[str, torch.Tensor], model_args: dict) -> GPT2Config:
    """The GPT-2 config of a nanoGPT state dict; sizes from the tensors, the head count from ``model_args``."""
    unknown = sorted(set(model_args) - set(MODEL_ARGS))
    if unknown:
        raise ValueError(f"convert_checkpoint: nanogpt model_args has keys {unknown} that nanoGPT's GPTConfig "
                         f"{list(MODEL_ARGS)} does not: a nanoGPT variant whose forward the converter does not know")
    vocab_size, n_embd = state["transformer.wte.weight"].shape
    n_positions = state["transformer.wpe.weight"].shape[0]
    n_layer = count_indexed(state, "transformer.h.", ".attn.c_attn.weight")
    n_inner = state["transformer.h.0.mlp.c_fc.weight"].shape[0]
    found = {"vocab_size": vocab_size, "n_embd": n_embd, "block_size": n_positions, "n_layer": n_layer}
    stated = {k: model_args.get(k) for k in found if model_args.get(k) is not None}
    if any(stated[k] != found[k] for k in stated):
        raise ValueError(f"convert_checkpoint: nanogpt model_args {stated} disagree with the weights' shapes {found}; "
                         "the shapes fit no nanoGPT layout")
    n_head = model_args.get("n_head")
    if not isinstance(n_head, int) or n_head < 1 or n_embd % n_head:
        raise ValueError(f"convert_checkpoint: nanogpt model_args n_head must be a positive divisor of n_embd={n_embd}, "
                         f"got {n_head!r}")
    return GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                      n_inner=n_inner, activation_function="gelu", layer_norm_epsilon=1e-5, resid_pdrop=0.0,
                      embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)


def gpt2_weights(state: dict[str, torch.Tensor], config: GPT2Config, bias: bool) -> dict[str, torch.Tensor]:
    """``{GPT2LMHeadModel name: tensor}``: linear weights transposed, absent biases as zeros, the head tied."""
    if not torch.equal(state["lm_head.weight"], state["transformer.wte.weight"]):
        raise ValueError("convert_checkpoint: nanogpt lm_head.weight differs from transformer.wte.weight; "
                         "nanoGPT ties them, so this file fits no nanoGPT layout")
    out = {k: state[k] for k in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight")}
    out["lm_head.weight"] = out["transformer.wte.weight"]
    out["transformer.ln_f.bias"] = state.get("transformer.ln_f.bias", torch.zeros(config.n_embd))
    for i in range(config.n_layer):
        block = f"transformer.h.{i}"
        for m in (*LAYER_NORMS, *TRANSPOSED):
            weight = state[f"{block}.{m}.weight"]
            out[f"{block}.{m}.weight"] = weight.t().contiguous() if m in TRANSPOSED else weight
            out[f"{block}.{m}.bias"] = state[f"{block}.{m}.bias"] if bias else torch.zeros(weight.shape[0])
    return out


def build_model(state: dict[str, torch.Tensor], model_args: dict) -> GPT2LMHeadModel:
    """A ``GPT2LMHeadModel`` holding a nanoGPT state dict's weights (in eval mode)."""
    state = drop_causal_masks(state)
    bias = bool(model_args.get("bias", "transformer.ln_f.bias" in state))
    check_keys(state, _source_keys(max(count_indexed(state, "transformer.h.", ".attn.c_attn.weight"), 1), bias), FORMAT)
    config = gpt2_config(state, model_args)
    model = GPT2LMHeadModel(config)
    load_weights(model, gpt2_weights(state, config, bias), FORMAT)
    return model.eval()


def _layer_norm(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state.get(f"{name}.bias"), 1e-5)


def _linear(x: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    return F.linear(x, state[f"{name}.weight"], state.get(f"{name}.bias"))


@torch.no_grad()
def reference_logits(state: dict[str, torch.Tensor], model_args: dict, input_ids: torch.Tensor) -> torch.Tensor:
    """nanoGPT's forward from its state dict: ``(batch, t)`` token ids -> ``(batch, t, vocab_size)`` logits."""
    state = drop_causal_masks(state)
    n_head, t = model_args["n_head"], input_ids.shape[1]
    x = state["transformer.wte.weight"][input_ids] + state["transformer.wpe.weight"][:t]  # (b, t, c)
    b, _, c = x.shape
    for i in range(count_indexed(state, "transformer.h.", ".attn.c_attn.weight")):
        block = f"transformer.h.{i}"
        q, k, v = _linear(_layer_norm(x, state, f"{block}.ln_1"), state, f"{block}.attn.c_attn").split(c, dim=2)
        q, k, v = (z.view(b, t, n_head, c // n_head).transpose(1, 2) for z in (q, k, v))  # (b, nh, t, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + _linear(y, state, f"{block}.attn.c_proj")
        h = F.gelu(_linear(_layer_norm(x, state, f"{block}.ln_2"), state, f"{block}.mlp.c_fc"))  # exact GELU
        x = x + _linear(h, state, f"{block}.mlp.c_proj")
    return F.linear(_layer_norm(x, state, "transformer.ln_f"), state["transformer.wte.weight"])  # tied head


def example_input(config: GPT2Config, generator: torch.Generator) -> torch.Tensor:
    """Random token ids ``(2, min(n_positions, 64))`` over the whole (padded) vocabulary."""
    return torch.randint(config.vocab_size, (2, min(config.n_positions, 64)), generator=generator)
