"""Step time of TopoTrainer vs a plain Trainer, same model, data and optimizer, one run.

Run: ``python benchmarks/bench_trainer.py [--model gpt-neo-125m|resnet-18] [--batch B] [--seq 512]
[--image 224] [--reps 5]``. Each rep runs one training step (forward, backward, AdamW step) of each
trainer, alternating, on the same random batch. Both trainers drive the SAME model object
(TopoTrainer's hooks do nothing outside its own steps), so memory layout and cache state do not
favour either; each has its own AdamW. Prints the medians, TopoTrainer's overhead and the
topographic term's own cost (forward + backward of the TopoLosses alone).

- ``gpt-neo-125m`` (default, batch 8 x 512 tokens): the 12 ``c_fc`` sheets (48 x 64 x 768).
  ``GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]])``
  (``GPTNeoConfig()``'s defaults are the 1.3B model).
- ``resnet-18`` (default batch 32 x 3 x 224 x 224, 1000 classes): the 19 Conv2d sheets of the
  residual blocks (8 x 8 up to 16 x 32 units, small but many), as the paper's ResNet-18 TopoNets.
"""

import argparse
import statistics
import tempfile
import time

import torch
from transformers import GPTNeoConfig, GPTNeoForCausalLM, ResNetConfig, ResNetForImageClassification, Trainer, TrainingArguments

from hf_toponets import TopoConfig, TopoTrainer, resolve_targets, topo_loss


def step(trainer, inputs) -> float:
    start = time.perf_counter()
    trainer.current_gradient_accumulation_steps = 1  # what Trainer's loop sets before each step
    trainer.training_step(trainer.model, inputs)
    trainer.optimizer.step()
    trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def gpt_neo(a):
    config = GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]])
    model = GPTNeoForCausalLM(config)
    ids = torch.randint(0, config.vocab_size, (a.batch or 8, a.seq))
    return model, {"input_ids": ids, "labels": ids}, TopoConfig(target_modules=["c_fc"], tau=a.tau), f"GPT-Neo-125M, batch {a.batch or 8} x {a.seq} tokens"


def resnet18(a):
    config = ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], embedding_size=64,
                          num_labels=1000)
    model = ResNetForImageClassification(config)
    batch = a.batch or 32
    inputs = {"pixel_values": torch.randn(batch, 3, a.image, a.image), "labels": torch.randint(0, 1000, (batch,))}
    topo = TopoConfig(target_modules=["convolution"], exclude_modules=["embedder.convolution"], tau=a.tau)
    return model, inputs, topo, f"ResNet-18, batch {batch} x 3 x {a.image} x {a.image}"


MODELS = {"gpt-neo-125m": gpt_neo, "resnet-18": resnet18}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), default="gpt-neo-125m")
    parser.add_argument("--batch", type=int, help="default: 8 (GPT-Neo), 32 (ResNet-18)")
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tau", type=float, default=5.0)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); 1 gives stable medians on a busy machine")
    a = parser.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, inputs, topo, what = MODELS[a.model](a)
    out = tempfile.mkdtemp()
    args = TrainingArguments(out, use_cpu=True, report_to=[], learning_rate=1e-4, max_steps=100)
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
    model.zero_grad(set_to_none=True)
    plain, ours = statistics.median(times["Trainer"]), statistics.median(times["TopoTrainer"])
    print(f"{what}, CPU, {torch.get_num_threads()} threads, {a.reps} alternating reps")
    print(f"    Trainer: median step {plain:8.3f} s")
    print(f"TopoTrainer: median step {ours:8.3f} s   overhead {100 * (ours / plain - 1):+.2f}%")
    print(f"topographic term alone ({len(targets)} sheets, forward + backward): median {statistics.median(term) * 1e3:.1f} ms "
          f"= {100 * statistics.median(term) / plain:.2f}% of a plain step")


if __name__ == "__main__":
    main()
