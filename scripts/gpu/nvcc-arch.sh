# Sourced by the GPU check scripts (flash-check.sh, fused-check.sh): $nvcc (NVCC or nvcc on PATH) and $ARCH,
# the target (ARCH if set, else the GPU's own compute capability, with Hopper's "a" suffix from 9.0 on).
nvcc="${NVCC:-nvcc}"
if [ -z "${ARCH:-}" ]; then
  cc="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)"
  ARCH="$cc"
  [ "$cc" -ge 90 ] && ARCH="${cc}a"
fi
