"""``hf-toponets windows``: temporal integration windows of a saved language model (the paper's Fig. 5B)."""

from __future__ import annotations

from .common import load_model, read_texts


def add_windows(sub) -> None:
    p = sub.add_parser("windows", help="Temporal integration windows of every unit (word swaps, the eq. 3 fit, "
                                       "sentence yoking): DIR/windows.json and DIR/maps/windows_*.png.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved causal LM (its tokenizer alongside).")
    p.add_argument("--data", help="A folder of BLiMP <UID>.jsonl files (their grammatical sentences), or a text file or "
                                  "folder of .txt files (its prose sentences); default: the embedded corpus.")
    p.add_argument("--layers", help="Comma-separated module names (exact or .suffix); default: the model's 'topo' entry.")
    p.add_argument("--max-delta", type=int, default=20, help="Largest distance (in words) of a swap before the target.")
    p.add_argument("--n-sequences", type=int, default=20, help="Word sequences (each runs words + 1 forwards).")
    p.add_argument("--sentence-length", type=int, default=8, help="Words per sentence (sentences of other lengths are skipped).")
    p.add_argument("--n-sentences", type=int, default=5, help="Sentences per sequence.")
    p.add_argument("--batch-size", type=int, default=16, help="Swapped copies per forward pass.")
    p.add_argument("--seed", type=int, default=0, help="Seeds the choice of sentences and of swap words.")
    p.add_argument("--tokenizer", help="Tokenizer folder or repo id; default: --model's.")
    p.add_argument("--device", choices=["cpu", "cuda"], help="Default: cuda when available.")
    p.add_argument("--output", required=True, help="Folder for windows.json and maps/ (the model's folder: its card shows them).")
    p.set_defaults(func=run_windows)


def read_sentences(path: str | None) -> list[str]:
    """BLiMP's ``sentence_good`` from a folder of ``.jsonl`` files, the prose sentences of a text file
    or folder of ``.txt`` files, or (``None``) those of the embedded corpus."""
    import os

    from ..analysis.word_swap import split_sentences

    if path is None:
        from ..training.data import embedded_corpus

        return split_sentences(" ".join(embedded_corpus()))
    if os.path.isdir(path) and any(n.endswith(".jsonl") for n in os.listdir(path)):
        from pathlib import Path

        from ..evaluation.blimp_data import read_jsonl_paradigm

        return [pair.good for name in sorted(Path(path).glob("*.jsonl")) for pair in read_jsonl_paradigm(name)]
    return split_sentences(read_texts(path))


def run_windows(args) -> int:
    import torch
    from transformers import AutoTokenizer

    from ..analysis.window_report import write_windows
    from ..analysis.windows import integration_windows
    from ..analysis.word_swap import sentence_sequences

    sequences = sentence_sequences(read_sentences(args.data), args.sentence_length, args.n_sentences,
                                   args.n_sequences, args.seed)  # bad data fails before the model loads
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(args.model, device)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    layers = args.layers.split(",") if args.layers else None
    windows = integration_windows(model, tokenizer, sequences, layers, args.max_delta, args.sentence_length,
                                  args.batch_size, args.seed)
    result = write_windows(windows, args.output, len(sequences))
    width = max(map(len, result["layers"]))
    print(f"{'layer':<{width}}  {'excluded':>8}  {'a':>6}  {'b':>6}  {'c':>6}  {'R^2':>6}  {'yoking':>7}  smoothness a/b/c/yoking")
    for name, w in windows.items():
        smooth = "/".join("-" if v is None else f"{v:.2f}" for v in result["layers"][name]["smoothness"].values())
        medians = [float(getattr(w, key).nanmedian()) for key in ("a", "b", "c", "r2", "yoking")]
        print(f"{name:<{width}}  {int(w.excluded.sum()):>8}  " + "  ".join(f"{m:>6.3f}" for m in medians[:4])
              + f"  {medians[4]:>7.3f}  {smooth}")
    print(f"medians over units; wrote {args.output}/windows.json and {len(result['maps']) + 1} PNGs under {args.output}/maps")
    return 0
