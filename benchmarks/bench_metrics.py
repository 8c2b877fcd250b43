"""Smoothness and effective dimensionality of the 12 ``c_fc`` layers of a random GPT-Neo-125M on CPU.

Run: ``python benchmarks/bench_metrics.py [--sequences 1024] [--seq-len 128] [--batch-size 16] [--reps 5]``.

- weights: data-free smoothness of the 12 sheets (48 x 64 units of 768 weights; 200k sampled pairs
  each), median over ``--reps``;
- activations over ``--sequences`` x ``--seq-len`` **random token ids** (the cost does not depend on
  the text): the collection pass (forward + hooks accumulating each layer's input moments, stopping
  after the last ``c_fc``) once, side by side with a plain forward of the transformer body over the
  same batches; then smoothness and effective dimensionality from the moments, median over ``--reps``;
- the per-batch cost of accumulating the 768-d input moments vs the 3072-d output moments that
  the input trick avoids (median over ``--reps``);
- peak memory of the collection pass and of a plain forward, each over ``--memory-batches``
  batches in a fresh subprocess (freed heap pages stay resident and would hide a second peak):
  the rise of the resident-set high-water mark (reset through ``/proc/self/clear_refs``), beside
  what storing the activations would take. The moments do not grow with the number of batches.
"""

import argparse
import statistics
import subprocess
import sys
import time

import torch
from transformers import GPTNeoForCausalLM

from _models import gpt_neo_125m_config
from hf_toponets import TopoConfig, resolve_targets
from hf_toponets.analysis.activations import Moments, collect_activations
from hf_toponets.analysis.dimensionality import effective_dimensionality_from_covariance
from hf_toponets.analysis.smoothness import covariance_smoothness_curve, weight_smoothness_curve


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def peak_rise_mib(fn) -> float:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = rss_kib("VmRSS:")
    fn()
    return (rss_kib("VmHWM:") - base) / 1024


def body_forward(model, batches) -> None:
    with torch.no_grad():
        for b in batches:
            model.transformer(b)


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=1024)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--memory-batches", type=int, default=4)
    parser.add_argument("--memory-of", choices=["collect", "forward"], help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    torch.manual_seed(0)
    config = gpt_neo_125m_config()
    model = GPTNeoForCausalLM(config).eval()
    modules = {n: t.module for n, t in resolve_targets(model, TopoConfig(target_modules=["c_fc"])).items()}
    ids = torch.randint(config.vocab_size, (args.sequences, args.seq_len), generator=torch.Generator().manual_seed(0))
    batches = list(ids.split(args.batch_size))
    tokens = ids.numel()
    if args.memory_of:
        few = batches[: args.memory_batches]
        run = (lambda: collect_activations(model, modules, few)) if args.memory_of == "collect" else (
            lambda: body_forward(model, few))
        print(peak_rise_mib(run))
        return
    print(f"GPT-Neo-125M (random init), 12 c_fc layers of 3072 units (48 x 64 x 768); {args.sequences} x "
          f"{args.seq_len} random token ids = {tokens:,} positions; batch {args.batch_size}; "
          f"{torch.get_num_threads()} threads")

    body_forward(model, batches[:1])  # warm-up, so that neither timed pass pays first-call costs
    collect_activations(model, modules, batches[:1])
    start = time.perf_counter()
    body_forward(model, batches)
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    acts = collect_activations(model, modules, batches)
    collect_s = time.perf_counter() - start
    peaks = {}
    for what in ("collect", "forward"):
        cmd = [sys.executable, __file__, "--sequences", str(args.sequences), "--seq-len", str(args.seq_len),
               "--batch-size", str(args.batch_size), "--memory-batches", str(args.memory_batches), "--memory-of", what]
        peaks[what] = float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])

    def from_moments():
        return [(covariance_smoothness_curve(a.cov, a.proj).smoothness, effective_dimensionality_from_covariance(a.cov, a.n_rows, a.proj))
                for a in acts.values()]

    weights_s = median_time(lambda: [weight_smoothness_curve(m, n) for n, m in modules.items()], args.reps)
    moments_s = median_time(from_moments, args.reps)
    rows = args.batch_size * args.seq_len
    x_in, x_out = torch.randn(rows, 768), torch.randn(rows, 3072)
    input_acc = median_time(lambda: Moments(768).update(x_in), args.reps)
    output_acc = median_time(lambda: Moments(3072).update(x_out), args.reps)
    values = from_moments()
    stored_gib = tokens * 3072 * 4 * 12 / 2**30

    print(f"weights:      smoothness of 12 layers                          median {weights_s:8.2f} s")
    print(f"activations:  collection pass (forward to the last c_fc + moments)     {collect_s:8.2f} s   "
          f"plain body forward {forward_s:8.2f} s   ratio {collect_s / forward_s:.2f}x")
    print(f"              smoothness + effective dim of 12 layers from moments median {moments_s:8.2f} s")
    print(f"              per-batch moments: 768-d input {input_acc * 1e3:7.1f} ms   3072-d output "
          f"{output_acc * 1e3:7.1f} ms   ratio {output_acc / input_acc:.1f}x")
    print(f"memory:       peak rise over {args.memory_batches} batches: collection pass {peaks['collect']:7.1f} MiB   "
          f"plain body forward {peaks['forward']:7.1f} MiB   (storing the 12 layers' outputs: {stored_gib:.1f} GiB float32)")
    print(f"total:        weights {weights_s:.2f} s; activations {collect_s + moments_s:.2f} s "
          f"(of which metrics beyond a plain forward: {collect_s - forward_s + moments_s:.2f} s)")
    print("layer 0: smoothness(activations) {:.3f}  effective dim {:.1f}; layer 11: {:.3f}  {:.1f}".format(
        *values[0], *values[-1]))


if __name__ == "__main__":
    main()
