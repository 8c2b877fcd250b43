"""Text data for causal-LM training: an embedded offline corpus, a tokenizer built from it, packing.

Packing concatenates tokenized documents, each followed by the EOS token, and cuts the stream
into ``block_size`` blocks (the remainder of the stream is dropped), as in GPT pre-training::

    [d1 ... EOS d2 ... EOS d3 ...] -> (n_blocks, block_size)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def embedded_corpus() -> list[str]:
    """CPython's own help topics (``pydoc_data.topics``): ~465k characters of English, always installed.

    One string per topic, sorted by topic name so the order is stable across runs.
    """
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A byte-level BPE tokenizer trained on ``texts``, GPT-2 style (``<|endoftext|>`` = BOS = EOS = PAD).

    Returns a ``transformers.PreTrainedTokenizerFast``; seconds on the embedded corpus.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"train_tokenizer: vocab_size must be >= 300 (256 bytes + merges), got {vocab_size}")
    special = "<|endoftext|>"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[special],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=special, eos_token=special, pad_token=special)


def pack_token_ids(documents: Iterable[list[int]], block_size: int, eos_id: int) -> Iterator[list[int]]:
    """Yield ``block_size``-token blocks of the documents joined by ``eos_id``; the last partial block is dropped."""
    if block_size < 2:
        raise ValueError(f"pack_token_ids: block_size must be >= 2, got {block_size}")
    buffer: list[int] = []
    for ids in documents:
        buffer.extend(ids)
        buffer.append(eos_id)
        while len(buffer) >= block_size:
            yield buffer[:block_size]
            del buffer[:block_size]


def pack_dataset(dataset, tokenizer, block_size: int, text_column: str = "text"):
    """Tokenize and pack a ``datasets`` (Iterable)Dataset into ``{"input_ids", "labels"}`` blocks.

    Works on streaming datasets, with or without declared features (a stream read from data files
    has ``column_names`` None): only ``text_column`` is kept before packing, so other columns never
    have to match the number of blocks. Packing runs batch by batch (``map(batched=True)``), so a
    block never spans two map batches (at most one partial block per 1000 documents is dropped).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("pack_dataset: the tokenizer has no EOS token to separate documents")
    columns = dataset.column_names  # None for a stream whose features are unknown
    if columns is not None and text_column not in columns:
        raise ValueError(f"pack_dataset: no column {text_column!r}; the dataset has {sorted(columns)}")

    def pack(batch):
        if text_column not in batch:
            raise ValueError(f"pack_dataset: no column {text_column!r}; the dataset has {sorted(batch)}")
        ids = tokenizer(batch[text_column], add_special_tokens=False)["input_ids"]
        blocks = list(pack_token_ids(ids, block_size, tokenizer.eos_token_id))
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    return dataset.select_columns([text_column]).map(pack, batched=True, batch_size=1000, remove_columns=[text_column])
