#!/usr/bin/env bash
# Builds and runs native/test/fused_check.cu: the fused row kernels (native/mlx_fused_kernels.h: embeddings +
# LayerNorm, residual + bias + LayerNorm) against a float64 reference, and their time at the MiniLM shape.
# Needs nvcc (CUDA 12+) and a GPU (any compute capability MLX supports).
#   scripts/gpu/fused-check.sh [OUT_DIR]     (default: /tmp/fused-check)
# ARCH overrides the target (default: the GPU's own, e.g. 90a on an H100/H200). Without a GPU, NO_RUN=1
# builds both passes and stops (a compile check).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-/tmp/fused-check}"
mkdir -p "$out"
# shellcheck source=scripts/gpu/nvcc-arch.sh
. scripts/gpu/nvcc-arch.sh
# 1. the kernels, written from the shipped source strings
"$nvcc" -std=c++17 -DFUSED_CHECK_EMIT -o "$out/fused_emit" native/test/fused_check.cu
"$out/fused_emit" >"$out/fused_kernels.cuh"
# 2. the harness (registers and spills per kernel in ptxas.txt)
"$nvcc" -std=c++17 -O2 -gencode="arch=compute_${ARCH},code=sm_${ARCH}" -Xptxas -v -I"$out" \
  -DFUSED_CHECK_KERNELS='"fused_kernels.cuh"' -o "$out/fused_check" native/test/fused_check.cu \
  2>"$out/ptxas.txt" || { cat "$out/ptxas.txt"; exit 1; }
grep -E "spill stores [1-9]" "$out/ptxas.txt" && echo "fused-check: register spills (above)" || true
[ -n "${NO_RUN:-}" ] && { echo "fused-check: built (not run)"; exit 0; }
"$out/fused_check"
