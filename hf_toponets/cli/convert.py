"""``hf-toponets convert``: one of the paper's published checkpoints -> a Hugging Face model folder."""

from __future__ import annotations

import sys

FORMATS = ("nanogpt", "vit", "resnet")  # hf_toponets.conversion.source.FORMATS, spelled out so --help stays instant


def add_convert(sub) -> None:
    p = sub.add_parser("convert", help="Convert a published TopoNet checkpoint (nanoGPT train.py, torchvision ViT, "
                                       "FFCV BlurPool ResNet .pt) into a Hugging Face model folder with its card.")
    p.add_argument("checkpoint", help="The .pt file, e.g. tau_50.0.pt (read with torch.load(weights_only=True)).")
    p.add_argument("--output", required=True, help="New folder to write (all at once: nothing is left on failure).")
    p.add_argument("--format", choices=FORMATS, help="Source format; default: recognised from the keys.")
    p.add_argument("--tau", type=float, help="TopoLoss weight it was trained with; default: from tau_<x>.pt.")
    p.add_argument("--targets", help="Comma-separated topographic module names; default: the paper's "
                                     "(NanoGPT every c_fc, ViT every mlp.fc2 = torchvision mlp.3, ResNet every "
                                     "convolution of the residual blocks).")
    p.add_argument("--tokenizer", help="Tokenizer folder or Hub id saved with a NanoGPT, e.g. openai-community/gpt2 "
                                       "(offline: ../shared/data/gpt2-tokenizer).")
    p.add_argument("--num-heads", type=int, help="A ViT's attention heads when the checkpoint's args do not name a "
                                                 "torchvision model (vit_b_32 -> 12).")
    p.set_defaults(func=run_convert)


def run_convert(args) -> int:
    import warnings

    from ..conversion.checkpoints import convert_checkpoint

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = convert_checkpoint(args.checkpoint, args.output, args.format, args.tau,
                                    args.targets.split(",") if args.targets else None, args.tokenizer, args.num_heads)
    for warning in caught:
        print(f"hf-toponets convert: warning: {warning.message}", file=sys.stderr)
    width = max(map(len, result.scan))
    print(f"{'layer':<{width}}  TopoLoss  (* = topographic in the topo entry)")
    for name, value in result.scan.items():
        print(f"{name:<{width}}  {value:8.4f}{'  *' if name in result.sheets else ''}")
    print(f"{result.format} -> {result.architecture}: {len(result.sheets)} topographic layers, "
          f"max |logit difference| {result.logit_difference:.2g}; wrote {result.output_dir}")
    return 0
