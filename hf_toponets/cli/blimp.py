"""``hf-toponets blimp``: BLiMP accuracy of a causal LM (lm-evaluation-harness 0.4.x protocol)."""

from __future__ import annotations

from .common import add_device_options, load_model, load_tokenizer


def add_blimp(sub) -> None:
    p = sub.add_parser("blimp", help="BLiMP accuracy of a causal LM (lm-evaluation-harness 0.4.x protocol).")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a causal LM (its tokenizer alongside).")
    p.add_argument("--data", help="Folder of BLiMP <UID>.jsonl files, e.g. ../shared/data/blimp; default: the Hub dataset nyu-mll/blimp.")
    p.add_argument("--paradigms", help="Comma-separated BLiMP paradigms (default: all 67).")
    p.add_argument("--batch-size", type=int, default=64, help="Sequences per forward pass (>= 2).")
    add_device_options(p)
    p.add_argument("--per-pair", action="store_true", help="Also write every pair's ll_good and ll_bad.")
    p.add_argument("--output", required=True, help="JSON file to write (atomically).")
    p.set_defaults(func=run_blimp)

def run_blimp(args) -> int:
    from pathlib import Path

    from ..evaluation.blimp import evaluate_blimp
    from ..evaluation.blimp_data import resolve_paradigms
    from ..core.files import write_json_atomic

    paradigms = resolve_paradigms(args.paradigms)  # a bad name fails before the model loads
    model = load_model(args.model, args.device, args.dtype)
    tokenizer = load_tokenizer(args.model)
    result = evaluate_blimp(model, tokenizer, args.data, paradigms, args.batch_size, per_pair=args.per_pair)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, result)  # never a half-written results file
    for name, value in [("overall", result["overall"]), *result["phenomena"].items()]:
        print(f"{name:<26} {value:6.3f}")
    print(f"{result['n_pairs']} pairs in {len(result['paradigms'])} paradigms; wrote {output}")
    return 0
