"""Forward latency and size of GPT-Neo-125M vs its ``shrink`` downsampling (keep 0.2), CPU.

Run: ``python benchmarks/bench_downsample.py [--reps 15] [--batch 1] [--seq 128] [--keep 0.2] [--threads N]``.
Both models live in this process (random weights, the real GPT-Neo-125M shapes) and are timed
alternating on the same token ids under ``torch.inference_mode``; prints each median, the ratio,
and the parameter counts. The expected ratio follows from the FLOPs per token: 12 blocks of
attention projections ``4 d^2`` + MLP ``8 d^2`` (``d = 768``), plus the ``50257 x 768`` LM head;
keep 0.2 cuts the MLP to ``616 / 3072`` of its width.
"""

import argparse
import statistics
import time

import torch
from _models import gpt_neo_125m_toponet
from hf_toponets.conversion.downsample import count_parameters, downsample_model


def forward_seconds(model, ids) -> float:
    start = time.perf_counter()
    model(ids)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--keep", type=float, default=0.2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = gpt_neo_125m_toponet()
    start = time.perf_counter()
    small = downsample_model(model, keep=args.keep, mode="shrink").eval()
    build = time.perf_counter() - start
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq))
    runs = {"original": model, "shrink": small}
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for _ in range(2):  # warm-up
            for m in runs.values():
                forward_seconds(m, ids)
        for _ in range(args.reps):
            for name, m in runs.items():
                times[name].append(forward_seconds(m, ids))
    sheet = small.config.topo_downsample["sheet"]
    print(f"downsample_model (keep {args.keep}, shrink, 48 x 64 -> {sheet[0]} x {sheet[1]} sheets): {build:.2f} s")
    for name, m in runs.items():
        counts = count_parameters(m)
        print(f"{name:>9}: median forward {statistics.median(times[name]) * 1e3:7.1f} ms   "
              f"parameters {counts['total']:>11,} (MLP {counts['mlp']:>10,})")
    ratio = statistics.median(times["original"]) / statistics.median(times["shrink"])
    size = count_parameters(small)["total"] / count_parameters(model)["total"]
    print(f"speed-up (original / shrink, medians over {args.reps} alternating reps, batch {args.batch} x "
          f"{args.seq} tokens, cpu, {torch.get_num_threads()} threads): {ratio:.2f}x; size ratio {size:.3f}")


if __name__ == "__main__":
    main()
