// int8 with AVX-512 VNNI (Ice Lake / Cascade Lake and later, Zen 4): 12 x 32 tiles (24 zmm
// accumulators), one vpdpbusd per 4 multiply-adds of 16 columns. u8 x s8: activations go in as
// q + 128 and the driver subtracts 128 * colSum(B) (kernels_lowp_impl.h, mode 1).
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_*: GCC bug 105593) once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define MLXR_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512vnni,avx2,fma,f16c")))
#define MLXR_ROWS_AVX512
#define MLXR_LOWP_MR 12
#define MLXR_LOWP_NR 32
#define MLXR_LOWP_NAME "avx512-vnni"
#define MLXR_LOWP_I8
#define MLXR_I8_A_MODE 1

namespace {
MLXR_TARGET void microI8(const int8_t* A, const int8_t* B, int k4n, int32_t* C) {
  __m512i c[12][2];
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) c[i][0] = c[i][1] = _mm512_setzero_si512();
  for (int k4 = 0; k4 < k4n; ++k4) {
    const __m512i b0 = _mm512_load_si512(B + k4 * 128);
    const __m512i b1 = _mm512_load_si512(B + k4 * 128 + 64);
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) {
      int32_t a4;
      std::memcpy(&a4, A + (k4 * 12 + i) * 4, 4);
      const __m512i a = _mm512_set1_epi32(a4);
      c[i][0] = _mm512_dpbusd_epi32(c[i][0], a, b0);
      c[i][1] = _mm512_dpbusd_epi32(c[i][1], a, b1);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < 12; ++i) {
    _mm512_store_si512(C + i * 32, c[i][0]);
    _mm512_store_si512(C + i * 32 + 16, c[i][1]);
  }
}
}  // namespace

#include "kernels_lowp_impl.h"

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx512Vnni() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")
             ? &kLowp
             : nullptr;
}
#else
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx512Vnni() { return nullptr; }
#endif
