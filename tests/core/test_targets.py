import pytest
from torch import nn

from conftest import tiny_gpt2, tiny_gpt_neo
from hf_toponets import TopoConfig, resolve_targets
from hf_toponets.core.targets import name_matches


@pytest.mark.parametrize(
    "name, pattern, expected",
    [
        ("transformer.h.0.mlp.c_fc", ["c_fc"], True),
        ("transformer.h.0.mlp.c_fc", ["mlp.c_fc"], True),
        ("transformer.h.0.mlp.c_fc", ["fc"], False),  # suffixes are whole components
        ("c_fc", ["c_fc"], True),
        ("transformer.h.0.mlp.c_fc", r".*\.c_fc", True),
        ("transformer.h.0.mlp.c_fc", r"c_fc", False),  # a regex must match the whole name
        ("transformer.h.10.mlp.c_fc", r"transformer\.h\.1\d?\.mlp\.c_fc", True),
        ("anything", None, False),
    ],
)
def test_peft_matching(name, pattern, expected):
    assert name_matches(name, pattern) is expected


def test_resolves_gpt_neo_c_fc_with_shapes():
    model = tiny_gpt_neo(hidden=32, layers=2)
    targets = resolve_targets(model, TopoConfig(target_modules=["c_fc"]))
    assert list(targets) == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    assert all(t.shape == (8, 16, 32) for t in targets.values())
    assert targets["transformer.h.1.mlp.c_fc"].module is model.transformer.h[1].mlp.c_fc


def test_exclude_applies_first():
    model = tiny_gpt2(layers=2)
    targets = resolve_targets(model, TopoConfig(target_modules=r".*mlp\.c_fc", exclude_modules=["h.0.mlp.c_fc"]))
    assert list(targets) == ["transformer.h.1.mlp.c_fc"]


def test_no_match_lists_real_names():
    with pytest.raises(ValueError, match=r"matched no module of GPTNeoForCausalLM; some of its layers: .*c_fc"):
        resolve_targets(tiny_gpt_neo(), TopoConfig(target_modules=["fc1"]))


def test_unsupported_match_is_named():
    with pytest.raises(ValueError, match=r"matched transformer\.h\.0\.mlp of type GPTNeoMLP"):
        resolve_targets(tiny_gpt_neo(), TopoConfig(target_modules=["mlp"]))


def test_too_small_sheet_is_named():
    model = nn.Sequential(nn.Linear(4, 13))
    with pytest.raises(ValueError, match=r"^0: its 1 x 13 sheet is smaller"):
        resolve_targets(model, TopoConfig(target_modules=["0"]))
