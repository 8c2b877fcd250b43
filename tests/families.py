"""Tiny in-process models of the common Hugging Face families (transformers' own config classes).

``build_family(name)`` returns a randomly initialised model with a 36-unit MLP (a 6 x 6 sheet) per block,
or skips the test when the installed transformers lacks the family's classes.
"""

import pytest
import torch

HIDDEN, INNER, VOCAB = 16, 36, 64
_DECODER = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=32, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                num_key_value_heads=2, head_dim=8)

# family -> (config class, model class, config kwargs); every MLP 36 units wide
FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=2, n_head=2,
                                                   n_inner=INNER, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                                   bos_token_id=0, eos_token_id=0)),
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM", dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=2, num_heads=2,
                                                          intermediate_size=INNER, attention_types=[[["global", "local"], 1]],
                                                          max_position_embeddings=32, window_size=8,
                                                          bos_token_id=0, eos_token_id=0)),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=2, n_head=2, n_inner=INNER,
                                                   rotary_dim=4, n_positions=32, bos_token_id=0, eos_token_id=0)),
    "opt": ("OPTConfig", "OPTForCausalLM", dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                                                ffn_dim=INNER, word_embed_proj_dim=HIDDEN, max_position_embeddings=32, dropout=0.0)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(_DECODER, intermediate_size=INNER)),
    "bloom": ("BloomConfig", "BloomForCausalLM", dict(vocab_size=VOCAB, hidden_size=9, n_layer=2, n_head=1)),  # MLP: 4 * 9 = 36
    "falcon": ("FalconConfig", "FalconForCausalLM", dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2,
                                                         num_attention_heads=2, ffn_hidden_size=INNER, bos_token_id=0, eos_token_id=0, new_decoder_architecture=False,
                                                         multi_query=True, parallel_attn=True, bias=False)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(_DECODER, intermediate_size=INNER)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(_DECODER, intermediate_size=INNER, sliding_window=None)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(_DECODER, intermediate_size=INNER)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(_DECODER, intermediate_size=INNER)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(_DECODER, intermediate_size=INNER)),
    "vit": ("ViTConfig", "ViTForImageClassification", dict(hidden_size=36, num_hidden_layers=2, num_attention_heads=2,
                                                           intermediate_size=INNER, image_size=8, patch_size=4, num_labels=3)),
    "bert": ("BertConfig", "BertForMaskedLM", dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                                                   intermediate_size=INNER, max_position_embeddings=32)),
}


def build_family(name: str, seed: int = 0, **changes):
    """A tiny randomly initialised model of the family (float32, eval mode off), or ``pytest.skip``."""
    import transformers

    config_name, model_name, kwargs = FAMILIES[name]
    if not hasattr(transformers, config_name) or not hasattr(transformers, model_name):
        pytest.skip(f"transformers {transformers.__version__} has no {model_name}")
    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(**{**kwargs, **changes})
    return getattr(transformers, model_name)(config)


def family_inputs(model, batch: int = 2, length: int = 8, seed: int = 0) -> dict:
    """Model inputs: token ids, or pixel values for an image model."""
    g = torch.Generator().manual_seed(seed)
    if model.config.model_type == "vit":
        size = model.config.image_size
        return {"pixel_values": torch.randn(batch, 3, size, size, generator=g)}
    return {"input_ids": torch.randint(1, VOCAB, (batch, length), generator=g)}
