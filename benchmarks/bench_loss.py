"""TopoLoss forward + backward, hf_toponets vs topoloss 0.0.2, on three families of sheets.

Run: ``python benchmarks/bench_loss.py [--suites gpt-neo,gpt2,resnet18] [--reps 21] [--threads 1] [--device cpu]``.

- ``gpt-neo``: the 12 ``c_fc`` layers of a random GPT-Neo-125M (``nn.Linear``, sheets 48 x 64 x 768);
- ``gpt2``: the 12 ``c_fc`` layers of a random GPT-2 (transformers ``Conv1D``, weight stored
  ``(768, 3072)``: the sheet is a transposed view). The reference accepts only ``nn.Linear`` and
  ``nn.Conv2d``, so it runs on ``nn.Linear`` copies holding the same sheets;
- ``resnet18``: the 20 ``nn.Conv2d`` layers of ResNet-18 (sheets 8 x 8 x 147 ... 16 x 32 x 4608).

Both run in this process, alternating, on the same weights (loss and gradients into ``.grad``);
prints the median wall time and process CPU time of each over ``--reps`` and their ratios (on a
shared machine the CPU time is the steadier of the two; the load average is printed before and
after). Peak memory is measured for each in a fresh subprocess (one run, gradients included): on CPU
the rise of the resident-set high-water mark (reset through ``/proc/self/clear_refs``; a fresh
process, because freed heap pages stay resident and would hide the second run's peak), on CUDA
``torch.cuda.max_memory_allocated``.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from topoloss import LaplacianPyramid, TopoLoss
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoForCausalLM

from _models import gpt_neo_125m_config
from hf_toponets import TopoConfig, resolve_targets, topo_loss

# (c_out, c_in, k) of ResNet-18's convolutions, in order: stem, 4 stages of 2 blocks, 1x1 shortcuts
RESNET18 = [(64, 3, 7)] + [(64, 64, 3)] * 4 + [(128, 64, 3), (128, 128, 3), (128, 64, 1), (128, 128, 3), (128, 128, 3),
                                              (256, 128, 3), (256, 256, 3), (256, 128, 1), (256, 256, 3), (256, 256, 3),
                                              (512, 256, 3), (512, 512, 3), (512, 256, 1), (512, 512, 3), (512, 512, 3)]


def build(suite: str, device: str):
    """``(our model, our target names, reference model, reference layer names)``, seeded."""
    torch.manual_seed(0)
    if suite == "gpt-neo":
        config = gpt_neo_125m_config()
        model = GPTNeoForCausalLM(config).to(device)
        names = list(resolve_targets(model, TopoConfig(target_modules=["c_fc"])))
        return model, names, model, names
    if suite == "gpt2":
        model = GPT2LMHeadModel(GPT2Config()).to(device)
        names = list(resolve_targets(model, TopoConfig(target_modules=["c_fc"])))
        linears = nn.ModuleList(nn.Linear(768, 3072, device=device) for _ in names)
        with torch.no_grad():
            for lin, name in zip(linears, names):
                lin.weight.copy_(model.get_submodule(name).weight.t())
        return model, names, linears, [str(i) for i in range(len(names))]
    convs = nn.ModuleList(nn.Conv2d(c_in, c_out, k, bias=False, device=device) for c_out, c_in, k in RESNET18)
    names = [str(i) for i in range(len(convs))]
    return convs, names, convs, names


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def measure(fn, model, device):
    """``(wall s, CPU s, peak extra bytes)`` of one forward + backward."""
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        base = rss_kib("VmRSS:") * 1024
    wall, cpu = time.perf_counter(), time.process_time()
    fn().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else rss_kib("VmHWM:") * 1024
    return wall, cpu, peak - base


def runs(suite: str, device: str):
    model, names, ref_model, ref_names = build(suite, device)
    topo = TopoConfig(target_modules=names)
    targets = resolve_targets(model, topo)
    reference = TopoLoss([LaplacianPyramid(n, 3.0, 3.0) for n in ref_names])
    return {"hf_toponets": (lambda: topo_loss(model, topo, targets), model),
            "topoloss 0.0.2": (lambda: reference.compute(ref_model), ref_model)}


def bench(suite: str, args) -> None:
    fns = runs(suite, args.device)
    ours, ref = (fn().item() for fn, _ in fns.values())
    print(f"[{suite}] loss: hf_toponets {ours:.9f}  topoloss {ref:.9f}  rel diff {abs(ours - ref) / ref:.2e}")
    times = {k: [] for k in fns}
    for rep in range(args.reps + 2):  # 2 warm-up rounds
        for name, (fn, model) in fns.items():
            wall, cpu, _ = measure(fn, model, args.device)
            if rep >= 2:
                times[name].append((wall, cpu))
    med = {k: [statistics.median(t[i] for t in v) for i in (0, 1)] for k, v in times.items()}
    peaks = {}
    for name in fns:
        cmd = [sys.executable, __file__, "--suites", suite, "--device", args.device, "--memory-of", name]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        peaks[name] = int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])
        print(f"[{suite}] {name:>15}: median wall {med[name][0] * 1e3:8.1f} ms  CPU {med[name][1] * 1e3:8.1f} ms   "
              f"peak memory of one run {peaks[name] / 2**20:7.1f} MiB (gradients included)")
    (ref_wall, ref_cpu), (our_wall, our_cpu) = med["topoloss 0.0.2"], med["hf_toponets"]
    print(f"[{suite}] speed-up (reference / ours): wall {ref_wall / our_wall:.2f}x, CPU {ref_cpu / our_cpu:.2f}x; "
          f"peak memory ours / reference {peaks['hf_toponets'] / peaks['topoloss 0.0.2']:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", default="gpt-neo,gpt2,resnet18")
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: one run in this process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        fn, model = runs(args.suites, args.device)[args.memory_of]
        print(measure(fn, model, args.device)[2])
        return
    print(f"{args.device}, {torch.get_num_threads()} threads, {args.reps} alternating reps after 2 warm-ups; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    for suite in args.suites.split(","):
        bench(suite, args)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
