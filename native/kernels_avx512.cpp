// AVX-512 kernels: a 12 x 32 micro-kernel (24 zmm accumulators). On Zen 4 each 512-bit FMA is
// double-pumped, so peak FLOP/s equal AVX2's; the win is fewer instructions and the larger tile.
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define MLXR_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma,f16c")))
#define MLXR_MR 12
#define MLXR_NR 32
#define MLXR_NAME "avx512"

namespace {
MLXR_TARGET void microKernel(const float* A, const float* B, int kc, float* C, long ldc, bool accumulate) {
  __m512 c[12][2];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) {
    c[i][0] = accumulate ? _mm512_loadu_ps(C + i * ldc) : _mm512_setzero_ps();
    c[i][1] = accumulate ? _mm512_loadu_ps(C + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(B + k * 32);
    const __m512 b1 = _mm512_load_ps(B + k * 32 + 16);
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) {
      const __m512 a = _mm512_set1_ps(A[k * 12 + i]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) {
    _mm512_storeu_ps(C + i * ldc, c[i][0]);
    _mm512_storeu_ps(C + i * ldc + 16, c[i][1]);
  }
}
}  // namespace

#include "kernels_impl.h"

const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")
             ? &kKernels
             : nullptr;
}
#else
const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx512() { return nullptr; }
#endif
