"""What several verbs share: loading a saved model, reading text data."""

from __future__ import annotations


def load_model(path_or_repo: str, device: str = "cpu", dtype: str = "float32"):
    """A causal LM or image classifier from a folder or Hub repo (its Auto class from config.json;
    safetensors only, no remote code)."""
    from .. import conversion  # noqa: F401  (registers the BlurPool ResNet of converted checkpoints)
    from ..hub.loading import load_pretrained

    return load_pretrained(path_or_repo, device, dtype)


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
