"""Word sequences and word-swap stimuli for integration windows (Skrill & Norman-Haignere, NeurIPS 2023).

A **sequence** is a list of words: ``n_sentences`` sentences of exactly ``sentence_length`` words
each (so that sentence boundaries sit at fixed positions, for the yoking index). As in the authors'
code, a sentence's words are lower-cased, hyphens split words and punctuation is dropped
(:func:`sentence_words`): a swap then never removes a period or a capital, so nothing but the
words themselves marks a sentence boundary. The authors used the Brown corpus, which is not
available offline here, so the caller gives the sentences (BLiMP's grammatical sentences, or the
prose sentences of a text, see :func:`split_sentences`).

**Swaps.** For each position ``s`` the word there is replaced by a word drawn uniformly (seeded)
from the **swap vocabulary**: the distinct words of the sequences themselves that are a single
token with a leading space, other than the original word. The authors drew a word of the same part
of speech; no tagger is available offline, so the part of speech is not matched.

**Alignment.** Each word is encoded on its own as ``" " + word`` (no special tokens), so that a
word's tokens do not depend on its neighbours; a word's response is the mean of its tokens'.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

_PROSE_WORD = re.compile(r"[\"(]?[A-Za-z]+(?:['-][A-Za-z]+)*[.,;:!?]?[\")]?[.,;:!?]?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"(])")


def split_sentences(text: str) -> list[str]:
    """The prose sentences of ``text``: whitespace collapsed, cut after ``.``, ``!`` or ``?`` followed
    by a space and a capital (or an opening quote or parenthesis), and kept only when every word is
    alphabetic (an inner ``'`` or ``-``, quotes or parentheses around it and punctuation after it
    allowed), which leaves code and markup out.

    >>> split_sentences("The cat sat.  It purred!  Call f(x) now. Done")
    ['The cat sat.', 'It purred!', 'Done']
    """
    sentences = _SENTENCE_END.split(" ".join(text.split()))
    return [s for s in sentences if s and all(_PROSE_WORD.fullmatch(w) for w in s.split())]


def sentence_words(sentence: str) -> list[str]:
    """A sentence's words, normalised as the authors did: lower case, hyphens split, no punctuation.

    >>> sentence_words("The (well-known) cat didn't sit.")
    ['the', 'well', 'known', 'cat', "didn't", 'sit']
    """
    words = re.findall(r"[a-z0-9']+", sentence.lower().replace("-", " "))
    return [w for w in (w.strip("'") for w in words) if w]


def sentence_sequences(
    sentences: Iterable[str], sentence_length: int = 8, n_sentences: int = 5, n_sequences: int = 20, seed: int = 0
) -> list[list[str]]:
    """``n_sequences`` word sequences, each of ``n_sentences`` distinct sentences of exactly
    ``sentence_length`` words (:func:`sentence_words`) drawn (seeded) from ``sentences``. Each sequence draws anew, so a
    sentence may come back in another sequence, as in the authors' code (which drew the context
    sentences with replacement); a large pool (BLiMP has 7,850 distinct sentences of 8 words) makes that rare.

    >>> sentence_sequences(["A b c.", "D e f.", "G h."], sentence_length=3, n_sentences=2, n_sequences=1)
    [['d', 'e', 'f', 'a', 'b', 'c']]
    """
    for name, value, low in (("sentence_length", sentence_length, 2), ("n_sentences", n_sentences, 1),
                             ("n_sequences", n_sequences, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"sentence_sequences: {name} must be an int >= {low}, got {value!r}")
    pool = sorted({tuple(words) for words in map(sentence_words, sentences) if len(words) == sentence_length})
    if len(pool) < n_sentences:
        raise ValueError(
            f"sentence_sequences: sequences of {n_sentences} distinct sentences need {n_sentences} sentences of "
            f"{sentence_length} words, the data has {len(pool)}; use fewer sentences per sequence or another sentence_length"
        )
    rng = random.Random(seed)
    return [[w for words in rng.sample(pool, n_sentences) for w in words] for _ in range(n_sequences)]


def encode_words(words: Sequence[str], tokenizer, cache: dict[str, list[int]] | None = None) -> tuple[list[int], list[int]]:
    """``(token ids, word index of each token)`` of ``words``, each word encoded as ``" " + word``.

    ``cache`` (word -> ids) saves re-encoding the same words across swapped copies.

    >>> class Chars:  # a toy tokenizer: one token per character
    ...     def encode(self, text, add_special_tokens=False): return [ord(ch) for ch in text]
    >>> encode_words(["ab", "c"], Chars())
    ([32, 97, 98, 32, 99], [0, 0, 0, 1, 1])
    """
    cache = {} if cache is None else cache
    ids: list[int] = []
    owner: list[int] = []
    for i, word in enumerate(words):
        if word not in cache:
            cache[word] = list(tokenizer.encode(" " + word, add_special_tokens=False))
            if not cache[word]:
                raise ValueError(f"encode_words: the tokenizer gives no token for the word {word!r}")
        ids += cache[word]
        owner += [i] * len(cache[word])
    return ids, owner


def swap_vocabulary(sequences: Iterable[Sequence[str]], tokenizer, cache: dict[str, list[int]] | None = None) -> list[str]:
    """The sequences' distinct words that are one token with a leading space, sorted (the swap words)."""
    cache = {} if cache is None else cache
    words = sorted({w for seq in sequences for w in seq})
    vocabulary = [w for w in words if len(encode_words([w], tokenizer, cache)[0]) == 1]
    if len(vocabulary) < 2:
        raise ValueError(
            f"swap_vocabulary: the sequences hold {len(vocabulary)} single-token word(s) (of {len(words)} distinct); "
            "word swaps need at least 2: give more or other sentences"
        )
    return vocabulary


def swap_variants(words: Sequence[str], vocabulary: Sequence[str], rng: random.Random) -> list[list[str]]:
    """``[words, copy with word 0 swapped, ..., copy with word L - 1 swapped]`` (``L + 1`` lists):
    each swap is a word of ``vocabulary`` drawn with ``rng``, different from the original."""
    variants = [list(words)]
    for s, word in enumerate(words):
        swap = rng.choice(vocabulary)
        while swap == word:  # the vocabulary holds >= 2 words, so this ends
            swap = rng.choice(vocabulary)
        variants.append([*words[:s], swap, *words[s + 1 :]])
    return variants
