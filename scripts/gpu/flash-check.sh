#!/usr/bin/env bash
# Builds and runs native/test/flash_check.cu: the tensor-core varlen attention kernel against a float64
# reference and the CUDA-core kernel, and both timed. Needs nvcc (CUDA 12+) and a GPU of sm_80 or later.
#   scripts/gpu/flash-check.sh [OUT_DIR]     (default: /tmp/flash-check)
# ARCH overrides the target (default: the GPU's own, e.g. 90a on an H100/H200).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-/tmp/flash-check}"
mkdir -p "$out"
# shellcheck source=scripts/gpu/nvcc-arch.sh
. scripts/gpu/nvcc-arch.sh
# 1. the kernels, written from the shipped source strings
"$nvcc" -std=c++17 -DFLASH_CHECK_EMIT -o "$out/flash_emit" native/test/flash_check.cu
"$out/flash_emit" harness native/mlx_varlen_attention.h >"$out/flash_kernels.cuh"
# 1b. with MLX_SRC=<MLX source or include root>: the kernel exactly as mx::fast::cuda_kernel wraps it (MLX's
# own device headers), compiled for the same target: what NVRTC gets inside the engine.
if [ -n "${MLX_SRC:-}" ]; then
  cccl="$(dirname "$(command -v "$nvcc")")/../include/cccl"
  for cfg in "32 12 float16 0" "64 12 bfloat16 128" "128 4 float16 0"; do
    # shellcheck disable=SC2086
    "$out/flash_emit" mlx $cfg >"$out/flash_mlx.cu"
    "$nvcc" -std=c++17 -gencode="arch=compute_${ARCH},code=sm_${ARCH}" -I"$MLX_SRC" -I"$cccl" -c "$out/flash_mlx.cu" \
      -o "$out/flash_mlx.o" && echo "MLX-wrapped kernel ($cfg): compiles" || echo "MLX-wrapped kernel ($cfg): FAILS"
  done
fi
# 2. the harness
time "$nvcc" -std=c++17 -O2 -gencode="arch=compute_${ARCH},code=sm_${ARCH}" -Xptxas -v -I"$out" \
  -DFLASH_CHECK_KERNELS='"flash_kernels.cuh"' -o "$out/flash_check" native/test/flash_check.cu \
  2>"$out/ptxas.txt" || { cat "$out/ptxas.txt"; exit 1; }
# Registers and spills per kernel (flash_kernel / varlen_kernel<D, HEADS, type, WINDOW>).
grep -E "Compiling entry|Used [0-9]+ registers|spill stores [1-9]" "$out/ptxas.txt" |
  sed -E 's/.*(flash_kernel|varlen_kernel)ILi([0-9]+)ELi([0-9]+)E[0-9]*(__half|__nv_bfloat16)Li([0-9]+)E.*/\1 D=\2 heads=\3 \4 window=\5/' || true
"$out/flash_check"
