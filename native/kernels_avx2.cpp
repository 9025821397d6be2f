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

// Reduced precision, 4 x 16 tiles (8 accumulators + the B vectors and temporaries fill the 16 ymm).
// bfloat16 has no AVX2 instruction: B pairs widen to float32 (a shift, a mask) and go through FMA, so
// the speed is float32's; its use here is the bits (the same as vdpbf16ps). int8: vpmaddubsw
// multiplies u8 x s8 into int16 pairs, which saturate for 255 * 127 * 2; with |a| as the unsigned
// operand and a's sign moved onto b (vpsignb), each pair is at most 2 * 127 * 127 < 2^15: exact.
#define MLXR_LOWP_MR 4
#define MLXR_LOWP_NR 16
#define MLXR_LOWP_NAME "avx2"
#define MLXR_LOWP_BF16
#define MLXR_BF16_A_FLOAT
#define MLXR_LOWP_I8
#define MLXR_I8_A_MODE 2

namespace {
MLXR_TARGET void microBf16(const float* A, const uint16_t* B, int k2n, float* C, long ldc, bool accumulate) {
  __m256 c[4][2];
  for (int i = 0; i < 4; ++i) {
    c[i][0] = accumulate ? _mm256_loadu_ps(C + i * ldc) : _mm256_setzero_ps();
    c[i][1] = accumulate ? _mm256_loadu_ps(C + i * ldc + 8) : _mm256_setzero_ps();
  }
  const __m256i hiMask = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int k2 = 0; k2 < k2n; ++k2) {
    const __m256i v0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B + k2 * 32));
    const __m256i v1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B + k2 * 32 + 16));
    const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16));
    const __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(v0, hiMask));
    const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16));
    const __m256 o1 = _mm256_castsi256_ps(_mm256_and_si256(v1, hiMask));
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m256 ae = _mm256_broadcast_ss(A + (2 * k2) * 4 + i);
      const __m256 ao = _mm256_broadcast_ss(A + (2 * k2 + 1) * 4 + i);
      c[i][0] = _mm256_fmadd_ps(ae, e0, _mm256_fmadd_ps(ao, o0, c[i][0]));
      c[i][1] = _mm256_fmadd_ps(ae, e1, _mm256_fmadd_ps(ao, o1, c[i][1]));
    }
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(C + i * ldc, c[i][0]);
    _mm256_storeu_ps(C + i * ldc + 8, c[i][1]);
  }
}

MLXR_TARGET void microI8(const int8_t* A, const int8_t* B, int k4n, int32_t* C) {
  const int8_t* Aabs = A + static_cast<size_t>(k4n) * 16;  // mode 2: |q| after q
  __m256i c[4][2];
  for (int i = 0; i < 4; ++i) c[i][0] = c[i][1] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int k4 = 0; k4 < k4n; ++k4) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B + k4 * 64));
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(B + k4 * 64 + 32));
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      int32_t a4, abs4;
      std::memcpy(&a4, A + (k4 * 4 + i) * 4, 4);
      std::memcpy(&abs4, Aabs + (k4 * 4 + i) * 4, 4);
      const __m256i a = _mm256_set1_epi32(a4), aa = _mm256_set1_epi32(abs4);
      const __m256i p0 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(b0, a));
      const __m256i p1 = _mm256_maddubs_epi16(aa, _mm256_sign_epi8(b1, a));
      c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(p0, ones));
      c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(p1, ones));
    }
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(C + i * 16), c[i][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(C + i * 16 + 8), c[i][1]);
  }
}
}  // namespace

#include "kernels_lowp_impl.h"

const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &kKernels : nullptr;
}

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &kLowp : nullptr;
}
#else
const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsAvx2() { return nullptr; }
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpAvx2() { return nullptr; }
#endif
