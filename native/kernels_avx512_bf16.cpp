// bfloat16 with AVX-512 BF16 (Cooper Lake, Sapphire Rapids, Zen 4): 12 x 32 tiles (24 zmm
// accumulators); one vdpbf16ps does 2 multiply-adds of 16 columns (a k pair, odd k then even k, each
// product exact in float32), twice the multiply-adds of a float32 FMA.
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__clang__) ? __clang_major__ >= 9 : __GNUC__ >= 10)
// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_*: GCC bug 105593) once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define MLXR_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma,f16c")))
#define MLXR_ROWS_AVX512
#define MLXR_LOWP_MR 12
#define MLXR_LOWP_NR 32
#define MLXR_LOWP_NAME "avx512-bf16"
#define MLXR_LOWP_BF16

namespace {
MLXR_TARGET void microBf16(const uint32_t* A, const uint16_t* B, int k2n, float* C, long ldc,
                           bool accumulate) {
  __m512 c[12][2];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) {
    c[i][0] = accumulate ? _mm512_loadu_ps(C + i * ldc) : _mm512_setzero_ps();
    c[i][1] = accumulate ? _mm512_loadu_ps(C + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int k2 = 0; k2 < k2n; ++k2) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(B + k2 * 64);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(B + k2 * 64 + 32);
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(A[k2 * 12 + i]));
      c[i][0] = _mm512_dpbf16_ps(c[i][0], a, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], a, b1);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) {
    _mm512_storeu_ps(C + i * ldc, c[i][0]);
    _mm512_storeu_ps(C + i * ldc + 16, c[i][1]);
  }
}
}  // namespace

#include "kernels_lowp_impl.h"

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx512Bf16() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16")
             ? &kLowp
             : nullptr;
}
#else
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx512Bf16() { return nullptr; }
#endif
