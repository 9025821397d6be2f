#!/usr/bin/env bash
# Cold and warm start of the mlx engine on a CUDA GPU, each in a fresh process (docs/latency-gpu.md,
# "Cold start"). Needs dist/ and the addon built with MLX.
#   scripts/gpu/cold-start.sh MODEL_DIR [OUT_DIR]      (OUT_DIR default /tmp/cold-start)
# Writes OUT_DIR/cold-start.jsonl (one line a process) and OUT_DIR/cache-listing.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
model="$1"
out="${2:-/tmp/cold-start}"
mkdir -p "$out"
tmp="$(mktemp -d)"
log="$out/cold-start.jsonl"
: >"$log"
run() { "$@" node scripts/gpu/cold-start.mjs "$model" "${args[@]}" | tee -a "$log"; }
xdg=(env -u MLX_PTX_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg")
# A. Before: MLX's own variable (so the addon keeps out of the cache: our attention kernels go through
#    NVRTC in every process, as before), a fresh folder: cold, then warm twice.
args=(--label before-cold); run env MLX_PTX_CACHE_DIR="$tmp/ptx"
args=(--label before-warm --steady); run env MLX_PTX_CACHE_DIR="$tmp/ptx"
args=(--label before-warm-2); run env MLX_PTX_CACHE_DIR="$tmp/ptx"
# B. The default: no MLX_PTX_CACHE_DIR, a fresh XDG_CACHE_HOME -> $tmp/xdg/mlx-rerank/mlx-kernels/<v>-<sm>,
#    where the addon also stores our attention kernels (startup.kernelsCompiled, then kernelsFromDisk).
args=(--label default-cold --steady); run "${xdg[@]}"
args=(--label default-warm --steady); run "${xdg[@]}"
args=(--label default-warm-2); run "${xdg[@]}"
args=(--label default-warm-3); run "${xdg[@]}"
# C. Warm, the warm-up's alternatives (same cache): forwards one at a time (as before), and fewer row
#    buckets (a batch beyond them meets cold shapes: see steady.*.firstMs and pairsPerS).
args=(--label warm-depth1 --warmup-depth 1 --steady); run "${xdg[@]}"
args=(--label warm-depth3 --warmup-depth 3); run "${xdg[@]}"
args=(--label warm-rows16k --warmup-rows 16384 --steady); run "${xdg[@]}"
args=(--label warm-rows4k --warmup-rows 4096 --steady); run "${xdg[@]}"
args=(--label warm-rows0 --warmup-rows 0 --steady); run "${xdg[@]}"
# D. The CUDA-core attention kernel: compiled once into the cache, then loaded.
args=(--label default-varlen-first --attention varlen); run "${xdg[@]}"
args=(--label default-varlen-warm --attention varlen); run "${xdg[@]}"
{
  echo "## folders (mode owner path)"
  find "$tmp/xdg" -maxdepth 4 -type d -exec stat -c '%a %U %n' {} +
  echo "## files: MLX_PTX_CACHE_DIR run / default run"
  find "$tmp/ptx" -type f | wc -l
  find "$tmp/xdg" -type f | wc -l
  echo "## cached modules (default run: mode size name)"
  find "$tmp/xdg" -name '*.ptx' -printf '%m %s %f\n' | sort -k3 | head -100
  echo "## our kernels' name lists"
  find "$tmp/xdg" -name 'mlx_rerank_*.txt' -exec sh -c 'printf "%s: " "$(basename "$1")"; cat "$1"' _ {} \;
  du -sh "$tmp/ptx" "$tmp/xdg"
} | tee "$out/cache-listing.txt"
rm -rf "$tmp"
