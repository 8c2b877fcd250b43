"""Reading a published checkpoint file safely, and recognising what it holds.

Files are read with ``torch.load(weights_only=True)`` only: tensors, containers and plain values, plus
``argparse.Namespace`` (torchvision's reference trainer pickles its command line under ``"args"``), never
arbitrary classes. Three containers are known:

- nanoGPT ``train.py``: ``{"model": state dict, "model_args": {...}, "optimizer", "iter_num", ...}``;
- torchvision's reference trainer: ``{"model": state dict, "args": Namespace, "optimizer", "epoch", ...}``;
- a plain state dict ``{name: tensor}`` (FFCV's ``torch.save(model.state_dict())``).

The architecture (:data:`FORMATS`) is then told apart by the state dict's key names.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch

from . import nanogpt, resnet, vit
from .weights import strip_prefixes

FORMATS = ("nanogpt", "vit", "resnet")
TAU_IN_NAME = re.compile(r"tau_(\d+(?:\.\d*)?)\.pt$")  # tau_50.0.pt, all_topo_tau_0.5.pt


@dataclass
class SourceCheckpoint:
    """What a checkpoint file holds: its state dict (wrapper prefixes stripped, floats as float32) and its metadata."""

    path: str = field(metadata={"help": "The file read."})
    sha256: str = field(metadata={"help": "Hex SHA-256 of the file's bytes."})
    state: dict[str, torch.Tensor] = field(repr=False, metadata={"help": "The model's tensors by name."})
    container: str = field(metadata={"help": "'nanogpt train.py', 'torchvision reference trainer' or 'state dict'."})
    model_args: dict[str, Any] = field(default_factory=dict, metadata={"help": "nanoGPT's model_args, else empty."})
    model_name: str | None = field(default=None, metadata={"help": "The torchvision model name in args, if any."})


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def load_safely(path: str) -> Any:
    """``torch.load(path, weights_only=True)`` (allowing ``argparse.Namespace``), memory-mapped when possible.

    A file that pickles anything else (a model object, a custom class) is refused: unpickling it
    would run code the file names.
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)", str(e))
        detail = f"it pickles {named.group(1)}" if named else "it pickles objects other than tensors"
        raise ValueError(f"convert_checkpoint: {path} needs unrestricted unpickling ({detail}); hf_toponets only reads "
                         "files that torch.load(weights_only=True) accepts. Re-save the weights with "
                         "torch.save(model.state_dict(), ...) from code you trust") from None
    except (RuntimeError, EOFError) as e:
        raise ValueError(f"convert_checkpoint: {path} is not a readable PyTorch checkpoint ({e})") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def read_checkpoint(path: str | os.PathLike) -> SourceCheckpoint:
    """Load a checkpoint file safely and split it into its state dict and metadata."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"convert_checkpoint: checkpoint {path} is not a file")
    obj = load_safely(path)
    model_args, model_name = {}, None
    if isinstance(obj, dict) and "model_args" in obj and _is_state_dict(obj.get("model")):
        container, state, model_args = "nanogpt train.py", obj["model"], dict(obj["model_args"] or {})
    elif isinstance(obj, dict) and isinstance(obj.get("args"), argparse.Namespace) and _is_state_dict(obj.get("model")):
        container, state, model_name = "torchvision reference trainer", obj["model"], getattr(obj["args"], "model", None)
    elif _is_state_dict(obj):
        container, state = "state dict", obj
    else:
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"convert_checkpoint: {path} is not a nanoGPT train.py checkpoint, a torchvision reference-"
                         f"trainer checkpoint or a state dict of tensors (it holds {keys}); unknown format")
    state = {k: v.float() if v.is_floating_point() else v for k, v in strip_prefixes(state).items()}  # float32 models
    return SourceCheckpoint(path, file_sha256(path), state, container, model_args, model_name)


def detect_format(state: dict[str, torch.Tensor]) -> str:
    """``"nanogpt"``, ``"vit"`` or ``"resnet"`` from a state dict's key names; ``ValueError`` for anything else."""
    for name, test in (("nanogpt", nanogpt.is_nanogpt), ("vit", vit.is_vit), ("resnet", resnet.is_resnet)):
        if test(state):
            return name
    raise ValueError(f"convert_checkpoint: the state dict's keys ({', '.join(sorted(state)[:6])}, ...) fit none of the "
                     f"known formats {FORMATS} (nanoGPT, torchvision ViT, torchvision/FFCV ResNet); unknown format")


def tau_from_name(path: str) -> float | None:
    """tau from a published file name (``tau_50.0.pt``, ``all_topo_tau_0.5.pt``), else ``None``.

    >>> tau_from_name("checkpoints/all_topo_tau_0.5.pt")
    0.5
    """
    match = TAU_IN_NAME.search(os.path.basename(path))
    return float(match.group(1)) if match else None
