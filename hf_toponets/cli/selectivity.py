"""``hf-toponets selectivity``: category-selectivity maps of an image classifier's topographic layers (Fig. 5A)."""

from __future__ import annotations

from .common import load_model


def add_selectivity(sub) -> None:
    p = sub.add_parser("selectivity", help="Fig. 5A: each unit's t-value (eq. 2) for each image category, as maps on "
                                           "the sheets: DIR/selectivity.json and DIR/maps/<layer>.png.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved image classifier with its image "
                                                  "processor (preprocessor_config.json).")
    p.add_argument("--images", required=True, help="Folder with one subfolder of images per category "
                                                   "(e.g. fLOC's faces/, bodies/, places/, ...); at least two.")
    p.add_argument("--layers", help="Comma-separated module names (exact or .suffix); default: the model's 'topo' entry.")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--output", required=True, help="Folder for selectivity.json and maps/.")
    p.set_defaults(func=run_selectivity)


def run_selectivity(args) -> int:
    from transformers import AutoImageProcessor

    from ..analysis.selectivity_maps import selectivity_maps
    from ..evaluation.image_folder import read_image_folder
    from ..hub.loading import model_task

    categories = read_image_folder(args.images, "--images")  # a bad folder fails before the model loads
    model = load_model(args.model)
    if model_task(model.config) != "image-classification":
        raise ValueError(f"--model {args.model} is a {model_task(model.config)} model; selectivity maps need an image classifier")
    try:
        processor = AutoImageProcessor.from_pretrained(args.model)
    except OSError:
        raise ValueError(f"--model {args.model} has no image processor (preprocessor_config.json): save it beside the "
                         "weights (TopoTrainer does, given processing_class=the processor)") from None
    layers = args.layers.split(",") if args.layers else None
    result = selectivity_maps(model, categories, processor, args.output, layers, args.batch_size)
    names = list(result["categories"])
    width = max(map(len, result["layers"]))
    print(f"Moran's I of each t-map (higher is smoother), {sum(result['categories'].values())} images")
    print(f"{'layer':<{width}}  " + "  ".join(f"{c[:10]:>10}" for c in names))
    for layer, entry in result["layers"].items():
        cells = ("-" if entry["smoothness"][c] is None else f"{entry['smoothness'][c]:.3f}" for c in names)
        print(f"{layer:<{width}}  " + "  ".join(f"{v:>10}" for v in cells))
    print(f"wrote {args.output}/selectivity.json and {len(result['layers'])} PNGs under {args.output}/maps")
    return 0
