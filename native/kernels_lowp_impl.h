// The reduced-precision GEMM drivers (bfloat16, int8), included by a kernels_<isa>.cpp after it defines
// MLXR_TARGET, MLXR_LOWP_MR x MLXR_LOWP_NR, MLXR_LOWP_NAME and, for each dtype it serves, its micro-kernel:
//
//   MLXR_LOWP_BF16: microBf16(const BfA* A, const uint16_t* B, int k2n, float* C, long ldc, bool acc)
//     A: MR-interleaved k-pairs of the tile (BfA = float: [2*k2n][MR] values already rounded to bf16,
//     when MLXR_BF16_A_FLOAT; else uint32_t: [k2n][MR] bf16 pairs, even k in the low half).
//     C[MR][NR] (+)= sum over k, per pair: odd k first, then even k, each a float32 FMA.
//   MLXR_LOWP_I8: microI8(const int8_t* A, const int8_t* B, int k4n, int32_t* C /* [MR][NR] */)
//     A: [k4n][MR][4] int8 v = q - 128 (MLXR_I8_A_MODE 0), the same XOR 0x80 = q as u8 (mode 1, for
//     u8 x s8 instructions), or mode 0 followed by [k4n][MR][4] |v| (mode 2, for vpmaddubsw with the
//     sign moved onto B: |v| * sign(b, v) <= 128 * 127, so a pair never saturates int16).
//     C[MR][NR] = the int32 sums of A x B over the tile's k.
//
// Activations are quantised per row, asymmetric (as ONNX Runtime's DynamicQuantizeLinear, but per
// token): s = (max(a, 0) - min(a, 0)) / 255, zero point z = round(-min / s), q = clamp(round(a / s) + z,
// 0, 255); a ~ s * (q - z). The driver turns the kernel's sums into sum((q - z) * w) with the column
// sums of B (PackedI8::colSum), then scales by s * sB[j].
//
// Everything else (A rounding / quantisation, edges, the float32 epilogue) is here once, so kernels
// differ only in how they compute exactly-defined sums: every kernel gives the same bits.
#include <vector>

#include "kernels_epilogue.h"
#include "kernels_lowp_rows.h"

