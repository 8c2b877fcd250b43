"""The paper's language results at any scale: a tau sweep of identically trained models, each measured
the same way, drawn as the paper's Fig. 2B, 3 and 4 (:mod:`hf_toponets.analysis.reproduction`).

Under ``output_dir`` (every step cached by :class:`~hf_toponets.training.steps.StepCache` in ``steps/``)::

    models/tau<tau>/      train: the caller's ``train(tau, folder)`` (same seed, data and steps for every tau)
    steps/evaluate_tau<tau>.json   held-out perplexity (English the models never saw) and BLiMP
    analysis/tau<tau>/    analyze: smoothness (weights, activations) and effective dimensionality per layer, maps;
                          windows: integration windows (word swaps, eq. 3 fit), windows.json and maps (Fig. 5B)
    steps/sweep_tau<tau>.json      L1 pruning, shrink and reconstruct at each fraction of c_fc kept
    report/               README.md, fig2b/fig3/fig4 PNGs, report.json (redrawn when any number changed)

A step's key covers its inputs: the training inputs and tau for ``train``; the model's weights (a
digest of its safetensors), the held-out token ids and the measurement settings for the others. Changing, e.g., ``keeps`` redoes
only the sweeps; a new tau trains and measures only that model.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..analysis.reproduction import write_report
from ..core.loss import topo_loss
from ..core.metadata import read_topo_config
from ..analysis.report import analyze
from ..analysis.sweep import check_keeps, make_evaluate, sweep_model
from ..analysis.window_report import write_windows
from ..analysis.windows import integration_windows
from ..analysis.word_swap import sentence_sequences, split_sentences
from ..evaluation.blimp import evaluate_blimp
from ..evaluation.blimp_data import BlimpPair
from ..evaluation.perplexity import perplexity
from ..hub.loading import load_pretrained
from .held_out import HeldOutText, held_out_blocks, tensor_digest
from .steps import StepCache, step_key

TrainFn = Callable[[float, Path], dict]  # (tau, output folder) -> JSON-ready training metrics; saves model + tokenizer


@dataclass
class ReproductionSettings:
    """How the models are measured (training is the caller's ``train``)."""

    taus: list[float] = field(default_factory=lambda: [0.0, 1.0, 5.0, 10.0, 50.0],
                              metadata={"help": "TopoLoss weights to train; 0 is the baseline (black in the figures)."})
    keeps: list[float] = field(default_factory=lambda: [1.0, 0.8, 0.6, 0.4, 0.2, 0.1],
                               metadata={"help": "Fractions of c_fc units kept in the pruning / downsampling sweeps."})
    block_size: int = field(default=128, metadata={"help": "Tokens per held-out block (the training block size)."})
    held_out_blocks: int = field(default=64, metadata={"help": "Held-out blocks for perplexity and activations."})
    batch_size: int = field(default=8, metadata={"help": "Blocks per forward pass."})
    blimp_batch_size: int = field(default=64, metadata={"help": "Sentences per forward pass in BLiMP."})
    sweep_blimp: bool = field(default=False, metadata={"help": "Also score BLiMP on every swept variant (slow)."})
    windows_sequences: int = field(default=20, metadata={"help": "Word sequences for the integration windows; 0: none."})
    windows_max_delta: int = field(default=20, metadata={"help": "Largest swap distance (words) of the windows."})
    device: str = field(default="cpu", metadata={"help": "Where the measurements run (e.g. cuda)."})

    def __post_init__(self):
        taus = [float(t) for t in self.taus]
        if not taus or any(not t >= 0 for t in taus) or len(set(taus)) != len(taus):
            raise ValueError(f"ReproductionSettings: taus must be distinct numbers >= 0, got {self.taus!r}")
        self.taus, self.keeps = sorted(taus), check_keeps(self.keeps)
        for name in ("block_size", "held_out_blocks", "batch_size", "windows_sequences", "windows_max_delta"):
            value, low = getattr(self, name), 0 if name == "windows_sequences" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"ReproductionSettings: {name} must be an int >= {low}, got {value!r}")


def tau_name(tau: float) -> str:
    """``5.0 -> "tau5"``, ``0.5 -> "tau0.5"``: folder and step names."""
    return f"tau{tau:g}"


