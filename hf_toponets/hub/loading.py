"""Loading a saved model with the Auto class its config names: causal LMs and image classifiers.

The task is read from ``config.json`` (``architectures``, else the ``model_type``'s Auto mappings),
so every verb and card handles GPT-2/GPT-Neo and ViT/ResNet TopoNets alike. Weights load from
safetensors only, without remote code.

>>> from transformers import GPT2Config
>>> model_task(GPT2Config(architectures=["GPT2LMHeadModel"]))
'text-generation'
"""

from __future__ import annotations

from pathlib import Path

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


DTYPES = ("float32", "bfloat16", "float16", "float64")


def check_model_source(path_or_repo: str, argument: str = "path_or_repo") -> None:
    """Raise a one-line ``ValueError`` naming ``argument`` when ``path_or_repo`` cannot be a saved model.

    A folder must hold config.json; a string that is no valid Hub id (``/abs``, ``./rel``, ``a/b/c``) must
    be an existing folder. A valid Hub id that is no local folder is left to the Hub (see :func:`load_pretrained`).
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(path_or_repo).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"{argument} {path_or_repo}: the folder has no config.json, so it holds no saved model "
                             "(save_pretrained writes one)")
        return
    if path.exists():
        raise ValueError(f"{argument} {path_or_repo}: a file; give the folder of a saved model or a Hub repo id")
    try:
        validate_repo_id(str(path_or_repo))
    except HFValidationError:
        raise ValueError(f"{argument} {path_or_repo}: no such folder (and not a Hub repo id)") from None


def torch_device_and_dtype(device: str, dtype: str):
    """``(torch.device, torch.dtype)`` from their names, or a ``ValueError`` naming the bad one."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: give one of {', '.join(DTYPES)}")
    try:
        torch_device = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device {device!r} is not a torch device ({e}); e.g. cpu, cuda, cuda:1, mps") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    return torch_device, getattr(torch, dtype)


def load_config(path_or_repo: str, argument: str = "path_or_repo"):
    """``AutoConfig.from_pretrained``, a missing or unloadable source one ``ValueError`` line naming ``argument``."""
    from transformers import AutoConfig

    check_model_source(path_or_repo, argument)
    try:
        return AutoConfig.from_pretrained(path_or_repo)
    except OSError as e:  # transformers' message for an unknown repo or an unreachable Hub, first line only
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{argument} {path_or_repo}: no such local folder, and the Hub repo could not be loaded: "
                         f"{reason}") from None


def load_pretrained(path_or_repo: str, device: str = "cpu", dtype: str = "float32", argument: str = "path_or_repo"):
    """The model saved in a folder or Hub repo, with its Auto class, in eval mode on ``device`` (any torch device).

    A missing folder, a folder without config.json or a Hub id that cannot be loaded (unknown, private,
    or the Hub unreachable) is a one-line ``ValueError`` naming ``argument`` (the CLI passes ``--model``).
    """
    torch_device, torch_dtype = torch_device_and_dtype(device, dtype)
    config = load_config(path_or_repo, argument)
    model = auto_model_class(config).from_pretrained(path_or_repo, dtype=torch_dtype, use_safetensors=True)
    try:
        return model.to(torch_device).eval()
    except (RuntimeError, AssertionError) as e:  # e.g. mps or xpu absent from this build
        raise ValueError(f"device {device!r}: cannot place the model there ({e})") from None
