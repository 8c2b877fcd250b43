"""``hf-toponets card`` and ``push``: a saved TopoNet's model card, and publishing it to the Hub."""

from __future__ import annotations

import sys


def add_card(sub) -> None:
    p = sub.add_parser("card", help="(Re-)write DIR/README.md, the model card of a saved TopoNet.")
    p.add_argument("--model", required=True, help="Folder of a saved TopoNet (config.json with a 'topo' entry).")
    p.add_argument("--repo-id", help="USER/NAME shown in the card's usage code (default: the previous card's).")
    p.add_argument("--base-model", help="Hub id of the model that was fine-tuned.")
    p.add_argument("--dataset", action="append", help="A training dataset (repeat for several).")
    p.add_argument("--license", help="License id for the card's metadata, e.g. mit.")
    p.add_argument("--output", help="Write the card here instead of DIR/README.md (e.g. model_cards/NAME.md).")
    p.set_defaults(func=run_card)

def run_card(args) -> int:
    from ..hub.folder import write_model_card

    training = {k: v for k, v in (("base_model", args.base_model), ("datasets", args.dataset),
                                  ("license", args.license)) if v}
    print(write_model_card(args.model, training=training, model_id=args.repo_id, output=args.output))
    return 0

def add_push(sub) -> None:
    p = sub.add_parser("push", help="Publish a saved TopoNet to the Hugging Face Hub in one commit.")
    p.add_argument("--model", required=True, help="Folder of the saved model (safetensors weights).")
    p.add_argument("--repo-id", required=True, help="USER/NAME of the Hub repo (created when missing).")
    p.add_argument("--private", action="store_true", help="Create the repo private.")
    p.add_argument("--revision", help="Branch to commit to (created when missing); default main.")
    p.add_argument("--allow-plain", action="store_true", help="Publish a model without a 'topo' entry as is.")
    p.add_argument("--message", help="Commit message.")
    p.set_defaults(func=run_push)

def run_push(args) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from .. import conversion  # noqa: F401  (registers the BlurPool ResNet: push builds the architecture)
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
