"""BLiMP parity and speed: hf_toponets.evaluate_blimp vs lm-evaluation-harness 0.4.x on the same model.

Environment (lm_eval lives in its own venv so that it cannot disturb the project's)::

    python3 -m venv /work/venv-bench
    /work/venv-bench/bin/pip install torch==2.13.0
    /work/venv-bench/bin/pip install torch==2.13.0 lm_eval==0.4.13
    /work/venv-bench/bin/pip install torch==2.13.0 -e .

Run: ``/work/venv-bench/bin/python benchmarks/bench_blimp.py [--data ../shared/data/blimp]
[--paradigms a,b,...] [--model tiny|125m] [--batch-size 32] [--reps 3] [--threads 1] [--device cpu]``.

A random GPT-Neo (GPT-2 vocabulary, seeded) is built and saved with the GPT-2 tokenizer to a temporary
folder; both sides load it from there in float32. ``--model tiny``: hidden 64, 2 layers (the output
layer dominates); ``--model 125m``: GPT-Neo-125M's shape (hidden 768, 12 layers, 12 heads, local
window 256; the body dominates). Three runs alternate: the harness, hf_toponets, and hf_toponets
without body prefix sharing (``share_prefixes=False``: every sequence through the body whole, the
previous code path). Also printed: the body positions with and without prefix sharing, on these
paradigms and on all of BLiMP. The harness reads the local jsonl files through
one task per paradigm written to a temporary folder (``dataset_path: json``) with the settings of
its own ``blimp`` tasks, and gives per-pair log-likelihoods through ``log_samples``. Prints:
per-paradigm accuracies (must be identical), the largest per-pair log-likelihood difference (must be
<= 1e-4), and pairs per second of each (median over ``--reps`` alternating runs after one warm-up,
the same batch size in sequences on both sides) with the ratio.
"""

import argparse
import functools
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("TQDM_DISABLE", "1")  # the harness's progress bars; ours is off through progress=False
try:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
except ImportError:
    sys.exit("bench_blimp.py needs lm_eval 0.4.x; set up its venv as the docstring says "
             "(/work/venv-bench/bin/pip install torch==2.13.0 lm_eval==0.4.13) and run it with that python")

from transformers import AutoTokenizer, GPT2TokenizerFast, GPTNeoConfig, GPTNeoForCausalLM

from hf_toponets.evaluation import blimp
from hf_toponets.evaluation.blimp import encode_sentences, evaluate_blimp
from hf_toponets.evaluation.blimp_data import load_blimp
from hf_toponets.evaluation.prefix_cache import segments
from hf_toponets.evaluation.prefix_scoring import KV_BYTES, PrefixTable, _chunks
from hf_toponets.hub.loading import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
# One paradigm per phenomenon (12), short and long sentences, and passive_1 with its 2 identical pairs.
DEFAULT_PARADIGMS = (
    "anaphor_gender_agreement,passive_1,principle_A_case_2,tough_vs_raising_1,determiner_noun_agreement_1,"
    "ellipsis_n_bar_1,wh_vs_that_with_gap_long_distance,irregular_past_participle_verbs,adjunct_island,"
    "npi_present_1,superlative_quantifiers_1,distractor_agreement_relative_clause"
)
TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {path}
output_type: multiple_choice
validation_split: train
doc_to_text: ""
doc_to_target: 0
doc_to_choice: "{{{{[sentence_good, sentence_bad]}}}}"
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


MODELS = {  # GPT-Neo shapes: hidden, layers, heads, positions, local window
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, max_position_embeddings=128, window_size=64),
    "125m": dict(hidden_size=768, num_layers=12, num_heads=12, max_position_embeddings=2048, window_size=256),
}


def save_model(folder: Path, shape: dict) -> None:
    torch.manual_seed(0)
    config = GPTNeoConfig(vocab_size=50257, attention_types=[[["global", "local"], shape["num_layers"] // 2]], **shape)
    GPTNeoForCausalLM(config).save_pretrained(folder)
    GPT2TokenizerFast.from_pretrained(ROOT.parent / "shared" / "data" / "gpt2-tokenizer").save_pretrained(folder)


def run_harness(lm, manager, tasks: dict[str, str]) -> dict:
    """``{uid: (accuracy, {pair_id: (ll_good, ll_bad)})}`` from one simple_evaluate call."""
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks.values()), task_manager=manager,
                                  log_samples=True, bootstrap_iters=0)
    result = {}
    for uid, task in tasks.items():
        lls = {int(s["doc"]["pairID"]): tuple(r[0] for r in s["filtered_resps"]) for s in out["samples"][task]}
        result[uid] = (out["results"][task]["acc,none"], lls)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "blimp"))
    parser.add_argument("--paradigms", default=DEFAULT_PARADIGMS)
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass, both sides")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=list(MODELS), default="tiny")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    uids = args.paradigms.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_model(tmp / "model", MODELS[args.model])
        tasks = {uid: f"blimp_local_{uid}" for uid in uids}
        (tmp / "tasks").mkdir()
        for uid, task in tasks.items():
            (tmp / "tasks" / f"{task}.yaml").write_text(TASK_YAML.format(task=task, path=Path(args.data) / f"{uid}.jsonl"))
        manager = TaskManager(include_path=str(tmp / "tasks"), include_defaults=False)
        lm = HFLM(pretrained=str(tmp / "model"), dtype="float32", batch_size=args.batch_size, device=args.device)
        model = load_pretrained(str(tmp / "model"), args.device, "float32")
        tokenizer = AutoTokenizer.from_pretrained(tmp / "model")
        ours = functools.partial(evaluate_blimp, model, tokenizer, args.data, uids, args.batch_size,
                                 per_pair=True, progress=False)
        runs = {
            "lm_eval " + lm_eval.__version__: lambda: run_harness(lm, manager, tasks),
            "hf_toponets": ours,
            "hf_toponets unshared": lambda: unshared(ours),
        }
        first = {name: fn() for name, fn in runs.items()}  # warm-up (datasets cache) and the parity data
        times = {name: [] for name in runs}
        for _ in range(args.reps):
            for name, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        report(first, times, uids, args)
        print_body_positions(tokenizer, args.data, uids, model.config)


