#!/usr/bin/env bash
# Builds and runs native/test/flash_check.cu: the tensor-core varlen attention kernel against a float64
# reference and the CUDA-core kernel, and both timed. Needs nvcc (CUDA 12+) and a GPU of sm_80 or later.
#   scripts/gpu/flash-check.sh [OUT_DIR]     (default: /tmp/flash-check)
# ARCH overrides the target (default: the GPU's own, e.g. 90a on an H100/H200).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-/tmp/flash-check}"
mkdir -p "$out"
nvcc="${NVCC:-nvcc}"
if [ -z "${ARCH:-}" ]; then
  cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)"
  ARCH="$cc"
  [ "$cc" -ge 90 ] && ARCH="${cc}a"
fi
# 1. the kernels, written from the shipped source strings
"$nvcc" -std=c++17 -DFLASH_CHECK_EMIT -o "$out/flash_emit" native/test/flash_check.cu
"$out/flash_emit" harness native/mlx_varlen_attention.h >"$out/flash_kernels.cuh"
# 2. the harness
time "$nvcc" -std=c++17 -O2 -gencode="arch=compute_${ARCH},code=sm_${ARCH}" -Xptxas -v -I"$out" \
  -DFLASH_CHECK_KERNELS='"flash_kernels.cuh"' -o "$out/flash_check" native/test/flash_check.cu \
  2>"$out/ptxas.txt" || { cat "$out/ptxas.txt"; exit 1; }
grep -E "Compiling entry|registers|spill" "$out/ptxas.txt" | grep -B1 -E "spill stores [1-9]|registers" | head -80 || true
"$out/flash_check"
