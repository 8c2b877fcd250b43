#!/usr/bin/env bash
# Regenerates model_cards/toponet-default/: the card of the embedded default TopoNet and its maps.
# Generated artifacts stay generated: fix the template (toponet_card.md.j2) or the code, then rerun this.
#   bash model_cards/regenerate_example.sh            (from the repository root, in the project's venv)
set -euo pipefail
cd "$(dirname "$0")/.."
out=outputs/toponet-default
example=model_cards/toponet-default
python training_scripts/train_clm.py --output_dir "$out"
corpus=$(mktemp --suffix .txt)
python -c "from hf_toponets.training.data import embedded_corpus; print('\n'.join(embedded_corpus()))" > "$corpus"
hf-toponets analyze --model "$out" --data "$corpus" --samples 512 --output "$out"
if [ -d ../shared/data/blimp ]; then
  hf-toponets blimp --model "$out" --data ../shared/data/blimp --output "$out/blimp_results.json"
fi
rm -f "$corpus"
rm -rf "$example" && mkdir -p "$example"
hf-toponets card --model "$out" --repo-id hf-toponets/toponet-default --output "$example/README.md"
cp -r "$out/maps" "$example/maps"
echo "example card: $example/README.md"
