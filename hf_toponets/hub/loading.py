"""Loading a saved model with the Auto class its config names: causal LMs and image classifiers.

The task is read from ``config.json`` (``architectures``, else the ``model_type``'s Auto mappings),
so every verb and card handles GPT-2/GPT-Neo and ViT/ResNet TopoNets alike. Weights load from
safetensors only, without remote code.

>>> from transformers import GPT2Config
>>> model_task(GPT2Config(architectures=["GPT2LMHeadModel"]))
'text-generation'
"""

from __future__ import annotations

TASKS = ("text-generation", "image-classification")  # the Hub's pipeline tags of the tasks we handle
_TASK_SUFFIXES = {"ForCausalLM": "text-generation", "LMHeadModel": "text-generation",
                  "ForImageClassification": "image-classification"}


def model_task(config) -> str:
    """``"text-generation"`` or ``"image-classification"`` for a ``PretrainedConfig`` or a config.json dict."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    )

    data = config if isinstance(config, dict) else config.to_dict()
    for arch in data.get("architectures") or []:
        for suffix, task in _TASK_SUFFIXES.items():
            if arch.endswith(suffix):
                return task
    model_type = data.get("model_type")
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "text-generation"
    if model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        return "image-classification"
    raise ValueError(f"model_task: config of model_type {model_type!r} (architectures {data.get('architectures')}) "
                     f"is neither a causal language model nor an image classifier; hf_toponets handles {TASKS}")


def auto_model_class(config):
    """``AutoModelForCausalLM`` or ``AutoModelForImageClassification``, by :func:`model_task`."""
    from transformers import AutoModelForCausalLM, AutoModelForImageClassification

    return AutoModelForCausalLM if model_task(config) == "text-generation" else AutoModelForImageClassification


def load_pretrained(path_or_repo: str, device: str = "cpu", dtype: str = "float32"):
    """The model saved in a folder or Hub repo, with its Auto class, in eval mode on ``device``."""
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path_or_repo)
    model = auto_model_class(config).from_pretrained(path_or_repo, dtype=getattr(torch, dtype), use_safetensors=True)
    return model.to(device).eval()
