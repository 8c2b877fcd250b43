"""The paper's language results in one command: train a tau sweep with train_clm.py, measure every model
the same way, and draw the paper's Fig. 2B, 3 and 4 in ``OUTPUT_DIR/report/`` (README.md, PNGs, report.json).

    python training_scripts/reproduce.py                  # the embedded default at tau 0, 1, 5, 10, 50: offline, CPU
    python training_scripts/reproduce.py --taus 0,5 --max_steps 400        # unknown flags go to train_clm.py
    accelerate launch --config_file training_scripts/accelerate/multi_gpu.yaml training_scripts/reproduce.py \\
        --config training_scripts/configs/gpt_neo_125m_wikipedia.yaml  # the paper's scale: trains the models, then stops
    python training_scripts/reproduce.py --config training_scripts/configs/gpt_neo_125m_wikipedia.yaml  # measures them

Every step is cached under ``OUTPUT_DIR/steps`` (:mod:`hf_toponets.training.steps`): a rerun redoes only
what changed, and an interrupted run resumes at the first unfinished step (inside a training, from its last
checkpoint when the config saves some, as the paper's does every 5,000 steps). Held-out English is BLiMP's
grammatical sentences (``--blimp-data``, default ``../shared/data/blimp`` beside the checkout) or,
without BLiMP, standard-library docstrings; text found in the training corpus is dropped.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import train_clm  # noqa: E402  (the training script beside this one: its parser, data and model are reused)

from hf_toponets.core.version import __version__  # noqa: E402
from hf_toponets.evaluation.blimp_data import PHENOMENA, load_blimp  # noqa: E402
from hf_toponets.training.data import embedded_corpus  # noqa: E402
from hf_toponets.training.held_out import blimp_sentences, docstring_paragraphs, held_out_english  # noqa: E402
from hf_toponets.training.reproduce import ReproductionSettings, run_reproduction, train_models  # noqa: E402
from hf_toponets.training.steps import StepCache  # noqa: E402

SHARED_BLIMP = HERE.parent.parent / "shared" / "data" / "blimp"
# One paradigm per phenomenon (the first of each of BLiMP's 12): 12,000 pairs per model instead of 67,000.
BLIMP_SUBSET = [uids[0] for uids in PHENOMENA.values()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Other flags are passed to train_clm.py.")
    p.add_argument("--config", default=str(train_clm.DEFAULT_CONFIG), help="train_clm.py YAML config (default: the embedded default).")
    p.add_argument("--taus", default="0,1,5,10,50", help="Comma-separated TopoLoss weights; 0 is the baseline.")
    p.add_argument("--output_dir", help="Default: outputs/reproduce (the default config) or outputs/reproduce-<config name>.")
    p.add_argument("--keeps", default="1,0.8,0.6,0.4,0.2,0.1", help="Fractions of c_fc units kept in the sweeps.")
    p.add_argument("--blimp-data", default=str(SHARED_BLIMP) if SHARED_BLIMP.is_dir() else "none",
                   help="Folder of BLiMP <UID>.jsonl files, 'hub' (nyu-mll/blimp) or 'none'.")
    p.add_argument("--all-paradigms", action="store_true", help="Score all 67 BLiMP paradigms (default: one per phenomenon, 12).")
    p.add_argument("--held-out-blocks", type=int, default=64, help="Held-out blocks (of the config's block_size) to measure on.")
    p.add_argument("--sweep-blimp", action="store_true", help="Also score BLiMP on every pruned / downsampled variant.")
    p.add_argument("--windows-sequences", type=int, default=20, help="Word sequences for the integration windows (0: none).")
    p.add_argument("--device", help="Where to measure (default: cuda when available, else cpu).")
    return p


def make_train(config: str, train_flags: list[str]):
    """``train(tau, folder) -> metrics``: train_clm.main on ``config`` + ``train_flags`` with this tau,
    continuing from the folder's last checkpoint when an earlier run was cut short (configs that save some)."""

    def train(tau: float, folder: Path) -> dict:
        argv = [config, "--resume_from_checkpoint", "true", *train_flags, "--tau", f"{tau:g}", "--output_dir", str(folder)]
        trainer = train_clm.main(argv)
        logs = trainer.state.log_history
        last = lambda key: next((h[key] for h in reversed(logs) if key in h), None)  # noqa: E731
        eval_loss = last("eval_loss")
        return {"steps": trainer.state.global_step, "train_loss": last("train_loss"), "logged_topo_loss": last("topo/loss"),
                "eval_perplexity": None if eval_loss is None else math.exp(eval_loss), "train_runtime": last("train_runtime")}

    return train


def held_out_and_blimp(args, script):
    """The held-out English and the BLiMP pairs to score (None without BLiMP)."""
    corpus = embedded_corpus() if script.dataset_name is None else None  # a Hub corpus is not checked for overlap
    limit = script.block_size * args.held_out_blocks // 2 + 1  # a document gives >= 2 tokens (itself + EOS)
    if args.blimp_data == "none":
        return held_out_english(docstring_paragraphs(), "standard-library docstrings (no BLiMP data)", corpus, limit), None
    source = None if args.blimp_data == "hub" else args.blimp_data
    pairs = load_blimp(source)  # all 67 paradigms: the held-out text covers every phenomenon
    held_out = held_out_english(blimp_sentences(pairs), f"BLiMP's grammatical sentences ({args.blimp_data})", corpus, limit)
    return held_out, pairs if args.all_paradigms else {uid: pairs[uid] for uid in BLIMP_SUBSET}


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    args, train_flags = build_parser().parse_known_args(argv)
    script, training_args, _, _ = train_clm.parse([args.config, *train_flags])  # fail early on a bad flag
    name = Path(args.config).stem
    output_dir = Path(args.output_dir or ("outputs/reproduce" if Path(args.config).resolve() == train_clm.DEFAULT_CONFIG
                                          else f"outputs/reproduce-{name}"))
    settings = ReproductionSettings(taus=[float(t) for t in args.taus.split(",")], keeps=[float(k) for k in args.keeps.split(",")],
                                    block_size=script.block_size, held_out_blocks=args.held_out_blocks,
                                    sweep_blimp=args.sweep_blimp, windows_sequences=args.windows_sequences,
                                    device=args.device or _default_device())
    train = make_train(args.config, train_flags)
    train_inputs = {"config": Path(args.config).read_text(), "train_flags": train_flags, "hf_toponets": __version__}
    if training_args.world_size > 1:  # under accelerate launch / torchrun: every rank trains, nobody measures
        cache = StepCache(output_dir / "steps", log=print, write=training_args.process_index == 0)
        train_models(train, train_inputs, settings, output_dir, cache)
        print("models trained; measure them in one process: python training_scripts/reproduce.py " + shlex.join(argv))
        return None
    held_out, blimp_pairs = held_out_and_blimp(args, script)
    command = shlex.join(["python", "training_scripts/reproduce.py", *argv])
    config = Path(args.config).resolve()
    shown = config.relative_to(HERE.parent) if config.is_relative_to(HERE.parent) else config  # repo-relative if inside
    description = {"command": command, "config": str(shown), "training flags": " ".join(train_flags) or "(none)",
                   "hf_toponets": __version__, "device": settings.device}
    return run_reproduction(train, train_inputs, settings, output_dir, held_out, blimp_pairs, description=description)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
