import json

import pytest
import torch
from pydoc_data.topics import topics

from conftest import tiny_gpt_neo
from hf_toponets import TopoConfig
from hf_toponets.analysis.report import analysis_layers, analyze
from hf_toponets.cli import main
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.analysis.smoothness import weight_smoothness_curve

C_FC = ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]


def char_tokenizer():
    """A character-level fast tokenizer over printable ASCII (ids < 128), built in-process."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{chr(c): c - 32 for c in range(33, 127)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny TopoNet (topo entry on both c_fc) with its tokenizer, and a text file."""
    root = tmp_path_factory.mktemp("analyze")
    model = tiny_gpt_neo(seed=0)
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    model.save_pretrained(root / "model")
    char_tokenizer().save_pretrained(root / "model")
    text = root / "text.txt"
    text.write_text("".join(topics[k] for k in sorted(topics)[:4]), encoding="utf-8")
    return root


def png_ok(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


@pytest.mark.parametrize("as_folder", [False, True])
def test_cli_end_to_end(saved, tmp_path, capsys, as_folder):
    out = tmp_path / "out"
    data = saved / "text.txt"
    if as_folder:  # a folder's .txt files, other files ignored
        (tmp_path / "texts").mkdir()
        (tmp_path / "texts" / "a.txt").write_text(data.read_text(encoding="utf-8"), encoding="utf-8")
        (tmp_path / "texts" / "notes.md").write_text("not read")
        data = tmp_path / "texts"
    args = ["analyze", "--model", str(saved / "model"), "--data", str(data),
            "--samples", "8", "--seq-len", "32", "--batch-size", "3", "--output", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"layers", "maps", "curves", "n_samples"}
    assert list(metrics["layers"]) == C_FC and metrics["n_samples"] == 8
    for name, entry in metrics["layers"].items():
        assert set(entry) == {"sheet", "smoothness_weights", "smoothness_activations", "effective_dim"}
        assert entry["sheet"] == [8, 16, 32]
        assert 0 <= entry["smoothness_weights"] <= 2 and 0 <= entry["smoothness_activations"] <= 2
        assert 1 <= entry["effective_dim"] <= 32  # c_fc outputs = W x: rank <= fan-in
        assert png_ok(out / metrics["maps"][name])
    assert png_ok(out / metrics["curves"])
    assert "transformer.h.1.mlp.c_fc" in capsys.readouterr().out


def test_weights_only_without_data(saved, tmp_path):
    assert main(["analyze", "--model", str(saved / "model"), "--layers", "h.1.mlp.c_fc", "--output", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_samples"] is None and list(metrics["layers"]) == C_FC[1:]
    entry = metrics["layers"][C_FC[1]]
    assert entry["smoothness_activations"] is None and entry["effective_dim"] is None
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(saved / "model")
    assert entry["smoothness_weights"] == pytest.approx(weight_smoothness_curve(model.get_submodule(C_FC[1])).smoothness)


@pytest.mark.parametrize("extra, message", [
    (["--layers", "c_proj"], "not topographic in this model"),
    (["--data", "TEXT", "--samples", "2", "--seq-len", "32"], "n_samples >= 128"),  # 64 tokens for 128 units
    (["--data", "TEXT", "--samples", "10000", "--seq-len", "32"], "fewer than --samples 10000"),
    (["--data", "EMPTY"], "dataset is empty"),
    (["--data", "NOWHERE"], "no such file or folder"),
    (["--data", "FOLDER"], "holds no .txt file"),
    (["--data", "TEXT", "--samples", "0"], "--samples must be >= 1"),
])
def test_cli_bad_input(saved, tmp_path, capsys, extra, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    (tmp_path / "folder").mkdir()
    paths = {"TEXT": str(saved / "text.txt"), "EMPTY": str(empty), "NOWHERE": str(tmp_path / "nope"),
             "FOLDER": str(tmp_path / "folder")}
    extra = [paths.get(a, a) for a in extra]
    assert main(["analyze", "--model", str(saved / "model"), "--output", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_plain_model_needs_layers(tmp_path):
    model = tiny_gpt_neo(seed=0)  # no topo entry: a baseline
    with pytest.raises(ValueError, match="no 'topo' entry"):
        analysis_layers(model)
    assert list(analysis_layers(model, ["c_fc"])) == C_FC
    ids = torch.randint(128, (4, 40), generator=torch.Generator().manual_seed(0))
    result = analyze(model, tmp_path, ["c_fc"], ids, progress=False)
    assert result["n_samples"] == 4 and all(m["effective_dim"] > 1 for m in result["layers"].values())
    with pytest.raises(ValueError, match="non-empty"):
        analyze(model, tmp_path, ["c_fc"], torch.zeros(0, 8, dtype=torch.long), progress=False)
