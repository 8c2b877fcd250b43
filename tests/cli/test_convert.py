"""``hf-toponets convert`` and what runs on its output unchanged: loss (and the --all-layers scan), blimp,
downsample --mode shrink, TopoTrainer."""

import json
import sys
from pathlib import Path

import pytest
import torch

from hf_toponets.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conversion"))  # the source re-implementations
from published import save_nanogpt, save_resnet, topographic_nanogpt, topographic_resnet  # noqa: E402


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(source nanoGPT module, folder converted by the CLI with the GPT-2 tokenizer, its stdout)."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "gpt2-tokenizer").is_dir():
        pytest.skip("the GPT-2 tokenizer of the shared data folder is absent")
    root = tmp_path_factory.mktemp("cli")
    source = topographic_nanogpt()
    save_nanogpt(source, root / "tau_50.0.pt")
    code = main(["convert", str(root / "tau_50.0.pt"), "--output", str(root / "nanogpt"),
                 "--tokenizer", str(SHARED_DATA / "gpt2-tokenizer")])
    assert code == 0
    return source.eval(), root / "nanogpt"


def test_convert_prints_the_scan_and_writes_the_folder(tmp_path, capsys):
    save_resnet(topographic_resnet(), tmp_path / "all_topo_tau_20.0.pt")
    assert main(["convert", str(tmp_path / "all_topo_tau_20.0.pt"), "--output", str(tmp_path / "rn")]) == 0
    out, err = capsys.readouterr()
    assert "resnet -> BlurPoolResNetForImageClassification: 10 topographic layers" in out
    assert "resnet.embedder.embedder.convolution" in out and out.count("  *") == 10
    assert "warning" not in err  # the scan agrees with the paper's targets
    assert json.loads((tmp_path / "rn" / "config.json").read_text())["topo"]["tau"] == 20.0


def test_convert_warnings_and_errors_are_one_line(tmp_path, capsys):
    save_nanogpt(topographic_nanogpt(vocab_size=96), tmp_path / "tau_1.0.pt")
    assert main(["convert", str(tmp_path / "tau_1.0.pt"), "--output", str(tmp_path / "a"), "--targets", "c_proj"]) == 0
    err = capsys.readouterr().err
    assert "hf-toponets convert: warning: convert_checkpoint: the layer scan disagrees with the targets ['c_proj']" in err
    assert "hf-toponets convert: warning: convert_checkpoint: no tokenizer given" in err
    assert main(["convert", str(tmp_path / "tau_1.0.pt"), "--output", str(tmp_path / "b"), "--format", "vit"]) == 2
    assert capsys.readouterr().err.startswith("hf-toponets convert: error: convert_checkpoint: the vit checkpoint is missing keys")
    assert not (tmp_path / "b").exists()


def test_cli_formats_are_the_converters():
    from hf_toponets.cli.convert import FORMATS
    from hf_toponets.conversion.source import FORMATS as SOURCE_FORMATS

    assert FORMATS == SOURCE_FORMATS


def test_loss_and_the_all_layers_scan(converted, capsys):
    _, folder = converted
    assert main(["loss", "--model", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc", "mean"]
    assert main(["loss", "--model", str(folder), "--all-layers"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert len(rows) == 9 and {n for n, r in rows.items() if r[1:] == ["*"]} == {
        "transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"}
    scan = json.loads((folder / "config.json").read_text())["topo_source"]["layer_scan"]
    assert {n: float(r[0]) for n, r in rows.items()} == pytest.approx(scan, abs=1e-4)  # the card's scan, recomputed


def test_blimp_scores_the_converted_model_like_the_source(converted, shared_data, tmp_path):
    source, folder = converted
    data = tmp_path / "blimp"
    data.mkdir()
    for uid in ("anaphor_gender_agreement", "passive_1"):  # 16 pairs of each: the protocol, not the accuracy
        lines = (shared_data / "blimp" / f"{uid}.jsonl").read_text().splitlines()[:16]
        (data / f"{uid}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "blimp.json"
    assert main(["blimp", "--model", str(folder), "--data", str(data), "--paradigms",
                 "anaphor_gender_agreement,passive_1", "--per-pair", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    got, sentences = [], []
    for uid, rows in result["pairs"].items():
        pairs = [json.loads(line) for line in (data / f"{uid}.jsonl").read_text().splitlines()]
        for row, pair in zip(rows, pairs):
            got += [row["ll_good"], row["ll_bad"]]
            sentences += [pair["sentence_good"], pair["sentence_bad"]]
    # the harness protocol by hand on the source nanoGPT: log P(" " + s | EOS), one right-padded batch
    encoded = [[50256] + tokenizer(" " + s)["input_ids"] for s in sentences]
    ids = torch.zeros(len(encoded), max(map(len, encoded)), dtype=torch.long)
    for i, row in enumerate(encoded):
        ids[i, : len(row)] = torch.tensor(row)
    with torch.no_grad():
        logprobs = source(ids)[:, :-1].log_softmax(-1).gather(2, ids[:, 1:, None])[..., 0]  # (n, t - 1)
    expected = [float(logprobs[i, : len(row) - 1].sum()) for i, row in enumerate(encoded)]
    assert got == pytest.approx(expected, abs=1e-3)


def test_downsample_shrink_gives_a_smaller_gpt2(converted, tmp_path):
    _, folder = converted
    assert main(["downsample", "--model", str(folder), "--keep", "0.25", "--mode", "shrink",
                 "--output", str(tmp_path / "small")]) == 0
    config = json.loads((tmp_path / "small" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_inner"] == 4 * 8  # c_fc sheets 8 x 16 -> 4 x 8
    assert config["activation_function"] == "gelu" and config["vocab_size"] == 50304
    from transformers import AutoModelForCausalLM

    small = AutoModelForCausalLM.from_pretrained(tmp_path / "small")
    assert small.transformer.h[0].mlp.c_fc.nf == 32


def test_topo_trainer_keeps_training_from_the_topo_entry(converted, tmp_path):
    from transformers import AutoModelForCausalLM, TrainingArguments

    from hf_toponets import TopoTrainer

    _, folder = converted
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = torch.randint(50257, (4, 16), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(tmp_path / "run", max_steps=1, per_device_train_batch_size=4, report_to=[],
                             save_strategy="no", use_cpu=True)
    trainer = TopoTrainer(model=model, args=args, train_dataset=data)  # no topo_config: the folder's topo entry
    assert trainer.topo_config.tau == 50.0 and list(trainer.topo_config.sheets) == [
        "transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    before = model.transformer.h[0].mlp.c_fc.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, model.transformer.h[0].mlp.c_fc.weight)
