// AVX-512 kernels: a 12 x 32 micro-kernel (24 zmm accumulators). On Zen 4 each 512-bit FMA is
// double-pumped, so peak FLOP/s equal AVX2's; the win is fewer instructions and the larger tile.
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_*: GCC bug 105593) once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
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

// bfloat16 without a bf16 instruction (AVX-512 F: Skylake-X, Ice Lake; and a yardstick where
// vdpbf16ps runs): B pairs widen to float32 (a shift, a mask) and go through this file's 12 x 32 FMA
// tile, odd k first then even k as vdpbf16ps, so the bits are the bf16 contract's and the speed is
// float32's (the widening is 4 instructions per 48 FMAs).
#define MLXR_ROWS_AVX512
#define MLXR_LOWP_MR 12
#define MLXR_LOWP_NR 32
#define MLXR_LOWP_NAME "avx512-fma"
#define MLXR_LOWP_BF16
#define MLXR_BF16_A_FLOAT

namespace {
MLXR_TARGET void microBf16(const float* A, const uint16_t* B, int k2n, float* C, long ldc, bool accumulate) {
  __m512 c[12][2];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) {
    c[i][0] = accumulate ? _mm512_loadu_ps(C + i * ldc) : _mm512_setzero_ps();
    c[i][1] = accumulate ? _mm512_loadu_ps(C + i * ldc + 16) : _mm512_setzero_ps();
  }
  const __m512i hiMask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int k2 = 0; k2 < k2n; ++k2) {
    const __m512i v0 = _mm512_load_si512(B + k2 * 64);
    const __m512i v1 = _mm512_load_si512(B + k2 * 64 + 32);
    const __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16));
    const __m512 o0 = _mm512_castsi512_ps(_mm512_and_si512(v0, hiMask));
    const __m512 e1 = _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16));
    const __m512 o1 = _mm512_castsi512_ps(_mm512_and_si512(v1, hiMask));
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) {
      const __m512 ao = _mm512_set1_ps(A[(2 * k2 + 1) * 12 + i]);
      c[i][0] = _mm512_fmadd_ps(ao, o0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(ao, o1, c[i][1]);
    }
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) {
      const __m512 ae = _mm512_set1_ps(A[(2 * k2) * 12 + i]);
      c[i][0] = _mm512_fmadd_ps(ae, e0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(ae, e1, c[i][1]);
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

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx512() { return kernelsAvx512() ? &kLowp : nullptr; }

const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")
             ? &kKernels
             : nullptr;
}
#else
const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx512() { return nullptr; }
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx512() { return nullptr; }
#endif
