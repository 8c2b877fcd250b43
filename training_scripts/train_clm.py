"""Train (or fine-tune) a causal-LM TopoNet with TopoTrainer.

    python training_scripts/train_clm.py                        # the embedded default: offline, CPU, minutes
    python training_scripts/train_clm.py CONFIG.yaml [--flag value ...]   # a shipped config, with overrides
    accelerate launch --config_file training_scripts/accelerate/multi_gpu.yaml \\
        training_scripts/train_clm.py training_scripts/configs/gpt_neo_125m_wikipedia.yaml --tau 5

Arguments are four dataclasses parsed by ``HfArgumentParser``: :class:`ScriptArguments` (data and
model), ``transformers.TrainingArguments``, :class:`hf_toponets.TopoConfig` and :class:`LoraArguments`
(``--use_peft``: LoRA fine-tuning, TRL's ``ModelConfig`` names). A YAML file given
first supplies values; flags after it override them. Without a YAML file,
``configs/default.yaml`` supplies them: a small GPT-Neo on CPython's help topics, with a tokenizer trained
on them, written to ``outputs/toponet-default`` with its ``topo`` metadata and model card.

Data: ``--dataset_name`` (a Hub dataset) or ``--data_files`` (local or remote parquet / json / text
shards, e.g. ``"shards/*.parquet"`` or ``hf://datasets/USER/NAME/data/*.parquet``), streamed with
``--streaming true``; tokenisation and packing run on the main process first (``main_process_first``),
so the other ranks read its cache.

Resume: ``--resume_from_checkpoint PATH`` continues from that checkpoint; ``--resume_from_checkpoint true``
from the last ``checkpoint-*`` in ``output_dir``, or from scratch when there is none, so a preempted job
restarted with the same command continues where its last save left it (weights, optimizer, scheduler,
tau schedule, RNG and data order).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from hf_toponets import TopoConfig, TopoTrainer
from hf_toponets.training.arguments import parse_args
from hf_toponets.training.data import embedded_corpus, pack_dataset, train_tokenizer

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "default.yaml"
logger = logging.getLogger("train_clm")

# Named architectures: the paper's two language models and the embedded default's small one.
ARCHITECTURES = {
    "gpt-neo-125m": ("gpt_neo", dict(hidden_size=768, num_layers=12, num_heads=12, max_position_embeddings=2048,
                                     attention_types=[[["global", "local"], 6]], window_size=256)),
    "nanogpt-124m": ("gpt2", dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024)),
    "tiny-gpt-neo": ("gpt_neo", dict(hidden_size=128, num_layers=4, num_heads=4, max_position_embeddings=256,
                                     attention_types=[[["global", "local"], 2]], window_size=64)),
}


@dataclass
class ScriptArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id; None: the embedded corpus (offline)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Dataset config, e.g. '20231101.en'."})
    data_files: list[str] | None = field(
        default=None, metadata={"help": "Parquet/json/jsonl/txt/csv shards (paths, globs, hf:// or https URLs); "
                                        "they replace dataset_name."})
    text_column: str = field(default="text", metadata={"help": "Column holding the raw text."})
    streaming: bool = field(default=False, metadata={"help": "Stream the dataset (needs max_steps)."})
    eval_blocks: int = field(default=64, metadata={"help": "Held-out blocks for eval_loss / perplexity."})
    block_size: int = field(default=128, metadata={"help": "Tokens per packed training sequence."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer id/path; None: train BPE on the embedded corpus."})
    tokenizer_vocab_size: int = field(default=2048, metadata={"help": "Vocabulary of the BPE trained when tokenizer_name is None."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Pretrained weights to fine-tune; None: train from scratch."})
    architecture: str = field(default="tiny-gpt-neo", metadata={"help": f"From scratch: one of {sorted(ARCHITECTURES)}."})
    config_overrides: str | None = field(
        default=None, metadata={"help": 'From scratch: JSON of config values replacing the architecture\'s, e.g. \'{"n_layer": 2}\'.'})
    blimp_data: str | None = field(default=None, metadata={"help": "BLiMP jsonl folder (or 'hub') to score at each evaluation."})
    blimp_paradigms: list[str] | None = field(default=None, metadata={"help": "BLiMP subset; None: all 67."})
    license: str | None = field(default=None, metadata={"help": "License for the model card."})


@dataclass
class LoraArguments:
    """LoRA fine-tuning with TRL's ``ModelConfig`` names: the adapters train, TopoLoss acts on ``W + s B A``."""

    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters (PEFT) instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank r."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Layers given adapters; None: the topographic layers and their gates."})
    lora_modules_to_save: list[str] | None = field(default=None, metadata={"help": "Layers trained in full besides."})
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilised scaling alpha / sqrt(r)."})
    use_dora: bool = field(default=False, metadata={"help": "DoRA: magnitude and direction (TopoLoss on m V / |V|)."})


