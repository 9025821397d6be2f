// int8 with AVX-VNNI (Alder Lake and later, Zen 5; 256-bit vpdpbusd): 6 x 16 tiles, one instruction
// per 4 multiply-adds of 8 columns. vpdpbusd multiplies u8 x s8: activations go in as q + 128 and the
// driver subtracts 128 * colSum(B) (kernels_lowp_impl.h, mode 1).
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#include <immintrin.h>

#define MLXR_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))
#define MLXR_LOWP_MR 6
#define MLXR_LOWP_NR 16
#define MLXR_LOWP_NAME "avx-vnni"
#define MLXR_LOWP_I8
#define MLXR_I8_A_MODE 1

namespace {
MLXR_TARGET void microI8(const int8_t* A, const int8_t* B, int k4n, int32_t* C) {
  __m256i c[6][2];
  for (int i = 0; i < 6; ++i) c[i][0] = c[i][1] = _mm256_setzero_si256();
  for (int k4 = 0; k4 < k4n; ++k4) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B + k4 * 64));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B + k4 * 64 + 32));
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      int32_t a4;
      std::memcpy(&a4, A + (k4 * 6 + i) * 4, 4);
      const __m256i a = _mm256_set1_epi32(a4);
      c[i][0] = _mm256_dpbusd_avx_epi32(c[i][0], a, b0);
      c[i][1] = _mm256_dpbusd_avx_epi32(c[i][1], a, b1);
    }
  }
  for (int i = 0; i < 6; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(C + i * 16), c[i][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(C + i * 16 + 8), c[i][1]);
  }
}
}  // namespace

#include "kernels_lowp_impl.h"

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvxVnni() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avxvnni")
             ? &kLowp
             : nullptr;
}
#else
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvxVnni() { return nullptr; }
#endif