def claim_folder(folder: Path, key: str) -> None:
    """Make ``folder`` hold checkpoints of the training ``key`` only: ``checkpoint-*`` folders that another
    training left are removed, so that resuming (train_clm's ``--resume_from_checkpoint true``) continues
    this training's interrupted run, never another configuration's."""
    marker = folder / "reproduce_key.txt"
    if folder.is_dir() and not (marker.is_file() and marker.read_text() == key):
        for checkpoint in folder.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(key)


def train_models(train: TrainFn, train_inputs, settings: ReproductionSettings, output_dir: Path, cache: StepCache) -> dict:
    """``{tau: {"folder", "train": metrics}}``, training the taus whose step is not done (in ``models/tau<tau>``,
    claimed by :func:`claim_folder` unless ``cache`` is read-only: the other ranks of a distributed run)."""
    models = {}
    for tau in settings.taus:
        folder = output_dir / "models" / tau_name(tau)
        inputs = {"train": train_inputs, "tau": tau}

        def run(t=tau, f=folder, key=step_key(inputs)):
            if cache.write:
                claim_folder(f, key)
            return train(t, f)

        metrics = cache.run(f"train_{tau_name(tau)}", inputs, run, outputs=[folder / "config.json"])
        models[tau] = {"folder": str(folder), "train": metrics}
    return models


def model_digest(folder: str | os.PathLike) -> str:
    """SHA-256 over the folder's ``*.safetensors`` files: the measured steps are keyed on the weights themselves."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")):
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def shared_tokenizer(models: Mapping[float, dict]):
    """The models' tokenizer; ``ValueError`` when their vocabularies differ (the text would differ too)."""
    from transformers import AutoTokenizer

    tokenizers = {tau: AutoTokenizer.from_pretrained(m["folder"]) for tau, m in models.items()}
    first, *others = tokenizers
    differ = [tau for tau in others if tokenizers[tau].get_vocab() != tokenizers[first].get_vocab()]
    if differ:
        raise ValueError(f"the models at tau {differ} have another tokenizer than tau {first}: train them on one tokenizer")
    return tokenizers[first]


def evaluate_model(model, tokenizer, ids, blimp_pairs, settings: ReproductionSettings) -> dict:
    """``{"perplexity": on the held-out blocks, "topo_loss": mean TopoLoss of the final weights (None without a
    ``topo`` entry), "blimp": evaluate_blimp's result or None}``."""
    topo = read_topo_config(model)
    out = {"perplexity": perplexity(model, ids, settings.batch_size), "topo_loss": None, "blimp": None}
    if topo is not None:
        with torch.no_grad():
            out["topo_loss"] = float(topo_loss(model, topo))
    if blimp_pairs is not None:
        out["blimp"] = evaluate_blimp(model, tokenizer, blimp_pairs, batch_size=settings.blimp_batch_size, progress=False)
    return out


def measure_windows(model, tokenizer, sentences: list[str], settings: ReproductionSettings, folder: Path) -> dict:
    """Integration windows of the topographic layers (``windows.json`` and maps under ``folder``); returns
    their per-layer summary: medians over units of a, b, c, R^2 and yoking, and the maps' smoothness."""
    sequences = sentence_sequences(sentences, 8, 5, settings.windows_sequences, seed=0)
    windows = integration_windows(model, tokenizer, sequences, None, settings.windows_max_delta, 8, progress=False)
    written = write_windows(windows, folder, len(sequences))
    layers = {}
    for name, w in windows.items():
        medians = {key: float(getattr(w, key).nanmedian()) for key in ("a", "b", "c", "r2", "yoking")}
        layers[name] = {"median": {k: None if math.isnan(v) else v for k, v in medians.items()},
                        "smoothness": written["layers"][name]["smoothness"], "n_excluded": int(w.excluded.sum())}
    return {"layers": layers, "maps": written["maps"], "n_sequences": len(sequences)}


