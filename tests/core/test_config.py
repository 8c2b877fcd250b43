import json

import pytest

from hf_toponets import TopoConfig


def test_round_trip_through_json():
    cfg = TopoConfig(target_modules="transformer\\.h\\.\\d+\\.mlp\\.c_fc", exclude_modules=["h.0.mlp.c_fc"], tau=5,
                     factor_h=2, factor_w=4, interpolation="nearest",
                     tau_schedule=[{"kind": "linear", "steps": 10, "start": 0.0, "end": 1.0}, "cosine:5:1:0.5"]
                     ).with_sheets({"a.c_fc": [2, 3, 4]})
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["hf_toponets_version"]
    assert TopoConfig.from_dict(data) == cfg
    assert isinstance(cfg.tau, float) and cfg.factor_h == 2.0
    assert cfg.tau_schedule == ["linear:10:0.0:1.0", "cosine:5:1.0:0.5"]


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
        (dict(tau_schedule=["linear"]), "is not 'kind:steps"),
        (dict(tau_schedule=["linear:x"]), "steps must be a positive int"),
        (dict(tau_schedule=["linear:3:a"]), "must be numbers"),
    ],
)
def test_bad_values_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TopoConfig(**kwargs)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys \\['taus'\\]"):
        TopoConfig.from_dict({"taus": 1.0})


def test_from_pretrained_reads_config_json(tmp_path):
    cfg = TopoConfig(tau=2.0).with_sheets({"h.0.c_fc": [8, 16, 32]})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neo", "topo": cfg.to_dict()}))
    assert TopoConfig.from_pretrained(str(tmp_path)) == cfg


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(ValueError, match="has neither config.json nor topo_config.json"):
        TopoConfig.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="no 'topo' entry"):
        TopoConfig.from_pretrained(str(tmp_path))


def naive_multiplier(phases, step):
    """Walk the schedule one step at a time: an independent oracle for schedule_multiplier."""
    import math

    flat = []
    for kind, n, a, b in phases:
        for s in range(n):
            if kind == "constant":
                flat.append(a)
            elif kind == "linear":
                flat.append(a + (b - a) * s / n)
            else:
                flat.append(b + (a - b) * 0.5 * (1 + math.cos(math.pi * s / n)))
    if not phases:
        return 1.0
    last_kind, _, a, b = phases[-1]
    return flat[step] if step < len(flat) else (a if last_kind == "constant" else b)


@pytest.mark.parametrize(
    "phases",
    [
        [],
        [("linear", 10, 0.0, 1.0)],
        [("linear", 4, 0.0, 1.0), ("constant", 3, 1.0, 1.0), ("cosine", 8, 1.0, 0.1)],
        [("cosine", 5, 2.0, 0.0), ("linear", 2, 0.0, 0.5)],
    ],
)
def test_tau_schedule_against_step_by_step_oracle(phases):
    cfg = TopoConfig(tau=3.0, tau_schedule=[f"{k}:{n}:{a}:{b}" for k, n, a, b in phases])
    for step in range(0, 25):
        assert cfg.tau_at(step) == pytest.approx(3.0 * naive_multiplier(phases, step), abs=1e-12)


def test_parses_with_hf_argument_parser():
    from transformers import HfArgumentParser

    (cfg,) = HfArgumentParser((TopoConfig,)).parse_args_into_dataclasses(
        ["--target_modules", "c_fc", "c_proj", "--tau", "5", "--tau_schedule", "linear:100:0:1", "cosine:50:1:0.5"]
    )
    assert cfg == TopoConfig(target_modules=["c_fc", "c_proj"], tau=5.0, tau_schedule=["linear:100:0:1", "cosine:50:1:0.5"])
    (default,) = HfArgumentParser((TopoConfig,)).parse_args_into_dataclasses([])
    assert default == TopoConfig()
