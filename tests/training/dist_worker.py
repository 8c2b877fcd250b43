"""One TopoTrainer SGD step under ``torchrun --nproc_per_node N`` (CPU, gloo); rank 0 saves the weights.

Usage: ``torchrun --nproc_per_node 2 tests/training/dist_worker.py OUT.safetensors {ddp|fsdp2} [GLOBAL_BATCH]``.
Run by tests/training/test_trainer_distributed.py; also a single process (plain ``python``) for the reference.

``ddp``: TopoTrainer under torchrun with ``use_cpu=True`` (accelerate's MULTI_CPU, gloo).
``fsdp2``: accelerate enables FSDP only on accelerators, so on CPU this applies torch's own
``fully_shard`` (FSDP2) to each block and the root, and drives :class:`TopoHooks` (the exact
mechanism TopoTrainer uses) by hand: a forward/backward/SGD step on sharded parameters.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/: conftest

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from test_trainer import token_dataset  # noqa: E402
from conftest import tiny_gpt_neo  # noqa: E402
from hf_toponets import TopoConfig, TopoTrainer  # noqa: E402


def fsdp2_step(out: str, global_batch: int) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from hf_toponets import resolve_targets
    from hf_toponets.core.hooks import TopoHooks

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = tiny_gpt_neo(seed=0)
    config = TopoConfig(target_modules=["c_fc"], tau=2.0)
    targets = resolve_targets(model, config)
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    hooks = TopoHooks(targets, config)
    hooks.coef, hooks.active = config.tau / len(targets), True
    data = token_dataset()  # equal token counts per row: the mean of per-rank means is the global mean
    per_rank = global_batch // world
    ids = torch.tensor(data["input_ids"][rank * per_rank : (rank + 1) * per_rank])
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()  # FSDP2 reduce-scatters (averages) the gradients, the term's included
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    full = {n: p.full_tensor() for n, p in model.named_parameters() if "c_fc" in n}
    if rank == 0:
        save_file({n: t.detach().contiguous().clone() for n, t in full.items()}, out)
        print("TOPO_LOG", float(sum(hooks.values.values())) / len(targets), loss.item(), type(model).__name__)
    dist.destroy_process_group()


def main(out: str, mode: str, global_batch: int = 8, tau: float = 2.0) -> None:
    """``mode``: ``ddp`` / ``fsdp2`` as above; ``single`` is the one-process TopoTrainer reference."""
    if mode == "fsdp2":
        return fsdp2_step(out, global_batch)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    model = tiny_gpt_neo(seed=0)
    args = TrainingArguments(
        output_dir=os.path.dirname(out) or ".", per_device_train_batch_size=global_batch // world, max_steps=1,
        learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, report_to=[],
        save_strategy="no", logging_steps=1, seed=0, use_cpu=True, disable_tqdm=True,
    )
    trainer = TopoTrainer(model=model, args=args, train_dataset=token_dataset(pad_some=mode == "ddp"),
                          topo_config=TopoConfig(target_modules=["c_fc"], tau=tau))
    trainer.train()
    state = trainer.accelerator.get_state_dict(trainer.model)  # gathers FSDP shards (collective: every rank)
    if trainer.accelerator.is_main_process:
        tensors = {k: v.detach().float().contiguous().clone() for k, v in state.items() if "c_fc" in k}
        save_file(tensors, out)
        logged = [h for h in trainer.state.log_history if "topo/loss" in h]
        print("TOPO_LOG", logged[0]["topo/loss"], logged[0]["loss"])
    if world > 1:  # tear gloo down before exit: left to interpreter shutdown, a rank can abort (SIGABRT)
        trainer.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
