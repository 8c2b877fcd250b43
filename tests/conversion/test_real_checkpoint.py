"""Against a real published file, when one is at hand (skipped otherwise: the files are not reachable offline).

    huggingface-cli download murtylab/topo-nanogpt-fineweb10B tau_50.0.pt --local-dir checkpoints
    HF_TOPONETS_REAL_CHECKPOINT=checkpoints/tau_50.0.pt \\
    HF_TOPONETS_REAL_TOKENIZER=openai-community/gpt2 \\
    python -m pytest tests/conversion/test_real_checkpoint.py -v

``HF_TOPONETS_REAL_TOKENIZER`` (NanoGPT only, optional) also checks the tokenizer and the padding ids.
Any of the published files works: NanoGPT ``tau_*.pt``, ViT-B/32 ``tau_10.0.pt``, ResNet ``all_topo_tau_*.pt``.
"""

import json
import os

import pytest
import torch

from hf_toponets.conversion.checkpoints import convert_checkpoint
from hf_toponets.hub.loading import load_pretrained

CHECKPOINT = os.environ.get("HF_TOPONETS_REAL_CHECKPOINT")
TOKENIZER = os.environ.get("HF_TOPONETS_REAL_TOKENIZER")
# the paper's architectures: (config attribute, value) that a faithful conversion must show
PAPER = {"nanogpt": {"n_layer": 12, "n_head": 12, "n_embd": 768, "vocab_size": 50304, "activation_function": "gelu"},
         "vit": {"num_hidden_layers": 12, "num_attention_heads": 12, "hidden_size": 768, "patch_size": 32,
                 "image_size": 224, "num_labels": 1000},
         "resnet": {"num_labels": 1000, "model_type": "blurpool_resnet"}}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHECKPOINT, reason="set HF_TOPONETS_REAL_CHECKPOINT to a published .pt file")]


def test_the_published_file_converts_faithfully(tmp_path):
    result = convert_checkpoint(CHECKPOINT, tmp_path / "converted", tokenizer=TOKENIZER)
    model = load_pretrained(str(tmp_path / "converted"))
    for key, value in PAPER[result.format].items():
        assert getattr(model.config, key) == value, key
    assert result.logit_difference < 1e-3  # float32 rounding through the whole network
    config = json.loads((tmp_path / "converted" / "config.json").read_text())
    if config["topo"]["tau"] > 0:  # a TopoNet: the paper's stated layers are its most topographic ones
        assert result.disagreement is None, result.disagreement
    if result.format == "nanogpt" and TOKENIZER:
        from transformers import GenerationConfig

        assert GenerationConfig.from_pretrained(tmp_path / "converted").suppress_tokens == list(range(50257, 50304))
    if result.format != "nanogpt":
        from PIL import Image
        from transformers import AutoImageProcessor

        pixels = AutoImageProcessor.from_pretrained(tmp_path / "converted")(Image.new("RGB", (300, 260)),
                                                                            return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            assert model(pixels).logits.shape == (1, 1000)
