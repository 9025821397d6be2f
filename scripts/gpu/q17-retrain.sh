#!/usr/bin/env bash
# Issue 17's second device run (the integrator's hook, beside the MLX build: GPU free, CPU busy):
# far more distinct graded pairs made on the device (the carried bundle of scripts/gpu/graded-pairs.ts,
# the same generator as here: .devcarry/q17/graded-pairs.mjs + the BERT vocabulary beside it), then
# train_bench_reranker.py with a pure ranking loss and the matching init, weights rounded to float16
# and sent back as float16 parts. Writes to $OUT: model.safetensors.part00..02, q17-manifest.json
# (with the caller's log: 5 files, ~46 MB). No CPU speed figures here (the build has the cores).
set -u
: "${OUT:?OUT must name the folder that comes back}"
DATA=${DATA:-.devcarry/q17}
mkdir -p "$OUT"
echo "=== $(date -u) q17 retrain; $(git log -1 --oneline 2>/dev/null)"
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
for f in graded-pairs.mjs base/config.json base/tokenizer.json base/tensors.json heldout.jsonl bench.jsonl; do
  [ -f "$DATA/$f" ] || { echo "missing $DATA/$f: carry .devcarry/q17"; exit 1; }
done
echo "=== data ($(date -u +%T))"
node "$DATA/graded-pairs.mjs" --queries "${TRAIN_QUERIES:-30000}" --seed 1001 --out /tmp/q17train.jsonl || exit 1
ls -la /tmp/q17train.jsonl
echo "=== train ($(date -u +%T))"
timeout 420 python3 scripts/gpu/train_bench_reranker.py --base "$DATA/base" --train /tmp/q17train.jsonl \
  --heldout "$DATA/heldout.jsonl" --bench "$DATA/bench.jsonl" --out /tmp/q17model --parts-out "$OUT" \
  --seconds "${TRAIN_SECONDS:-150}" --mse-weight 0 --match-init --lr 2e-4 --parts-dtype F16 ${TRAIN_ARGS:-}
echo "=== done ($(date -u +%T)), exit $?"
ls -la "$OUT"
