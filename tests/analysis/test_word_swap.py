"""Word-swap stimuli: sentences -> sequences, the swap vocabulary, swapped copies, word <-> token alignment."""

import random

import pytest
import torch

from hf_toponets.analysis.windows import _pad_batch
from hf_toponets.analysis.word_swap import (
    encode_words, sentence_sequences, sentence_words, split_sentences, swap_variants, swap_vocabulary,
)

WORDS = ["the", "unbelievability", "of", "antidisestablishmentarianism", "is", "x"]


@pytest.fixture(scope="module")
def corpus_tokenizer():
    """A byte-level BPE trained on the embedded corpus (GPT-2 style, <|endoftext|> = BOS), built in-process."""
    from hf_toponets.training.data import embedded_corpus, train_tokenizer

    return train_tokenizer(embedded_corpus(), vocab_size=1024)


@pytest.fixture(params=["corpus", "gpt2"])
def tokenizer(request, corpus_tokenizer):
    if request.param == "corpus":
        return corpus_tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(request.getfixturevalue("shared_data") / "gpt2-tokenizer"))


def test_words_encode_as_the_joined_text(tokenizer):
    """Oracle: a byte-level BPE splits ``" w1 w2 ..."`` before each space, so the words encoded one by
    one with a leading space are exactly the tokens of the joined text."""
    ids, owner = encode_words(WORDS, tokenizer)
    assert ids == tokenizer.encode(" " + " ".join(WORDS), add_special_tokens=False)
    for i, word in enumerate(WORDS):
        assert [t for t, o in zip(ids, owner) if o == i] == tokenizer.encode(" " + word, add_special_tokens=False)
    assert owner == sorted(owner) and set(owner) == set(range(len(WORDS)))
    assert owner.count(1) > 1 and owner.count(3) > 1  # the long words are multi-token


def test_word_responses_average_their_tokens(tokenizer):
    """The averaging matrix against a naive loop: token responses (B, T, 3) -> word responses (B, words, 3)
    are each word's mean over its own tokens, after the BOS token and before the right padding."""
    short = ["x", "of", "the", "is", "of", "the"]
    encoded = [encode_words(WORDS, tokenizer), encode_words(short, tokenizer)]
    for bos in (None, tokenizer.bos_token_id):
        ids, average = _pad_batch(encoded, bos, len(WORDS))
        offset = 0 if bos is None else 1
        responses = torch.randn(2, ids.shape[1], 3, generator=torch.Generator().manual_seed(0))
        words = torch.bmm(average, responses)
        for b, (tokens, owner) in enumerate(encoded):
            assert ids[b, offset : offset + len(tokens)].tolist() == tokens
            if bos is not None:
                assert ids[b, 0].item() == bos
            for w in range(len(WORDS)):
                positions = [offset + p for p, o in enumerate(owner) if o == w]
                torch.testing.assert_close(words[b, w], responses[b, positions].mean(0))


def test_swap_vocabulary_keeps_single_token_words(tokenizer):
    vocabulary = swap_vocabulary([WORDS, ["the", "is", "of"]], tokenizer)
    assert vocabulary == sorted(w for w in set(WORDS) if len(tokenizer.encode(" " + w, add_special_tokens=False)) == 1)
    assert "unbelievability" not in vocabulary and "the" in vocabulary
    with pytest.raises(ValueError, match="swap_vocabulary: .* at least 2"):
        swap_vocabulary([["unbelievability", "antidisestablishmentarianism"]], tokenizer)


def test_swap_variants_change_one_word_each():
    vocabulary = ["a", "b", "the", "of"]
    words = ["the", "cat", "of", "a", "dog"]
    variants = swap_variants(words, vocabulary, random.Random(0))
    assert len(variants) == len(words) + 1 and variants[0] == words
    for s, variant in enumerate(variants[1:]):
        changed = [i for i in range(len(words)) if variant[i] != words[i]]
        assert changed == [s] and variant[s] in vocabulary
    assert swap_variants(words, vocabulary, random.Random(0)) == variants  # seeded
    assert swap_variants(words, vocabulary, random.Random(1)) != variants


def test_sentences_to_sequences():
    sentences = ["The cat sat.", "A dog ran!", "Birds (small ones) sing.", "We've well-known cats.", "Too short."]
    assert sentence_words("We've well-known cats.") == ["we've", "well", "known", "cats"]
    seqs = sentence_sequences(sentences, sentence_length=3, n_sentences=2, n_sequences=4, seed=0)
    assert len(seqs) == 4 and all(len(s) == 6 for s in seqs)
    pool = {("the", "cat", "sat"), ("a", "dog", "ran")}
    for s in seqs:
        first, second = tuple(s[:3]), tuple(s[3:])
        assert {first, second} == pool  # two distinct sentences of 3 words, normalised
    assert sentence_sequences(sentences, 3, 2, 4, seed=0) == seqs
    with pytest.raises(ValueError, match="sentence_sequences: .* need 3 sentences of 3 words, the data has 2"):
        sentence_sequences(sentences, sentence_length=3, n_sentences=3)
    with pytest.raises(ValueError, match="sentence_sequences: sentence_length must be an int >= 2"):
        sentence_sequences(sentences, sentence_length=1)


def test_split_sentences_keeps_prose():
    text = 'The "assert" statement is simple.  It raises (sometimes) errors!\n\n   X = f(1).\nDone.  Use 3 args.'
    assert split_sentences(text) == ['The "assert" statement is simple.', "It raises (sometimes) errors!", "Done."]
