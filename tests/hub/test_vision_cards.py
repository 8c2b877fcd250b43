"""Image-classifier TopoNets on the Hub: the card (pipeline tag, top-1 accuracy in the model-index, conv and
MLP maps, the processor beside the weights) and a push round trip on the fake Hub."""

import json

import pytest
import torch
from conftest import ALICE, tiny_resnet, tiny_vit
from huggingface_hub import ModelCard

from hf_toponets.analysis.report import analyze
from hf_toponets.cli import main
from hf_toponets.core.config import TopoConfig
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.hub.cards import render_card
from hf_toponets.hub.push import push_folder

TARGETS = {"resnet": TopoConfig(target_modules=["convolution"], exclude_modules=["embedder.convolution"], tau=5.0),
           "vit": TopoConfig(target_modules=["fc2"], tau=10.0)}


def save_classifier(folder, kind):
    """A tiny image-classifier TopoNet with its processor, a trainer_state.json holding eval_accuracy, and maps."""
    from transformers import ConvNextImageProcessorPil

    model = tiny_resnet(seed=0) if kind == "resnet" else tiny_vit(seed=0)
    attach_topo_config(model, TARGETS[kind])
    model.save_pretrained(folder)
    ConvNextImageProcessorPil(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(folder)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 40, "log_history": [
        {"eval_loss": 0.9, "eval_accuracy": 0.5, "step": 20}, {"eval_loss": 0.4, "eval_accuracy": 0.875, "step": 40}]}))
    analyze(model, folder, progress=False)  # weight metrics and a map of every conv / MLP sheet
    return model


def test_render_card_for_an_image_classifier():
    topo = TARGETS["resnet"].with_sheets({"resnet.encoder.stages.0.layers.0.layer.0.convolution": [4, 4, 144]}).to_dict()
    card = render_card(topo, "resnet", task="image-classification", accuracy=0.9375, model_id="alice/topo-resnet",
                       training={"datasets": ["digits"]})
    data = card.data
    assert data.pipeline_tag == "image-classification" and "resnet" in data.tags
    (result,) = data.eval_results
    assert (result.task_type, result.metric_type, result.metric_name, result.metric_value, result.dataset_type) == (
        "image-classification", "accuracy", "Top-1 accuracy", 0.9375, "digits")
    text = str(card)
    assert "Held-out top-1 accuracy on `digits`: **93.8%**" in text and "perplexity" not in text.lower()
    assert "AutoModelForImageClassification.from_pretrained" in text and 'pipeline("image-classification"' in text
    assert "causal language model" not in text and "image classifier" in text
    with pytest.raises(ValueError, match=r"render_card: accuracy must be an accuracy in \[0, 1\], got 93.75"):
        render_card(topo, "resnet", task="image-classification", accuracy=93.75)


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_card_and_push_round_trip(online, tmp_path, capsys, kind):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    folder = tmp_path / kind
    model = save_classifier(folder, kind)
    assert main(["card", "--model", str(folder), "--dataset", "digits"]) == 0
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "image-classification"
    assert [(r.metric_name, r.metric_value) for r in card.data.eval_results] == [("Top-1 accuracy", 0.875)]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["maps"]) == set(json.loads((folder / "config.json").read_text())["topo"]["sheets"])
    for path in metrics["maps"].values():
        assert f"]({path})" in card.text

    repo_id = f"alice/topo-{kind}"
    result = push_folder(folder, repo_id, token=ALICE)
    assert {"preprocessor_config.json", "model.safetensors", "README.md", *metrics["maps"].values()} <= set(result.files)
    loaded = AutoModelForImageClassification.from_pretrained(repo_id)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(pixels).logits, model.eval()(pixels).logits, rtol=0, atol=0)
    assert AutoImageProcessor.from_pretrained(repo_id).size == {"shortest_edge": 32}
    assert TopoConfig.from_pretrained(repo_id).sheets == TopoConfig.from_pretrained(str(folder)).sheets
    remote = ModelCard.load(repo_id)
    assert remote.data.eval_results[0].metric_value == 0.875 and f'from_pretrained("{repo_id}")' in remote.text
