"""TopoLoss forward + backward over the 12 ``c_fc`` layers of a random GPT-Neo-125M: ours vs topoloss 0.0.2.

Run: ``python benchmarks/bench_loss.py [--reps 15] [--device cpu]``. Both run in this process,
alternating, on the same weights; prints the median time of each and the ratio. Peak memory is
measured for each in a fresh subprocess (one run, gradients included): on CPU the rise of the
resident-set high-water mark (reset through ``/proc/self/clear_refs``; a fresh process, because
freed heap pages stay resident and would hide the second run's peak), on CUDA
``torch.cuda.max_memory_allocated``.
"""

import argparse
import statistics
import subprocess
import sys
import time

import torch
from topoloss import LaplacianPyramid, TopoLoss
from transformers import GPTNeoConfig, GPTNeoForCausalLM

from hf_toponets import TopoConfig, resolve_targets, topo_loss


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def measure(fn, model, device):
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = rss_kib("VmRSS:") * 1024
    start = time.perf_counter()
    fn().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss_kib("VmHWM:") * 1024
    return seconds, peak - base


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: one run in this process
    args = parser.parse_args()
    torch.manual_seed(0)
    config = GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]])
    model = GPTNeoForCausalLM(config).to(args.device)
    topo = TopoConfig(target_modules=["c_fc"])
    targets = resolve_targets(model, topo)
    reference = TopoLoss([LaplacianPyramid(n, 3.0, 3.0) for n in targets])
    runs = {
        "hf_toponets": lambda: topo_loss(model, topo, targets),
        "topoloss 0.0.2": lambda: reference.compute(model),
    }
    if args.memory_of:
        print(measure(runs[args.memory_of], model, args.device)[1])
        return
    ours, ref = runs["hf_toponets"]().item(), runs["topoloss 0.0.2"]().item()
    print(f"loss: hf_toponets {ours:.9f}  topoloss {ref:.9f}  rel diff {abs(ours - ref) / ref:.2e}")
    times = {k: [] for k in runs}
    peaks = {}
    for _ in range(2):  # warm-up
        for fn in runs.values():
            measure(fn, model, args.device)
    for _ in range(args.reps):
        for name, fn in runs.items():
            times[name].append(measure(fn, model, args.device)[0])
    for name in runs:
        cmd = [sys.executable, __file__, "--device", args.device, "--memory-of", name]
        peak = int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])
        peaks[name] = peak
        print(f"{name:>15}: median {statistics.median(times[name]) * 1e3:8.1f} ms   "
              f"peak memory of one run {peak / 2**20:7.1f} MiB (gradients included)")
    ratio = statistics.median(times["topoloss 0.0.2"]) / statistics.median(times["hf_toponets"])
    print(f"speed-up (reference / ours, medians over {args.reps} alternating reps, {args.device}, "
          f"{torch.get_num_threads()} threads): {ratio:.2f}x")


if __name__ == "__main__":
    main()
