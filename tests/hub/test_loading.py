"""load_pretrained and the CLI verbs that load a model: one clear line naming the argument; --device and --dtype."""

import pytest
import torch

from conftest import tiny_gpt_neo
from hf_toponets.cli import main
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.core.targets import resolve_targets
from hf_toponets import TopoConfig
from hf_toponets.hub.loading import load_pretrained


@pytest.fixture
def saved(tmp_path):
    model = tiny_gpt_neo(seed=3)
    config = TopoConfig(target_modules=["c_fc"])
    attach_topo_config(model, config, resolve_targets(model, config))
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model", model


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp / "absent", "absent: no such folder \\(and not a Hub repo id\\)"),  # absolute: no Hub id
    (lambda tmp: str(tmp / "absent") + "/", "no such folder \\(and not a Hub repo id\\)"),
    (lambda tmp: "./nope/x/y", "no such folder \\(and not a Hub repo id\\)"),
    (lambda tmp: tmp, "the folder has no config.json"),
    (lambda tmp: (tmp / "f.txt").write_text("x") and tmp / "f.txt", "a file; give the folder"),
    (lambda tmp: "outputs/not-cached-anywhere", "outputs/not-cached-anywhere: no such local folder, and the Hub repo "
                                                "could not be loaded: We couldn't connect"),  # offline: a Hub id form
])
def test_a_model_that_cannot_load_is_one_line_naming_the_argument(tmp_path, make, match):
    source = make(tmp_path)
    with pytest.raises(ValueError, match=match) as info:
        load_pretrained(str(source), argument="--model")
    assert str(info.value).startswith("--model ") and "\n" not in str(info.value)


def test_bad_device_and_dtype(saved):
    folder, _ = saved
    with pytest.raises(ValueError, match="dtype 'float8': give one of float32"):
        load_pretrained(str(folder), dtype="float8")
    with pytest.raises(ValueError, match="device 'gpu' is not a torch device"):
        load_pretrained(str(folder), device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda:1': this torch .* sees no CUDA device"):
            load_pretrained(str(folder), device="cuda:1")


@pytest.mark.parametrize("verb", ["loss", "analyze", "blimp", "downsample", "sweep"])
def test_every_model_verb_names_a_missing_model_in_one_line(tmp_path, capsys, verb):
    argv = [verb, "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]
    if verb == "loss":
        argv = argv[:3]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hf-toponets {verb}: error: --model {tmp_path / 'missing'}: no such folder (and not a Hub repo id)"
    argv[2] = "outputs/no-such-run"  # a Hub id's form: the (offline) Hub is asked, and its answer given in one line
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hf-toponets {verb}: error: --model outputs/no-such-run: no ") and "couldn't connect" in err
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loss_runs_with_device_and_dtype(saved, capsys, dtype):
    from hf_toponets import topo_losses

    folder, model = saved
    assert main(["loss", "--model", str(folder), "--device", "cpu", "--dtype", dtype]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    expected = topo_losses(model.to(getattr(torch, dtype)), TopoConfig(target_modules=["c_fc"]))
    for name, value in expected.items():
        assert float(printed[name]) == pytest.approx(value.item(), abs=1e-5 if dtype == "float32" else 1e-2)


def test_gpu_device_and_dtype_reach_the_model(saved):
    folder, _ = saved
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = load_pretrained(str(folder), device="cuda", dtype="bfloat16")
    assert next(model.parameters()).device.type == "cuda" and next(model.parameters()).dtype == torch.bfloat16
