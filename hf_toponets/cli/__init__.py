"""``hf-toponets <verb>``: thin argument parsing over the library's functions.

Each verb has an ``_add_<verb>(subparsers)`` that declares its arguments and sets
``func`` to a ``_run_<verb>(args)`` that calls the library. Heavy imports stay inside the
``_run_*`` functions so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys


def _load_causal_lm(path_or_repo: str, device: str = "cpu", dtype: str = "float32"):
    """A causal LM from a folder or Hub repo (safetensors only, no remote code)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path_or_repo, dtype=getattr(torch, dtype), use_safetensors=True)
    return model.to(device).eval()


def _add_loss(sub) -> None:
    p = sub.add_parser("loss", help="Print the TopoLoss of each topographic layer of a saved model.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved model.")
    p.add_argument("--target-modules", help="Comma-separated module names; default: the model's 'topo' entry.")
    p.set_defaults(func=_run_loss)


def _run_loss(args) -> int:
    from ..core.config import TopoConfig
    from ..core.loss import topo_losses

    model = _load_causal_lm(args.model)
    if args.target_modules:
        config = TopoConfig(target_modules=args.target_modules.split(","))
    else:
        config = TopoConfig.from_pretrained(args.model)
    losses = {name: float(v) for name, v in topo_losses(model, config).items()}
    width = max(map(len, losses))
    for name, value in losses.items():
        print(f"{name:<{width}}  {value:.6f}")
    print(f"{'mean':<{width}}  {sum(losses.values()) / len(losses):.6f}")
    return 0


def _add_card(sub) -> None:
    p = sub.add_parser("card", help="(Re-)write DIR/README.md, the model card of a saved TopoNet.")
    p.add_argument("--model", required=True, help="Folder of a saved TopoNet (config.json with a 'topo' entry).")
    p.add_argument("--repo-id", help="USER/NAME shown in the card's usage code (default: the previous card's).")
    p.add_argument("--base-model", help="Hub id of the model that was fine-tuned.")
    p.add_argument("--dataset", action="append", help="A training dataset (repeat for several).")
    p.add_argument("--license", help="License id for the card's metadata, e.g. mit.")
    p.add_argument("--output", help="Write the card here instead of DIR/README.md (e.g. model_cards/NAME.md).")
    p.set_defaults(func=_run_card)


def _run_card(args) -> int:
    from ..hub.cards import write_model_card

    training = {k: v for k, v in (("base_model", args.base_model), ("datasets", args.dataset),
                                  ("license", args.license)) if v}
    print(write_model_card(args.model, training=training, model_id=args.repo_id, output=args.output))
    return 0


def _add_push(sub) -> None:
    p = sub.add_parser("push", help="Publish a saved TopoNet to the Hugging Face Hub in one commit.")
    p.add_argument("--model", required=True, help="Folder of the saved model (safetensors weights).")
    p.add_argument("--repo-id", required=True, help="USER/NAME of the Hub repo (created when missing).")
    p.add_argument("--private", action="store_true", help="Create the repo private.")
    p.add_argument("--revision", help="Branch to commit to (created when missing); default main.")
    p.add_argument("--allow-plain", action="store_true", help="Publish a model without a 'topo' entry as is.")
    p.add_argument("--message", help="Commit message.")
    p.set_defaults(func=_run_push)


def _run_push(args) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub.push import push_folder

    try:  # the token comes from HF_TOKEN or `hf auth login`, never from the command line
        result = push_folder(args.model, args.repo_id, private=args.private, revision=args.revision,
                             allow_plain=args.allow_plain, commit_message=args.message)
    except (ConnectionError, HfHubHTTPError) as e:
        lines = [line for line in str(e).splitlines() if line and not line.startswith("For more information")]
        if "401" in lines[0]:
            lines.append("(log in with `hf auth login` or set HF_TOKEN to a token with write access)")
        print(f"hf-toponets push: error: {' '.join(lines)}", file=sys.stderr)
        return 1
    print(f"{'pushed' if result.changed else 'unchanged (no new commit)'}: {result.commit_url}")
    return 0


def _add_downsample(sub) -> None:
    p = sub.add_parser("downsample", help="Resample a TopoNet's c_fc sheets into a smaller (or reconstructed) model.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved TopoNet (GPT-Neo or GPT-2).")
    p.add_argument("--keep", type=float, default=0.2, help="Fraction of each sheet's units to keep, in (0, 1].")
    p.add_argument("--mode", choices=["shrink", "reconstruct"], default="shrink",
                   help="shrink: a smaller MLP width; reconstruct: same architecture, upsampled weights.")
    p.add_argument("--interpolation", choices=["bilinear", "nearest"], default="bilinear")
    p.add_argument("--target-modules", help="Comma-separated module names; default: the model's 'topo' entry.")
    p.add_argument("--output", required=True, help="New folder to save into (written atomically).")
    p.set_defaults(func=_run_downsample)


