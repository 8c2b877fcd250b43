"""Integration windows: exact kernels recovered, streamed sums = a naive loop, yoking, a real tiny
GPT-Neo (tau > 0 smoother than tau = 0), bad input, ``hf-toponets windows`` end to end."""

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_gpt_neo
from hf_toponets import TopoConfig
from hf_toponets.analysis.window_fit import window_curve
from hf_toponets.analysis.window_report import map_smoothness, write_windows
from hf_toponets.analysis.windows import integration_windows, swap_sums, window_theta
from hf_toponets.analysis.word_swap import encode_words, sentence_sequences, split_sentences, swap_variants, swap_vocabulary
from hf_toponets.cli import main
from hf_toponets.core.metadata import attach_topo_config

LAGS = torch.arange(40, dtype=torch.float64)


class WordTokenizer:
    """One token per word (``" " + word``), BOS = 0."""

    bos_token_id = 0

    def __init__(self, words):
        self.ids = {" " + w: i + 1 for i, w in enumerate(words)}

    def encode(self, text, add_special_tokens=False):
        return [self.ids[text]]


class KernelModel(nn.Module):
    """Unit ``u`` responds ``r_u(t) = sum_k K[u, k] g(word t - k)``: ``c_fc`` maps the lagged word values
    to the units, so a swap at ``t - Delta`` moves ``r_u(t)`` by exactly ``K[u, Delta] |g(new) - g(old)|``.
    With ``sentence_length``, lags reaching into the previous sentence are cut (a structure-yoked unit)."""

    def __init__(self, kernels, values, sentence_length=None):
        super().__init__()
        self.value = nn.Embedding(len(values), 1)
        self.value.weight.data = torch.as_tensor(values, dtype=torch.float32)[:, None]
        self.c_fc = nn.Linear(kernels.shape[1], kernels.shape[0], bias=False)
        self.c_fc.weight.data = kernels.float()
        self.sentence_length = sentence_length

    def forward(self, input_ids):
        g = self.value(input_ids)[..., 0]  # (B, T)
        t, n_lags = g.shape[1], self.c_fc.in_features
        lags = torch.stack([F.pad(g, (k, 0))[:, :t] for k in range(n_lags)], -1)  # (B, T, n_lags)
        if self.sentence_length:
            word = torch.arange(t)[:, None] - 1  # token 0 is BOS
            start = torch.div(word, self.sentence_length, rounding_mode="floor") * self.sentence_length
            lags = lags * (word - torch.arange(n_lags)[None] >= start).float()
        return self.c_fc(lags)


def kernel(a, b, c):
    return window_curve(LAGS, torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64),
                        torch.tensor([c], dtype=torch.float64))[0]


SHAPES = {"exponential": (0.0, 0.5, 0.0), "power law": (1.2, 0.0, 1.0), "mixture": (0.8, 1.5, 0.4),
          "slow mixture": (0.4, 0.2, 0.7)}


def two_word_run(kernels, sentence_length=None, yoked=False, n=6, length=30):
    """Sequences over the words ``a`` (g = 0) and ``b`` (g = 1): every swap changes g by exactly 1.
    ``yoked``: the model's units are cut at the ``sentence_length``-word sentence starts."""
    model = KernelModel(kernels, [0.0, 0.0, 1.0], sentence_length if yoked else None)
    rng = random.Random(0)
    seqs = [[rng.choice("ab") for _ in range(length)] for _ in range(n)]
    return integration_windows(model, WordTokenizer("ab"), seqs, layers=["c_fc"], sentence_length=sentence_length,
                               progress=False)["c_fc"]


def test_recovers_exponential_power_law_and_mixture_kernels():
    rows = [kernel(*p) for p in SHAPES.values()] + [(LAGS == 0).double(), torch.zeros(40, dtype=torch.float64)]
    rows += [kernel(*SHAPES["mixture"])] * 3  # 9 units: a 3 x 3 sheet
    w = two_word_run(torch.stack(rows))
    expected = torch.stack(rows)[:, :21]
    torch.testing.assert_close(w.theta[:4], expected[:4].float(), atol=1e-5, rtol=0)  # the method is exact here
    for i, (name, (a, b, c)) in enumerate(SHAPES.items()):
        assert abs(w.c[i].item() - c) <= 0.05 * max(c, 1e-3) + 1e-3, name
        if c > 0:
            assert w.a[i].item() == pytest.approx(a, rel=0.05), name
        if c < 1:
            assert w.b[i].item() == pytest.approx(b, rel=0.05), name
        assert w.r2[i].item() > 0.999
    assert w.theta[4, 0].item() == 1.0 and w.theta[4, 1:].abs().max().item() == 0.0  # reads only the current word
    assert bool(w.excluded[5]) and not bool(w.excluded[:5].any()) and bool(w.theta[5].isnan().all())
    assert math.isnan(w.a[5].item()) and math.isnan(w.yoking[5].item())


