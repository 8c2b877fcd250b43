"""Model shapes the benchmarks share: random weights, seeded by the caller.

Scripts run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path`` and they import
``from _models import ...``.
"""

from transformers import GPTNeoConfig, GPTNeoForCausalLM


def gpt_neo_125m_config(**overrides) -> GPTNeoConfig:
    """GPT-Neo-125M's shape: hidden 768, 12 layers alternating global and local attention, 12 heads,
    GPT-2's 50,257 tokens (``GPTNeoConfig()``'s own defaults are the 1.3B model)."""
    shape = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "attention_types": [[["global", "local"], 6]]}
    return GPTNeoConfig(**{**shape, **overrides})


def gpt_neo_125m_toponet() -> GPTNeoForCausalLM:
    """A random GPT-Neo-125M (seed 0, eval mode) whose config carries the 12 ``c_fc`` sheets."""
    import torch

    from hf_toponets import TopoConfig, attach_topo_config

    torch.manual_seed(0)
    model = GPTNeoForCausalLM(gpt_neo_125m_config()).eval()
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    return model
