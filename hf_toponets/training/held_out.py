"""Held-out English for language TopoNets trained on the embedded corpus: text the models never saw.

The embedded corpus (:func:`hf_toponets.training.data.embedded_corpus`) is CPython's help topics, and
the default run's own held-out blocks come from the same topics. To measure the models on English
they were not trained on, this module takes, in order of preference:

1. the grammatical sentences of BLiMP (``<UID>.jsonl`` files, e.g. ``../shared/data/blimp``): all 67
   paradigms taken in turn (sentence ``i`` of every paradigm, then ``i + 1``, ...), so that any prefix
   of the text covers every phenomenon; each sentence is one document;
2. otherwise, the docstrings of a fixed list of standard-library modules, split into paragraphs
   (technical English of the same domain as the corpus: a weaker test of generalisation).

Any candidate found verbatim in the training corpus is dropped, and duplicates are kept once.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice, zip_longest
from typing import NamedTuple

import torch

from ..evaluation.blimp_data import BlimpPair
from .data import pack_token_ids

# Standard-library modules whose docstrings are mostly prose; none of them is part of pydoc_data.topics.
FALLBACK_MODULES = ("logging", "difflib", "textwrap", "statistics", "random", "http.cookiejar", "email.message",
                    "tarfile", "configparser", "locale", "subprocess", "threading", "smtplib", "inspect",
                    "shutil", "socket", "json", "re", "urllib.request", "urllib.parse", "http.server", "codecs", "io",
                    "os", "tempfile", "collections", "functools", "dataclasses", "enum")


class HeldOutText(NamedTuple):
    """Documents of held-out English, where they come from, and how many were dropped as seen in training
    (None: not checked against the training corpus, e.g. a Hub dataset)."""

    documents: list[str]
    source: str
    dropped: int | None


def blimp_sentences(pairs: Mapping[str, Sequence[BlimpPair]]) -> Iterator[str]:
    """The grammatical sentences of ``pairs``, one paradigm after another in turn (round robin)."""
    for row in zip_longest(*(pairs[uid] for uid in sorted(pairs))):
        yield from (pair.good for pair in row if pair is not None)


def docstring_paragraphs(modules: Iterable[str] = FALLBACK_MODULES) -> Iterator[str]:
    """Prose paragraphs of the docstrings of ``modules`` and of their public members: at least 80
    characters, no indented line (code blocks, examples), >= 90% letters, spaces, commas and periods."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:  # e.g. a Python built without some extension modules
            continue
        objects = [module, *(v for k, v in sorted(vars(module).items()) if not k.startswith("_"))]
        for obj in objects:
            if obj is not module and getattr(obj, "__module__", None) != name:
                continue  # imported from elsewhere
            for paragraph in (inspect.getdoc(obj) or "").split("\n\n"):
                if any(line[:1].isspace() or line.startswith(">>>") for line in paragraph.splitlines()):
                    continue
                text = " ".join(paragraph.split())
                if len(text) >= 80 and sum(c.isalpha() or c in " ,." for c in text) >= 0.9 * len(text):
                    yield text


def held_out_english(candidates: Iterable[str], source: str, corpus: Sequence[str] | None, limit: int = 20_000) -> HeldOutText:
    """The first ``limit`` distinct ``candidates`` not found verbatim in ``corpus`` (None: not checked)."""
    joined = "\n".join(corpus) if corpus is not None else None
    seen, kept, dropped = set(), [], 0
    for text in candidates:
        if text in seen:
            continue
        seen.add(text)
        if joined is not None and text in joined:
            dropped += 1
            continue
        kept.append(text)
        if len(kept) == limit:
            break
    if not kept:
        raise ValueError(f"held_out_english: no held-out text left from {source} ({dropped} documents are in the corpus)")
    return HeldOutText(kept, source, dropped if corpus is not None else None)


def held_out_blocks(tokenizer, documents: Sequence[str], block_size: int, max_blocks: int) -> tuple[torch.Tensor, int]:
    """``(ids, n_documents)``: ``(n, block_size)`` token ids of ``documents`` packed as in training (each
    followed by EOS), at most ``max_blocks`` blocks (``n`` is smaller only when the text runs out), and
    how many documents they draw on (the last one possibly in part)."""
    if max_blocks < 1:
        raise ValueError(f"held_out_blocks: max_blocks must be >= 1, got {max_blocks}")
    used = [0]

    def ids() -> Iterator[list[int]]:
        for start in range(0, len(documents), 256):  # tokenize only as much as the blocks need
            for doc in tokenizer(list(documents[start:start + 256]), add_special_tokens=False)["input_ids"]:
                used[0] += 1
                yield doc

    blocks = list(islice(pack_token_ids(ids(), block_size, tokenizer.eos_token_id), max_blocks))
    if not blocks:
        raise ValueError(f"held_out_blocks: {len(documents)} documents give fewer than {block_size} tokens")
    return torch.tensor(blocks, dtype=torch.long), used[0]


def tensor_digest(ids: torch.Tensor) -> str:
    """SHA-256 of a tensor's shape and values (a cache key for the text the models are measured on)."""
    data = ids.detach().cpu().contiguous()
    return hashlib.sha256(repr(tuple(data.shape)).encode() + data.numpy().tobytes()).hexdigest()
