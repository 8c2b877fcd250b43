"""``hf-toponets <verb>``: thin argument parsing over the library's functions.

One module per verb group (``loss``, ``publish``: card and push, ``downsample``: downsample and sweep,
``analyze``, ``blimp``, ``convert``, ``windows``, ``selectivity``). Each verb has an ``add_<verb>(subparsers)`` that declares its
arguments and sets ``func`` to a ``run_<verb>(args)`` that calls the library. Heavy imports stay inside the
``run_*`` functions so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from .analyze import add_analyze
from .blimp import add_blimp
from .convert import add_convert
from .downsample import add_downsample, add_sweep
from .loss import add_loss
from .publish import add_card, add_push
from .selectivity import add_selectivity
from .windows import add_windows

VERBS = [add_loss, add_card, add_push, add_downsample, add_sweep, add_analyze, add_blimp, add_convert, add_windows, add_selectivity]


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
