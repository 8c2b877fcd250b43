"""``hf-toponets loss``: TopoLoss of each topographic layer of a saved model."""

from __future__ import annotations

from .common import load_model


def add_loss(sub) -> None:
    p = sub.add_parser("loss", help="Print the TopoLoss of each topographic layer of a saved model.")
    p.add_argument("--model", required=True, help="Folder or Hub repo id of a saved model.")
    p.add_argument("--target-modules", help="Comma-separated module names; default: the model's 'topo' entry.")
    p.set_defaults(func=run_loss)

def run_loss(args) -> int:
    from ..core.config import TopoConfig
    from ..core.loss import topo_losses

    model = load_model(args.model)
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