namespace {

using mlxrerank::cpu::PackedBf16;
using mlxrerank::cpu::PackedI8;

constexpr int LMR = MLXR_LOWP_MR;
constexpr int LNR = MLXR_LOWP_NR;
constexpr int LMC = 8 * LMR;  // rows rounded / quantised at a time
constexpr int LKC = 256;      // bf16: k block (a KC x NR panel, 16-32 KiB, stays in L1 across the rows)

#ifdef MLXR_LOWP_BF16
#ifdef MLXR_BF16_A_FLOAT
using BfA = float;
#else
using BfA = uint32_t;
#endif

#ifdef MLXR_BF16_A_FLOAT
MLXR_TARGET float bf16Value(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
#endif

// packA for one tile: rows [0, mr) of A (zero rows past mr), k in [k0, k0 + kc), kc even or the tail.
// Each row is rounded once (bf16Row), then its k-pairs are 32-bit words: the interleave is a copy.
MLXR_TARGET void packBf16Tile(const float* A, long lda, int mr, int k0, int kc, BfA* dst) {
  const int k2n = (kc + 1) / 2;
  alignas(64) uint16_t row[LKC + 2];
  for (int i = 0; i < LMR; ++i) {
    if (i < mr) {
      bf16Row(A + i * lda + k0, kc, row);
      row[kc] = 0;  // the odd half of a K tail's last pair
    } else {
      std::memset(row, 0, sizeof(row));
    }
    for (int k2 = 0; k2 < k2n; ++k2) {
#ifdef MLXR_BF16_A_FLOAT
      dst[(2 * k2) * LMR + i] = bf16Value(row[2 * k2]);
      dst[(2 * k2 + 1) * LMR + i] = bf16Value(row[2 * k2 + 1]);
#else
      uint32_t pair;
      std::memcpy(&pair, row + 2 * k2, 4);  // little-endian: the even k in the low half
      dst[k2 * LMR + i] = pair;
#endif
    }
  }
}

MLXR_TARGET void gemmBf16(const float* A, long lda, int rows, const PackedBf16& B, float* C, long ldc,
                          Act act, const float* residual, long ldr) {
  const int K = B.K, Kp = B.Kp, N = B.N;
  const int panels = (N + LNR - 1) / LNR;
  alignas(64) float tileC[LMR * LNR];
  alignas(64) BfA packA[LMC / LMR][LKC * LMR];  // per tile: LKC floats or LKC/2 pairs per row
  for (int m0 = 0; m0 < rows; m0 += LMC) {
    const int mc = std::min(LMC, rows - m0);
    const int tiles = (mc + LMR - 1) / LMR;
    for (int k0 = 0; k0 < K; k0 += LKC) {
      const int kc = std::min(LKC, K - k0);
      const int k2n = (kc + 1) / 2;
      const bool accumulate = k0 > 0;
      const bool last = k0 + kc == K;
      for (int t = 0; t < tiles; ++t)
        packBf16Tile(A + static_cast<long>(m0 + t * LMR) * lda, lda, std::min(LMR, mc - t * LMR), k0, kc,
                     packA[t]);
      for (int p = 0; p < panels; ++p) {
        const uint16_t* Bp = B.panels.data() + (static_cast<size_t>(p) * Kp + k0) * LNR;
        const int n0 = p * LNR, nc = std::min(LNR, N - n0);
        for (int t = 0; t < tiles; ++t) {
          const int i0 = m0 + t * LMR;
          const int mr = std::min(LMR, m0 + mc - i0);
          float* Ct = C + i0 * ldc + n0;
          if (mr == LMR && nc == LNR) {
            microBf16(packA[t], Bp, k2n, Ct, ldc, accumulate);
          } else {  // edge tile: through a zero-padded copy, with the same arithmetic
            std::memset(tileC, 0, sizeof(tileC));
            if (accumulate)
              for (int i = 0; i < mr; ++i) std::memcpy(tileC + i * LNR, Ct + i * ldc, nc * sizeof(float));
            microBf16(packA[t], Bp, k2n, tileC, LNR, accumulate);
            for (int i = 0; i < mr; ++i) std::memcpy(Ct + i * ldc, tileC + i * LNR, nc * sizeof(float));
          }
          if (last)
            epilogue(Ct, ldc, mr, nc, B.bias.data() + n0, act, residual ? residual + i0 * ldr + n0 : nullptr,
                     ldr);
        }
      }
    }
  }
}
#endif  // MLXR_LOWP_BF16

#ifdef MLXR_LOWP_I8
MLXR_TARGET void gemmI8(const float* A, long lda, int rows, const PackedI8& B, float* C, long ldc, Act act,
                        const float* residual, long ldr) {
  const int K = B.K, Kp = B.Kp, N = B.N, k4n = Kp / 4;
  const int panels = (N + LNR - 1) / LNR;
#if MLXR_I8_A_MODE == 2
  constexpr int copies = 2;
#else
  constexpr int copies = 1;
#endif
  // Per thread, grown to the largest K seen: MC rows of Kp bytes (x2 for mode 2) + a row of q.
  thread_local std::vector<int8_t> packBuf;
  const size_t tileBytes = static_cast<size_t>(copies) * Kp * LMR;
  if (packBuf.size() < tileBytes * (LMC / LMR) + Kp) packBuf.resize(tileBytes * (LMC / LMR) + Kp);
  int8_t* row = packBuf.data() + tileBytes * (LMC / LMR);
  float sA[LMC];
  int off[LMC];  // per row: what times colSum turns the kernel's sum into sum((q - z) * w)
  alignas(64) int32_t acc[LMR * LNR];
  for (int m0 = 0; m0 < rows; m0 += LMC) {
    const int mc = std::min(LMC, rows - m0);
    const int tiles = (mc + LMR - 1) / LMR;
    for (int t = 0; t < tiles; ++t) {  // quantise and pack: [k4][MR][4] (then |q| for mode 2)
      int8_t* dst = packBuf.data() + t * tileBytes;
      for (int i = 0; i < LMR; ++i) {
        const int r = t * LMR + i;
        if (r < mc) {
          int z = 0;
          sA[r] = quantiseRow(A + static_cast<long>(m0 + r) * lda, K, row, &z);
          off[r] = MLXR_I8_A_MODE == 1 ? -z : 128 - z;
          std::memset(row + K, 0, Kp - K);  // B is zero past K: any value works
        } else {
          std::memset(row, 0, Kp);
        }
        for (int k4 = 0; k4 < Kp / 4; ++k4) {  // a k-quad is a 32-bit word: the interleave is a copy
          const size_t o = (static_cast<size_t>(k4) * LMR + i) * 4;
          uint32_t quad;
          std::memcpy(&quad, row + 4 * k4, 4);
#if MLXR_I8_A_MODE == 1
          quad ^= 0x80808080u;
#endif
          std::memcpy(dst + o, &quad, 4);
#if MLXR_I8_A_MODE == 2
          for (int u = 0; u < 4; ++u) {
            const int8_t x = row[4 * k4 + u];
            dst[static_cast<size_t>(Kp) * LMR + o + u] = static_cast<int8_t>(x < 0 ? -x : x);
          }
#endif
        }
      }
    }
    for (int p = 0; p < panels; ++p) {
      const int8_t* Bp = B.panels.data() + static_cast<size_t>(p) * Kp * LNR;
      const int n0 = p * LNR, nc = std::min(LNR, N - n0);
      const float* sB = B.scale.data() + n0;
      const int32_t* cs = B.colSum.data() + n0;
      for (int t = 0; t < tiles; ++t) {
        const int i0 = m0 + t * LMR;
        const int mr = std::min(LMR, m0 + mc - i0);
        microI8(packBuf.data() + t * tileBytes, Bp, k4n, acc);
        float* Ct = C + i0 * ldc + n0;
        for (int i = 0; i < mr; ++i) {
          const float s = sA[i0 - m0 + i];
          const int o = off[i0 - m0 + i];
          for (int j = 0; j < nc; ++j) {
            const int32_t dot = acc[i * LNR + j] + o * cs[j];
            Ct[i * ldc + j] = static_cast<float>(dot) * (s * sB[j]);
          }
        }
        epilogue(Ct, ldc, mr, nc, B.bias.data() + n0, act, residual ? residual + i0 * ldr + n0 : nullptr,
                 ldr);
      }
    }
  }
}
#endif  // MLXR_LOWP_I8

const mlxrerank::cpu::LowpKernels kLowp = {MLXR_LOWP_NAME, LMR, LNR, 1,
#ifdef MLXR_LOWP_BF16
                                           gemmBf16,
#else
                                           nullptr,
#endif
#ifdef MLXR_LOWP_I8
                                           gemmI8
#else
                                           nullptr
#endif
};

}  // namespace
