"""analyze on gated TopoNets: the weight metrics use the stored sheet [gate_u | up_u]; fused layers' activations refused."""

import pytest
import torch

from families import build_family
from hf_toponets import TopoConfig
from hf_toponets.analysis.report import analyze
from hf_toponets.analysis.smoothness import smoothness_curve
from hf_toponets.core.metadata import attach_topo_config


def test_a_gated_sheet_is_measured_as_stored(tmp_path):
    model = build_family("llama")
    stored = attach_topo_config(model, TopoConfig())
    ids = torch.randint(1, 64, (8, 12), generator=torch.Generator().manual_seed(0))
    metrics = analyze(model, tmp_path, input_ids=ids, progress=False)
    name = "model.layers.0.mlp.up_proj"
    entry = metrics["layers"][name]
    assert entry["sheet"] == stored.sheets[name] == [6, 6, 32]
    mlp = model.model.layers[0].mlp
    rows = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], dim=1).detach()  # oracle: the concatenated rows
    assert entry["smoothness_weights"] == pytest.approx(smoothness_curve(rows).smoothness)
    assert entry["effective_dim"] is not None and (tmp_path / metrics["maps"][name]).is_file()


def test_fused_gate_up_layers_measure_weights_only(tmp_path):
    model = build_family("phi3")
    attach_topo_config(model, TopoConfig())
    metrics = analyze(model, tmp_path, progress=False)
    assert metrics["layers"]["model.layers.1.mlp.gate_up_proj"]["sheet"] == [6, 6, 32]
    with pytest.raises(ValueError, match=r"activation metrics of fused gate/up layers .* measure the weights only"):
        analyze(model, tmp_path, input_ids=torch.ones(8, 12, dtype=torch.long), progress=False)
