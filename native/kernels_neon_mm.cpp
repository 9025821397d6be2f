// arm64 reduced precision with the matrix-multiply instructions: int8 with smmla (FEAT_I8MM, 2 rows x 8 k
// by 8 k x 2 columns -> a 2 x 2 int32 tile an instruction) and bfloat16 with bfmmla (FEAT_BF16, 2 x 4 by
// 4 x 2 -> 2 x 2 float32). Armv8.6 makes both mandatory (Graviton 3+, Neoverse N2/V1+, Apple M2+); each
// dtype is still served only where the CPU reports its instruction (getauxval(AT_HWCAP2)).
//
// No second weight layout: the shared packed panels (kernels.h) hold 4 k-bytes (int8) or a k-pair (bf16)
// per column, 32 bits, so two consecutive k-groups zipped as 32-bit lanes (zip1 / zip2) are exactly the
// mmla operand of two columns; A is zipped the same way from the driver's [k-group][MR] tiles. The
// packers pad K to kBlock = 8, so int8 tiles hold whole 8-k steps (bf16's odd last k-pair is zeroed here).
//
// Numerics: int8 sums are exact integers (s8 x s8, A as q - 128: kernels_lowp_impl.h mode 0), so the
// results are bit-identical to the scalar kernel. bfmmla sums four products per step in its own order,
// rounding to odd and flushing denormals (Arm's BFDotAdd; FPCR.EBF = 0), so its bf16 results differ from
// the vdpbf16ps order in the last bits: engine_check holds it to a float64 reference with a bound.
// Checked under qemu-aarch64 only (scripts/test-native.mjs --arm64): no speed figures yet.
#include "kernels.h"

#if defined(__aarch64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#include <sys/auxv.h>

#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)
#endif

#define MLXR_TARGET __attribute__((target("arch=armv8.6-a+i8mm+bf16")))
#define MLXR_LOWP_MR 4
#define MLXR_LOWP_NR 16
#define MLXR_LOWP_NAME "neon-mmla"
#define MLXR_LOWP_BF16
#define MLXR_LOWP_I8
#define MLXR_I8_A_MODE 0

