"""A saved model folder: what it says about itself (checked), and writing its model card.

:func:`read_model_folder` gathers the inputs a folder holds (``config.json`` with its ``topo`` entry,
``blimp_results.json``, ``metrics.json``, ``windows.json``, ``trainer_state.json``, a previously generated card);
:func:`write_model_card` renders them with :func:`hf_toponets.hub.cards.render_card` and writes
``README.md`` atomically.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from ..core.config import CONFIG_KEY, TopoConfig
from ..core.files import write_text_atomic
from .cards import MARKER, RESULT_KEYS, SOURCE_KEY, TRAINING_KEYS, check_keys, check_results, check_windows, render_card
from .loading import model_task


def is_generated_card(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is a card written by :func:`write_model_card` (it carries :data:`MARKER`)."""
    path = Path(path)
    return path.is_file() and MARKER in path.read_text(encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


BLIMP_LOG_PREFIXES = ("eval_blimp_", "blimp/", "eval_blimp/")  # TopoTrainer's names, then older ones


def last_eval_loss(log_history: list[dict]) -> float | None:
    """The last held-out loss of a Trainer log: ``eval_loss``, or with several eval datasets the first one's
    ``eval_<name>_loss`` (the first such key logged)."""
    key = "eval_loss"
    if not any(key in entry for entry in log_history):
        names = [k for entry in log_history for k in entry if k.startswith("eval_") and k.endswith("_loss")]
        key = names[0] if names else key
    losses = [entry[key] for entry in log_history if key in entry]
    return losses[-1] if losses else None


def _from_trainer_state(state: dict, task: str) -> tuple[dict, dict]:
    """``trainer_state.json`` -> (training, results): steps, tokens, BLiMP entries and the last evaluation:
    ``exp(eval loss)`` of a language model (``task`` text-generation), ``eval_accuracy`` of an image classifier."""
    training, results = {}, {}
    if state.get("global_step"):
        training["max_steps"] = int(state["global_step"])
    if state.get("num_input_tokens_seen"):
        training["tokens_seen"] = int(state["num_input_tokens_seen"])
    log_history = state.get("log_history") or []
    loss = last_eval_loss(log_history)
    if loss is not None and task == "text-generation":
        results["perplexity"] = math.exp(loss)
    for entry in log_history:
        if "eval_accuracy" in entry and task == "image-classification":
            results["accuracy"] = entry["eval_accuracy"]
        scores = {k[len(p):]: v for k, v in entry.items() for p in BLIMP_LOG_PREFIXES if k.startswith(p)}
        if "overall" in scores:  # logged as eval_blimp_overall and eval_blimp_<phenomenon>
            results["blimp"] = {"overall": scores.pop("overall"), "phenomena": scores}
    return training, results


def read_model_folder(folder: str | os.PathLike) -> dict:
    """What a saved model folder says about itself, checked: ``{config, model_id, training, results}``.

    ``config``: config.json; ``model_id``: from a previous generated card; ``training``: from that card, then
    trainer_state.json;
    ``results``: from trainer_state.json, then blimp_results.json, metrics.json and windows.json (later sources win).
    Raises ``ValueError`` for a folder without config.json or a results file that does not fit the model.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a saved model folder: it has no config.json (save it with save_pretrained)")
    config = _read_json(folder / "config.json")
    training, results, previous = {}, {}, {}
    if is_generated_card(folder / "README.md"):
        previous = ModelCard.load(folder / "README.md").data.to_dict().get("hf_toponets") or {}
        training.update(previous.get("training") or {})
    if (folder / "trainer_state.json").is_file():
        state_training, results = _from_trainer_state(_read_json(folder / "trainer_state.json"), model_task(config))
        training.update(state_training)
    for key, name in (("blimp", "blimp_results.json"), ("metrics", "metrics.json"), ("windows", "windows.json")):
        if (folder / name).is_file():
            results[key] = _read_json(folder / name)
    if CONFIG_KEY in config:
        topo = TopoConfig.from_dict(config[CONFIG_KEY])
        check_results(topo, results.get("blimp"), results.get("metrics"), source=str(folder))
        check_windows(topo, results.get("windows"), source=str(folder))
    for key, name in (("metrics", "metrics.json"), ("windows", "windows.json")):
        shown = results.get(key) or {}
        for path in [*(shown.get("maps") or {}).values(), *([shown["curves"]] if shown.get("curves") else [])]:
            if not (folder / path).is_file():
                raise ValueError(f"{folder / name} shows the map {path}, which is not in {folder}")
    return {"config": config, "model_id": previous.get("model_id"), "training": training, "results": results}


def write_model_card(folder: str | os.PathLike, training: dict | None = None, results: dict | None = None,
                     model_id: str | None = None, output: str | os.PathLike | None = None) -> Path:
    """Render the card of the TopoNet saved in ``folder`` and write it atomically; return its path.

    Inputs come from :func:`read_model_folder`; ``training`` (keys of :data:`TRAINING_KEYS`) and ``results``
    (keys of :data:`RESULT_KEYS`) given here win over what the folder holds. ``output``: where to write
    (default ``folder/README.md``; e.g. ``model_cards/<name>.md`` for the committed example).
    """
    folder = Path(folder)
    output = Path(output) if output is not None else folder / "README.md"
    training = check_keys(training, TRAINING_KEYS, "write_model_card training")
    results = check_keys(results, RESULT_KEYS, "write_model_card results")
    found = read_model_folder(folder)
    config = found["config"]
    if CONFIG_KEY not in config:
        raise ValueError(f"{folder}/config.json has no '{CONFIG_KEY}' entry: not a TopoNet, so no TopoNet card "
                         "(save it with attach_topo_config, or publish it as a plain model)")
    results = {**found["results"], **results}
    card = render_card(config[CONFIG_KEY], config.get("model_type", "unknown"), model_id=model_id or found["model_id"],
                       training={**found["training"], **training}, task=model_task(config),
                       source=config.get(SOURCE_KEY), **results)
    return write_text_atomic(output, str(card))
