import json

import pytest
from transformers import AutoModelForCausalLM

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets import TopoConfig
from hf_toponets.core.metadata import attach_topo_config, read_topo_config


@pytest.mark.parametrize("build", [tiny_gpt_neo, tiny_gpt2])
def test_round_trip_through_save_pretrained(tmp_path, build):
    model = build()
    stored = attach_topo_config(model, TopoConfig(target_modules=["c_fc"], tau=3.0))
    assert stored.sheets == {f"transformer.h.{i}.mlp.c_fc": [8, 16, 32] for i in range(2)}
    model.save_pretrained(tmp_path)
    on_disk = json.loads((tmp_path / "config.json").read_text())["topo"]
    assert on_disk["sheets"] == stored.sheets and on_disk["hf_toponets_version"]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert read_topo_config(loaded) == stored
    assert TopoConfig.from_pretrained(str(tmp_path)) == stored


def test_no_entry_gives_none():
    assert read_topo_config(tiny_gpt_neo()) is None


def test_wrong_unit_count_is_refused():
    model = tiny_gpt_neo()
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    other = tiny_gpt_neo(inner=64)
    other.config.topo = model.config.topo
    with pytest.raises(ValueError, match=r"gives transformer\.h\.0\.mlp\.c_fc a sheet \[8, 16, 32\].*makes \[8, 8, 32\]"):
        read_topo_config(other)


def test_missing_module_is_refused():
    model = tiny_gpt_neo(layers=2)
    attach_topo_config(model, TopoConfig(target_modules=["c_fc"]))
    small = tiny_gpt_neo(layers=1)
    small.config.topo = model.config.topo
    with pytest.raises(ValueError, match=r"names transformer\.h\.1\.mlp\.c_fc, which is not"):
        read_topo_config(small)
