"""blimp: log-likelihoods against a one-sentence-at-a-time loop, ties, aggregation, data, CLI, bad input."""

import json
import random

import pytest
import torch
from conftest import tiny_gpt_neo

from hf_toponets.evaluation.blimp import (aggregate, blimp_log_metrics, context_length, encode_sentences, evaluate_blimp,
                               pack_batches)
from hf_toponets.evaluation.blimp_data import (PARADIGMS, PHENOMENA, PHENOMENON_OF, BlimpPair, hub_rows_to_pairs, load_blimp,
                                    read_jsonl_paradigm, resolve_paradigms)
from hf_toponets.cli import main

# Short and long sentences, a pair of identical sentences (a tie) and a sentence shared by two pairs.
PAIRS = {
    "passive_1": [
        ("The cat was seen by Sarah.", "The cat was seen Sarah."),
        ("Who was hugged?", "Who was hugged?"),
        ("A dog that every teacher who left the old school in the morning had liked was found.",
         "A dog that every teacher who left the old school in the morning had liked was found by."),
    ],
    "animate_subject_passive": [
        ("The cat was seen by Sarah.", "The cat was seen by the table."),
        ("Sarah left.", "Left Sarah."),
    ],
    "wh_island": [("What did the man who liked the dog see?", "What did the man see who liked the dog?")],
}
UIDS = list(PAIRS)
WORDS = sorted({w for pairs in PAIRS.values() for p in pairs for s in p for w in s.replace(".", " .").replace("?", " ?").split()})


