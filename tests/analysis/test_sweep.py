"""sweep: parameter budgets against real models, token blocks, series, and an end-to-end CLI sweep."""

import json

import pytest
import torch
from conftest import tiny_gpt2, tiny_gpt_neo

from hf_toponets.core.config import TopoConfig
from hf_toponets.conversion.downsample import count_parameters, downsample_model
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.analysis.pruning import l1_prune
from hf_toponets.analysis.sweep import check_keeps, make_evaluate, parameter_budgets, sweep_model, sweep_series
from hf_toponets.evaluation.perplexity import token_blocks

BUILDERS = {"gpt_neo": tiny_gpt_neo, "gpt2": tiny_gpt2}
C_FC = ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]


@pytest.mark.parametrize("arch", ["gpt_neo", "gpt2"])
@pytest.mark.parametrize("keep", [1.0, 0.5, 0.25, 0.1])
def test_parameter_budgets_match_the_real_models(arch, keep):
    model = BUILDERS[arch](seed=0)  # 2 blocks, hidden 32, c_fc 128 units on an 8 x 16 sheet
    base = count_parameters(model)
    shrunk = downsample_model(model, keep, "shrink", targets=["c_fc"])
    h2, w2 = shrunk.config.topo_downsample["sheet"]
    budgets = parameter_budgets(base, n_layers=2, n=128, n_small=h2 * w2, d=32, d_out=32)
    assert budgets["shrink"] == count_parameters(shrunk)  # oracle: the model that was built
    fc_params = lambda m: sum(p.numel() for n, p in m.named_parameters() if ".c_fc." in n)  # noqa: E731
    stored = base["total"] - fc_params(model) + fc_params(shrunk)  # c_fc stored as its small sheet
    assert budgets["reconstruct"] == {"total": stored, "mlp": base["mlp"] - fc_params(model) + fc_params(shrunk)}
    pruned = BUILDERS[arch](seed=0)
    zeros = lambda m: sum(int((m.get_submodule(n).weight == 0).sum()) for n in C_FC)  # noqa: E731
    assert zeros(pruned) == 0  # random normal weights: every zero below comes from pruning
    l1_prune(pruned, C_FC, 1 - h2 * w2 / 128, global_=False)
    assert budgets["prune"] == {"total": base["total"] - zeros(pruned), "mlp": base["mlp"] - zeros(pruned)}


def test_token_blocks_are_consecutive_windows():
    ids = list(range(23))
    assert token_blocks(ids, 5).tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16, 17, 18, 19]]
    assert token_blocks(ids, 5, max_blocks=2).shape == (2, 5)
    with pytest.raises(ValueError, match="too few for one block of seq_len=30"):
        token_blocks(ids, 30)


@pytest.mark.parametrize("keeps", [[], [0.0], [1.2], [0.5, -1]])
def test_bad_keeps(keeps):
    with pytest.raises(ValueError, match=r"keep: give fractions in \(0, 1\]"):
        check_keeps(keeps)


def test_sweep_needs_something_to_evaluate():
    with pytest.raises(ValueError, match="needs held-out text"):
        make_evaluate()


def _fake_result(base, values):
    return {"metrics": {"perplexity": base}, "points": [
        {"kept_fraction": f, "methods": {m: {"metrics": {"perplexity": v[i]}} for i, m in enumerate(("shrink", "reconstruct", "prune"))}}
        for f, v in values]}


def test_sweep_series_are_changes_from_the_source():
    results = {"TopoNet": _fake_result(10.0, [(1.0, (10.0, 10.0, 10.0)), (0.2, (12.0, 11.0, 15.0))])}
    series = sweep_series(results, "perplexity")
    assert series == {"TopoNet shrink": ([1.0, 0.2], [0.0, 2.0]), "TopoNet reconstruct": ([1.0, 0.2], [0.0, 1.0]),
                      "TopoNet prune": ([1.0, 0.2], [0.0, 5.0])}
    assert sweep_series(results, "blimp") == {}


def test_sweep_model_json_and_source_untouched():
    model = tiny_gpt_neo(seed=1)
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    evaluate = make_evaluate(input_ids=ids)
    result = sweep_model(model, [0.25, 1, 0.5], evaluate)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p["keep"] for p in result["points"]] == [1.0, 0.5, 0.25]
    assert [p["sheet"] for p in result["points"]] == [[8, 16], [6, 11], [4, 8]]
    first, last = result["points"][0]["methods"], result["points"][-1]["methods"]
    assert {m: first[m]["metrics"] for m in first} == {m: result["metrics"] for m in first}
    assert last["shrink"]["metrics"]["perplexity"] == pytest.approx(
        evaluate(downsample_model(model, 0.25, "shrink"))["perplexity"])
    assert last["shrink"]["parameters"] == count_parameters(downsample_model(model, 0.25))
    json.dumps(result)  # JSON-ready


def test_cli_sweep_end_to_end(tmp_path, capsys, shared_data):
    from transformers import GPT2TokenizerFast

    from hf_toponets.cli import main

    tokenizer = GPT2TokenizerFast.from_pretrained(shared_data / "gpt2-tokenizer")
    folders = {}
    for label, seed, tau in (("topo", 2, 5.0), ("base", 3, 0.0)):
        model = tiny_gpt_neo(seed=seed, vocab=50257)
        attach_topo_config(model, TopoConfig(target_modules=["c_fc"], tau=tau))
        model.save_pretrained(tmp_path / label)
        tokenizer.save_pretrained(tmp_path / label)
        folders[label] = str(tmp_path / label)
    blimp = tmp_path / "blimp"
    blimp.mkdir()
    for uid in ("passive_1", "anaphor_gender_agreement"):
        lines = (shared_data / "blimp" / f"{uid}.jsonl").read_text().splitlines()[:6]
        (blimp / f"{uid}.jsonl").write_text("\n".join(lines) + "\n")
    text = tmp_path / "heldout.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", folders["topo"], "--baseline", folders["base"], "--keep", "1,0.25",
            "--data", str(text), "--seq-len", "32", "--max-blocks", "4", "--blimp-data", str(blimp),
            "--paradigms", "passive_1,anaphor_gender_agreement", "--output", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert set(result) == {"TopoNet", "baseline"}
    assert result["TopoNet"]["source"] == folders["topo"]
    point = result["baseline"]["points"][1]
    assert point["sheet"] == [4, 8] and set(point["methods"]) == {"shrink", "reconstruct", "prune"}
    assert set(point["methods"]["prune"]["metrics"]) == {"perplexity", "blimp"}
    assert 0 <= point["methods"]["prune"]["metrics"]["blimp"] <= 1
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "TopoNet   0.250 shrink" in capsys.readouterr().out
