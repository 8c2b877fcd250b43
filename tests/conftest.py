"""Shared fixtures: tiny models built in-process, paths to ../shared/data, offline Hub."""

import os
import socket
import sys

# The fake Hub of tests/hub_server.py (started by the `hub` fixture below) gets this free port. huggingface_hub reads
# HF_ENDPOINT once, at import, so it is set before anything imports it; stray Hub calls stay on this machine.
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    HUB_PORT = _s.getsockname()[1]
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

SHARED_DATA = Path(os.environ.get("HF_TOPONETS_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


ALICE, BOB = "hf_alice_0123456789abcdefSECRET", "hf_bob_0123456789abcdefSECRET"  # fake Hub users' tokens


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def tiny_gpt_neo(seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = 128, inner: int | None = None):
    """A randomly initialised GPT-Neo with a ``(4 hidden)``-unit ``c_fc`` per block."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoConfig(
        vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=2, intermediate_size=inner,
        attention_types=[[["global", "local"], layers // 2]] if layers % 2 == 0 else [[["global"], layers]],
        max_position_embeddings=64, window_size=16, bos_token_id=vocab - 1, eos_token_id=vocab - 1,
    )
    return GPTNeoForCausalLM(config)


def tiny_gpt2(seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = 128):
    """A randomly initialised GPT-2 without dropout (its MLP uses transformers' ``Conv1D``)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=2, n_positions=64,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=vocab - 1, eos_token_id=vocab - 1)
    return GPT2LMHeadModel(config)


@pytest.fixture(scope="session")
def hub():
    from hub_server import HubServer

    with HubServer(tokens={ALICE: "alice", BOB: "bob"}, port=HUB_PORT) as server:
        yield server


# huggingface_hub's paths under HF_HOME, read once at import: all moved into the test's tmp_path
HF_HOME_PATHS = {"HF_HOME": "", "HF_HUB_CACHE": "hub", "HF_ASSETS_CACHE": "assets", "HF_XET_CACHE": "xet",
                 "HF_TOKEN_PATH": "token", "HF_STORED_TOKENS_PATH": "stored_tokens",
                 "AGENT_HARNESSES_PATH": ".agent_harnesses.json", "CHECK_FOR_UPDATE_DONE_PATH": ".check_for_update_done"}


@pytest.fixture
def online(hub, tmp_path, monkeypatch):
    """huggingface_hub talking to the fake Hub: online, no stored token, HF_HOME in tmp_path.

    Afterwards, checks that the test only used routes that the fake Hub implements.
    """
    from huggingface_hub import constants

    assert constants.ENDPOINT == hub.endpoint, "huggingface_hub was imported before conftest.py set HF_ENDPOINT"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name, path in HF_HOME_PATHS.items():
        monkeypatch.setattr(constants, name, str(tmp_path / "hf-home" / path))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    unknown = len(hub.unknown)
    yield hub
    # huggingface_hub asks for its agent registry on first use and copes with a 404
    assert [r for r in hub.unknown[unknown:] if r != "GET /api/agent-harnesses"] == []


def tiny_resnet(seed: int = 0, hidden_sizes=(16, 32), num_labels: int = 10):
    """A randomly initialised ResNet image classifier (basic blocks, one per stage) for 3 x 32 x 32 inputs."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(embedding_size=16, hidden_sizes=list(hidden_sizes), depths=[1] * len(hidden_sizes),
                          layer_type="basic", num_labels=num_labels)
    return ResNetForImageClassification(config)


def tiny_vit(seed: int = 0, hidden: int = 36, layers: int = 2, num_labels: int = 10, image_size: int = 32):
    """A randomly initialised ViT image classifier without dropout (8 x 8 patches of 3 x 32 x 32 inputs)."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=4 * hidden,
                       image_size=image_size, patch_size=8, num_labels=num_labels,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return ViTForImageClassification(config)


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory) -> Path:
    """scikit-learn's digits as an image folder, one subfolder per digit ("0" ... "9"), 12 PNGs each (32 x 32)."""
    from hf_toponets.training.images import embedded_digits

    folder = tmp_path_factory.mktemp("digits")
    counts = {}
    for i, row in enumerate(embedded_digits(32)):
        name = str(row["label"])
        if counts.get(name, 0) < 12:
            (folder / name).mkdir(exist_ok=True)
            row["image"].save(folder / name / f"{i:04d}.png")
            counts[name] = counts.get(name, 0) + 1
    return folder


def sgd_step(model, loss, lr: float):
    """The oracles' optimizer: backpropagate ``loss`` and apply ``p -= lr * p.grad`` by hand; returns ``model``."""
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    return model


def end_worker() -> None:
    """The last call of a ``torchrun`` test worker: barrier, tear the gloo group down, then ``os._exit(0)``.

    Every output is written by then; exiting past C++ static destructors avoids torch's CPU/gloo threads aborting
    a finished rank ("terminate called without an active exception", about 1 run in 40 under FSDP2 on CI). An
    exception raised before this call still exits non-zero.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
