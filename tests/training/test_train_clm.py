"""training_scripts/train_clm.py: the embedded default, shortened; the shipped configs parse."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "training_scripts"))

import train_clm  # noqa: E402

from hf_toponets import TopoConfig  # noqa: E402


def test_default_run_shortened_writes_a_toponet(tmp_path, capsys):
    out = tmp_path / "run"
    trainer = train_clm.main(["--max_steps", "4", "--logging_steps", "2", "--output_dir", str(out),
                              "--eval_blocks", "8", "--tokenizer_vocab_size", "512", "--per_device_train_batch_size", "4"])
    printed = capsys.readouterr().out
    assert f"TopoNet saved to {out.resolve()}" in printed and "held-out perplexity" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["topo"]["sheets"] == {f"transformer.h.{i}.mlp.c_fc": [16, 32, 128] for i in range(4)}
    assert config["topo"]["tau_schedule"] == ["linear:50:0.0:1.0"] and config["topo"]["tau"] == 5.0
    assert TopoConfig.from_pretrained(str(out)).sheets == trainer.topo_config.sheets
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert "toponets" in (out / "README.md").read_text()
    logs = [h for h in trainer.state.log_history if "topo/loss" in h]
    assert [h["topo/tau"] for h in logs] == pytest.approx([0.05, 0.25])  # mean tau of steps (0, 1) and (2, 3)


def test_same_seed_same_model(tmp_path):
    flags = ["--max_steps", "1", "--eval_blocks", "8", "--tokenizer_vocab_size", "300", "--per_device_train_batch_size", "2"]
    for run in ("a", "b"):
        train_clm.main([*flags, "--output_dir", str(tmp_path / run)])
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("name", ["default.yaml", "gpt_neo_125m_wikipedia.yaml", "nanogpt_124m_fineweb_edu.yaml",
                                  "gpt2_lora_finetune.yaml", "gpt2_full_finetune.yaml"])
def test_shipped_configs_parse(name):
    # bf16 needs a GPU: the flag after the file overrides it, as a user on CPU would
    script, args, topo, lora = train_clm.parse([str(ROOT / "training_scripts" / "configs" / name), "--tau", "10", "--bf16", "false"])
    assert topo.tau == 10.0 and topo.target_modules == ["c_fc"]
    assert script.architecture in train_clm.ARCHITECTURES
    assert lora.use_peft == ("lora" in name) and (lora.lora_r, lora.lora_alpha) == (16, 32)  # TRL's defaults


def test_use_peft_trains_lora_adapters_and_writes_the_merged_toponet(tmp_path, capsys):
    pytest.importorskip("peft")
    out = tmp_path / "run"
    trainer = train_clm.main(["--use_peft", "--lora_r", "4", "--max_steps", "2", "--logging_steps", "1", "--output_dir", str(out),
                              "--eval_blocks", "8", "--tokenizer_vocab_size", "300", "--per_device_train_batch_size", "2"])
    assert "LoRA adapter saved" in capsys.readouterr().out
    assert {"adapter_config.json", "adapter_model.safetensors", "topo_config.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "adapter_config.json").read_text())["target_modules"] == ["c_fc"]
    stored = TopoConfig.from_pretrained(str(out))
    assert TopoConfig.from_pretrained(str(out / "merged")) == stored == trainer.topo_config
    assert [h["topo/tau"] for h in trainer.state.log_history if "topo/tau" in h]


def test_bad_architecture(tmp_path):
    with pytest.raises(ValueError, match="architecture must be one of"):
        train_clm.main(["--architecture", "gpt-5", "--output_dir", str(tmp_path), "--max_steps", "1",
                        "--tokenizer_vocab_size", "300"])
