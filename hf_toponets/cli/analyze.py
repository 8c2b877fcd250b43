"""``hf-toponets analyze``: smoothness, effective dimensionality and sheet maps of a saved model."""

from __future__ import annotations

from .common import add_device_options, load_model, load_tokenizer, read_texts


def add_analyze(sub) -> None:
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
    add_device_options(p)
    p.set_defaults(func=run_analyze)

def run_analyze(args) -> int:
    from ..analysis.report import analyze
    from ..hub.loading import model_task

    model = load_model(args.model, args.device, args.dtype)
    input_ids = None
    if args.data and model_task(model.config) == "image-classification":
        raise ValueError(f"--data is text, for a language model's activations; {args.model} is an image classifier: "
                         "omit --data to measure its weights, or map its responses to images with "
                         "`hf-toponets selectivity --images FOLDER`")
    if args.data:
        from ..evaluation.perplexity import token_blocks

        if args.samples is not None and args.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {args.samples}")
        tokenizer = load_tokenizer(args.tokenizer or args.model, "--tokenizer" if args.tokenizer else "--model")
        input_ids = token_blocks(tokenizer(read_texts(args.data))["input_ids"], args.seq_len)
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
