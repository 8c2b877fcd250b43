"""TopoLoss forward + backward on the 12 ``c_fc`` layers of a random GPT-Neo-125M: plain weights vs LoRA / DoRA.

Run: ``python benchmarks/bench_lora.py [--reps 9] [--rank 16]``. The three models share the base weights and
run in this process, alternating; prints the median time of each and its ratio to the plain weights. A LoRA
layer's sheet is its effective weight ``W + s B A`` composed in float32 (one ``(3072, r) @ (r, 768)`` product
and one sheet-sized sum per layer); DoRA adds a row norm and a rescale.
"""

import argparse
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import GPTNeoForCausalLM

from _models import gpt_neo_125m_config
from hf_toponets import TopoConfig, resolve_targets, topo_loss


def build(kind: str, rank: int):
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(gpt_neo_125m_config())
    if kind == "plain":
        return model
    torch.manual_seed(1)
    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["c_fc"],
                                            init_lora_weights=False, use_dora=kind == "dora"))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()
    topo = TopoConfig(target_modules=["c_fc"])
    models = {kind: build(kind, args.rank) for kind in ("plain", "lora", "dora")}
    targets = {kind: resolve_targets(m, topo) for kind, m in models.items()}
    times = {kind: [] for kind in models}
    for rep in range(args.reps + 2):  # 2 warm-up rounds
        for kind, model in models.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            topo_loss(model, topo, targets[kind]).backward()
            if rep >= 2:
                times[kind].append(time.perf_counter() - start)
    base = statistics.median(times["plain"])
    print(f"TopoLoss fwd+bwd, 12 c_fc sheets 48 x 64 x 768, LoRA r={args.rank}, median of {args.reps}:")
    for kind, values in times.items():
        median = statistics.median(values)
        print(f"  {kind:6s} {1000 * median:8.1f} ms   x{median / base:.2f}")


if __name__ == "__main__":
    main()
