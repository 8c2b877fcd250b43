"""The activation half of ``analyze``: collecting layer statistics vs a plain forward, per layer type.

Run: ``python benchmarks/bench_activations.py [--sequences 32] [--seq-len 128] [--batch-size 8] [--reps 3] [--threads 1]``.

Random GPT-Neo-125M and GPT-2 (124M) on **random token ids** (the cost does not depend on the text).
For each layer type, all 12 layers of that type are collected at once (``collect_activations``: forward
hooks accumulating each layer's moments, the forward stopped after the last hooked layer), side by
side with a plain forward of the transformer body over the same batches, alternating, median over
``--reps``. Both scale linearly with the tokens, so the ratio over the default 4,096 tokens is the
ratio over ``analyze``'s 1024 x 128 = 131,072 (32x the time). Also printed: the same hooked pass with
hooks that only record nothing (the moments' own cost is the difference).
"""

import argparse
import os
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoForCausalLM

from _models import gpt_neo_125m_config
from hf_toponets.analysis.activations import collect_activations, run_hooked

TYPES = {  # (model, module name suffix, what it is)
    "c_fc": ("gpt-neo", "mlp.c_fc", "nn.Linear 768 -> 3072 (input moments, 768-d)"),
    "c_proj": ("gpt-neo", "mlp.c_proj", "nn.Linear 3072 -> 768 (output moments, 768-d)"),
    "q_proj": ("gpt-neo", "attn.attention.q_proj", "nn.Linear 768 -> 768 (output moments, 768-d)"),
    "gpt2 c_fc": ("gpt2", "mlp.c_fc", "Conv1D 768 -> 3072 (input moments, 768-d)"),
}


def build(name: str):
    torch.manual_seed(0)
    if name == "gpt-neo":
        config = gpt_neo_125m_config()
        return GPTNeoForCausalLM(config).eval()
    return GPT2LMHeadModel(GPT2Config()).eval()


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {name: build(name) for name in ("gpt-neo", "gpt2")}
    ids = torch.randint(50257, (args.sequences, args.seq_len), generator=torch.Generator().manual_seed(0))
    batches = list(ids.split(args.batch_size))
    print(f"{ids.numel():,} tokens in batches of {args.batch_size} x {args.seq_len}; {torch.get_num_threads()} "
          f"threads; load average {os.getloadavg()[0]:.1f}")

    def plain(model):
        with torch.no_grad():
            for b in batches:
                model.transformer(b)

    runs = {f"plain {name}": (lambda m=m: plain(m)) for name, m in models.items()}
    for kind, (model_name, suffix, _) in TYPES.items():
        model = models[model_name]
        modules = {n: m for n, m in model.named_modules() if n.endswith(suffix)}
        runs[kind] = lambda model=model, modules=modules: collect_activations(model, modules, batches)
        runs[f"{kind} no-op hooks"] = lambda model=model, modules=modules: run_hooked(
            model, modules, batches, lambda *a: None)
    for model in models.values():  # warm-up: first-call costs out of the timed passes
        with torch.no_grad():
            model.transformer(batches[0])
    times = {k: [] for k in runs}
    for _ in range(args.reps):
        for name, fn in runs.items():
            times[name].append(seconds(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'layer type (12 layers each)':<52} {'collect':>8} {'no-op':>8} {'plain':>8}  overhead over plain")
    for kind, (model_name, _, what) in TYPES.items():
        base = med[f"plain {model_name}"]
        print(f"{kind + ': ' + what:<52} {med[kind]:7.2f}s {med[kind + ' no-op hooks']:7.2f}s {base:7.2f}s  "
              f"{med[kind] / base - 1:+6.1%} (moments alone {(med[kind] - med[kind + ' no-op hooks']) / base:+.1%})")
    print(f"medians over {args.reps} alternating reps; load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
