"""What several verbs share: loading a saved model, reading text data."""

from __future__ import annotations


def add_device_options(parser) -> None:
    """``--device`` (any torch device) and ``--dtype``, for the verbs that run a model."""
    from ..hub.loading import DTYPES  # (no torch import: --help stays instant)

    parser.add_argument("--device", default="cpu", help="Torch device to run on: cpu, cuda, cuda:1, mps, ...")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="Weights' dtype once loaded.")


def load_model(path_or_repo: str, device: str = "cpu", dtype: str = "float32", flag: str = "--model"):
    """A causal LM or image classifier from a folder or Hub repo (its Auto class from config.json;
    safetensors only, no remote code); a bad ``flag`` value is one clear line."""
    from .. import conversion  # noqa: F401  (registers the BlurPool ResNet of converted checkpoints)
    from ..hub.loading import load_pretrained

    return load_pretrained(path_or_repo, device, dtype, argument=flag)


def load_tokenizer(path_or_repo: str, flag: str = "--model"):
    """``AutoTokenizer.from_pretrained``, its errors one line naming ``flag``."""
    import os

    from transformers import AutoTokenizer

    from ..hub.loading import check_model_source

    if not os.path.isdir(path_or_repo):
        check_model_source(path_or_repo, flag)
    try:
        return AutoTokenizer.from_pretrained(path_or_repo)
    except (OSError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{flag} {path_or_repo}: no tokenizer could be loaded from it: {reason}") from None


def read_texts(path: str) -> str:
    """A text file's contents, or a folder's ``*.txt`` files in name order joined by blank lines."""
    import os

    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".txt"))
        if not files:
            raise ValueError(f"--data {path}: the folder holds no .txt file")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise ValueError(f"--data {path}: no such file or folder")
    texts = []
    for name in files:
        with open(name, encoding="utf-8") as f:
            texts.append(f.read())
    text = "\n\n".join(t for t in texts if t.strip())
    if not text:
        raise ValueError(f"--data {path}: the dataset is empty (no text)")
    return text