def write_jsonl(folder, pairs=PAIRS, id_field="pairID"):
    folder.mkdir(parents=True, exist_ok=True)
    for uid, rows in pairs.items():
        lines = [json.dumps({"sentence_good": g, "sentence_bad": b, "UID": uid, id_field: str(i)}) for i, (g, b) in enumerate(rows)]
        (folder / f"{uid}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def gpt2_tokenizer(shared_data):
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(shared_data / "gpt2-tokenizer")


def bos_tokenizer(bos=True, eos=True):
    """A word-level tokenizer whose post-processor adds ``<s>`` itself, as Llama's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                   bos_token="<s>" if bos else None, eos_token="</s>" if eos else None)


def naive_ll(model, tokenizer, sentence, max_length):
    """The harness's path for one request: prefix rule, window ``[-(L+1):]``, float32 log-softmax, sum."""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    cont = tokenizer.encode(" " + sentence, add_special_tokens=False)
    context, cont = ([prefix], cont) if cont[0] != prefix else (cont[:1], cont[1:])
    window = (context + cont)[-(max_length + 1):]
    with torch.no_grad():
        logprobs = model(torch.tensor([window[:-1]])).logits[0].float().log_softmax(-1)
    scored = min(len(cont), len(window) - 1)
    return sum(logprobs[t, window[t + 1]].item() for t in range(len(window) - 1 - scored, len(window) - 1))


def setups(shared_data=None):
    return {"gpt2": lambda sd: (tiny_gpt_neo(seed=0, vocab=50257), gpt2_tokenizer(sd)),
            "bos": lambda sd: (tiny_gpt_neo(seed=1, vocab=len(WORDS) + 3), bos_tokenizer())}


@pytest.mark.parametrize("batch_size", [2, 3, 64])
@pytest.mark.parametrize("which", ["gpt2", "bos"])
def test_log_likelihoods_match_a_naive_loop(which, batch_size, tmp_path, request):
    shared = request.getfixturevalue("shared_data") if which == "gpt2" else None
    model, tokenizer = setups()[which](shared)
    result = evaluate_blimp(model, tokenizer, write_jsonl(tmp_path), UIDS, batch_size=batch_size, per_pair=True, progress=False)
    for uid, rows in PAIRS.items():
        for (good, bad), got in zip(rows, result["pairs"][uid]):
            assert got["ll_good"] == pytest.approx(naive_ll(model, tokenizer, good, 64), abs=1e-4)
            assert got["ll_bad"] == pytest.approx(naive_ll(model, tokenizer, bad, 64), abs=1e-4)


def test_a_tokenizer_that_adds_bos_gets_it_once():
    tokenizer = bos_tokenizer()
    assert tokenizer(" Sarah left.")["input_ids"][0] == 1  # it adds <s> itself by default
    sarah, left, dot = (tokenizer.convert_tokens_to_ids(w) for w in ("Sarah", "left", "."))
    assert encode_sentences(tokenizer, ["Sarah left."]) == [[1, sarah, left, dot]]
    assert encode_sentences(tokenizer, ["<s> Sarah left."]) == [[1, sarah, left, dot]]  # already prefixed: kept as is


@pytest.mark.parametrize("bos, eos, expected", [(True, True, 1), (False, True, 2)])
def test_prefix_is_bos_else_eos(bos, eos, expected):
    assert encode_sentences(bos_tokenizer(bos, eos), ["left"])[0][0] == expected


def test_identical_sentences_tie_and_count_as_correct(tmp_path):
    model, tokenizer = tiny_gpt_neo(seed=2, vocab=len(WORDS) + 3), bos_tokenizer()
    result = evaluate_blimp(model, tokenizer, write_jsonl(tmp_path), ["passive_1"], per_pair=True, progress=False)
    tie = result["pairs"]["passive_1"][1]
    assert tie["ll_good"] == tie["ll_bad"]
    wins = [r["ll_good"] >= r["ll_bad"] for r in result["pairs"]["passive_1"]]
    assert wins[1] and result["paradigms"]["passive_1"]["accuracy"] == pytest.approx(sum(wins) / 3)


def test_aggregation_is_unweighted_paradigm_then_phenomenon_then_overall():
    rows = lambda outcomes: [{"pair_id": i, "ll_good": 0.0, "ll_bad": -1.0 if ok else (0.0 if ok is None else 1.0)}  # noqa: E731
                             for i, ok in enumerate(outcomes)]
    pairs = {  # ok=None: a tie, counted correct
        "passive_1": rows([True, False, None, False]),          # 0.5, argument_structure
        "animate_subject_trans": rows([True]),                   # 1.0, argument_structure (s-selection in the data)
        "wh_island": rows([False, False, True, True, True, True, True, True, True, True]),  # 0.8, island_effects
    }
    result = aggregate(pairs)
    assert {u: p["accuracy"] for u, p in result["paradigms"].items()} == {"passive_1": 0.5, "animate_subject_trans": 1.0, "wh_island": 0.8}
    assert result["phenomena"] == pytest.approx({"argument_structure": 0.75, "island_effects": 0.8})
    assert result["overall"] == pytest.approx((0.5 + 1.0 + 0.8) / 3)  # not the pair-weighted 10/15
    assert result["n_pairs"] == 15
    assert blimp_log_metrics(result, "eval_") == {"eval_blimp_overall": result["overall"],
                                                  "eval_blimp_argument_structure": 0.75,
                                                  "eval_blimp_island_effects": pytest.approx(0.8)}


@pytest.mark.parametrize("outcomes", [[1, 0, 1, 1], [1] * 7, [0, 1], [1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1], [1]])
def test_paradigm_stderr_is_the_harness_acc_stderr(outcomes):
    """lm-evaluation-harness: acc_stderr = sample_stddev(acc per pair) / sqrt(n), oracle from statistics.stdev."""
    import math
    import statistics

    rows = [{"pair_id": i, "ll_good": 0.0, "ll_bad": -1.0 if ok else 1.0} for i, ok in enumerate(outcomes)]
    got = aggregate({"passive_1": rows})["paradigms"]["passive_1"]["stderr"]
    if len(outcomes) < 2:
        assert got is None  # undefined for one pair (the harness divides by n - 1 = 0)
    else:
        assert got == pytest.approx(statistics.stdev(outcomes) / math.sqrt(len(outcomes)), rel=1e-12)


def test_both_data_formats_give_the_same_pairs(tmp_path):
    from datasets import Dataset

    rows = [{"sentence_good": g, "sentence_bad": b, "pair_id": i} for i, (g, b) in enumerate(PAIRS["passive_1"])]
    from_hub = hub_rows_to_pairs(Dataset.from_list(rows))
    from_file = read_jsonl_paradigm(write_jsonl(tmp_path) / "passive_1.jsonl")
    assert from_hub == from_file == [BlimpPair(i, g, b) for i, (g, b) in enumerate(PAIRS["passive_1"])]


def test_the_hub_path_asks_for_one_config_per_paradigm_split_train(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name, split):  # the network stays out of the suite
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"sentence_good": g, "sentence_bad": b, "pair_id": i}
                                           for i, (g, b) in enumerate(PAIRS[name])])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    pairs = load_blimp(None, "wh_island,passive_1")
    assert calls == [("nyu-mll/blimp", "passive_1", "train"), ("nyu-mll/blimp", "wh_island", "train")]
    assert pairs["passive_1"][2] == BlimpPair(2, *PAIRS["passive_1"][2])


