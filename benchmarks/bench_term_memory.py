"""Peak extra memory of the topographic term at scale: a LLaMA-7B ``up_proj`` sheet and GPT-Neo-125M, one run.

Run: ``python benchmarks/bench_term_memory.py [--device cpu|cuda] [--cases up_proj,up_proj_bf16,neo_term,neo_step]
[--reference]``. Every case runs in a fresh subprocess and prints the peak memory it adds over its baseline:

- ``up_proj`` / ``up_proj_bf16``: TopoLoss forward + backward of one 11008 x 4096 weight (LLaMA-7B's
  ``up_proj``, float32 / bfloat16; an 86 x 128 x 4096 sheet), over the weight and its gradient already
  allocated (as in training). ``--reference``: also ``topoloss`` 0.0.2 (autograd) on the float32 weight.
- ``neo_term``: the term alone on GPT-Neo-125M's 12 ``c_fc`` sheets (48 x 64 x 768), forward + backward.
- ``neo_step``: the peak of a GPT-Neo-125M forward + backward (batch 1 x 512) with TopoTrainer's hooks armed
  minus that of the same step with them idle (the term of every layer is alive from its forward hook until
  the backward; gradients are freed before each step, so both steps allocate them alike).

CPU: peak resident memory (``ru_maxrss``) after the phase minus before it, glibc told to return every
allocation above 64 KiB to the system (``MALLOC_MMAP_THRESHOLD_``), so that the peak follows live memory;
about 1 MB of noise. CUDA: ``torch.cuda.max_memory_allocated`` minus the allocated memory before (exact).
"""

import argparse
import json
import os
import subprocess
import sys

MB = 2**20
CASES = ("up_proj", "up_proj_bf16", "neo_term", "neo_step")


def peak(device: str) -> int:
    """Peak memory so far, in bytes: CUDA's allocator statistics, else the process's peak resident set."""
    import resource

    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def baseline(device: str) -> int:
    """Memory in use now (CUDA: reset the peak to it); on CPU the peak so far (the phase must exceed it)."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    return peak(device)


def up_proj(device: str, dtype: str, reference: bool) -> dict:
    import torch

    from hf_toponets import sheet_loss
    from hf_toponets.core.sheet import to_sheet

    weight = torch.randn(11008, 4096, device=device, dtype=getattr(torch, dtype), requires_grad=True)
    weight.grad = torch.zeros_like(weight)  # training holds the gradient already
    if reference:
        from topoloss import LaplacianPyramid, TopoLoss

        linear = torch.nn.Linear(4096, 11008, bias=False, device=device)
        linear.weight = torch.nn.Parameter(weight.detach())
        linear.weight.grad = torch.zeros_like(linear.weight)
        loss = TopoLoss([LaplacianPyramid("up_proj", 3.0, 3.0, "bilinear")])
        model = torch.nn.ModuleDict({"up_proj": linear})
        run = lambda: loss.compute(model).backward()  # noqa: E731
    else:
        run = lambda: sheet_loss(to_sheet(weight)).backward()  # noqa: E731
    before = baseline(device)
    run()
    return {"extra_mb": (peak(device) - before) / MB, "weight_mb": weight.numel() * weight.element_size() / MB}


def gpt_neo_125m(device: str):
    import torch
    from _models import gpt_neo_125m_config
    from transformers import GPTNeoForCausalLM

    torch.manual_seed(0)
    config = gpt_neo_125m_config()
    return GPTNeoForCausalLM(config).to(device)


def neo_term(device: str) -> dict:
    from hf_toponets import TopoConfig, resolve_targets, topo_loss

    model = gpt_neo_125m(device)
    config = TopoConfig(target_modules=["c_fc"])
    targets = resolve_targets(model, config)
    for t in targets.values():
        t.module.weight.grad = t.module.weight.detach().clone().zero_()
    before = baseline(device)
    topo_loss(model, config, targets).backward()
    sheets = sum(t.module.weight.numel() * 4 for t in targets.values()) / MB
    return {"extra_mb": (peak(device) - before) / MB, "weight_mb": sheets}


def neo_step(device: str) -> dict:
    import torch

    from hf_toponets import TopoConfig, resolve_targets
    from hf_toponets.core.hooks import TopoHooks

    model = gpt_neo_125m(device)
    config = TopoConfig(target_modules=["c_fc"])
    hooks = TopoHooks(resolve_targets(model, config), config)
    ids = torch.randint(0, model.config.vocab_size, (1, 512), device=device)

    def step() -> int:  # gradients freed first, so every step allocates them as the first one did
        model.zero_grad(set_to_none=True)
        baseline(device)
        model(input_ids=ids, labels=ids).loss.backward()
        return peak(device)

    step()  # warm-up
    plain = step()  # hooks idle
    hooks.set_coef(5.0 / 12, device)
    hooks.active = True
    armed = step()
    return {"extra_mb": (armed - plain) / MB, "plain_step_peak_mb": plain / MB}


def worker(case: str, device: str, reference: bool) -> dict:
    if case.startswith("up_proj"):
        return up_proj(device, "bfloat16" if case.endswith("bf16") else "float32", reference)
    return {"neo_term": neo_term, "neo_step": neo_step}[case](device)


def measure(case: str, device: str, reference: bool = False) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    argv = [sys.executable, __file__, "--worker", case, "--device", device] + (["--reference"] if reference else [])
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--reference", action="store_true", help="also topoloss 0.0.2 on the float32 up_proj")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.device, a.reference)))
        return
    print(f"peak extra memory of the topographic term, {a.device}, each case in a fresh process")
    for case in a.cases.split(","):
        r = measure(case, a.device)
        if case.startswith("up_proj"):
            line = f"{case:<13} weight {r['weight_mb']:7.1f} MB   term fwd+bwd extra {r['extra_mb']:7.1f} MB " \
                   f"= {r['extra_mb'] / r['weight_mb']:.2f} x the weight"
            if a.reference and case == "up_proj":
                ref = measure(case, a.device, reference=True)
                line += f"   (topoloss 0.0.2: {ref['extra_mb']:7.1f} MB, ours / reference {r['extra_mb'] / ref['extra_mb']:.2f})"
        elif case == "neo_term":
            line = f"{case:<13} 12 c_fc sheets {r['weight_mb']:6.1f} MB   term fwd+bwd extra {r['extra_mb']:7.1f} MB " \
                   f"= {r['extra_mb'] / r['weight_mb']:.2f} x the sheets"
        else:
            line = f"{case:<13} plain step peak {r['plain_step_peak_mb']:7.1f} MB   hooks armed: extra {r['extra_mb']:7.1f} MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
