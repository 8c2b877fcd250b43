import pytest
from datasets import Dataset

from hf_toponets.training.data import embedded_corpus, pack_dataset, pack_token_ids, train_tokenizer


def naive_pack(docs, block, eos):
    stream = [t for d in docs for t in (*d, eos)]
    return [stream[i : i + block] for i in range(0, len(stream) - block + 1, block)]


@pytest.mark.parametrize("block", [2, 3, 5, 8])
def test_pack_equals_cutting_the_joined_stream(block):
    docs = [[1, 2, 3], [4], [], [5, 6, 7, 8, 9, 10], [11, 12]]
    assert list(pack_token_ids(docs, block, eos_id=0)) == naive_pack(docs, block, 0)


def test_pack_rejects_tiny_blocks():
    with pytest.raises(ValueError, match="block_size must be >= 2"):
        list(pack_token_ids([[1]], 1, 0))


def test_embedded_corpus_is_stable_english():
    texts = embedded_corpus()
    assert len(texts) > 50 and sum(map(len, texts)) > 300_000
    assert texts == embedded_corpus()


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(embedded_corpus()[:20], vocab_size=400)


def test_trained_tokenizer_round_trips(tokenizer):
    text = "The try statement specifies exception handlers."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == "<|endoftext|>"
    assert len(tokenizer) == 400


def test_pack_dataset_matches_the_pure_packer(tokenizer):
    texts = ["alpha beta gamma", "delta", "epsilon zeta eta theta iota"]
    ds = pack_dataset(Dataset.from_dict({"text": texts, "other": [1, 2, 3]}), tokenizer, block_size=4)
    docs = tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert ds["input_ids"] == naive_pack(docs, 4, tokenizer.eos_token_id)
    assert ds["labels"] == ds["input_ids"] and ds.column_names == ["input_ids", "labels"]


def test_pack_dataset_errors(tokenizer):
    with pytest.raises(ValueError, match="no column 'text'"):
        pack_dataset(Dataset.from_dict({"body": ["x"]}), tokenizer, 4)
    with pytest.raises(ValueError, match="vocab_size must be >= 300"):
        train_tokenizer(["x"], vocab_size=10)


def stream_rows():
    for i, text in enumerate(["alpha beta gamma", "delta", "epsilon zeta eta theta iota", "kappa lambda mu"]):
        yield {"id": str(i), "url": f"https://example.org/{i}", "text": text}  # extra columns, as Wikipedia's


@pytest.mark.parametrize("features", ["declared", "unknown"])
def test_streaming_packs_like_the_map_style_dataset(tokenizer, features):
    from datasets import IterableDataset

    rows = list(stream_rows())
    stream = (Dataset.from_list(rows).to_iterable_dataset(num_shards=2) if features == "declared"
              else IterableDataset.from_generator(stream_rows))
    assert (stream.column_names is None) == (features == "unknown")
    packed = list(pack_dataset(stream, tokenizer, block_size=3))
    expected = pack_dataset(Dataset.from_list(rows), tokenizer, block_size=3)
    assert [r["input_ids"] for r in packed] == expected["input_ids"] and packed[0].keys() == {"input_ids", "labels"}


def test_pack_dataset_names_a_missing_column_of_a_declared_stream(tokenizer):
    with pytest.raises(ValueError, match="no column 'body'; the dataset has \\['id', 'text', 'url'\\]"):
        pack_dataset(Dataset.from_list(list(stream_rows())).to_iterable_dataset(), tokenizer, 4, text_column="body")
