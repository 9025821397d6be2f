#!/usr/bin/env bash
# Issue 17's device run: make 30,000 queries of graded pairs (the carried generator bundle), train the
# MiniLM-L6-shaped cross-encoder on them on the GPU (scripts/gpu/train_bench_reranker.py's defaults: the
# recipe that learned the task; while the cpu engine builds on the host's cores), then
# scripts/amx-device-run.sh on the trained model: engine_check (AMX included), every dtype x kernel set
# end to end at 2 threads (cores 0-1) and 16, against float32, torch's float64 logits and the labels.
# Run from the repo root with OUT set; writes 5 files there (~46 MB): model.safetensors.part00..02
# (float16), q17-manifest.json, q17-device.log. DATA: .devcarry/q17, made by scripts/gpu/q17-carry.sh.
set -u
: "${OUT:?OUT must name the folder that comes back}"
DATA=${DATA:-.devcarry/q17}
MODEL=/tmp/q17model
mkdir -p "$OUT"
log="$OUT/q17-device.log"
for f in graded-pairs.mjs base/config.json base/tokenizer.json base/tensors.json heldout.jsonl bench.jsonl; do
  [ -f "$DATA/$f" ] || { echo "missing $DATA/$f: make it with scripts/gpu/q17-carry.sh and carry .devcarry/q17" | tee "$log"; exit 1; }
done
{ echo "=== $(date -u) q17 device run"; git log -1 --oneline 2>/dev/null; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; command -v node && node --version; } 2>&1 | tee "$log"

# The build needs no GPU: it runs beside the training (amx-device-run.sh's own build step then has nothing to do).
(cmake -S . -B /tmp/cpu-build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_RERANK_WITH_MLX=OFF >/tmp/cpu-build-configure.log 2>&1 &&
  nice cmake --build /tmp/cpu-build -j12 >/tmp/cpu-build.log 2>&1) &
build=$!

echo "=== data ($(date -u +%T))" | tee -a "$log"
node "$DATA/graded-pairs.mjs" --queries "${TRAIN_QUERIES:-30000}" --seed 1001 --out /tmp/q17train.jsonl 2>&1 | tee -a "$log"
echo "=== train ($(date -u +%T))" | tee -a "$log"
timeout 420 python3 scripts/gpu/train_bench_reranker.py --base "$DATA/base" --train /tmp/q17train.jsonl \
  --heldout "$DATA/heldout.jsonl" --bench "$DATA/bench.jsonl" --out "$MODEL" --parts-out "$OUT" \
  --seconds "${TRAIN_SECONDS:-150}" --parts-dtype F16 ${TRAIN_ARGS:-} 2>&1 | tee -a "$log"
wait "$build"
brc=$?
echo "=== build exit $brc ($(date -u +%T)); $(grep -c -i error /tmp/cpu-build.log) lines with 'error'" | tee -a "$log"

if [ -f "$MODEL/model.safetensors" ] && [ -f "$OUT/q17-manifest.json" ]; then
  export BENCH_ARGS="--model $MODEL --pairs-file $DATA/bench.jsonl --torch-manifest $OUT/q17-manifest.json"
else
  echo "=== NO TRAINED MODEL: the cpu runs below use the synthetic model (AMX check and speed only)" | tee -a "$log"
fi
SKIP_GEMM=1 PAIRS_2=${PAIRS_2:-200} PAIRS_16=${PAIRS_16:-640} bash scripts/amx-device-run.sh 2>&1 | tee -a "$log"
ls -la "$OUT" | tee -a "$log"