def test_loaded_pairs_and_a_folder_give_the_same_result(tmp_path):
    model, tokenizer = tiny_gpt_neo(seed=3, vocab=len(WORDS) + 3), bos_tokenizer()
    folder = write_jsonl(tmp_path)
    a = evaluate_blimp(model, tokenizer, folder, "wh_island,passive_1", per_pair=True, progress=False)
    b = evaluate_blimp(model, tokenizer, load_blimp(folder, UIDS), ["passive_1", "wh_island"], per_pair=True, progress=False)
    assert a == b
    assert list(a["paradigms"]) == ["passive_1", "wh_island"] and a["n_pairs"] == 4
    assert set(a["phenomena"]) == {"argument_structure", "island_effects"}


@pytest.mark.parametrize("paradigms, expected", [(None, list(PARADIGMS)), ("wh_island, passive_1", ["passive_1", "wh_island"]),
                                                 (["wh_island"], ["wh_island"])])
def test_paradigm_subsets(paradigms, expected):
    assert resolve_paradigms(paradigms) == expected


def test_over_long_sentences_keep_the_harness_window(tmp_path):
    model, tokenizer = tiny_gpt_neo(seed=4, vocab=len(WORDS) + 3), bos_tokenizer()
    model.config.max_position_embeddings = 8  # the 17-token sentence no longer fits; the short ones do
    assert context_length(model, tokenizer) == 8
    result = evaluate_blimp(model, tokenizer, write_jsonl(tmp_path), UIDS, per_pair=True, progress=False)
    for uid, rows in PAIRS.items():
        for (good, bad), got in zip(rows, result["pairs"][uid]):
            assert (got["ll_good"], got["ll_bad"]) == pytest.approx((naive_ll(model, tokenizer, good, 8), naive_ll(model, tokenizer, bad, 8)), abs=1e-4)
    long = result["pairs"]["passive_1"][2]["ll_good"]
    assert long != pytest.approx(naive_ll(model, tokenizer, PAIRS["passive_1"][2][0], 64), abs=1e-3)


def test_training_mode_is_restored(tmp_path):
    model, tokenizer = tiny_gpt_neo(seed=5, vocab=len(WORDS) + 3), bos_tokenizer()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5  # in training mode every forward would differ
    folder = write_jsonl(tmp_path)
    expected = evaluate_blimp(model.eval(), tokenizer, folder, UIDS, per_pair=True, progress=False)
    assert evaluate_blimp(model.train(), tokenizer, folder, UIDS, per_pair=True, progress=False) == expected  # dropout off
    assert model.training


def test_batches_hold_whole_pairs_longest_first():
    rng = random.Random(0)
    groups, lengths, n = [], [], 0
    for _ in range(50):
        size = rng.choice([0, 1, 2, 2, 2])
        groups.append(list(range(n, n + size)))
        lengths += [rng.randint(3, 30) for _ in range(size)]
        n += size
    batches = pack_batches(groups, lengths, 5)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert all(len(b) <= 5 for b in batches)
    assert all(any(set(g) <= set(b) for b in batches) for g in groups)
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest == sorted(longest, reverse=True)


def test_the_published_folder_holds_67_paradigms_of_1000_pairs(shared_data):
    pairs = load_blimp(shared_data / "blimp")
    assert list(pairs) == list(PARADIGMS) and sum(map(len, pairs.values())) == 67_000
    assert {uid for uid, rows in pairs.items() if len(rows) != 1000} == set()
    ties = {(uid, p.pair_id) for uid, rows in pairs.items() for p in rows if p.good == p.bad}
    assert ties == {("passive_1", 324), ("passive_1", 810)} | {("principle_A_case_2", i) for i in (105, 287, 372, 816, 967)}
    for uid in PARADIGMS:  # our 12 phenomena = the data's linguistics_term, with s-selection in argument structure
        term = json.loads((shared_data / "blimp" / f"{uid}.jsonl").open().readline())["linguistics_term"]
        assert PHENOMENON_OF[uid] == {"s-selection": "argument_structure"}.get(term, term)
    assert len(PHENOMENA) == 12


