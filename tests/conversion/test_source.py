import argparse
import hashlib
import pickle

import pytest
import torch

from hf_toponets.conversion.source import detect_format, file_sha256, read_checkpoint, tau_from_name
from published import NanoGPT, TinyResNet, TinyViT, save_nanogpt, save_resnet, save_vit


class NotAllowed:
    """A class torch.load(weights_only=True) must refuse to build."""

    def __reduce__(self):
        return (print, ("unpickling ran code",))


@pytest.mark.parametrize("name, tau", [
    ("tau_50.0.pt", 50.0), ("all_topo_tau_0.5.pt", 0.5), ("dir/tau_3.pt", 3.0), ("tau_10.0.pt.bak", None),
    ("model.pt", None), ("tau_.pt", None),
])
def test_tau_from_name(name, tau):
    assert tau_from_name(name) == tau


@pytest.mark.parametrize("make, save, container, fmt", [
    (lambda: NanoGPT(vocab_size=96), save_nanogpt, "nanogpt train.py", "nanogpt"),
    (TinyViT, save_vit, "torchvision reference trainer", "vit"),
    (TinyResNet, save_resnet, "state dict", "resnet"),
])
def test_containers_and_formats(tmp_path, make, save, container, fmt):
    model, path = make(), tmp_path / "x.pt"
    save(model, path)
    source = read_checkpoint(path)
    assert source.container == container and detect_format(source.state) == fmt
    assert not any(k.startswith("_orig_mod.") for k in source.state)  # compiled-model prefixes stripped
    assert source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert all(torch.equal(source.state[k], v) for k, v in model.state_dict().items())


def test_metadata_beside_the_weights(tmp_path):
    save_nanogpt(NanoGPT(vocab_size=96, n_head=2), tmp_path / "n.pt")
    assert read_checkpoint(tmp_path / "n.pt").model_args["n_head"] == 2
    save_vit(TinyViT(), tmp_path / "v.pt", model_name="vit_l_16")
    assert read_checkpoint(tmp_path / "v.pt").model_name == "vit_l_16"  # from the pickled argparse.Namespace


def test_a_reference_trainer_dict_may_hold_a_resnet(tmp_path):
    torch.save({"model": TinyResNet().state_dict(), "args": argparse.Namespace(model="resnet18"), "epoch": 1},
               tmp_path / "r.pt")
    assert detect_format(read_checkpoint(tmp_path / "r.pt").state) == "resnet"


def test_refuses_unrestricted_unpickling_without_running_it(tmp_path, capsys):
    torch.save({"model": TinyResNet().state_dict(), "hook": NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"needs unrestricted unpickling \(it pickles (builtins.)?print\)"):
        read_checkpoint(tmp_path / "evil.pt")
    assert "unpickling ran code" not in capsys.readouterr().out
    torch.save(TinyResNet(), tmp_path / "model.pt")  # a whole pickled model object, the other common case
    with open(tmp_path / "model.pkl", "wb") as f:  # the same with plain pickle
        pickle.dump(TinyResNet(), f, protocol=2)
    for name in ("model.pt", "model.pkl"):
        with pytest.raises(ValueError, match=r"unrestricted unpickling \(it pickles published.TinyResNet\)"):
            read_checkpoint(tmp_path / name)


@pytest.mark.parametrize("obj, match", [
    ({"weights": [1, 2]}, "it holds \\['weights'\\]\\); unknown format"),
    ([torch.zeros(2)], r"it holds list\); unknown format"),
    ({"model": {"a.weight": torch.zeros(2)}, "epoch": 3}, "unknown format"),  # neither model_args nor args
])
def test_unknown_containers(tmp_path, obj, match):
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=match):
        read_checkpoint(tmp_path / "x.pt")


def test_unknown_architecture_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="fit none of the known formats"):
        detect_format({"encoder.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="is not a file"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        read_checkpoint(tmp_path / "junk.pt")


def test_half_precision_weights_are_read_as_float32(tmp_path):
    model = TinyResNet()
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, tmp_path / "h.pt")
    state = read_checkpoint(tmp_path / "h.pt").state
    assert state["fc.weight"].dtype == torch.float32 and state["bn1.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(state["fc.weight"], model.fc.weight.half().float())
