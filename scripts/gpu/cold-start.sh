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
# A. MLX's own variable, a fresh folder: cold, then warm (the same folder).
args=(--label env-cold); run env MLX_PTX_CACHE_DIR="$tmp/ptx"
args=(--label env-warm); run env MLX_PTX_CACHE_DIR="$tmp/ptx"
# B. The new default: no MLX_PTX_CACHE_DIR, a fresh XDG_CACHE_HOME -> $tmp/xdg/mlx-rerank/mlx-kernels/<v>-<sm>.
args=(--label default-cold); run env -u MLX_PTX_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg"
args=(--label default-warm); run env -u MLX_PTX_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg"
# C. Warm, with the CUDA driver's own JIT cache off: MLX loads cubins (no PTX JIT), so no change expected.
args=(--label default-warm-no-driver-cache); run env -u MLX_PTX_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg" CUDA_CACHE_DISABLE=1
# D. Warm, with the tensor-core attention kernel (its own NVRTC compile is not cached by MLX: see the docs).
args=(--label default-warm-flash --attention flash); run env -u MLX_PTX_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg"
args=(--label default-warm-flash-2 --attention flash); run env -u MLX_PTX_CACHE_DIR XDG_CACHE_HOME="$tmp/xdg"
{
  echo "## folders (mode owner path)"
  find "$tmp/xdg" -maxdepth 4 -type d -exec stat -c '%a %U %n' {} +
  echo "## files: MLX_PTX_CACHE_DIR run / default run"
  find "$tmp/ptx" -type f | wc -l
  find "$tmp/xdg" -type f | wc -l
  echo "## cached modules (default run)"
  find "$tmp/xdg" -name '*.ptx' -printf '%s %f\n' | sort -k2 | head -100
  du -sh "$tmp/ptx" "$tmp/xdg"
} | tee "$out/cache-listing.txt"
rm -rf "$tmp"