def measure_model(model_info: dict, tau: float, ids, blimp_pairs, tokenizer, settings: ReproductionSettings,
                  output_dir: Path, cache: StepCache, common: dict, sentences: list[str]) -> dict:
    """evaluate, analyze, sweep and (``windows_sequences`` > 0) windows of one model, each a cached
    step; the model is loaded only if a step needs it."""
    name = tau_name(tau)
    loaded = {}

    def model():
        if "model" not in loaded:
            loaded["model"] = load_pretrained(model_info["folder"], device=settings.device)
        return loaded["model"]

    analysis_dir = output_dir / "analysis" / name
    sweep_evaluate = make_evaluate(tokenizer, ids, blimp_pairs if settings.sweep_blimp else None, settings.batch_size)
    base = {"model": model_digest(model_info["folder"]), **common}
    result = {
        "evaluate": cache.run(f"evaluate_{name}", {**base, "step": "evaluate"},
                              lambda: evaluate_model(model(), tokenizer, ids, blimp_pairs, settings)),
        "analysis": cache.run(f"analyze_{name}", {**base, "step": "analyze"},
                              lambda: analyze(model(), analysis_dir, None, ids, settings.batch_size, progress=False),
                              outputs=[analysis_dir / "metrics.json"]),
        "sweep": cache.run(f"sweep_{name}", {**base, "step": "sweep", "keeps": settings.keeps,
                                             "sweep_blimp": settings.sweep_blimp},
                           lambda: sweep_model(model(), settings.keeps, sweep_evaluate)),
    }
    if settings.windows_sequences:  # the paper's Fig. 5B: integration windows by word swaps (sentences of 8 words)
        text = {"sentences": step_key(sentences), "sequences": settings.windows_sequences,
                "max_delta": settings.windows_max_delta}
        result["windows"] = cache.run(
            f"windows_{name}", {**base, "step": "windows", **text},
            lambda: measure_windows(model(), tokenizer, sentences, settings, analysis_dir),
            outputs=[analysis_dir / "windows.json"])
    # Selectivity (issue 13's verb) is measured on images: it has no place in this language report.
    result["analysis"]["folder"] = os.path.relpath(analysis_dir, output_dir)
    return result


def run_reproduction(train: TrainFn, train_inputs, settings: ReproductionSettings, output_dir: str | os.PathLike,
                     held_out: HeldOutText, blimp_pairs: Mapping[str, Sequence[BlimpPair]] | None = None,
                     log: Callable[[str], None] = print, description: Mapping | None = None) -> dict:
    """Train ``settings.taus`` with ``train`` (its JSON-ready ``train_inputs`` key the cache), measure
    each model on ``held_out`` and BLiMP (``blimp_pairs`` from :func:`~hf_toponets.evaluation.blimp_data.load_blimp`,
    None: skipped), and write ``output_dir/report``. Returns the report (``report/report.json``).
    ``description``: what the run was (command, config), shown in the report."""
    output_dir = Path(output_dir)
    per_model = 5 if settings.windows_sequences else 4
    cache = StepCache(output_dir / "steps", total=per_model * len(settings.taus) + 1, log=log)
    models = train_models(train, train_inputs, settings, output_dir, cache)
    tokenizer = shared_tokenizer(models)
    ids, n_documents = held_out_blocks(tokenizer, held_out.documents, settings.block_size, settings.held_out_blocks)
    sentences = [s for doc in held_out.documents for s in split_sentences(doc)]  # for the windows' word sequences
    blimp_key = None if blimp_pairs is None else step_key({uid: [list(p) for p in blimp_pairs[uid]]
                                                            for uid in sorted(blimp_pairs)})
    common = {"held_out": tensor_digest(ids), "blimp": blimp_key, "batch_size": settings.batch_size}
    for tau, info in models.items():
        info.update(measure_model(info, tau, ids, blimp_pairs, tokenizer, settings, output_dir, cache, common, sentences))
        info["folder"] = os.path.relpath(info.pop("folder"), output_dir)
    report_dir = output_dir / "report"
    run = {
        "description": dict(description or {}),
        "settings": asdict(settings),
        "held_out": {"source": held_out.source, "documents": n_documents, "dropped_as_seen": held_out.dropped,
                     "blocks": int(ids.shape[0]), "block_size": int(ids.shape[1]), "tokens": int(ids.numel())},
        "blimp_paradigms": sorted(blimp_pairs) if blimp_pairs is not None else [],
        "steps": {name: {"seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"]} for name, r in cache.records.items()},
    }
    report = cache.run("report", {"models": models, "run": run}, lambda: write_report(models, run, report_dir),
                       outputs=[report_dir / "report.json", report_dir / "README.md"])
    log(f"wrote {output_dir / 'report' / 'README.md'} and its figures")
    return report
