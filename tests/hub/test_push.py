"""hf_toponets.hub.push against a real HTTP server: tests/hub_server.py, a small fake Hub on 127.0.0.1.

conftest.py sets HF_ENDPOINT to http://127.0.0.1:<HUB_PORT> before huggingface_hub is imported; the session
fixture starts the server on that port. Tests that download unset offline mode and use a cache in tmp_path.
"""

import base64
import json
import logging
import shutil
import socket
from pathlib import Path

import pytest
import torch
from conftest import ALICE, BOB, tiny_gpt_neo
from hub_server import git_blob_id
from huggingface_hub import ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from safetensors.torch import load_file

from hf_toponets import TopoConfig
from hf_toponets.cli import main
from hf_toponets.hub.push import push_folder
from hf_toponets.core.metadata import attach_topo_config
from hf_toponets.core.sheet import weight_to_sheet

PNG = base64.b64decode(  # a 1 x 1 PNG: the maps only need to be files that travel
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def save_toponet(folder: Path, seed: int = 0) -> torch.nn.Module:
    """A tiny GPT-Neo with a topo entry, a tokenizer, results files and one map, saved in ``folder``."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    model = tiny_gpt_neo(seed=seed)
    config = attach_topo_config(model, TopoConfig(target_modules=["c_fc"], tau=0.5))
    model.save_pretrained(folder)
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0, "the": 1, "cat": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(folder)
    first = next(iter(config.sheets))
    (folder / "maps").mkdir()
    (folder / "maps" / "c_fc.png").write_bytes(PNG)
    (folder / "metrics.json").write_text(json.dumps({
        "layers": {n: {"sheet": s, "smoothness_weights": 0.25, "smoothness_activations": None, "effective_dim": 9.5}
                   for n, s in config.sheets.items()},
        "maps": {first: "maps/c_fc.png"}, "curves": None, "n_samples": None}))
    (folder / "blimp_results.json").write_text(json.dumps({
        "overall": 0.625, "phenomena": {"anaphor_agreement": 0.75, "island_effects": 0.5},
        "paradigms": {"anaphor_gender_agreement": {"accuracy": 0.75, "n": 4}, "adjunct_island": {"accuracy": 0.5, "n": 4}}}))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 20, "log_history": [{"eval_loss": 2.0, "step": 20}]}))
    (folder / "training_args.bin").write_bytes(b"a Trainer pickle: never uploaded")
    return model


@pytest.fixture
def toponet(tmp_path):
    folder = tmp_path / "toponet"
    return folder, save_toponet(folder)


def test_push_then_load_gives_the_same_weights_sheets_and_card(online, toponet):
    folder, model = toponet
    result = push_folder(folder, "alice/topo-neo", token=ALICE)
    repo = online.repos["alice/topo-neo"]
    assert result.changed and repo.log[-1] == "Upload toponet with hf_toponets" and len(repo.log) == 2  # create + 1
    assert set(repo.commits[result.commit_oid]) - {".gitattributes"} == set(result.files)
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "maps/c_fc.png",
            "blimp_results.json", "metrics.json"} <= set(result.files)
    assert "training_args.bin" not in result.files
    for name in result.files:  # byte-identical on the server
        assert repo.commits[result.commit_oid][name] == (folder / name).read_bytes(), name

    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained("alice/topo-neo")  # anonymous: the repo is public
    saved = load_file(folder / "model.safetensors")
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items()) and len(saved) > 0
    topo = TopoConfig.from_pretrained("alice/topo-neo")
    assert topo == TopoConfig.from_dict(json.loads((folder / "config.json").read_text())["topo"])
    modules, originals = dict(loaded.named_modules()), dict(model.named_modules())
    for name in topo.sheets:
        assert torch.equal(weight_to_sheet(modules[name]), weight_to_sheet(originals[name]))
    assert AutoTokenizer.from_pretrained("alice/topo-neo")("the cat")["input_ids"] == [1, 2]

    card = ModelCard.load("alice/topo-neo")  # downloads README.md and parses its metadata
    measured = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert measured == {"accuracy": 0.625, "perplexity": round(float(torch.tensor(2.0).exp()), 4)}
    assert "toponets" in card.data.tags and card.data.library_name == "transformers"
    assert 'from_pretrained("alice/topo-neo")' in card.text and "![" in card.text


def test_second_push_of_the_same_folder_makes_no_commit(online, toponet):
    folder, _ = toponet
    first = push_folder(folder, "alice/twice", token=ALICE)
    commits = len(online.repos["alice/twice"].log)
    again = push_folder(folder, "alice/twice", token=ALICE)
    assert (again.changed, again.commit_oid, len(online.repos["alice/twice"].log)) == (False, first.commit_oid, commits)

    blimp = json.loads((folder / "blimp_results.json").read_text())
    (folder / "blimp_results.json").write_text(json.dumps({**blimp, "overall": 0.5}))
    changed = push_folder(folder, "alice/twice", token=ALICE)
    repo = online.repos["alice/twice"]
    before, after = repo.commits[first.commit_oid], repo.commits[changed.commit_oid]
    assert changed.changed and len(repo.log) == commits + 1
    assert {p for p in after if after[p] != before.get(p)} == {"blimp_results.json", "README.md"}  # the card follows
    assert ModelCard(after["README.md"].decode()).data.eval_results[-1].metric_value == 0.5


def test_push_to_a_branch_leaves_main_alone(online, toponet):
    folder, _ = toponet
    main_push = push_folder(folder, "alice/branches", token=ALICE)
    (folder / "blimp_results.json").unlink()
    dev = push_folder(folder, "alice/branches", token=ALICE, revision="dev")
    repo = online.repos["alice/branches"]
    assert repo.branches["main"] == main_push.commit_oid and repo.branches["dev"] == dev.commit_oid
    assert TopoConfig.from_pretrained("alice/branches", revision="dev").sheets


def test_private_repo_needs_its_owners_token(online, toponet):
    folder, _ = toponet
    push_folder(folder, "alice/secret", private=True, token=ALICE)
    assert online.repos["alice/secret"].private
    from transformers import AutoModelForCausalLM

    with pytest.raises(RepositoryNotFoundError, match="Repository Not Found"):
        TopoConfig.from_pretrained("alice/secret")
    with pytest.raises(OSError, match="private repository"):
        AutoModelForCausalLM.from_pretrained("alice/secret")
    with pytest.raises(RepositoryNotFoundError):
        TopoConfig.from_pretrained("alice/secret", token=BOB)
    assert TopoConfig.from_pretrained("alice/secret", token=ALICE).sheets
    assert AutoModelForCausalLM.from_pretrained("alice/secret", token=ALICE) is not None


def test_private_push_to_an_existing_public_repo_is_refused(online, toponet):
    folder, _ = toponet
    first = push_folder(folder, "alice/public", token=ALICE)
    (folder / "blimp_results.json").unlink()
    with pytest.raises(ValueError, match="exists and is public"):
        push_folder(folder, "alice/public", private=True, token=ALICE)
    assert online.repos["alice/public"].branches["main"] == first.commit_oid  # nothing uploaded


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "alice/has space", "alice/--dashes", "", "alice/"])
def test_bad_repo_id_is_refused_before_any_request(online, toponet, repo_id):
    sent = len(online.requests)
    with pytest.raises(ValueError, match="repo_id"):
        push_folder(toponet[0], repo_id, token=ALICE)
    assert len(online.requests) == sent


def test_unreachable_endpoint_is_a_clear_connection_error(online, toponet, monkeypatch, capsys):
    with socket.socket() as s:  # a port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ConnectionError, match=f"cannot reach the Hub at {closed}"):
        push_folder(toponet[0], "alice/nowhere", token=ALICE, endpoint=closed)
    monkeypatch.setattr(constants, "ENDPOINT", closed)  # as HF_ENDPOINT would, for the CLI
    assert main(["push", "--model", str(toponet[0]), "--repo-id", "alice/nowhere"]) == 1
    assert f"hf-toponets push: error: cannot reach the Hub at {closed}" in capsys.readouterr().err


def test_writing_to_another_users_namespace_is_refused(online, toponet):
    with pytest.raises(HfHubHTTPError, match="403"):
        push_folder(toponet[0], "bob/not-yours", token=ALICE)


def test_token_never_appears_in_logs_or_output(online, toponet, caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    folder, _ = toponet
    push_folder(folder, "alice/quiet", token=ALICE)
    push_folder(folder, "alice/quiet", token=ALICE)  # the unchanged path logs too
    with pytest.raises(HfHubHTTPError):
        push_folder(folder, "bob/quiet", token=ALICE)
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert main(["push", "--model", str(folder), "--repo-id", "alice/quiet-cli"]) == 0
    assert main(["push", "--model", str(folder), "--repo-id", "bob/quiet-cli"]) == 1
    out, err = capsys.readouterr()
    assert "pushed: " in out and "403" in err
    assert len(caplog.records) > 0
    for text in (caplog.text, out, err, *(str(r.args) for r in caplog.records)):
        assert ALICE not in text and "SECRET" not in text


def test_cli_card_and_push_round_trip(online, toponet, capsys, monkeypatch):
    folder, _ = toponet
    assert main(["card", "--model", str(folder), "--repo-id", "alice/cli", "--dataset", "roneneldan/TinyStories",
                 "--license", "mit"]) == 0
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert main(["push", "--model", str(folder), "--repo-id", "alice/cli", "--private"]) == 0
    readme = online.repos["alice/cli"].commits[online.repos["alice/cli"].branches["main"]]["README.md"]
    assert readme == (folder / "README.md").read_bytes()
    card = ModelCard(readme.decode())
    assert (card.data.datasets, card.data.license) == (["roneneldan/TinyStories"], "mit")
    assert "pushed: " in capsys.readouterr().out


def test_a_generated_card_is_refreshed_and_a_hand_written_one_kept(online, toponet):
    from hf_toponets.hub.folder import write_model_card

    folder, _ = toponet
    write_model_card(folder, training={"license": "mit"})  # at save time: no repo id yet
    assert 'from_pretrained("USER/NAME")' in (folder / "README.md").read_text()
    result = push_folder(folder, "alice/refreshed", token=ALICE)
    pushed = online.repos["alice/refreshed"].commits[result.commit_oid]["README.md"].decode()
    assert 'from_pretrained("alice/refreshed")' in pushed and "license: mit" in pushed  # training info kept
    (folder / "README.md").write_text("# My own card\n")
    with pytest.warns(UserWarning, match="missing yaml metadata"):  # the Hub's validate-yaml warning, passed on
        result = push_folder(folder, "alice/refreshed", token=ALICE)
    assert online.repos["alice/refreshed"].commits[result.commit_oid]["README.md"] == b"# My own card\n"


def _no_topo(folder):
    config = json.loads((folder / "config.json").read_text())
    del config["topo"]
    (folder / "config.json").write_text(json.dumps(config))


def _bin_weights(folder):
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle bytes, never loaded")


def _metrics(folder, edit):
    metrics = json.loads((folder / "metrics.json").read_text())
    edit(metrics)
    (folder / "metrics.json").write_text(json.dumps(metrics))


def _stranger_topo_layer(folder):
    config = json.loads((folder / "config.json").read_text())
    config["topo"]["sheets"]["transformer.h.7.mlp.c_fc"] = [8, 16, 32]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").unlink()


BAD_FOLDERS = [  # (what is wrong, how to break a good folder, the error's words)
    ("not a model", lambda f: [p.unlink() for p in f.glob("*.json")], "no config.json"),
    ("no weights", lambda f: (f / "model.safetensors").unlink(), "no \\*.safetensors weights"),
    ("pickle weights", _bin_weights, "pickle files \\['pytorch_model.bin', 'training_args.bin'\\].*save_pretrained"),
    ("no topo entry", _no_topo, "no 'topo' entry.*allow_plain"),
    ("topo layer not in the model", _stranger_topo_layer, "transformer.h.7.mlp.c_fc.*does not belong"),
    ("metrics of another layer", lambda f: _metrics(f, lambda m: m["layers"].update({"lm_head": {}})),
     "\\['lm_head'\\] that are not topographic"),
    ("metrics of another sheet", lambda f: _metrics(f, lambda m: [r.update(sheet=[16, 8, 32]) for r in m["layers"].values()]),
     "belong to another model"),
    ("a map that is missing", lambda f: (f / "maps" / "c_fc.png").unlink(), "maps/c_fc.png, which is not in"),
    ("blimp accuracy in percent", lambda f: (f / "blimp_results.json").write_text('{"overall": 62.5}'), "in \\[0, 1\\]"),
    ("broken results json", lambda f: (f / "metrics.json").write_text("{"), "metrics.json is not valid JSON"),
]


@pytest.mark.parametrize("what, breaks, message", BAD_FOLDERS, ids=[b[0] for b in BAD_FOLDERS])
def test_bad_folders_are_refused_before_any_request(online, toponet, what, breaks, message):
    folder, _ = toponet
    breaks(folder)
    sent = len(online.requests)
    with pytest.raises(ValueError, match=message):
        push_folder(folder, "alice/bad", token=ALICE)
    assert len(online.requests) == sent and not (folder / "README.md").exists()


def test_a_plain_model_is_published_only_with_allow_plain(online, toponet):
    folder, _ = toponet
    _no_topo(folder)
    shutil.rmtree(folder / "maps")
    (folder / "metrics.json").unlink()
    result = push_folder(folder, "alice/plain", token=ALICE, allow_plain=True)
    assert "README.md" not in result.files and not (folder / "README.md").exists()  # no TopoNet card for it
    blob = online.repos["alice/plain"].commits[result.commit_oid]["config.json"]
    assert git_blob_id(blob) == git_blob_id((folder / "config.json").read_bytes())


@pytest.mark.parametrize("token, words", [(None, "Invalid username or password"),
                                          ("hf_not_a_known_token", "Invalid credentials")])
def test_cli_push_without_a_valid_token_says_how_to_log_in(online, toponet, monkeypatch, capsys, token, words):
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)
    assert main(["push", "--model", str(toponet[0]), "--repo-id", "alice/anonymous"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and words in err and "hf auth login" in err and "alice/anonymous" not in online.repos
    assert token is None or token not in err
