"""training_scripts/train_image_classification.py: the embedded default, shortened; the shipped configs parse and
their target_modules select exactly the paper's layers of the real architectures."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "training_scripts"))

import train_image_classification as script  # noqa: E402

from hf_toponets import TopoConfig, resolve_targets  # noqa: E402

CONFIGS = ROOT / "training_scripts" / "configs"
SHORT = ["--max_steps", "3", "--logging_steps", "1", "--per_device_train_batch_size", "8", "--max_train_samples", "64",
         "--max_eval_samples", "40", "--eval_strategy", "no"]


@pytest.mark.slow
@pytest.mark.parametrize("config, sheets", [
    ("digits_vit.yaml", {f"vit.layers.{i}.mlp.fc2": [12, 12, 576] for i in range(4)}),
    ("digits_resnet.yaml", {"resnet.encoder.stages.0.layers.0.shortcut.convolution": [8, 8, 32],
                            "resnet.encoder.stages.0.layers.0.layer.0.convolution": [8, 8, 288],
                            "resnet.encoder.stages.0.layers.0.layer.1.convolution": [8, 8, 576],
                            "resnet.encoder.stages.1.layers.0.shortcut.convolution": [8, 16, 64],
                            "resnet.encoder.stages.1.layers.0.layer.0.convolution": [8, 16, 576],
                            "resnet.encoder.stages.1.layers.0.layer.1.convolution": [8, 16, 1152],
                            "resnet.encoder.stages.2.layers.0.shortcut.convolution": [16, 16, 128],
                            "resnet.encoder.stages.2.layers.0.layer.0.convolution": [16, 16, 1152],
                            "resnet.encoder.stages.2.layers.0.layer.1.convolution": [16, 16, 2304]}),
])
def test_default_run_shortened_writes_a_loadable_toponet(tmp_path, capsys, config, sheets):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    out = tmp_path / "run"
    argv = [str(CONFIGS / config)] if config != "digits_vit.yaml" else []  # no file: the embedded default (the ViT)
    trainer = script.main([*argv, *SHORT, "--output_dir", str(out)])
    printed = capsys.readouterr().out
    assert f"TopoNet saved to {out.resolve()}" in printed and "held-out top-1 accuracy" in printed
    saved = json.loads((out / "config.json").read_text())
    assert saved["topo"]["sheets"] == sheets and saved["topo"]["tau"] > 0
    assert saved["id2label"] == {str(d): str(d) for d in range(10)}
    assert TopoConfig.from_pretrained(str(out)).sheets == trainer.topo_config.sheets
    model = AutoModelForImageClassification.from_pretrained(out)
    for (name, a), (_, b) in zip(trainer.model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name
    assert AutoImageProcessor.from_pretrained(out).size == {"shortest_edge": 32}  # saved beside the weights
    card = (out / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "AutoModelForImageClassification" in card
    assert "Top-1 accuracy" in card
    accuracy = [h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h]
    assert len(accuracy) == 1 and 0 <= accuracy[0] <= 1
    assert [h["topo/tau"] for h in trainer.state.log_history if "topo/tau" in h] == pytest.approx(
        [saved["topo"]["tau"] * s / 50 for s in range(3)])  # the 50-step warm-up


@pytest.mark.parametrize("config, architecture, n_sheets, shape", [
    ("resnet18_imagenet.yaml", "resnet-18", 19, [16, 32, 4608]),  # 16 block convs + 3 shortcuts; the last conv
    ("resnet50_imagenet.yaml", "resnet-50", 52, [32, 64, 512]),  # 48 block convs + 4 shortcuts; the last 1x1 conv
    ("vit_b32_imagenet.yaml", "vit-b-32", 12, [24, 32, 3072]),  # each block's mlp.fc2 (not the attention o_proj)
    ("digits_vit.yaml", "tiny-vit", 4, [12, 12, 576]),
    ("digits_resnet.yaml", "tiny-resnet", 9, [16, 16, 2304]),
])
def test_shipped_configs_select_the_papers_layers(config, architecture, n_sheets, shape):
    # bf16 needs a GPU: the flag after the file overrides it, as a user on CPU would
    args, train_args, topo = script.parse([str(CONFIGS / config), "--tau", "3", "--bf16", "false"])
    assert args.architecture == architecture and topo.tau == 3.0
    labels = [str(i) for i in range(1000 if "imagenet" in config else 10)]
    with torch.device("meta"):  # the real architecture, no memory
        model = script.build_model(args, labels)
    targets = resolve_targets(model, topo)
    assert len(targets) == n_sheets and list(list(targets.values())[-1].shape) == shape
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and ".stages." in n]
    if "resnet" in architecture:
        assert sorted(targets) == sorted(convs)  # every Conv2d of the residual blocks, and only those
    else:
        assert all(n.endswith(".mlp.fc2") for n in targets)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="architecture must be one of"):
        script.main(["--architecture", "alexnet", "--output_dir", str(tmp_path), "--max_steps", "1"])
    with pytest.raises(ValueError, match="train_split 'training' is not a split of the dataset; it has \\['train'\\]"):
        script.main(["--train_split", "training", "--output_dir", str(tmp_path), "--max_steps", "1"])
