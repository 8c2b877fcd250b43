import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import hf_toponets  # noqa: F401  (registers the classes with the Auto classes)
from hf_toponets.conversion.blurpool_resnet import (BlurConv2d, BlurPoolResNetConfig,
                                                    BlurPoolResNetForImageClassification, needs_blur)
from transformers import AutoConfig, AutoModelForImageClassification, ResNetForImageClassification


def tiny(layer_type="basic"):
    torch.manual_seed(0)
    widths = [16, 32, 64] if layer_type == "basic" else [64, 128, 256]  # a bottleneck's 3 x 3 sees a quarter
    config = BlurPoolResNetConfig(embedding_size=16, hidden_sizes=widths, depths=[1, 1, 1], layer_type=layer_type,
                                  num_labels=5)
    return BlurPoolResNetForImageClassification(config).eval()


@pytest.mark.parametrize("stride, c_in, blurred", [(2, 16, True), (2, 64, True), (1, 64, False), (2, 3, False),
                                                   (2, 15, False), ((1, 2), 32, True)])
def test_ffcv_rule(stride, c_in, blurred):
    assert needs_blur(nn.Conv2d(c_in, 8, 3, stride)) is blurred


def test_blur_conv_is_the_explicit_depthwise_blur_then_the_conv():
    torch.manual_seed(0)
    conv = BlurConv2d(16, 8, 3, stride=2, padding=1, bias=False)
    x = torch.randn(2, 16, 9, 11)
    taps = torch.tensor([1.0, 2.0, 1.0])
    blur = (taps[:, None] * taps[None, :] / 16).repeat(16, 1, 1, 1)  # (16, 1, 3, 3)
    expected = F.conv2d(F.conv2d(x, blur, padding=1, groups=16), conv.weight, stride=2, padding=1)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-6)
    # interior pixels: a blur of a constant image is the constant; the border sees the zero padding
    ones = F.conv2d(torch.ones(1, 16, 5, 5), blur, padding=1, groups=16)
    assert torch.all(ones[..., 1:-1, 1:-1] == 1) and ones[0, 0, 0, 0] == pytest.approx(9 / 16)


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
def test_only_strided_wide_convolutions_are_blurred_and_the_weights_keep_resnet_names(layer_type):
    model = tiny(layer_type)
    blurred = {n for n, m in model.named_modules() if isinstance(m, BlurConv2d)}
    strided = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and max(m.stride) > 1}
    assert blurred == strided - {"resnet.embedder.embedder.convolution"}  # the stem sees 3 channels
    assert len(blurred) == 4  # stages 2 and 3: the strided conv and the shortcut
    plain = ResNetForImageClassification(model.config)
    assert list(model.state_dict()) == list(plain.state_dict())  # no buffers added: same names and tensors
    plain.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (plain(x).logits - model(x).logits).abs().max() > 1e-3  # the blur matters


def test_save_and_load_with_the_auto_classes(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "blurpool_resnet"
    assert config["auto_map"] == {"AutoConfig": "blurpool_resnet.BlurPoolResNetConfig",
                                  "AutoModelForImageClassification": "blurpool_resnet.BlurPoolResNetForImageClassification"}
    assert (tmp_path / "blurpool_resnet.py").is_file()  # the code travels with the weights
    assert type(AutoConfig.from_pretrained(tmp_path)) is BlurPoolResNetConfig
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is BlurPoolResNetForImageClassification
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


def _run(script: str, cwd, env: dict) -> None:
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.slow
def test_plain_auto_classes_after_import_hf_toponets(tmp_path):
    tiny().save_pretrained(tmp_path / "model")
    _run("from transformers import AutoModelForImageClassification\n"
         "import hf_toponets  # after transformers: registers the BlurPool ResNet\n"
         f"m = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'model')!r})\n"
         "assert type(m).__module__ == 'hf_toponets.conversion.blurpool_resnet', type(m).__module__\n"
         "print('ok')\n", cwd=Path(__file__).resolve().parents[2], env={})  # this checkout's hf_toponets


@pytest.mark.slow
def test_trust_remote_code_loads_it_without_hf_toponets(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "model")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.save({"x": x, "logits": model(x).logits}, tmp_path / "expected.pt")
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForImageClassification\n"
        f"m = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'model')!r}, trust_remote_code=True).eval()\n"
        f"e = torch.load({str(tmp_path / 'expected.pt')!r})\n"
        "assert 'hf_toponets' not in sys.modules, 'hf_toponets was imported'\n"
        "assert type(m).__module__.startswith('transformers_modules'), type(m).__module__\n"
        "with torch.no_grad():\n"
        "    torch.testing.assert_close(m(e['x']).logits, e['logits'], rtol=0, atol=1e-6)\n"  # other threads, other sums

        "print('ok')\n"
    )
    _run(script, cwd=tmp_path, env={"HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""})
