"""Step time of TopoTrainer vs a plain Trainer, same model, data and optimizer, one run.

Run: ``python benchmarks/bench_trainer.py [--model gpt-neo-125m|resnet-18] [--batch B] [--seq 512]
[--image 224] [--reps 5] [--accumulation 1,8]``. Each rep runs one optimizer step (``accumulation``
micro-steps of forward + backward on the same random batch, then AdamW) of each trainer, alternating.
TopoTrainer attaches its term once per optimizer step, so its share of a step falls with accumulation. Both trainers drive the SAME model object
(TopoTrainer's hooks do nothing outside its own steps), so memory layout and cache state do not
favour either; each has its own AdamW. Prints the medians, TopoTrainer's overhead and the
topographic term's own cost (forward + backward of the TopoLosses alone).

- ``gpt-neo-125m`` (default, batch 8 x 512 tokens): the 12 ``c_fc`` sheets (48 x 64 x 768).
  ``_models.gpt_neo_125m_config()``.
- ``resnet-18`` (default batch 32 x 3 x 224 x 224, 1000 classes): the 19 Conv2d sheets of the
  residual blocks (8 x 8 up to 16 x 32 units, small but many), as the paper's ResNet-18 TopoNets.
"""

import argparse
import statistics
import tempfile
import time

import torch
from transformers import GPTNeoForCausalLM, ResNetConfig, ResNetForImageClassification, Trainer, TrainingArguments

from _models import gpt_neo_125m_config
from hf_toponets import TopoConfig, TopoTrainer, resolve_targets, topo_loss


def step(trainer, inputs, accumulation: int = 1) -> float:
    start = time.perf_counter()
    trainer.current_gradient_accumulation_steps = accumulation  # what Trainer's loop sets before each step
    for _ in range(accumulation):
        trainer.training_step(trainer.model, inputs)
    trainer.optimizer.step()
    trainer.model.zero_grad(set_to_none=True)
    trainer.state.global_step += 1  # as Trainer's loop does: TopoTrainer arms its term once per optimizer step
    return time.perf_counter() - start


def gpt_neo(a):
    config = gpt_neo_125m_config()
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
    parser.add_argument("--accumulation", default="1", help="comma-separated micro-steps per optimizer step, e.g. 1,8")
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
    accumulations = [int(k) for k in a.accumulation.split(",")]
    times = {(k, n): [] for k in accumulations for n in trainers}
    for accumulation in accumulations:
        for _ in range(a.reps):
            for name, t in trainers.items():
                times[accumulation, name].append(step(t, inputs, accumulation))
    targets = resolve_targets(model, topo)
    term = []
    for _ in range(max(5, a.reps)):
        start = time.perf_counter()
        topo_loss(model, topo, targets).backward()
        term.append(time.perf_counter() - start)
    model.zero_grad(set_to_none=True)
    term = statistics.median(term)
    print(f"{what}, CPU, {torch.get_num_threads()} threads, {a.reps} alternating reps")
    print(f"topographic term alone ({len(targets)} sheets, forward + backward): median {term * 1e3:.1f} ms")
    for accumulation in accumulations:
        plain, ours = (statistics.median(times[accumulation, n]) for n in ("Trainer", "TopoTrainer"))
        print(f"accumulation {accumulation}:     Trainer: median optimizer step {plain:8.3f} s")
        print(f"accumulation {accumulation}: TopoTrainer: median optimizer step {ours:8.3f} s   overhead "
              f"{100 * (ours / plain - 1):+.2f}%   the term's share {100 * term / plain:.2f}% of a plain step")


if __name__ == "__main__":
    main()
