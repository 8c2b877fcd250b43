import json

import pytest

from hf_toponets import TopoConfig


def test_round_trip_through_json():
    cfg = TopoConfig(target_modules="transformer\\.h\\.\\d+\\.mlp\\.c_fc", exclude_modules=["h.0.mlp.c_fc"], tau=5,
                     factor_h=2, factor_w=4, interpolation="nearest",
                     tau_schedule=[{"kind": "linear", "steps": 10, "start": 0.0, "end": 1.0}],
                     sheets={"a.c_fc": [2, 3, 4]})
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["hf_toponets_version"]
    assert TopoConfig.from_dict(data) == cfg
    assert isinstance(cfg.tau, float) and cfg.factor_h == 2.0


def test_defaults_are_the_papers():
    cfg = TopoConfig()
    assert (cfg.factor_h, cfg.factor_w, cfg.interpolation) == (3.0, 3.0, "bilinear")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau=-1.0), "tau must be"),
        (dict(tau=float("nan")), "tau must be"),
        (dict(factor_h=0.5), "factor_h must be"),
        (dict(factor_w=0), "factor_w must be"),
        (dict(interpolation="bicubic"), "interpolation must be one of"),
        (dict(target_modules=[]), "target_modules is empty"),
        (dict(target_modules=""), "target_modules is an empty string"),
        (dict(target_modules=[3]), "target_modules must be"),
        (dict(exclude_modules=5), "exclude_modules must be"),
        (dict(tau_schedule=[{"kind": "step", "steps": 3}]), "kind must be one of"),
        (dict(tau_schedule=[{"kind": "linear", "steps": 0}]), "steps must be a positive int"),
        (dict(tau_schedule=[{"kind": "linear", "steps": 5, "start": -1}]), "start/end"),
        (dict(tau_schedule=[{"kind": "linear", "steps": 5, "slope": 1}]), "unknown keys"),
    ],
)
def test_bad_values_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TopoConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys \\['taus'\\]"):
        TopoConfig.from_dict({"taus": 1.0})


def test_from_pretrained_reads_config_json(tmp_path):
    cfg = TopoConfig(tau=2.0, sheets={"h.0.c_fc": [8, 16, 32]})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neo", "topo": cfg.to_dict()}))
    assert TopoConfig.from_pretrained(str(tmp_path)) == cfg


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(ValueError, match="has no config.json"):
        TopoConfig.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="no 'topo' entry"):
        TopoConfig.from_pretrained(str(tmp_path))