def build_peft_model(model, lora: LoraArguments, topo: TopoConfig):
    """``get_peft_model`` with adapters on ``lora_target_modules``, by default on every topographic layer."""
    from peft import LoraConfig, get_peft_model

    from hf_toponets.core.targets import with_family_defaults

    targets = lora.lora_target_modules
    if targets is None:  # adapters where the TopoLoss acts: a frozen target would take no topographic step
        filled = with_family_defaults(model, topo)
        targets = filled.target_modules
        if not isinstance(targets, str):
            targets = [*targets, *(v for v in (filled.shared_sheets or {}).values() if v not in targets)]
    config = LoraConfig(task_type="CAUSAL_LM", r=lora.lora_r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout,
                        target_modules=targets, modules_to_save=lora.lora_modules_to_save, use_rslora=lora.use_rslora,
                        use_dora=lora.use_dora, bias="none")
    return get_peft_model(model, config)


def parse(argv: list[str]):
    """A YAML file first, then flags that override it; without a YAML file, the embedded default's."""
    return parse_args((ScriptArguments, TrainingArguments, TopoConfig, LoraArguments), argv, DEFAULT_CONFIG)


def build_tokenizer(script: ScriptArguments):
    if script.tokenizer_name:
        tok = AutoTokenizer.from_pretrained(script.tokenizer_name)
    else:
        tok = train_tokenizer(embedded_corpus(), script.tokenizer_vocab_size)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_datasets(script: ScriptArguments, tokenizer):
    """(train, eval) packed datasets; eval = the first ``eval_blocks`` blocks, kept out of training."""
    from datasets import Dataset, load_dataset

    if script.data_files:
        raw = load_dataset(file_format(script.data_files), data_files=script.data_files, split="train",
                           streaming=script.streaming)
    elif script.dataset_name is not None:
        raw = load_dataset(script.dataset_name, script.dataset_config, split="train", streaming=script.streaming)
    else:
        raw = Dataset.from_dict({"text": embedded_corpus()})
    blocks = pack_dataset(raw, tokenizer, script.block_size, script.text_column)
    if script.streaming:
        return blocks.skip(script.eval_blocks), Dataset.from_list(list(blocks.take(script.eval_blocks)))
    if len(blocks) <= script.eval_blocks:
        raise ValueError(f"eval_blocks={script.eval_blocks} leaves no training data ({len(blocks)} blocks)")
    blocks = blocks.shuffle(seed=0)  # held-out blocks drawn from the whole corpus
    return blocks.select(range(script.eval_blocks, len(blocks))), blocks.select(range(script.eval_blocks))


FILE_FORMATS = {"parquet": "parquet", "json": "json", "jsonl": "json", "txt": "text", "text": "text", "csv": "csv"}


