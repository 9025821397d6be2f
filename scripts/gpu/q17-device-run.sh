#!/usr/bin/env bash
# Issue 17's device call (DEVICE-q17.md): train the MiniLM-L6-shaped cross-encoder on the graded pairs on
# the GPU (scripts/gpu/train_bench_reranker.py, while the cpu engine builds on the host's cores), then
# scripts/amx-device-run.sh on the trained model: engine_check (AMX included), every dtype x kernel set
# end to end at 2 threads (cores 0-1) and 16, against float32, torch's float64 logits and the labels.
# Run from the repo root with OUT set; writes exactly 8 files there: model.safetensors.part00..05,
# q17-manifest.json, q17-device.log. DATA: the carried folder of graded pairs and the base model files.
set -u
: "${OUT:?OUT must name the folder that comes back}"
DATA=${DATA:-.devcarry/q17}
MODEL=/tmp/q17model
mkdir -p "$OUT"
log="$OUT/q17-device.log"
for f in base/config.json base/tokenizer.json base/tensors.json train.jsonl.gz heldout.jsonl bench.jsonl; do
  [ -f "$DATA/$f" ] || { echo "missing $DATA/$f: carry .devcarry/q17" | tee "$log"; exit 1; }
done
{ echo "=== $(date -u) q17 device run"; git log -1 --oneline 2>/dev/null; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; command -v node && node --version; } 2>&1 | tee "$log"

# The build needs no GPU: it runs beside the training (amx-device-run.sh's own build step then has nothing to do).
(cmake -S . -B /tmp/cpu-build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_RERANK_WITH_MLX=OFF >/tmp/cpu-build-configure.log 2>&1 &&
  nice cmake --build /tmp/cpu-build -j12 >/tmp/cpu-build.log 2>&1) &
build=$!

echo "=== train ($(date -u +%T))" | tee -a "$log"
timeout 300 python3 scripts/gpu/train_bench_reranker.py --base "$DATA/base" --train "$DATA/train.jsonl.gz" \
  --heldout "$DATA/heldout.jsonl" --bench "$DATA/bench.jsonl" --out "$MODEL" --parts-out "$OUT" \
  --seconds "${TRAIN_SECONDS:-140}" ${TRAIN_ARGS:-} 2>&1 | tee -a "$log"
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
