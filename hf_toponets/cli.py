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
    from .config import TopoConfig
    from .loss import topo_losses

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


VERBS = [_add_loss]


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
