"""What TopoTrainer writes beside the weights and how it publishes them: card facts, checkpoint pushes, no pickles.

Trainer's own Hub pushes upload ``training_args.bin`` (a pickle) and, for ``hub_strategy="checkpoint"``, the
optimizer, scheduler and RNG states (pickles too); they also save the model a second time when a save
triggers a push. Here a push publishes one folder that is already saved, through
:func:`hf_toponets.hub.push.push_folder` (safetensors, JSON, the tokenizer, the card, maps; never a pickle),
in the foreground or, ``blocking=False``, as a ``concurrent.futures.Future``.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Future
from pathlib import Path

from ..hub.cards import TRAINING_KEYS
from ..hub.push import PushResult, folder_files, push_folder

# Trainer.create_model_card's arguments -> the card's training facts (TRAINING_KEYS); model_name and tasks:
# the card names the model by its repo id and its task by the model's config
CARD_ARGUMENTS = {"license": "license", "tags": "tags", "finetuned_from": "base_model", "dataset": "datasets",
                  "dataset_tags": "datasets", "language": "language", "model_name": None, "tasks": None,
                  "dataset_args": None}


def card_facts(model, model_card: dict, **card_arguments) -> dict:
    """The card's training facts: Trainer's ``create_model_card`` arguments over ``model_card`` over inference.

    ``base_model`` is inferred, as Trainer's own card does, from ``model.config._name_or_path`` when that is
    a Hub id (not a local folder, not empty); strings given for ``tags``, ``dataset`` become lists.
    """
    unknown = set(card_arguments) - set(CARD_ARGUMENTS)
    if unknown:
        raise ValueError(f"create_model_card / push_to_hub: unknown card arguments {sorted(unknown)}; "
                         f"valid: {sorted(CARD_ARGUMENTS)}")
    facts = {}
    name_or_path = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    if name_or_path and not os.path.isdir(name_or_path):
        facts["base_model"] = name_or_path
    facts.update(model_card)
    for argument, value in card_arguments.items():
        key = CARD_ARGUMENTS[argument]
        if key is None or value is None or (argument == "dataset_tags" and card_arguments.get("dataset")):
            continue
        facts[key] = [value] if isinstance(value, str) and key in ("tags", "datasets") else value
    assert set(facts) <= set(TRAINING_KEYS), sorted(set(facts) - set(TRAINING_KEYS))
    return facts


def copy_checkpoint(checkpoint: str | os.PathLike, output_dir: str | os.PathLike) -> list[str]:
    """Copy a checkpoint's publishable files (weights, shards, configs, tokenizer, card) into ``output_dir``.

    Weights in ``output_dir`` that this checkpoint does not hold (an older sharding) are removed first, so
    the folder is this checkpoint's model; optimizer, scheduler, RNG states and training_args.bin stay behind.
    Returns the copied paths.
    """
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    files = folder_files(checkpoint)
    for stale in output_dir.glob("*.safetensors*"):
        if stale.name not in files:
            stale.unlink()
    for name in files:
        (output_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkpoint / name, output_dir / name)
    return files


def start_push(folder: str | os.PathLike, repo_id: str, blocking: bool, **push_arguments) -> PushResult | Future:
    """:func:`push_folder` now (``blocking``), or in huggingface_hub's background thread: a ``Future``."""
    if blocking:
        return push_folder(folder, repo_id, **push_arguments)
    from huggingface_hub import HfApi

    return HfApi().run_as_future(push_folder, folder, repo_id, **push_arguments)
