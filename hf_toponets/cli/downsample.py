"""``hf-toponets downsample`` and ``sweep``: smaller models from downsampled sheets, and the paper's Fig. 4."""

from __future__ import annotations

from .common import add_device_options, load_model, load_tokenizer


def add_downsample(sub) -> None:
    p = sub.add_parser("downsample", help="Resample a TopoNet's MLP sheets (GPT c_fc, ViT fc1) into a smaller (or reconstructed) model.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved TopoNet (GPT-Neo, GPT-2 or ViT).")
    p.add_argument("--keep", type=float, default=0.2, help="Fraction of each sheet's units to keep, in (0, 1].")
    p.add_argument("--mode", choices=["shrink", "reconstruct"], default="shrink",
                   help="shrink: a smaller MLP width; reconstruct: same architecture, upsampled weights.")
    p.add_argument("--interpolation", choices=["bilinear", "nearest"], default="bilinear")
    p.add_argument("--target-modules", help="Comma-separated module names; default: the model's 'topo' entry.")
    p.add_argument("--output", required=True, help="New folder to save into (written atomically).")
    add_device_options(p)
    p.set_defaults(func=run_downsample)

def run_downsample(args) -> int:
    import os

    from ..conversion.downsample import count_parameters, downsample_model
    from ..core.files import save_pretrained_atomic

    model = load_model(args.model, args.device, args.dtype)
    targets = args.target_modules.split(",") if args.target_modules else None
    small = downsample_model(model, args.keep, args.mode, args.interpolation, targets)
    others = []  # what the source folder holds beside the weights travels with them
    if os.path.isfile(os.path.join(args.model, "tokenizer_config.json")):
        from transformers import AutoTokenizer

        others.append(AutoTokenizer.from_pretrained(args.model))
    if os.path.isfile(os.path.join(args.model, "preprocessor_config.json")):
        from transformers import AutoImageProcessor

        others.append(AutoImageProcessor.from_pretrained(args.model))
    save_pretrained_atomic(small, args.output, *others)
    before, after = count_parameters(model), count_parameters(small)
    info = small.config.topo_downsample
    print(f"sheet {info['source_sheet'][0]} x {info['source_sheet'][1]} -> {info['sheet'][0]} x {info['sheet'][1]} "
          f"({info['kept_fraction']:.2%} of the units), mode {args.mode}, interpolation {args.interpolation}")
    for key in ("total", "mlp"):
        print(f"{key:>5} parameters: {before[key]:>13,} -> {after[key]:>13,}  ({after[key] / before[key]:.2%})")
    print(f"saved to {args.output}" + "".join(f" (with the {type(o).__name__})" for o in others))
    return 0

def add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="Fig. 4: perplexity / BLiMP against the fraction of c_fc parameters kept "
                                     "(shrink, reconstruct, L1 pruning at the same budget); for an image "
                                     "classifier, top-1 accuracy against the fraction of weights L1-pruned.")
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
    p.add_argument("--images", help="Image classifiers: labelled images, one subfolder per class named by a label of "
                                    "the model (config.json's label2id).")
    p.add_argument("--sparsity", default="0,0.25,0.5,0.75,0.9",
                   help="Image classifiers: comma-separated fractions of the topographic layers' weights to prune.")
    p.add_argument("--output", required=True, help="Folder for sweep.json and sweep.png.")
    add_device_options(p)
    p.set_defaults(func=run_sweep)

def run_sweep(args) -> int:
    import os

    from ..hub.loading import load_config
    from ..evaluation.blimp_data import load_blimp
    from ..core.files import write_json_atomic
    from ..analysis.sweep import make_evaluate, plot_sweep_results, sweep_model
    from ..evaluation.perplexity import token_blocks
    from ..hub.loading import model_task

    if model_task(load_config(args.model, "--model")) == "image-classification":
        return run_pruning_sweep(args)
    keeps = [float(k) for k in args.keep.split(",")]
    tokenizer = load_tokenizer(args.tokenizer or args.model, "--tokenizer" if args.tokenizer else "--model")
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
            model = load_model(path, args.device, args.dtype, flag="--model" if label == "TopoNet" else "--baseline")
            results[label] = sweep_model(model, keeps, evaluate, args.interpolation, targets)
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


def run_pruning_sweep(args) -> int:
    """Fig. 4A for image classifiers: top-1 accuracy on ``--images`` after L1-pruning the topographic
    layers (one global threshold over their weights), TopoNet and baseline alike."""
    import os

    from transformers import AutoImageProcessor

    from ..analysis.plots import plot_sweep
    from ..analysis.pruning import pruning_sweep
    from ..core.files import write_json_atomic
    from ..core.metadata import read_topo_config
    from ..evaluation.classification import evaluate_top1
    from ..evaluation.image_folder import labelled_batches, read_image_folder

    if not args.images:
        raise ValueError(f"{args.model} is an image classifier: give --images FOLDER (one subfolder per class, "
                         "named by the model's labels) to measure its top-1 accuracy")
    categories = read_image_folder(args.images, "--images")
    sparsities = [float(s) for s in args.sparsity.split(",")]
    results = {}
    for label, path in (("TopoNet", args.model), ("baseline", args.baseline)):
        if not path:
            continue
        model = load_model(path, args.device, args.dtype, flag="--model" if label == "TopoNet" else "--baseline")
        names = args.target_modules.split(",") if args.target_modules else None
        if names is None:
            topo = read_topo_config(model)
            if topo is None:
                raise ValueError(f"{path} has no 'topo' entry: name the layers to prune with --target-modules")
            names = list(topo.sheets)
        batches = labelled_batches(categories, AutoImageProcessor.from_pretrained(path), model.config.label2id, args.batch_size)
        sweep = pruning_sweep(model, names, sparsities, evaluate=lambda m, b=batches: evaluate_top1(m, b))
        results[label] = {"layers": names, "sparsity": sweep["sparsity"], "achieved_sparsity": sweep["achieved_sparsity"],
                          "accuracy": sweep["score"], "delta_accuracy": sweep["delta_score"]}
    os.makedirs(args.output, exist_ok=True)
    write_json_atomic(os.path.join(args.output, "sweep.json"), results)
    panel = {label: (r["sparsity"], r["delta_accuracy"]) for label, r in results.items()}
    plot_sweep({"change in top-1 accuracy": panel}, os.path.join(args.output, "sweep.png"),
               xlabel="fraction of the topographic layers' weights pruned (L1)",
               styles={"TopoNet": ("tab:red", "-"), "baseline": ("black", "--")})
    print(f"{'model':<9} {'pruned':>7} {'top-1':>7} {'change':>7}")
    for label, r in results.items():
        for s, acc, delta in zip(r["sparsity"], r["accuracy"], r["delta_accuracy"]):
            print(f"{label:<9} {s:>7.3f} {acc:>7.4f} {delta:>+7.4f}")
    print(f"wrote {os.path.join(args.output, 'sweep.json')} and sweep.png")
    return 0
