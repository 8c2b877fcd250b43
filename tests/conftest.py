"""Shared fixtures: tiny models built in-process, paths to ../shared/data, offline Hub."""

import os
import socket

# The fake Hub of tests/hub_server.py (started by tests/test_hub.py) gets this free port. huggingface_hub reads
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