def _run_downsample(args) -> int:
    import os

    from ..conversion.downsample import count_parameters, downsample_model
    from ..core.files import save_pretrained_atomic

    model = _load_causal_lm(args.model)
    targets = args.target_modules.split(",") if args.target_modules else None
    small = downsample_model(model, args.keep, args.mode, args.interpolation, targets)
    tokenizer = None
    if os.path.isfile(os.path.join(args.model, "tokenizer_config.json")):  # the source folder has a tokenizer
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model)
    save_pretrained_atomic(small, args.output, tokenizer)
    before, after = count_parameters(model), count_parameters(small)
    info = small.config.topo_downsample
    print(f"sheet {info['source_sheet'][0]} x {info['source_sheet'][1]} -> {info['sheet'][0]} x {info['sheet'][1]} "
          f"({info['kept_fraction']:.2%} of the units), mode {args.mode}, interpolation {args.interpolation}")
    for key in ("total", "mlp"):
        print(f"{key:>5} parameters: {before[key]:>13,} -> {after[key]:>13,}  ({after[key] / before[key]:.2%})")
    print(f"saved to {args.output}{' (with the tokenizer)' if tokenizer is not None else ''}")
    return 0

def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="Fig. 4: perplexity / BLiMP against the fraction of c_fc parameters kept "
                                     "(shrink, reconstruct, L1 pruning at the same budget).")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved TopoNet.")
    p.add_argument("--baseline", help="Its tau = 0 baseline, drawn in the same plot.")
    p.add_argument("--keep", default="1,0.8,0.6,0.4,0.2,0.1", help="Comma-separated fractions of units to keep.")
    p.add_argument("--data", help="Held-out text file for perplexity.")
    p.add_argument("--seq-len", type=int, default=128, help="Tokens per perplexity block.")
    p.add_argument("--max-blocks", type=int, default=64, help="At most this many blocks of the text.")
    p.add_argument("--blimp-data", help="Folder of BLiMP <UID>.jsonl files (with only --paradigms: the Hub dataset).")
    p.add_argument("--paradigms", help="Comma-separated BLiMP paradigms (default: all 67 when --blimp-data is given).")
    p.add_argument("--tokenizer", help="Tokenizer folder or repo id; default: --model's.")
    p.add_argument("--interpolation", choices=["bilinear", "nearest"], default="bilinear")
    p.add_argument("--target-modules", help="Comma-separated module names; default: each model's 'topo' entry.")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--output", required=True, help="Folder for sweep.json and sweep.png.")
    p.set_defaults(func=_run_sweep)


def _run_sweep(args) -> int:
    import os

    from transformers import AutoTokenizer

    from ..evaluation.blimp_data import load_blimp
    from ..core.files import write_json_atomic
    from ..analysis.sweep import make_evaluate, plot_sweep_results, sweep_model
    from ..evaluation.perplexity import token_blocks

    keeps = [float(k) for k in args.keep.split(",")]
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    input_ids = None
    if args.data:
        with open(args.data, encoding="utf-8") as f:
            input_ids = token_blocks(tokenizer(f.read())["input_ids"], args.seq_len, args.max_blocks)
    blimp = load_blimp(args.blimp_data, args.paradigms) if args.blimp_data or args.paradigms else None
    evaluate = make_evaluate(tokenizer, input_ids, blimp, args.batch_size)
    targets = args.target_modules.split(",") if args.target_modules else None
    results = {}
    for label, path in (("TopoNet", args.model), ("baseline", args.baseline)):
        if path:
            results[label] = sweep_model(_load_causal_lm(path), keeps, evaluate, args.interpolation, targets)
    os.makedirs(args.output, exist_ok=True)
    write_json_atomic(os.path.join(args.output, "sweep.json"), results)
    plot_sweep_results(results, os.path.join(args.output, "sweep.png"))
    print(f"{'model':<9} {'keep':>5} {'method':<11} {'parameters':>12} {'perplexity':>10} {'blimp':>6}")
    for label, result in results.items():
        for point in result["points"]:
            for method, r in point["methods"].items():
                ppl, acc = r["metrics"].get("perplexity"), r["metrics"].get("blimp")
                print(f"{label:<9} {point['kept_fraction']:>5.3f} {method:<11} {r['parameters']['total']:>12,} "
                      f"{'-' if ppl is None else f'{ppl:.3f}':>10} {'-' if acc is None else f'{acc:.3f}':>6}")
    print(f"wrote {os.path.join(args.output, 'sweep.json')} and sweep.png")
    return 0

