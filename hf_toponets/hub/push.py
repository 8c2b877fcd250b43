"""Publishing a saved TopoNet to the Hugging Face Hub: the only module of hf_toponets that talks to the network.

:func:`push_folder` checks the folder first (safetensors weights, a ``topo`` entry that fits the architecture,
results that describe this model), writes the card when there is none, and uploads everything in one commit.
Unchanged files are not re-sent: the Hub's preupload answer carries each file's remote id, huggingface_hub drops
files whose id equals the local one and makes no commit when nothing is left; ``PushResult.changed`` says which.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.utils import HFValidationError, httpx, validate_repo_id

from .folder import is_generated_card, read_model_folder, write_model_card
from ..core.config import CONFIG_KEY, TopoConfig

logger = logging.getLogger(__name__)

# What a published model holds; a pattern without '/' matches top-level files only.
ALLOW_PATTERNS = ("*.safetensors", "*.json", "README.md", "maps/*.png", "merges.txt", "vocab.txt",
                  "tokenizer.model", "spiece.model", "chat_template.jinja")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # never uploaded, never loaded
CONVERT_HINT = ("convert it to safetensors with: python -c \"from transformers import AutoModelForCausalLM as M; "
                "M.from_pretrained('{folder}').save_pretrained('{folder}')\" (transformers >= 5 saves safetensors; "
                "loading a pickle runs code from the file, so do it only for files you trust)")


@dataclass
class PushResult:
    """What :func:`push_folder` did: ``changed`` is False when the Hub already held these exact files."""

    repo_url: str
    commit_url: str
    commit_oid: str
    changed: bool
    files: list[str]


def check_repo_id(repo_id: str) -> None:
    """Raise ``ValueError`` unless ``repo_id`` is a valid ``USER/NAME`` model id."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(f"repo_id must be 'USER/NAME' (or 'ORG/NAME'), got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"repo_id {repo_id!r} is not a valid Hub model id: {e}") from None


def _matches(path: str, patterns) -> bool:
    return any(fnmatch.fnmatch(path, p) and ("/" in p or "/" not in path) for p in patterns)


def folder_files(folder: str | Path, allow_plain: bool = False) -> list[str]:
    """The files of ``folder`` to publish (posix paths, sorted), after checking that it is a publishable model.

    Raises ``ValueError`` for: no config.json; no ``*.safetensors`` (with a conversion hint when pickle weights are
    there); a missing shard of a sharded checkpoint; no ``topo`` entry unless ``allow_plain``; a ``topo`` entry that
    does not fit the architecture; results files that do not describe this model (see ``cards.check_results``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"model folder {folder} does not exist")
    found = read_model_folder(folder)  # config.json present, results files checked against its topo entry
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    weights = [p for p in paths if p.endswith(".safetensors") and "/" not in p]
    pickles = [p for p in paths if p.endswith(PICKLE_SUFFIXES) and "/" not in p]
    if not weights:
        if pickles:
            raise ValueError(f"{folder} holds pickle files {pickles} and no *.safetensors weights; hf_toponets publishes "
                             "safetensors only; " + CONVERT_HINT.format(folder=folder))
        raise ValueError(f"{folder} has config.json but no *.safetensors weights: not a saved model (use save_pretrained)")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        missing = sorted(set(json.loads(index.read_text())["weight_map"].values()) - set(weights))
        if missing:
            raise ValueError(f"{index} names shards {missing} that are not in {folder}")
    _check_topo(folder, found["config"], allow_plain)
    if pickles:
        logger.info("not publishing pickle files %s (safetensors weights only)", pickles)
    code = _auto_map_modules(found["config"])
    return [p for p in paths if _matches(p, ALLOW_PATTERNS) or p in code]


def _auto_map_modules(config: dict) -> set[str]:
    """The top-level ``<module>.py`` files that config.json's ``auto_map`` names (``"module.Class"``): the code
    ``trust_remote_code=True`` users load, e.g. a converted BlurPool ResNet's ``blurpool_resnet.py``."""
    refs = (config.get("auto_map") or {}).values()
    return {f"{ref.rsplit('.', 1)[0]}.py" for ref in refs if isinstance(ref, str) and "--" not in ref and ref.count(".") == 1}


def _check_topo(folder: Path, config: dict, allow_plain: bool) -> None:
    if CONFIG_KEY not in config:
        if allow_plain:
            return
        raise ValueError(f"{folder}/config.json has no '{CONFIG_KEY}' entry: this is not a TopoNet saved by hf_toponets "
                         "(attach one with hf_toponets.core.metadata.attach_topo_config), or publish it as a plain model "
                         "with allow_plain=True (CLI: --allow-plain)")
    import torch
    from transformers import AutoConfig

    from ..core.metadata import check_topo_config
    from .loading import auto_model_class

    with torch.device("meta"):  # the architecture without allocating weights
        model_config = AutoConfig.from_pretrained(folder)
        model = auto_model_class(model_config).from_config(model_config)
    try:
        check_topo_config(model, TopoConfig.from_dict(config[CONFIG_KEY]))
    except ValueError as e:
        raise ValueError(f"{folder}/config.json: {e}") from None


def push_folder(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                token: str | None = None, allow_plain: bool = False, commit_message: str | None = None,
                endpoint: str | None = None) -> PushResult:
    """Publish the model saved in ``folder`` as the Hub repo ``repo_id`` in one commit.

    Checks the folder (:func:`folder_files`); (re)writes ``README.md`` with :func:`~hf_toponets.hub.folder.write_model_card`
    unless it is a hand-written card (one without ``cards.MARKER``), so that the card names ``repo_id`` and shows
    the folder's latest results; creates the repo (``private`` applies at creation) and the branch ``revision``
    when missing (an existing public repo with ``private=True`` is a ``ValueError``, before any upload); then
    commits the files of ``ALLOW_PATTERNS``. ``token``: a Hub token (default: huggingface_hub's
    login / ``HF_TOKEN``); it is never logged. ``endpoint``: default huggingface_hub's (``HF_ENDPOINT``).

    >>> push_folder("out/toponet", "me/toponet-neo", private=True)  # doctest: +SKIP
    PushResult(repo_url='https://huggingface.co/me/toponet-neo', ..., changed=True, files=[...])
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    files = folder_files(folder, allow_plain)
    readme = folder / "README.md"
    if CONFIG_KEY in json.loads((folder / "config.json").read_text()) and (not readme.exists() or is_generated_card(readme)):
        write_model_card(folder, model_id=repo_id)  # with this repo id and the folder's latest results
        files = sorted({*files, "README.md"})
    api = HfApi(endpoint=endpoint, token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.repo_info(repo_id, revision=revision)
        if private and not info.private:  # never publish what was asked to stay private
            raise ValueError(f"{repo_id} exists and is public, so private=True cannot hold; make it private first "
                             "(HfApi.update_repo_settings(repo_id, private=True)) or push to another repo")
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in files]
        commit = api.create_commit(repo_id, operations, commit_message=commit_message or f"Upload {folder.name} with hf_toponets",
                                   revision=revision)
    except httpx.TransportError as e:
        raise ConnectionError(f"cannot reach the Hub at {api.endpoint} ({type(e).__name__}: {e}); check the network "
                              "connection and HF_ENDPOINT") from None
    result = PushResult(repo_url=str(url), commit_url=commit.commit_url, commit_oid=commit.oid,
                        changed=commit.oid != info.sha, files=files)
    logger.info("%s %s at %s", "pushed" if result.changed else "unchanged, no new commit:", repo_id, result.commit_url)
    return result
