import pytest
import torch

from hf_toponets.conversion import resnet
from published import BasicBlock, Bottleneck, TinyResNet


@pytest.mark.parametrize("block, blurpool", [(BasicBlock, True), (Bottleneck, True), (BasicBlock, False)])
def test_reference_forward_and_converted_model_match_the_source(block, blurpool):
    source = TinyResNet(block=block, depths=(1, 2), width=16, blurpool=blurpool)
    state = source.state_dict()
    model = resnet.build_model(state)
    images = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source(images)
        torch.testing.assert_close(model(images).logits, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(resnet.reference_logits(state, images), expected, rtol=0, atol=1e-5)
    assert model.config.layer_type == ("bottleneck" if block is Bottleneck else "basic")
    assert model.config.depths == [1, 2] and model.config.num_labels == 10


def test_unwrap_blurpool_renames_the_wrapped_convolutions():
    state, blurred = resnet.unwrap_blurpool(TinyResNet().state_dict())
    assert blurred == ["layer2.0.conv1", "layer2.0.downsample.0", "layer3.0.conv1", "layer3.0.downsample.0"]
    assert "layer2.0.conv1.weight" in state and not any(k.endswith((".blur_filter", ".conv.weight")) for k in state)


def test_a_blur_filter_of_another_shape_is_refused():
    state = TinyResNet().state_dict()
    state["layer2.0.conv1.blur_filter"] = state["layer2.0.conv1.blur_filter"][:, :, :2]
    with pytest.raises(ValueError, match=r"of shape \(16, 1, 2, 3\) is not FFCV's fixed"):
        resnet.unwrap_blurpool(state)
