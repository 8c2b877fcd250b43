"""One TopoTrainer SGD step under ``torchrun --nproc_per_node N`` (CPU, gloo); rank 0 saves the weights.

Then BLiMP across the ranks, against one process on the same weights: rank 0 writes ``OUT.blimp.json``
``{"ranks": ..., "one": ...}`` (per-pair results), and each rank ``OUT.rank<r>.json`` (how often it loaded BLiMP).

Usage: ``torchrun --nproc_per_node 2 tests/training/dist_worker.py OUT.safetensors {ddp|ddp_ga|fsdp2} [GLOBAL_BATCH]``.
Run by tests/training/test_trainer_distributed.py; also a single process (plain ``python``) for the reference.
The workers import the checkout this file belongs to (asserted), not an installed ``hf_toponets``.

``ddp``: TopoTrainer under torchrun with ``use_cpu=True`` (accelerate's MULTI_CPU, gloo); ``ddp_ga``: the
same global batch in two accumulation micro-steps per rank.
``fsdp2``: accelerate enables FSDP only on accelerators, so on CPU this applies torch's own
``fully_shard`` (FSDP2) to each block and the root of TopoTrainer's model and runs TopoTrainer's own
``training_step`` (its ``compute_loss`` arms the hooks with the trainer's coefficient) on the sharded
parameters, then an SGD step.
"""

import json
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
CHECKOUT = TESTS.parent
sys.path[:0] = [str(CHECKOUT), str(TESTS)]  # this checkout's hf_toponets; tests/ for conftest

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

import hf_toponets  # noqa: E402
import hf_toponets.training.mixin as mixin  # noqa: E402
from test_trainer import token_dataset  # noqa: E402
from conftest import end_worker, tiny_gpt_neo  # noqa: E402
from hf_toponets import TopoConfig, TopoTrainer, evaluate_blimp  # noqa: E402
from hf_toponets.training.data import embedded_corpus, train_tokenizer  # noqa: E402

assert Path(hf_toponets.__file__).resolve().is_relative_to(CHECKOUT), f"imported {hf_toponets.__file__}, not {CHECKOUT}"


VOCAB = 300  # the BPE below; training tokens stay below 128
SUBJECTS = ["The cat", "A dog", "The old man", "Every teacher", "Sarah", "The children", "A bird", "My friend"]
BLIMP_UIDS = ["regular_plural_subject_verb_agreement_1", "anaphor_gender_agreement"]
BLIMP_BATCH = 2  # sequences per forward: many batches, so that both ranks score some


