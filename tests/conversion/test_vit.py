import pytest
import torch

from hf_toponets.conversion import vit
from published import TinyViT


@pytest.mark.parametrize("name, given, heads", [("vit_b_32", None, 12), ("vit_l_16", None, 16), ("vit_b_32", 4, 4),
                                               (None, 6, 6)])
def test_head_count(name, given, heads):
    assert vit.num_heads_for(name, given) == heads


@pytest.mark.parametrize("name, given, match", [(None, None, "pass num_heads"), ("resnet50", None, "pass num_heads"),
                                                ("vit_b_32", 0, "positive int"), ("vit_b_32", True, "positive int")])
def test_head_count_refusals(name, given, match):
    with pytest.raises(ValueError, match=match):
        vit.num_heads_for(name, given)


def test_stacked_projection_is_split_into_q_k_v_and_the_forwards_match():
    source = TinyViT(d=32, heads=4, mlp=64, image_size=48, patch=16, layers=3).eval()
    state = source.state_dict()
    model = vit.build_model(state, num_heads=4)
    assert (model.config.image_size, model.config.patch_size, model.config.num_hidden_layers) == (48, 16, 3)
    q, k, v = state["encoder.layers.encoder_layer_2.self_attention.in_proj_weight"].chunk(3)
    attention = model.vit.layers[2].attention
    assert torch.equal(attention.q_proj.weight, q) and torch.equal(attention.k_proj.weight, k)
    assert torch.equal(attention.v_proj.weight, v)
    images = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source(images)
        torch.testing.assert_close(model(images).logits, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(vit.reference_logits(state, 4, images), expected, rtol=0, atol=1e-5)
