"""Step time of TopoTrainer vs a plain Trainer on GPT-Neo-125M, same model, data and optimizer, one run.

Run: ``python benchmarks/bench_trainer.py [--batch 8] [--seq 512] [--reps 5]``. Each rep runs one
training step (forward, backward, AdamW step) of each trainer, alternating, on the same batch of
random tokens. Both trainers drive the SAME model object (TopoTrainer's hooks do nothing outside
its own steps), so memory layout and cache state do not favour either; each has its own AdamW.
Prints the medians, TopoTrainer's overhead and the topographic term's own cost
(forward + backward of the 12 ``c_fc`` TopoLosses alone). GPT-Neo-125M here is
``GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]])``
(``GPTNeoConfig()``'s defaults are the 1.3B model).
"""

import argparse
import statistics
import tempfile
import time

import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM, Trainer, TrainingArguments

from hf_toponets import TopoConfig, TopoTrainer, resolve_targets, topo_loss


def step(trainer, inputs) -> float:
    start = time.perf_counter()
    trainer.current_gradient_accumulation_steps = 1  # what Trainer's loop sets before each step
    trainer.training_step(trainer.model, inputs)
    trainer.optimizer.step()
    trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tau", type=float, default=5.0)
    a = parser.parse_args()
    config = GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]])
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(config)
    ids = torch.randint(0, config.vocab_size, (a.batch, a.seq))
    inputs = {"input_ids": ids, "labels": ids}
    out = tempfile.mkdtemp()
    args = TrainingArguments(out, use_cpu=True, report_to=[], learning_rate=1e-4, max_steps=100)
    topo = TopoConfig(target_modules=["c_fc"], tau=a.tau)
    trainers = {"Trainer": Trainer(model=model, args=args), "TopoTrainer": TopoTrainer(model=model, args=args, topo_config=topo)}
    for t in trainers.values():
        t.create_optimizer_and_scheduler(num_training_steps=100)
        step(t, inputs)  # warm-up: allocations, AdamW state
    times = {k: [] for k in trainers}
    for _ in range(a.reps):
        for name, t in trainers.items():
            times[name].append(step(t, inputs))
    targets = resolve_targets(model, topo)
    term = []
    for _ in range(max(5, a.reps)):
        start = time.perf_counter()
        topo_loss(model, topo, targets).backward()
        term.append(time.perf_counter() - start)
    plain, ours = statistics.median(times["Trainer"]), statistics.median(times["TopoTrainer"])
    print(f"GPT-Neo-125M, batch {a.batch} x {a.seq} tokens, CPU, {torch.get_num_threads()} threads, {a.reps} alternating reps")
    print(f"    Trainer: median step {plain:8.3f} s")
    print(f"TopoTrainer: median step {ours:8.3f} s   overhead {100 * (ours / plain - 1):+.2f}%")
    print(f"topographic term alone (12 c_fc, forward + backward): median {statistics.median(term) * 1e3:.1f} ms "
          f"= {100 * statistics.median(term) / plain:.2f}% of a plain step")


if __name__ == "__main__":
    main()