def unshared(run):
    """``run()`` with ``score_sequences(..., share_prefixes=False)``: the body runs on every sequence whole."""
    original = blimp.score_sequences
    blimp.score_sequences = functools.partial(original, share_prefixes=False)
    try:
        return run()
    finally:
        blimp.score_sequences = original


def body_positions(sequences: list[tuple[int, ...]], per_node: int) -> tuple[int, int]:
    """Body input positions without sharing (``sum(len - 1)``) and with it (each chunk's segments, chunks
    of ``KV_BYTES // per_node`` prefixes)."""
    table = PrefixTable(sequences, [])
    order = sorted(range(len(sequences)), key=sequences.__getitem__)
    shared = sum(len(s.nodes) for chunk in _chunks(order, table.seq_nodes, KV_BYTES // per_node)
                 for s in segments(table.parent, table.seq_nodes, chunk))
    return sum(len(x) - 1 for x in sequences), shared


def print_body_positions(tokenizer, data: str, uids: list[str], config) -> None:
    per_node = 2 * config.num_layers * config.hidden_size * 4  # float32 keys and values of every layer
    everything = load_blimp(data)
    for name, pairs in (("these paradigms", {u: everything[u] for u in uids}), ("all of BLiMP", everything)):
        encoded = encode_sentences(tokenizer, [s for u in pairs for p in pairs[u] for s in (p.good, p.bad)])
        plain, shared = body_positions(list(dict.fromkeys(map(tuple, encoded))), per_node)
        print(f"body positions on {name}: {plain:,} without prefix sharing, {shared:,} with it "
              f"({1 - shared / plain:.1%} fewer)")


def report(first: dict, times: dict, uids: list[str], args) -> None:
    harness_name, ours_name, unshared_name = list(first)
    harness, ours = first[harness_name], first[ours_name]
    worst, n_pairs, same_acc = 0.0, 0, True
    print(f"{'paradigm':<42} {'harness':>8} {'ours':>8}  max |d ll|")
    for uid in uids:
        acc, lls = harness[uid]
        rows = ours["pairs"][uid]
        diff = max(max(abs(r["ll_good"] - lls[r["pair_id"]][0]), abs(r["ll_bad"] - lls[r["pair_id"]][1])) for r in rows)
        assert len(rows) == len(lls), (uid, len(rows), len(lls))
        worst, n_pairs = max(worst, diff), n_pairs + len(rows)
        same_acc &= acc == ours["paradigms"][uid]["accuracy"]
        print(f"{uid:<42} {acc:8.3f} {ours['paradigms'][uid]['accuracy']:8.3f}  {diff:.2e}")
    print(f"paradigm accuracies identical: {same_acc}; largest per-pair |ll difference|: {worst:.2e} "
          f"({'within' if worst <= 1e-4 else 'ABOVE'} 1e-4) over {n_pairs} pairs")
    speed = {name: n_pairs / statistics.median(t) for name, t in times.items()}
    for name, value in speed.items():
        print(f"{name:>16}: median {statistics.median(times[name]):7.2f} s  {value:8.1f} pairs/s")
    same = max(abs(a - b) for uid in uids for r, q in zip(ours["pairs"][uid], first[unshared_name]["pairs"][uid])
               for a, b in ((r["ll_good"], q["ll_good"]), (r["ll_bad"], q["ll_bad"])))
    print(f"with vs without prefix sharing: largest per-pair |ll difference| {same:.2e}")
    print(f"speed-up (pairs/s, medians over {args.reps} alternating reps, batch size {args.batch_size} sequences, "
          f"{args.device}, float32, {torch.get_num_threads()} threads, GPT-Neo {args.model}, load average "
          f"{os.getloadavg()[0]:.1f}): ours / harness {speed[ours_name] / speed[harness_name]:.2f}x, "
          f"unshared / harness {speed[unshared_name] / speed[harness_name]:.2f}x")


if __name__ == "__main__":
    main()
