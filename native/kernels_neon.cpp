// arm64 reduced precision: 4 x 16 tiles (16 q-register accumulators of 32). int8 with the dot-product
// extension (sdot, armv8.2-a+dotprod: Graviton 2+, Apple M1+): s8 x s8, so no offset is needed
// (kernels_lowp_impl.h, mode 0); bfloat16 widened to float32 and fused multiply-adds (fmla), the odd k
// of a pair first, as every bf16 kernel here. Picked when the CPU reports dotprod (getauxval) and not
// the matrix-multiply instructions (kernels_neon_mm.cpp: smmla, bfmmla), which come first.
#include "kernels.h"

#if defined(__aarch64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#include <arm_neon.h>
#include <sys/auxv.h>

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif

#define MLXR_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#define MLXR_LOWP_MR 4
#define MLXR_LOWP_NR 16
#define MLXR_LOWP_NAME "neon-dotprod"
#define MLXR_LOWP_BF16
#define MLXR_BF16_A_FLOAT
#define MLXR_LOWP_I8
#define MLXR_I8_A_MODE 0

namespace {
MLXR_TARGET void microBf16(const float* A, const uint16_t* B, int k2n, float* C, long ldc, bool accumulate) {
  float32x4_t c[4][4];
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < 4; ++v) c[i][v] = accumulate ? vld1q_f32(C + i * ldc + 4 * v) : vdupq_n_f32(0);
  const uint32x4_t hiMask = vdupq_n_u32(0xffff0000u);
  for (int k2 = 0; k2 < k2n; ++k2) {
    const float32x4_t ae = vld1q_f32(A + (2 * k2) * 4), ao = vld1q_f32(A + (2 * k2 + 1) * 4);
    for (int v = 0; v < 4; ++v) {
      const uint32x4_t b = vld1q_u32(reinterpret_cast<const uint32_t*>(B + k2 * 32 + 8 * v));
      const float32x4_t be = vreinterpretq_f32_u32(vshlq_n_u32(b, 16));
      const float32x4_t bo = vreinterpretq_f32_u32(vandq_u32(b, hiMask));
      c[0][v] = vfmaq_laneq_f32(vfmaq_laneq_f32(c[0][v], bo, ao, 0), be, ae, 0);
      c[1][v] = vfmaq_laneq_f32(vfmaq_laneq_f32(c[1][v], bo, ao, 1), be, ae, 1);
      c[2][v] = vfmaq_laneq_f32(vfmaq_laneq_f32(c[2][v], bo, ao, 2), be, ae, 2);
      c[3][v] = vfmaq_laneq_f32(vfmaq_laneq_f32(c[3][v], bo, ao, 3), be, ae, 3);
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < 4; ++v) vst1q_f32(C + i * ldc + 4 * v, c[i][v]);
}

MLXR_TARGET void microI8(const int8_t* A, const int8_t* B, int k4n, int32_t* C) {
  int32x4_t c[4][4];
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < 4; ++v) c[i][v] = vdupq_n_s32(0);
  for (int k4 = 0; k4 < k4n; ++k4) {
    const int8x16_t a = vld1q_s8(A + k4 * 16);  // 4 rows x 4 k
    for (int v = 0; v < 4; ++v) {
      const int8x16_t b = vld1q_s8(B + k4 * 64 + 16 * v);  // 4 columns x 4 k
      c[0][v] = vdotq_laneq_s32(c[0][v], b, a, 0);
      c[1][v] = vdotq_laneq_s32(c[1][v], b, a, 1);
      c[2][v] = vdotq_laneq_s32(c[2][v], b, a, 2);
      c[3][v] = vdotq_laneq_s32(c[3][v], b, a, 3);
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int v = 0; v < 4; ++v) vst1q_s32(C + i * 16 + 4 * v, c[i][v]);
}
}  // namespace

#include "kernels_lowp_impl.h"

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpNeon() {
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) ? &kLowp : nullptr;
}
#else
const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpNeon() { return nullptr; }
#endif