namespace {
// Accumulators c[P][Q] (P a row pair, Q a column pair) hold (2P, 2Q), (2P, 2Q+1), (2P+1, 2Q),
// (2P+1, 2Q+1): the mmla result order. Two column pairs zipped as 64-bit lanes are two rows of 4.

MLXR_TARGET void microBf16(const uint32_t* A, const uint16_t* B, int k2n, float* C, long ldc,
                           bool accumulate) {
  float32x4_t c[2][8];
  for (int P = 0; P < 2; ++P)
    for (int v = 0; v < 4; ++v) {
      if (accumulate) {
        const float64x2_t r0 = vreinterpretq_f64_f32(vld1q_f32(C + (2 * P) * ldc + 4 * v));
        const float64x2_t r1 = vreinterpretq_f64_f32(vld1q_f32(C + (2 * P + 1) * ldc + 4 * v));
        c[P][2 * v] = vreinterpretq_f32_f64(vzip1q_f64(r0, r1));
        c[P][2 * v + 1] = vreinterpretq_f32_f64(vzip2q_f64(r0, r1));
      } else {
        c[P][2 * v] = c[P][2 * v + 1] = vdupq_n_f32(0);
      }
    }
  const uint32_t* Bw = reinterpret_cast<const uint32_t*>(B);  // [k2][16 columns] bf16 pairs
  for (int k2 = 0; k2 < k2n; k2 += 2) {
    const bool pair = k2 + 1 < k2n;  // else the tile's odd last k-pair: the next one is zero
    const uint32x4_t a0 = vld1q_u32(A + k2 * 4), a1 = pair ? vld1q_u32(A + (k2 + 1) * 4) : vdupq_n_u32(0);
    const bfloat16x8_t a01 = vreinterpretq_bf16_u32(vzip1q_u32(a0, a1));  // rows 0, 1 x k 0..3
    const bfloat16x8_t a23 = vreinterpretq_bf16_u32(vzip2q_u32(a0, a1));
    for (int v = 0; v < 4; ++v) {
      const uint32x4_t b0 = vld1q_u32(Bw + k2 * 16 + 4 * v);
      const uint32x4_t b1 = pair ? vld1q_u32(Bw + (k2 + 1) * 16 + 4 * v) : vdupq_n_u32(0);
      const bfloat16x8_t bl = vreinterpretq_bf16_u32(vzip1q_u32(b0, b1));  // columns 4v, 4v+1 x k 0..3
      const bfloat16x8_t bh = vreinterpretq_bf16_u32(vzip2q_u32(b0, b1));  // columns 4v+2, 4v+3
      c[0][2 * v] = vbfmmlaq_f32(c[0][2 * v], a01, bl);
      c[0][2 * v + 1] = vbfmmlaq_f32(c[0][2 * v + 1], a01, bh);
      c[1][2 * v] = vbfmmlaq_f32(c[1][2 * v], a23, bl);
      c[1][2 * v + 1] = vbfmmlaq_f32(c[1][2 * v + 1], a23, bh);
    }
  }
  for (int P = 0; P < 2; ++P)
    for (int v = 0; v < 4; ++v) {
      const float64x2_t lo = vreinterpretq_f64_f32(c[P][2 * v]), hi = vreinterpretq_f64_f32(c[P][2 * v + 1]);
      vst1q_f32(C + (2 * P) * ldc + 4 * v, vreinterpretq_f32_f64(vzip1q_f64(lo, hi)));
      vst1q_f32(C + (2 * P + 1) * ldc + 4 * v, vreinterpretq_f32_f64(vzip2q_f64(lo, hi)));
    }
}

MLXR_TARGET void microI8(const int8_t* A, const int8_t* B, int k4n, int32_t* C) {
  int32x4_t c[2][8];
  for (int P = 0; P < 2; ++P)
    for (int q = 0; q < 8; ++q) c[P][q] = vdupq_n_s32(0);
  for (int k4 = 0; k4 < k4n; k4 += 2) {  // k4n is even: Kp is a multiple of kBlock = 8
    const int32x4_t a0 = vreinterpretq_s32_s8(vld1q_s8(A + k4 * 16));  // 4 rows x 4 k
    const int32x4_t a1 = vreinterpretq_s32_s8(vld1q_s8(A + k4 * 16 + 16));
    const int8x16_t a01 = vreinterpretq_s8_s32(vzip1q_s32(a0, a1));  // rows 0, 1 x k 0..7
    const int8x16_t a23 = vreinterpretq_s8_s32(vzip2q_s32(a0, a1));
    for (int v = 0; v < 4; ++v) {
      const int32x4_t b0 = vreinterpretq_s32_s8(vld1q_s8(B + k4 * 64 + 16 * v));  // 4 columns x 4 k
      const int32x4_t b1 = vreinterpretq_s32_s8(vld1q_s8(B + k4 * 64 + 64 + 16 * v));
      const int8x16_t bl = vreinterpretq_s8_s32(vzip1q_s32(b0, b1));  // columns 4v, 4v+1 x k 0..7
      const int8x16_t bh = vreinterpretq_s8_s32(vzip2q_s32(b0, b1));  // columns 4v+2, 4v+3
      c[0][2 * v] = vmmlaq_s32(c[0][2 * v], a01, bl);
      c[0][2 * v + 1] = vmmlaq_s32(c[0][2 * v + 1], a01, bh);
      c[1][2 * v] = vmmlaq_s32(c[1][2 * v], a23, bl);
      c[1][2 * v + 1] = vmmlaq_s32(c[1][2 * v + 1], a23, bh);
    }
  }
  for (int P = 0; P < 2; ++P)
    for (int v = 0; v < 4; ++v) {
      const int64x2_t lo = vreinterpretq_s64_s32(c[P][2 * v]), hi = vreinterpretq_s64_s32(c[P][2 * v + 1]);
      vst1q_s32(C + (2 * P) * 16 + 4 * v, vreinterpretq_s32_s64(vzip1q_s64(lo, hi)));
      vst1q_s32(C + (2 * P + 1) * 16 + 4 * v, vreinterpretq_s32_s64(vzip2q_s64(lo, hi)));
    }
}
}  // namespace

#include "kernels_lowp_impl.h"

// kLowp with K padded to 8 and each dtype kept only where the CPU has its instruction.
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpNeonMm() {
  static const LowpKernels k = [] {
    LowpKernels s = kLowp;
    s.kBlock = 8;
    const unsigned long hw2 = getauxval(AT_HWCAP2);
    if (!(hw2 & HWCAP2_BF16)) s.gemmBf16 = nullptr;
    if (!(hw2 & HWCAP2_I8MM)) s.gemmI8 = nullptr;
    return s;
  }();
  return k.gemmBf16 || k.gemmI8 ? &k : nullptr;
}
#else
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpNeonMm() { return nullptr; }
#endif