def file_format(data_files: list[str]) -> str:
    """The ``datasets`` builder of the shards, from their extension (one format for all)."""
    suffixes = {Path(f.split("?")[0]).suffix.lstrip(".").lower() for f in data_files}
    formats = {FILE_FORMATS.get(s) for s in suffixes}
    if len(formats) != 1 or None in formats:
        raise ValueError(f"data_files: give shards of one format among {sorted(FILE_FORMATS)} (by extension); "
                         f"got extensions {sorted(suffixes)}")
    return formats.pop()


def resume_checkpoint(value: str | None, output_dir: str) -> str | None:
    """``--resume_from_checkpoint``: a path as given; ``true``: the last checkpoint in ``output_dir`` (None if none)."""
    if value is None or value.lower() == "false":
        return None
    if value.lower() != "true":
        return value
    last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    logger.info("resuming from %s", last) if last else logger.info("no checkpoint in %s: training from scratch", output_dir)
    return last


def build_model(script: ScriptArguments, tokenizer):
    if script.model_name_or_path:
        return AutoModelForCausalLM.from_pretrained(script.model_name_or_path, use_safetensors=True)
    if script.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {script.architecture!r}")
    model_type, kwargs = ARCHITECTURES[script.architecture]
    if script.config_overrides:
        overrides = json.loads(script.config_overrides)
        if not isinstance(overrides, dict):
            raise ValueError(f"config_overrides must be a JSON object, got {script.config_overrides!r}")
        kwargs = {**kwargs, **overrides}
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, **kwargs)
    return AutoModelForCausalLM.from_config(config)


def main(argv: list[str] | None = None, callbacks: list | None = None) -> TopoTrainer:
    """Parse ``argv`` (default ``sys.argv[1:]``), train, evaluate and save; ``callbacks``: extra TrainerCallbacks."""
    script, args, topo, lora = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tokenizer = build_tokenizer(script)
    with args.main_process_first(desc="tokenize and pack"):  # the other ranks read the main process's cache
        train, held_out = build_datasets(script, tokenizer)
    set_seed(args.seed)  # the Trainer seeds only after the model exists: seed its initialisation too
    model = build_model(script, tokenizer)
    if lora.use_peft:
        model = build_peft_model(model, lora, topo)
    card = {"datasets": list(script.data_files) if script.data_files else
            [script.dataset_name or "pydoc_data.topics (CPython help topics)"]}
    if script.model_name_or_path:
        card["base_model"] = script.model_name_or_path
    if script.license:
        card["license"] = script.license
    trainer = TopoTrainer(model=model, args=args, train_dataset=train, eval_dataset=held_out, processing_class=tokenizer,
                          topo_config=topo, blimp_data=script.blimp_data, blimp_paradigms=script.blimp_paradigms,
                          model_card=card, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=resume_checkpoint(args.resume_from_checkpoint, args.output_dir))
    metrics = trainer.evaluate()
    trainer.save_model()
    if lora.use_peft and trainer.is_world_process_zero():  # the adapter in output_dir, the merged TopoNet beside it
        merged_dir = Path(args.output_dir) / "merged"
        trainer.model.merge_and_unload().save_pretrained(merged_dir)  # config.json keeps the 'topo' entry
        tokenizer.save_pretrained(merged_dir)
        print(f"\nLoRA adapter saved to {Path(args.output_dir).resolve()} (topo_config.json beside adapter_config.json)")
    if trainer.is_world_process_zero():
        topo_logs = [h["topo/loss"] for h in trainer.state.log_history if "topo/loss" in h]
        saved = Path(args.output_dir) / ("merged" if lora.use_peft else "")
        print(f"\nTopoNet saved to {saved.resolve()} (config.json carries its 'topo' entry)")
        if topo_logs:
            print(f"topo/loss: {topo_logs[0]:.4f} at the first log -> {topo_logs[-1]:.4f} at the last (tau={topo.tau})")
        if "eval_loss" in metrics:
            print(f"held-out perplexity: {math.exp(metrics['eval_loss']):.2f} over {len(held_out)} blocks")
    return trainer


if __name__ == "__main__":
    main()