def write_blimp(out: str) -> Path:
    """Two paradigms of 8 minimal pairs each, in a folder of this rank's (ranks writing one file would race)."""
    folder = Path(out).parent / f"blimp-rank{os.environ.get('RANK', '0')}"
    folder.mkdir(parents=True, exist_ok=True)
    for k, uid in enumerate(BLIMP_UIDS):
        rows = [{"sentence_good": f"{s} {'sleeps' if k == 0 else 'left'}.", "sentence_bad": f"{s} {'sleep' if k == 0 else 'leave'}.",
                 "UID": uid, "pairID": str(i)} for i, s in enumerate(SUBJECTS)]
        (folder / f"{uid}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def trainer_for(out: str, per_device: int, accumulation: int, tau: float, padded: bool, blimp: bool = False) -> TopoTrainer:
    args = TrainingArguments(
        output_dir=os.path.dirname(out) or ".", per_device_train_batch_size=per_device, max_steps=1,
        gradient_accumulation_steps=accumulation, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
        max_grad_norm=0.0, report_to=[], save_strategy="no", logging_steps=1, seed=0, use_cpu=True, disable_tqdm=True,
        per_device_eval_batch_size=BLIMP_BATCH // 2,
    )
    tokenizer = train_tokenizer(embedded_corpus()[:20], vocab_size=VOCAB)  # deterministic: the same on every rank
    blimp_data = str(write_blimp(out)) if blimp else None
    return TopoTrainer(model=tiny_gpt_neo(seed=0, vocab=VOCAB), args=args, train_dataset=token_dataset(pad_some=padded),
                       processing_class=tokenizer, blimp_data=blimp_data, blimp_paradigms=BLIMP_UIDS,
                       topo_config=TopoConfig(target_modules=["c_fc"], tau=tau))


def blimp_across_ranks_and_on_one(out: str, model, tokenizer, full_state: dict, rank: int) -> None:
    """BLiMP with ``across_ranks`` (collective), then on rank 0 alone on a plain copy of the same weights."""
    import hf_toponets.evaluation.blimp as blimp

    folder = write_blimp(out)
    scored, real_score = [], blimp.score_sequences
    blimp.score_sequences = lambda model, seqs, *a, **k: scored.append(len(seqs)) or real_score(model, seqs, *a, **k)
    ranks = evaluate_blimp(model, tokenizer, folder, BLIMP_UIDS, batch_size=BLIMP_BATCH, per_pair=True,
                           progress=False, across_ranks=True)
    blimp.score_sequences = real_score
    Path(f"{out}.scored{rank}.json").write_text(json.dumps(scored))  # the sequences this rank scored
    if rank == 0:
        plain = tiny_gpt_neo(seed=1, vocab=VOCAB)
        plain.load_state_dict(full_state)
        one = evaluate_blimp(plain, tokenizer, folder, BLIMP_UIDS, batch_size=BLIMP_BATCH, per_pair=True, progress=False)
        Path(out + ".blimp.json").write_text(json.dumps({"ranks": ranks, "one": one}))


def fsdp2_step(out: str, global_batch: int, tau: float) -> None:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    trainer = trainer_for(out, global_batch // world, 1, tau, padded=False)  # initialises the gloo group
    model = trainer.model
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    trainer.current_gradient_accumulation_steps = 1  # what train() sets before each step
    data = token_dataset()  # equal token counts per row: the mean of per-rank means is the global mean
    per_rank = global_batch // world
    ids = torch.tensor(data["input_ids"][rank * per_rank : (rank + 1) * per_rank])
    loss = trainer.training_step(model, {"input_ids": ids, "labels": ids})  # FSDP2 averages the gradients
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    full = {n: (t.full_tensor() if isinstance(t, DTensor) else t).detach().clone()  # collective
            for n, t in model.state_dict().items()}
    if rank == 0:
        save_file({n: t.contiguous() for n, t in full.items() if "c_fc" in n}, out)
        print("TOPO_LOG", trainer._topo_count, loss.item(), type(model).__name__)
    blimp_across_ranks_and_on_one(out, model, trainer.processing_class, full, rank)  # on the sharded model


def main(out: str, mode: str, global_batch: int = 8, tau: float = 2.0) -> None:
    """``mode``: ``ddp`` / ``ddp_ga`` / ``fsdp2`` as above; ``single`` is the one-process TopoTrainer reference."""
    if mode == "fsdp2":
        return fsdp2_step(out, global_batch, tau)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = 2 if mode == "ddp_ga" else 1
    loads = []
    real_load = mixin.load_blimp
    mixin.load_blimp = lambda *a, **k: loads.append(1) or real_load(*a, **k)  # counts this rank's loads
    trainer = trainer_for(out, global_batch // world // accumulation, accumulation, tau, padded=mode != "single_even",
                          blimp=world > 1)
    trainer.train()
    state = trainer.accelerator.get_state_dict(trainer.model)  # gathers FSDP shards (collective: every rank)
    if trainer.accelerator.is_main_process:
        tensors = {k: v.detach().float().contiguous().clone() for k, v in state.items() if "c_fc" in k}
        save_file(tensors, out)
        logged = [h for h in trainer.state.log_history if "topo/loss" in h]
        print("TOPO_LOG", logged[0]["topo/loss"], logged[0]["loss"])
    if world > 1:  # BLiMP through TopoTrainer.evaluate (sharded), then directly, against one process
        metrics = trainer.evaluate()
        Path(f"{out}.rank{trainer.args.process_index}.json").write_text(json.dumps({"loads": len(loads), "metrics": metrics}))
        blimp_across_ranks_and_on_one(out, trainer.model, trainer.processing_class, trainer.model.state_dict(),
                                      trainer.args.process_index)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
    end_worker()
