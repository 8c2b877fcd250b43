"""Held-out English: BLiMP's grammatical sentences in turn, nothing the training corpus holds, packed
exactly as training packs documents."""

import pytest
import torch

from hf_toponets.evaluation.blimp_data import BlimpPair
from hf_toponets.training.data import embedded_corpus, pack_token_ids, train_tokenizer
from hf_toponets.training.held_out import (blimp_sentences, docstring_paragraphs, held_out_blocks, held_out_english,
                                           tensor_digest)


def test_blimp_sentences_take_the_paradigms_in_turn():
    pairs = {"b": [BlimpPair(0, "b0", "x"), BlimpPair(1, "b1", "x")], "a": [BlimpPair(0, "a0", "x")]}
    assert list(blimp_sentences(pairs)) == ["a0", "b0", "b1"]


def test_text_in_the_corpus_and_duplicates_are_dropped():
    corpus = ["The with statement is used to wrap a block.", "Other text."]
    held = held_out_english(["A dog ran.", "with statement is used", "A dog ran.", "Cats sleep."], "test", corpus)
    assert held.documents == ["A dog ran.", "Cats sleep."] and held.dropped == 1 and held.source == "test"
    assert held_out_english(["a", "b", "c"], "test", None, limit=2) == (["a", "b"], "test", None)  # None: not checked
    with pytest.raises(ValueError, match="no held-out text left from test"):
        held_out_english(["Other text."], "test", corpus)


def test_blocks_are_packed_as_in_training():
    tokenizer = train_tokenizer(["the cat sat on the mat", "a dog ran in the park"] * 20, vocab_size=300)
    docs = [f"the cat number {i} sat on the mat" for i in range(40)]
    ids, used = held_out_blocks(tokenizer, docs, block_size=16, max_blocks=5)
    encoded = [tokenizer(d, add_special_tokens=False)["input_ids"] for d in docs]
    expected = list(pack_token_ids(encoded, 16, tokenizer.eos_token_id))[:5]
    assert ids.tolist() == expected and ids.dtype == torch.long
    assert sum(len(e) + 1 for e in encoded[:used - 1]) < 5 * 16 <= sum(len(e) + 1 for e in encoded[:used])
    assert tensor_digest(ids) == tensor_digest(ids.clone()) != tensor_digest(ids[:4])
    with pytest.raises(ValueError, match="fewer than 16 tokens"):
        held_out_blocks(tokenizer, ["a"], block_size=16, max_blocks=5)


def test_the_fallback_is_prose_the_embedded_corpus_does_not_hold():
    held = held_out_english(docstring_paragraphs(), "docstrings", embedded_corpus())
    text = "\n".join(held.documents)
    assert len(text) > 80_000 and ">>>" not in text  # ample for 64 blocks of 128 tokens
    corpus = "\n".join(embedded_corpus())
    assert not any(doc in corpus for doc in held.documents[:200])
