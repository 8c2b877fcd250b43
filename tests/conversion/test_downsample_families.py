"""downsample_model on every family of MLP_LAYOUTS (tiny in-process models): nearest shrink == reconstruct,
keep 1 == identity, gated MLPs' gate/up/down against F.interpolate, metadata, BLOOM's fixed width."""

import pytest
import torch
import torch.nn.functional as F

from families import FAMILIES, build_family, family_inputs
from hf_toponets import TopoConfig, topo_loss
from hf_toponets.conversion.downsample import MLP_LAYOUTS, count_parameters, downsample_model
from hf_toponets.core.metadata import attach_topo_config, read_topo_config

SHRINKABLE = [f for f in FAMILIES if MLP_LAYOUTS[f].width is not None]


def outputs(model):
    with torch.no_grad():
        return model.eval()(**family_inputs(model)).logits


def fc_targets(family):
    return [MLP_LAYOUTS[family].fc]


def interpolate_rows(rows, size, interpolation, hw=(6, 6)):
    """Oracle: F.interpolate on the (h, w, d) sheet of ``rows (h w, d)`` -> ``(h' w', d)``."""
    sheet = rows.detach().double().reshape(*hw, -1).permute(2, 0, 1)[None]
    return F.interpolate(sheet, size=size, mode=interpolation)[0].permute(1, 2, 0).reshape(size[0] * size[1], -1)


@pytest.mark.parametrize("family", SHRINKABLE)
def test_nearest_shrink_equals_reconstruct(family):
    model = build_family(family, seed=3)
    shrunk = downsample_model(model, 0.5, "shrink", "nearest", targets=fc_targets(family))
    rebuilt = downsample_model(model, 0.5, "reconstruct", "nearest", targets=fc_targets(family))
    n_small = shrunk.config.topo_downsample["sheet"][0] * shrunk.config.topo_downsample["sheet"][1]
    assert getattr(shrunk.config, MLP_LAYOUTS[family].width) == n_small < 36
    assert count_parameters(shrunk)["mlp"] < count_parameters(rebuilt)["mlp"] == count_parameters(model)["mlp"]
    torch.testing.assert_close(outputs(shrunk), outputs(rebuilt), atol=1e-5, rtol=0)
    assert (outputs(rebuilt) - outputs(model)).abs().max() > 1e-3  # not vacuous
    assert read_topo_config(shrunk).sheets == read_topo_config(rebuilt).sheets | {
        n: [*shrunk.config.topo_downsample["sheet"], s[2]] for n, s in read_topo_config(rebuilt).sheets.items()}


@pytest.mark.parametrize("family", SHRINKABLE)
@pytest.mark.parametrize("mode", ["shrink", "reconstruct"])
def test_keep_one_is_the_identity(family, mode):
    model = build_family(family, seed=4)
    same = downsample_model(model, 1.0, mode, "bilinear", targets=fc_targets(family))
    torch.testing.assert_close(outputs(same), outputs(model), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "phi3"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_gated_weights_match_the_interpolate_oracle(family, interpolation):
    model = build_family(family, seed=5)
    mlp = model.model.layers[1].mlp
    gate, up = (mlp.gate_proj.weight, mlp.up_proj.weight) if family == "llama" else mlp.gate_up_proj.weight.chunk(2)
    small = downsample_model(model, 0.5, "shrink", interpolation, targets=fc_targets(family))
    size = tuple(small.config.topo_downsample["sheet"])
    new = small.model.layers[1].mlp
    new_gate, new_up = (new.gate_proj.weight, new.up_proj.weight) if family == "llama" else new.gate_up_proj.weight.chunk(2)
    torch.testing.assert_close(new_gate.double(), interpolate_rows(gate, size, interpolation))
    torch.testing.assert_close(new_up.double(), interpolate_rows(up, size, interpolation))
    a = torch.randn(size[0] * size[1], 5, dtype=torch.float64)  # activations of the small sheet
    up_a = interpolate_rows(a, (6, 6), interpolation, hw=size)
    torch.testing.assert_close(new.down_proj.weight.double() @ a, mlp.down_proj.weight.double() @ up_a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", SHRINKABLE)
def test_bilinear_shrink_is_near_reconstruct(family):
    # measured |shrink - reconstruct| / |reconstruct - source| on these random tiny models (seed 6, keep 0.5 / 0.25):
    # GELU MLPs (gpt2, gpt_neo, gptj, gpt_neox, falcon, bert) 0.009-0.024, vit 0.035; opt (ReLU) 0.20 / 0.14;
    # gated (llama, mistral, qwen2, gemma, phi3) 0.16-0.18 / 0.09-0.12: the product act(g) * u is far from linear
    model = build_family(family, seed=6)
    src = outputs(model)
    shrunk = outputs(downsample_model(model, 0.5, "shrink", "bilinear", targets=fc_targets(family)))
    rebuilt = outputs(downsample_model(model, 0.5, "reconstruct", "bilinear", targets=fc_targets(family)))
    ratio = float((shrunk - rebuilt).norm() / (rebuilt - src).norm())
    assert 0.001 < ratio < (0.3 if family == "opt" or MLP_LAYOUTS[family].gate else 0.05)


def test_a_gated_toponets_own_metadata_drives_it():
    model = build_family("llama", seed=7)
    stored = attach_topo_config(model, TopoConfig())  # the family default: up_proj with gate_proj on one sheet
    assert stored.shared_sheets == {"up_proj": "gate_proj"} and stored.sheets["model.layers.0.mlp.up_proj"] == [6, 6, 32]
    small = downsample_model(model, 0.5)
    topo = read_topo_config(small)  # checked against the new weights
    assert topo.shared_sheets == stored.shared_sheets
    assert topo.sheets["model.layers.0.mlp.up_proj"] == [*small.config.topo_downsample["sheet"], 32]
    assert torch.isfinite(topo_loss(small, TopoConfig(target_modules=["up_proj"], shared_sheets=topo.shared_sheets,
                                                      factor_h=1.0, factor_w=1.0)))


def test_bloom_reconstructs_but_cannot_shrink():
    model = build_family("bloom", seed=8)
    with pytest.raises(ValueError, match=r"fixed by the architecture \(BLOOM: 4 \* hidden_size\); use mode='reconstruct'"):
        downsample_model(model, 0.5, "shrink", targets=["dense_h_to_4h"])
    rebuilt = downsample_model(model, 0.5, "reconstruct", targets=["dense_h_to_4h"])
    assert rebuilt.config.to_dict().keys() - {"topo", "topo_downsample"} == model.config.to_dict().keys()


def test_vits_default_target_is_not_an_mlp_input_projection():
    model = build_family("vit")
    attach_topo_config(model, TopoConfig())  # fc2: the paper's ViT layer, whose units are the residual stream
    with pytest.raises(ValueError, match=r"target vit\.layers\.0\.mlp\.fc2 is its MLP's output projection 'fc2'.*targets=\['fc1'\]"):
        downsample_model(model, 0.5)