def test_yoking_index_zero_for_position_yoked_and_exact_for_sentence_yoked_units():
    """Oracle: a unit cut at sentence starts, kernel K, has index sum_{k=1}^{L-2} K(k) / ((L - 1) K(0));
    one that integrates across the boundary, 0."""
    length, k = 6, kernel(*SHAPES["exponential"])
    kernels = torch.stack([k] * 9)
    expected = float(k[1 : length - 1].sum() / ((length - 1) * k[0]))
    assert expected > 0.2
    yoked = two_word_run(kernels, sentence_length=length, yoked=True)
    torch.testing.assert_close(yoked.yoking, torch.full((9,), expected, dtype=torch.float32), atol=1e-5, rtol=0)
    position = two_word_run(kernels, sentence_length=length)
    assert position.yoking.abs().max().item() < 1e-5
    assert bool(two_word_run(kernels).yoking.isnan().all())  # no sentence_length: no index


@pytest.fixture(scope="module")
def corpus_tokenizer():
    from hf_toponets.training.data import embedded_corpus, train_tokenizer

    return train_tokenizer(embedded_corpus(), vocab_size=1024)


@pytest.fixture(scope="module")
def corpus_sentences():
    from hf_toponets.training.data import embedded_corpus

    return split_sentences(" ".join(embedded_corpus()))


def naive_sums(model, tokenizer, sequences, name, n_delta, seed=0):
    """Oracle: every copy run alone (no padding), word responses by a loop, the full (L, L, units) matrix."""
    module = model.get_submodule(name)
    vocabulary = swap_vocabulary(sequences, tokenizer)
    rng = random.Random(seed)
    length = len(sequences[0])
    full = None
    for words in sequences:
        rows = []
        for variant in swap_variants(words, vocabulary, rng):
            ids, owner = encode_words(variant, tokenizer)
            out = {}
            handle = module.register_forward_hook(lambda m, i, o: out.__setitem__("r", o[0]))
            with torch.no_grad():
                model(torch.tensor([[tokenizer.bos_token_id] + ids]))
            handle.remove()
            rows.append(torch.stack([out["r"][1:][torch.tensor(owner) == w].mean(0) for w in range(length)]))
        diff = (torch.stack(rows[1:]) - rows[0]).abs().double()  # (swap s, target t, units)
        full = diff if full is None else full + diff
    band = torch.zeros(n_delta, length, full.shape[-1], dtype=torch.float64)
    for d in range(n_delta):
        for t in range(d, length):
            band[d, t] = full[t - d, t]
    return band, full


@pytest.fixture(scope="module")
def naive(corpus_tokenizer, corpus_sentences):
    model = tiny_gpt_neo(seed=0, vocab=1024).eval()
    seqs = sentence_sequences(corpus_sentences, sentence_length=6, n_sentences=2, n_sequences=2, seed=1)
    return model, seqs, *naive_sums(model, corpus_tokenizer, seqs, "transformer.h.1.mlp.c_fc", n_delta=8)


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_streamed_sums_equal_a_naive_loop(corpus_tokenizer, naive, batch_size):
    """Multi-token words, right padding and batches of any size give the oracle's sums; a causal
    model's swap never moves an earlier word."""
    model, seqs, band, full = naive
    earlier = torch.ones(full.shape[:2], dtype=torch.bool).tril(-1)  # [s, t] with t < s
    assert full[earlier].abs().max().item() < 1e-6 * full.abs().max().item()
    name = "transformer.h.1.mlp.c_fc"
    sums = swap_sums(model, corpus_tokenizer, seqs, {name: model.get_submodule(name)}, 8, batch_size, progress=False)
    torch.testing.assert_close(sums[name].cpu(), band, rtol=1e-4, atol=1e-5)


