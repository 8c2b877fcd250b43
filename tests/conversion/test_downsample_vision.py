"""downsample_model on image classifiers: ViT MLPs shrink exactly as GPT's (one row of MLP_LAYOUTS), Conv2d
sheets and a ViT's fc2 (its units are the residual stream) are refused with a clear error."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_resnet, tiny_vit

from hf_toponets.conversion.downsample import count_parameters, downsample_model
from hf_toponets.core.config import TopoConfig
from hf_toponets.core.metadata import attach_topo_config, read_topo_config

PIXELS = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def logits(model):
    with torch.no_grad():
        return model.eval()(PIXELS).logits


@pytest.mark.parametrize("keep", [0.5, 0.25])
def test_vit_nearest_shrink_equals_nearest_reconstruct(keep):
    model = tiny_vit(seed=3, hidden=32)  # fc1: 128 units, an 8 x 16 sheet
    shrunk = downsample_model(model, keep, "shrink", "nearest", targets=["fc1"])
    rebuilt = downsample_model(model, keep, "reconstruct", "nearest", targets=["fc1"])
    h, w = shrunk.config.topo_downsample["sheet"]
    assert shrunk.config.intermediate_size == h * w < 128 and type(shrunk) is type(model)
    assert count_parameters(shrunk)["mlp"] == 2 * (2 * 32 * h * w + h * w + 32)  # fc1 + fc2 of both blocks
    assert count_parameters(rebuilt) == count_parameters(model)
    torch.testing.assert_close(logits(shrunk), logits(rebuilt), atol=1e-5, rtol=0)
    assert (logits(rebuilt) - logits(model)).abs().max() > 1e-3  # the comparison is not vacuous
    sheet = model.vit.layers[0].mlp.fc1.weight.detach().reshape(8, 16, 32)  # oracle: F.interpolate on the sheet
    expected = F.interpolate(sheet.permute(2, 0, 1)[None], size=(h, w), mode="nearest")[0].permute(1, 2, 0)
    torch.testing.assert_close(shrunk.vit.layers[0].mlp.fc1.weight.reshape(h, w, 32), expected, atol=1e-6, rtol=0)
    assert read_topo_config(shrunk).sheets == {f"vit.layers.{i}.mlp.fc1": [h, w, 32] for i in range(2)}


def test_vit_keep_one_is_the_identity_and_saves_as_a_plain_vit(tmp_path):
    from transformers import AutoModelForImageClassification

    model = tiny_vit(seed=4)
    attach_topo_config(model, TopoConfig(target_modules=["fc1"]))
    same = downsample_model(model, 1.0)
    torch.testing.assert_close(logits(same), logits(model), atol=1e-5, rtol=0)
    small = downsample_model(model, 0.25)
    small.save_pretrained(tmp_path)
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(loaded), logits(small), atol=0, rtol=0)


def test_conv_sheets_and_vit_fc2_are_refused():
    resnet = tiny_resnet()
    attach_topo_config(resnet, TopoConfig(target_modules=["convolution"], exclude_modules=["embedder.convolution"]))
    with pytest.raises(ValueError, match=r"downsample_model: 5 target\(s\) are Conv2d sheets .*drops performance to 0.*L1 pruning"):
        downsample_model(resnet, 0.5)
    vit = tiny_vit()
    attach_topo_config(vit, TopoConfig(target_modules=["fc2"]))  # the paper's ViT TopoNets
    with pytest.raises(ValueError, match=r"vit\.layers\.0\.mlp\.fc2 is its MLP's output projection 'fc2'.*targets=\['fc1'\]"):
        downsample_model(vit, 0.5)
