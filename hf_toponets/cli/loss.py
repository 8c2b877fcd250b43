"""``hf-toponets loss``: TopoLoss of each topographic layer of a saved model."""

from __future__ import annotations

from .common import add_device_options, load_model


def add_loss(sub) -> None:
    p = sub.add_parser("loss", help="Print the TopoLoss of each topographic layer of a saved model.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved model.")
    p.add_argument("--target-modules", help="Comma-separated module names; default: the model's 'topo' entry.")
    p.add_argument("--all-layers", action="store_true",
                   help="Scan: TopoLoss of every Linear/Conv1D/Conv2d layer, the topographic ones marked * "
                        "(layers trained with TopoLoss score far lower than the others).")
    add_device_options(p)
    p.set_defaults(func=run_loss)

def run_loss(args) -> int:
    from ..core.config import TopoConfig
    from ..core.loss import topo_losses

    model = load_model(args.model, args.device, args.dtype)
    if args.all_layers:
        return _print_scan(model, args.target_modules)
    if args.target_modules:
        config = TopoConfig(target_modules=args.target_modules.split(","))
    else:
        config = TopoConfig.from_pretrained(args.model)
    losses = {name: float(v.detach()) for name, v in topo_losses(model, config).items()}
    width = max(map(len, losses))
    for name, value in losses.items():
        print(f"{name:<{width}}  {value:.6f}")
    print(f"{'mean':<{width}}  {sum(losses.values()) / len(losses):.6f}")
    return 0


def _print_scan(model, target_modules: str | None) -> int:
    from ..core.config import TopoConfig
    from ..core.metadata import read_topo_config
    from ..core.scan import compare_targets, scan_layers
    from ..core.targets import resolve_targets

    stored = read_topo_config(model)
    config = TopoConfig(target_modules=target_modules.split(",")) if target_modules else stored
    targets = list(resolve_targets(model, config)) if config is not None else []
    blur = stored or TopoConfig()  # the model's own blur when it has a topo entry
    scan = scan_layers(model, blur.factor_h, blur.factor_w, blur.interpolation)
    if not scan:
        raise ValueError(f"{type(model).__name__} has no Linear/Conv1D/Conv2d layer whose sheet fits the blur")
    width = max(map(len, scan))
    print(f"{'layer':<{width}}  TopoLoss{'  (* = topographic)' if targets else ''}")
    for name, value in scan.items():
        print(f"{name:<{width}}  {value:8.4f}{'  *' if name in targets else ''}")
    disagreement = compare_targets(scan, targets)
    if disagreement:
        print(f"note: {disagreement}")
    return 0
