#!/usr/bin/env bash
# Issue 17's second device run (the integrator's hook, beside the MLX build: GPU free, CPU busy):
# far more distinct graded pairs made on the device (the carried bundle of scripts/gpu/graded-pairs.ts,
# the same generator as here: .devcarry/q17/graded-pairs.mjs + the BERT vocabulary beside it), then
# train_bench_reranker.py with a pure ranking loss and the matching init, at two learning rates side by
# side on the GPU (the better one on the held-out pairs comes back), weights rounded to float16
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
echo "=== train, two settings side by side on the GPU ($(date -u +%T)): a = lr 2e-4, b = lr 5e-4"
train() { # $1: name, then extra arguments
  local n=$1
  shift
  mkdir -p "/tmp/q17-$n"
  timeout 420 python3 scripts/gpu/train_bench_reranker.py --base "$DATA/base" --train /tmp/q17train.jsonl \
    --heldout "$DATA/heldout.jsonl" --bench "$DATA/bench.jsonl" --out "/tmp/q17model-$n" --parts-out "/tmp/q17-$n" \
    --seconds "${TRAIN_SECONDS:-150}" --mse-weight 0 --match-init --parts-dtype F16 "$@" ${TRAIN_ARGS:-} 2>&1 | sed "s/^/[$n] /"
}
train a --lr 2e-4 &
train b --lr 5e-4 --warmup 500 &
wait
echo "=== trained ($(date -u +%T))"
# The one whose held-out Spearman vs the labels is higher comes back (its parts and manifest; both manifests'
# histories go into the chosen manifest under "runs").
python3 - "$OUT" <<'PY'
import json, os, shutil, sys
out = sys.argv[1]
runs = {}
for n in ("a", "b"):
    p = f"/tmp/q17-{n}/q17-manifest.json"
    if os.path.exists(p):
        runs[n] = json.load(open(p))
score = {n: m.get("final", {}).get("heldout", {}).get("spearman_mean", -9) for n, m in runs.items() if "weights" in m}
if not score:
    sys.exit("no run wrote its parts")
best = max(score, key=score.get)
print(f"held-out Spearman vs labels: {score}; bringing back run {best}")
m = runs[best]
m["chosen_run"] = best
m["runs"] = {n: {"args": r.get("args"), "history": r.get("history"), "final": r.get("final")} for n, r in runs.items()}
for p in m["weights"]["parts"]:
    shutil.copy(f"/tmp/q17-{best}/{p['name']}", out)
json.dump(m, open(os.path.join(out, "q17-manifest.json"), "w"))
PY
echo "=== done ($(date -u +%T))"
ls -la "$OUT"