def test_theta_is_the_median_ratio_over_targets():
    """window_theta against numpy's median of S[Delta, t] / S[0, t] over targets t >= max_delta."""
    np = pytest.importorskip("numpy")
    sums = torch.rand(5, 12, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.1
    theta, dead = window_theta(sums, max_delta=4)
    ref = np.median(sums[:, 4:].numpy() / sums[0:1, 4:].numpy(), axis=1).T
    np.testing.assert_allclose(theta.numpy(), ref, rtol=1e-12)
    assert not bool(dead.any())


@pytest.mark.slow
def test_real_tiny_gpt_neo_windows_decay_and_topography_smooths_the_maps(corpus_sentences):
    """Two tiny GPT-Neos trained 30 steps on the embedded corpus from the same seed, tau = 0 and tau = 50."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from hf_toponets import TopoTrainer
    from hf_toponets.training.data import embedded_corpus, pack_token_ids, train_tokenizer

    tokenizer = train_tokenizer(embedded_corpus(), vocab_size=2048)  # ~1.5 tokens a word: 24 words fit 64 positions
    blocks = list(pack_token_ids(tokenizer(embedded_corpus(), add_special_tokens=False)["input_ids"], 32,
                                 tokenizer.eos_token_id))[:512]
    data = Dataset.from_dict({"input_ids": blocks, "labels": blocks})
    seqs = sentence_sequences(corpus_sentences, sentence_length=6, n_sentences=4, n_sequences=10, seed=0)
    maps = {}
    for tau in (0.0, 50.0):
        model = tiny_gpt_neo(seed=0, vocab=2048)
        args = TrainingArguments(output_dir="unused", per_device_train_batch_size=8, max_steps=30, learning_rate=3e-3,
                                 optim="adamw_torch", lr_scheduler_type="constant", report_to=[], save_strategy="no",
                                 seed=0, use_cpu=True, disable_tqdm=True)
        TopoTrainer(model=model, args=args, train_dataset=data, topo_config=TopoConfig(target_modules=["c_fc"], tau=tau)).train()
        windows = integration_windows(model, tokenizer, seqs, max_delta=10, sentence_length=6, progress=False)
        for name, w in windows.items():
            theta = w.theta_median
            assert theta[0].item() == 1.0 and theta[1:].max().item() < 0.5  # a far swap moves a unit less than its own word
            assert w.r2.nanmedian().item() > 0.9 and int(w.excluded.sum()) == 0
            maps[tau, name] = sum(map_smoothness(getattr(w, key), w.sheet) for key in "abc") / 3
    for name in windows:
        assert maps[50.0, name] > maps[0.0, name] + 0.1, maps


def topo_model(vocab=1024):
    model = tiny_gpt_neo(seed=0, vocab=vocab)
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    return model


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_delta=12), "sequences of 12 words are too short for max_delta=12; each needs at least max_delta \\+ 1 = 13"),
    (dict(layers=["c_proj"]), "not topographic in this model"),
    (dict(sentence_length=5), "sentence_length=5 must be >= 2 and divide the sequences' 12 words"),
    (dict(max_delta=1), "max_delta must be an int >= 2"),
    (dict(batch_size=0), "batch_size must be >= 1"),
])
def test_bad_input(corpus_tokenizer, kwargs, message):
    seqs = [["the", "cat", "is", "on", "the", "mat"] * 2] * 2
    with pytest.raises(ValueError, match=message):
        integration_windows(topo_model(), corpus_tokenizer, seqs, progress=False, **{"max_delta": 8, **kwargs})


def test_bad_sequences(corpus_tokenizer):
    model = topo_model()
    with pytest.raises(ValueError, match="same number of words, got lengths \\[10, 12\\]"):
        integration_windows(model, corpus_tokenizer, [["a"] * 12, ["a"] * 10], max_delta=8, progress=False)
    with pytest.raises(ValueError, match="non-empty list of word lists"):
        integration_windows(model, corpus_tokenizer, ["the cat is on the mat again and again"], max_delta=8, progress=False)
    with pytest.raises(ValueError, match="takes .* tokens, more than the model's max_position_embeddings=64"):
        integration_windows(model, corpus_tokenizer, [["antidisestablishmentarianism", "the", "of"] * 7] * 2,
                            max_delta=8, progress=False)


def test_write_windows_schema(tmp_path):
    w = two_word_run(torch.stack([kernel(*SHAPES["mixture"])] * 8 + [torch.zeros(40, dtype=torch.float64)]),
                     sentence_length=6)
    result = write_windows({"c_fc": w}, tmp_path, n_sequences=6)
    on_disk = json.loads((tmp_path / "windows.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    layer = on_disk["layers"]["c_fc"]
    assert on_disk["max_delta"] == 20 and on_disk["n_sequences"] == 6 and layer["sheet"] == [3, 3]
    for key in ("a", "b", "c", "r2", "yoking"):
        assert len(layer[key]) == 9 and layer[key][8] is None and all(v is not None for v in layer[key][:8])
    assert len(layer["theta_median"]) == 21 and layer["theta_median"][0] == 1.0 and layer["n_excluded"] == 1
    assert set(layer["smoothness"]) == {"a", "b", "c", "yoking"}
    assert (tmp_path / on_disk["maps"]["c_fc"]).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / on_disk["curves"]).read_bytes()[:4] == b"\x89PNG"


def test_map_smoothness_orders_clustered_above_shuffled():
    g = torch.Generator().manual_seed(0)
    col = (torch.arange(16 * 24) % 24).double()  # a gradient along each sheet row
    shuffled = col[torch.randperm(col.numel(), generator=g)]
    assert map_smoothness(col, (16, 24)) > 1.0 > 0.2 > map_smoothness(shuffled, (16, 24))
    holes = col.clone()
    holes[::7] = float("nan")  # excluded units are left out, not zeros
    assert map_smoothness(holes, (16, 24)) == pytest.approx(map_smoothness(col, (16, 24)), abs=0.1)
    assert map_smoothness(torch.ones(16), (4, 4)) is None
    with pytest.raises(ValueError, match="map_smoothness: a sheet of shape \\(4, 5\\) cannot hold 16 values"):
        map_smoothness(torch.ones(16), (4, 5))


@pytest.fixture(scope="module")
def saved(tmp_path_factory, corpus_tokenizer):
    root = tmp_path_factory.mktemp("windows")
    topo_model().save_pretrained(root / "model")
    corpus_tokenizer.save_pretrained(root / "model")
    (root / "text.txt").write_text("The cat sat on the mat. " * 3 + "A dog ran to the big red door. " * 3, encoding="utf-8")
    return root


def test_cli_end_to_end(saved, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["windows", "--model", str(saved / "model"), "--output", str(out), "--max-delta", "8",
                 "--n-sequences", "3", "--sentence-length", "6", "--n-sentences", "3", "--layers", "h.1.mlp.c_fc"])
    assert code == 0
    data = json.loads((out / "windows.json").read_text())
    assert list(data["layers"]) == ["transformer.h.1.mlp.c_fc"] and data["max_delta"] == 8 and data["n_sequences"] == 3
    layer = data["layers"]["transformer.h.1.mlp.c_fc"]
    assert layer["sheet"] == [8, 16] and len(layer["a"]) == 128 and len(layer["theta_median"]) == 9
    assert (out / data["maps"]["transformer.h.1.mlp.c_fc"]).is_file() and (out / data["curves"]).is_file()
    assert "transformer.h.1.mlp.c_fc" in capsys.readouterr().out


def test_cli_reads_blimp_and_text(saved, tmp_path, shared_data):
    out = tmp_path / "blimp"
    assert main(["windows", "--model", str(saved / "model"), "--data", str(shared_data / "blimp"), "--output", str(out),
                 "--max-delta", "8", "--n-sequences", "2", "--sentence-length", "5", "--n-sentences", "2"]) == 0
    assert json.loads((out / "windows.json").read_text())["n_sequences"] == 2


def test_cli_bad_input(saved, tmp_path, capsys):
    args = ["windows", "--model", str(saved / "model"), "--output", str(tmp_path / "x")]
    assert main(args + ["--data", str(saved / "text.txt"), "--sentence-length", "6"]) == 2
    assert "need 5 sentences of 6 words, the data has 1" in capsys.readouterr().err
    assert main(args + ["--data", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_the_card_shows_the_windows_of_the_folder(saved, tmp_path):
    """windows.json written into the model's folder: write_model_card's card gains the section, its maps exist."""
    import shutil

    from hf_toponets.hub.folder import write_model_card

    folder = tmp_path / "model"
    shutil.copytree(saved / "model", folder)
    plain = write_model_card(folder).read_text()
    assert "## Temporal integration windows" not in plain
    assert main(["windows", "--model", str(folder), "--output", str(folder), "--max-delta", "8", "--n-sequences", "2",
                 "--sentence-length", "6", "--n-sentences", "3"]) == 0
    card = write_model_card(folder).read_text()
    assert "## Temporal integration windows" in card and "None" not in card
    for name in ("transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"):
        assert f"(maps/windows_{name}.png)" in card and (folder / f"maps/windows_{name}.png").is_file()
    assert "(maps/windows_theta_median.png)" in card


@pytest.mark.parametrize("edit, message", [
    (lambda w: w["layers"].update({"h.9.c_fc": {"sheet": [8, 16]}}), "not topographic in this model"),
    (lambda w: w["layers"]["transformer.h.0.mlp.c_fc"].update({"sheet": [4, 32]}), "belong to another model"),
    (lambda w: w.update({"curves": "elsewhere/curve.png"}), "directly under maps/"),
])
def test_the_card_refuses_windows_of_another_model(saved, tmp_path, edit, message):
    from hf_toponets.hub.cards import render_card

    config = json.loads((saved / "model" / "config.json").read_text())
    windows = {"layers": {"transformer.h.0.mlp.c_fc": {"sheet": [8, 16], "a": [1.0] * 128}}, "max_delta": 8,
               "n_sequences": 2, "maps": {}, "curves": None}
    assert "## Temporal integration windows" in str(render_card(config["topo"], "gpt_neo", windows=windows))
    edit(windows)
    with pytest.raises(ValueError, match=message):
        render_card(config["topo"], "gpt_neo", windows=windows)