def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="Smoothness, effective dimensionality and sheet maps of a model's "
                                       "topographic layers: DIR/metrics.json and DIR/maps/*.png.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved model.")
    p.add_argument("--data", help="A text file, or a folder of .txt files, for the activation metrics; "
                                  "without it only the weight metrics are computed.")
    p.add_argument("--layers", help="Comma-separated module names (exact or .suffix); default: the model's 'topo' entry.")
    p.add_argument("--samples", type=int, help="Sequences of --seq-len tokens to use (default: all the text gives).")
    p.add_argument("--seq-len", type=int, default=128, help="Tokens per sequence.")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--tokenizer", help="Tokenizer folder or repo id; default: --model's.")
    p.add_argument("--output", required=True, help="Folder for metrics.json and maps/.")
    p.set_defaults(func=_run_analyze)


def _read_texts(path: str) -> str:
    """A text file's contents, or a folder's ``*.txt`` files in name order joined by blank lines."""
    import os

    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".txt"))
        if not files:
            raise ValueError(f"--data {path}: the folder holds no .txt file")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise ValueError(f"--data {path}: no such file or folder")
    texts = []
    for name in files:
        with open(name, encoding="utf-8") as f:
            texts.append(f.read())
    text = "\n\n".join(t for t in texts if t.strip())
    if not text:
        raise ValueError(f"--data {path}: the dataset is empty (no text)")
    return text


def _run_analyze(args) -> int:
    from ..analysis.report import analyze

    model = _load_causal_lm(args.model)
    input_ids = None
    if args.data:
        from transformers import AutoTokenizer

        from ..evaluation.perplexity import token_blocks

        if args.samples is not None and args.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {args.samples}")
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
        input_ids = token_blocks(tokenizer(_read_texts(args.data))["input_ids"], args.seq_len)
        if args.samples is not None and len(input_ids) < args.samples:
            raise ValueError(f"--data {args.data} gives {len(input_ids)} sequences of {args.seq_len} tokens, "
                             f"fewer than --samples {args.samples}")
        input_ids = input_ids[: args.samples]
    layers = args.layers.split(",") if args.layers else None
    result = analyze(model, args.output, layers, input_ids, args.batch_size)
    width = max(map(len, result["layers"]))
    print(f"{'layer':<{width}}  {'sheet':>14}  {'smooth(w)':>9}  {'smooth(a)':>9}  {'eff. dim':>8}")
    for name, m in result["layers"].items():
        sheet = "x".join(map(str, m["sheet"]))
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        print(f"{name:<{width}}  {sheet:>14}  {m['smoothness_weights']:>9.3f}  "
              f"{fmt(m['smoothness_activations'], '.3f'):>9}  {fmt(m['effective_dim'], '.2f'):>8}")
    print(f"wrote {args.output}/metrics.json and {len(result['maps']) + 1} PNGs under {args.output}/maps")
    return 0


def _add_blimp(sub) -> None:
    p = sub.add_parser("blimp", help="BLiMP accuracy of a causal LM (lm-evaluation-harness 0.4.x protocol).")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a causal LM (its tokenizer alongside).")
    p.add_argument("--data", help="Folder of BLiMP <UID>.jsonl files, e.g. ../shared/data/blimp; default: the Hub dataset nyu-mll/blimp.")
    p.add_argument("--paradigms", help="Comma-separated BLiMP paradigms (default: all 67).")
    p.add_argument("--batch-size", type=int, default=64, help="Sequences per forward pass (>= 2).")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--per-pair", action="store_true", help="Also write every pair's ll_good and ll_bad.")
    p.add_argument("--output", required=True, help="JSON file to write (atomically).")
    p.set_defaults(func=_run_blimp)


def _run_blimp(args) -> int:
    from pathlib import Path

    from transformers import AutoTokenizer

    from ..evaluation.blimp import evaluate_blimp
    from ..evaluation.blimp_data import resolve_paradigms
    from ..core.files import write_json_atomic

    paradigms = resolve_paradigms(args.paradigms)  # a bad name fails before the model loads
    model = _load_causal_lm(args.model, args.device, args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    result = evaluate_blimp(model, tokenizer, args.data, paradigms, args.batch_size, per_pair=args.per_pair)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, result)  # never a half-written results file
    for name, value in [("overall", result["overall"]), *result["phenomena"].items()]:
        print(f"{name:<26} {value:6.3f}")
    print(f"{result['n_pairs']} pairs in {len(result['paradigms'])} paradigms; wrote {output}")
    return 0


VERBS = [_add_loss, _add_card, _add_push, _add_downsample, _add_sweep, _add_analyze, _add_blimp]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-toponets", description="TopoNets for the Hugging Face stack.")
    sub = parser.add_subparsers(dest="verb", required=True)
    for add in VERBS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:  # a user's mistake: one clear line, no traceback
        print(f"hf-toponets {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
