// The per-call activation conversions of the reduced-precision GEMMs: a row of float32 rounded to
// bf16, or quantised to asymmetric u8 (kernels_lowp_impl.h has the definition). Included by a
// kernels_<isa>.cpp after it defines MLXR_TARGET; with MLXR_ROWS_AVX512 defined (and an AVX-512 F + BW
// target) the loops are 16 floats an instruction. Both versions compute the same bits (integer rounding
// for bf16; IEEE division, min / max and round-to-nearest-even for int8), so the choice changes speed
// only: per element these run once a call against N multiply-adds, which at N = 384 on VNNI or AMX
// is a few cycles of GEMM, so a scalar loop here costs as much as the GEMM itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"

#ifdef MLXR_ROWS_AVX512
#include <immintrin.h>
#endif

namespace {

// dst[k] = toBf16(a[k]) for k < K (round to nearest even, NaN stays NaN).
MLXR_TARGET inline void bf16Row(const float* a, int K, uint16_t* dst) {
  int k = 0;
#ifdef MLXR_ROWS_AVX512
  const __m512i lsb = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i absMask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  for (; k + 16 <= K; k += 16) {
    const __m512i u = _mm512_loadu_si512(a + k);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), lsb);
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(bias, odd)), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absMask), inf);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), _mm512_cvtepi32_epi16(r));
  }
#endif
  for (; k < K; ++k) dst[k] = mlxrerank::cpu::toBf16(a[k]);
}

// Asymmetric per-row quantisation: s = (max(a, 0) - min(a, 0)) / 255, z = round(-min / s), q =
// clamp(round(a / s) + z, 0, 255); stores q ^ 0x80 = q - 128 as int8 (v). Returns s, sets z (s = 0,
// z = 0 and v = -128 for an all-zero row).
MLXR_TARGET inline float quantiseRow(const float* a, int K, int8_t* v, int* z) {
  float lo = 0, hi = 0;
  int k = 0;
#ifdef MLXR_ROWS_AVX512
  __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
  for (; k + 16 <= K; k += 16) {
    const __m512 x = _mm512_loadu_ps(a + k);
    vlo = _mm512_min_ps(vlo, x);
    vhi = _mm512_max_ps(vhi, x);
  }
  lo = _mm512_reduce_min_ps(vlo);
  hi = _mm512_reduce_max_ps(vhi);
#endif
  for (; k < K; ++k) {
    lo = std::min(lo, a[k]);
    hi = std::max(hi, a[k]);
  }
  if (!(hi - lo > 0)) {  // zero row (or NaN: the result is garbage either way; keep it defined)
    std::memset(v, -128, K);
    *z = 0;
    return 0;
  }
  const float s = (hi - lo) / 255.0f;
  const float zf = std::nearbyint(-lo / s);
  *z = static_cast<int>(zf);
  k = 0;
#ifdef MLXR_ROWS_AVX512
  const __m512 vs = _mm512_set1_ps(s), vz = _mm512_set1_ps(zf), v255 = _mm512_set1_ps(255.0f);
  const __m512i m128 = _mm512_set1_epi32(128);
  for (; k + 16 <= K; k += 16) {
    const __m512 d = _mm512_div_ps(_mm512_loadu_ps(a + k), vs);
    __m512 q = _mm512_add_ps(_mm512_roundscale_ps(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
    q = _mm512_min_ps(v255, _mm512_max_ps(_mm512_setzero_ps(), q));
    const __m512i qi = _mm512_sub_epi32(_mm512_cvttps_epi32(q), m128);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(v + k), _mm512_cvtepi32_epi8(qi));
  }
#endif
  for (; k < K; ++k) {
    const float q = std::min(255.0f, std::max(0.0f, std::nearbyint(a[k] / s) + zf));
    v[k] = static_cast<int8_t>(static_cast<int>(q) - 128);
  }
  return s;
}

}  // namespace