def test_cli_end_to_end(shared_data, tmp_path, capsys):
    model, tokenizer = tiny_gpt_neo(seed=6, vocab=50257), gpt2_tokenizer(shared_data)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    folder, output = write_jsonl(tmp_path / "data"), tmp_path / "out" / "results.json"
    argv = ["blimp", "--model", str(tmp_path / "model"), "--data", str(folder), "--paradigms", "passive_1,wh_island",
            "--batch-size", "4", "--per-pair", "--output", str(output)]
    assert main(argv) == 0
    written = json.loads(output.read_text())
    expected = evaluate_blimp(model, tokenizer, folder, "passive_1,wh_island", 4, per_pair=True, progress=False)
    assert written == json.loads(json.dumps(expected))
    assert [p.name for p in output.parent.iterdir()] == ["results.json"]  # no temporary file left
    out = capsys.readouterr().out
    assert "overall" in out and "argument_structure" in out and "4 pairs in 2 paradigms" in out
    assert main(argv[:-3] + ["--output", str(output)]) == 0 and "pairs" not in json.loads(output.read_text())


def test_cli_reports_an_unknown_paradigm(tmp_path, capsys):
    assert main(["blimp", "--model", str(tmp_path), "--paradigms", "passive_9", "--output", str(tmp_path / "r.json")]) == 2
    assert "passive_9" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def bad_lines(tmp_path, body):
    (tmp_path / "passive_1.jsonl").write_text(body)
    return tmp_path


GOOD = json.dumps({"sentence_good": "a", "sentence_bad": "b", "pairID": "0"})


@pytest.mark.parametrize("make, call, match", [
    (lambda p: p, lambda d: load_blimp(d, "passive_1,passive_9"), r"passive_9.*valid names: adjunct_island"),
    (lambda p: p, lambda d: load_blimp(d, []), "empty selection"),
    (lambda p: p, lambda d: load_blimp(d, "passive_1"), r"lacks 1 BLiMP file\(s\) \(passive_1.jsonl\)"),
    (lambda p: p / "nowhere", lambda d: load_blimp(d, "passive_1"), "is not a folder"),
    (lambda p: bad_lines(p, GOOD + "\n{oops\n"), lambda d: load_blimp(d, "passive_1"), r"passive_1.jsonl:2: .*JSONDecodeError"),
    (lambda p: bad_lines(p, GOOD + "\n\n" + json.dumps({"sentence_good": "a"})), lambda d: load_blimp(d, "passive_1"),
     r"passive_1.jsonl:3: .*sentence_bad"),
    (lambda p: bad_lines(p, json.dumps({"sentence_good": "a", "sentence_bad": "b", "pairID": "x"})),
     lambda d: load_blimp(d, "passive_1"), r"passive_1.jsonl:1: .*invalid literal"),
    (lambda p: bad_lines(p, "\n"), lambda d: load_blimp(d, "passive_1"), "holds no pairs"),
])
def test_bad_data_is_named(tmp_path, make, call, match):
    with pytest.raises(ValueError, match=match):
        call(make(tmp_path))


def test_bad_tokenizer_model_and_batch_size(tmp_path):
    from transformers import GPT2Config, GPT2Model

    folder = write_jsonl(tmp_path)
    model = tiny_gpt_neo(seed=7, vocab=len(WORDS) + 3)
    with pytest.raises(ValueError, match="tokenizer: .*neither a BOS nor an EOS"):
        evaluate_blimp(model, bos_tokenizer(bos=False, eos=False), folder, UIDS, progress=False)
    with pytest.raises(ValueError, match="model: GPT2Model is not a causal language model"):
        evaluate_blimp(GPT2Model(GPT2Config(n_embd=16, n_layer=1, n_head=2)), bos_tokenizer(), folder, UIDS, progress=False)
    with pytest.raises(ValueError, match="batch_size: 1"):
        evaluate_blimp(model, bos_tokenizer(), folder, UIDS, batch_size=1, progress=False)
    with pytest.raises(ValueError, match=r"lack paradigm\(s\) \['wh_island'\]"):
        evaluate_blimp(model, bos_tokenizer(), load_blimp(folder, "passive_1"), "wh_island", progress=False)
    with pytest.raises(ValueError, match=r"lack paradigm\(s\) \['passive_1'\] \(absent or empty\)"):
        evaluate_blimp(model, bos_tokenizer(), {"passive_1": []}, progress=False)
