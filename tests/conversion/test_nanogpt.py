import pytest
import torch

from hf_toponets.conversion import nanogpt
from published import NanoGPT


def source_state(model: NanoGPT, causal_masks: bool = False) -> dict:
    state = dict(model.state_dict())
    if causal_masks:  # nanoGPT without flash attention registers its mask as a buffer named attn.bias
        for i in range(model.model_args["n_layer"]):
            state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32)
    return state


@pytest.mark.parametrize("bias, causal_masks", [(False, False), (True, True), (False, True)])
def test_gpt2_and_the_reference_forward_match_nanogpt(bias, causal_masks):
    source = NanoGPT(vocab_size=96, bias=bias).eval()
    with torch.no_grad():  # biases away from zero, so that a dropped one shows
        for name, p in source.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.1)
    state = source_state(source, causal_masks)
    model = nanogpt.build_model(state, source.model_args)
    ids = torch.randint(96, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = source(ids)
        torch.testing.assert_close(model(ids).logits, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(nanogpt.reference_logits(state, source.model_args, ids), expected, rtol=0, atol=1e-5)


def test_linear_weights_are_transposed_into_conv1d_and_the_head_stays_tied():
    source = NanoGPT(vocab_size=96)
    model = nanogpt.build_model(source_state(source), source.model_args)
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        got = model.get_submodule(f"transformer.h.1.{name}").weight
        assert torch.equal(got, source.get_submodule(f"transformer.h.1.{name}").weight.t()), name
        assert torch.all(model.get_submodule(f"transformer.h.1.{name}").bias == 0)  # bias=False: zeros
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert model.config.activation_function == "gelu" and model.config.n_inner == 128


def test_the_head_count_must_divide_the_width():
    source = NanoGPT(vocab_size=96)
    with pytest.raises(ValueError, match="n_head must be a positive divisor of n_embd=32, got 5"):
        nanogpt.build_model(source_state(source), {**source.model_args, "n_head": 5})
