// AVX2 + FMA kernels: a 6 x 16 micro-kernel (12 ymm accumulators, the classic Haswell-to-Zen shape).
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define MLXR_TARGET __attribute__((target("avx2,fma,f16c")))
#define MLXR_MR 6
#define MLXR_NR 16
#define MLXR_NAME "avx2+fma"

namespace {
MLXR_TARGET void microKernel(const float* A, const float* B, int kc, float* C, long ldc, bool accumulate) {
  __m256 c[6][2];
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    c[i][0] = accumulate ? _mm256_loadu_ps(C + i * ldc) : _mm256_setzero_ps();
    c[i][1] = accumulate ? _mm256_loadu_ps(C + i * ldc + 8) : _mm256_setzero_ps();
  }
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(B + k * 16);
    const __m256 b1 = _mm256_load_ps(B + k * 16 + 8);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + k * 6 + i);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    _mm256_storeu_ps(C + i * ldc, c[i][0]);
    _mm256_storeu_ps(C + i * ldc + 8, c[i][1]);
  }
}
}  // namespace

#include "kernels_impl.h"

const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &kKernels : nullptr;
}
#else
const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx2() { return nullptr; }
#endif
