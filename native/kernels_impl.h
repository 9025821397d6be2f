// The cache-blocked GEMM driver and the element-wise passes, included by each kernels_<isa>.cpp after
// it defines MLXR_TARGET (a target attribute), MLXR_MR x MLXR_NR and microKernel(). Everything here has
// internal linkage, so each instruction set gets its own copy and no ISA-specific code can be picked
// up by the linker for another translation unit.
//
// Determinism: every output element is computed by the same sequence of operations whatever the
// other rows of the batch are (tails go through a zero-padded tile with the same micro-kernel), so a
// pair scores bit-identically alone or inside any batch.

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels_epilogue.h"

namespace {

using mlxrerank::cpu::Act;
using mlxrerank::cpu::PackedMatrix;

constexpr int MR = MLXR_MR;
constexpr int NR = MLXR_NR;
#ifndef MLXR_KC
#define MLXR_KC 256
#endif
constexpr int KC = MLXR_KC;  // a KC x NR panel of B stays in L1 across a row block
constexpr int MC = 8 * MR;   // rows packed at a time: MC x KC floats (96 KiB max)

// Lane-wise partial sums vectorise without reassociation (no -ffast-math needed); the final fold is
// in a fixed order, so results are deterministic.
constexpr int LANES = 16;

// Loop order (BLIS-like, B pre-packed at load): row chunks of MC rows, K blocks of KC; the chunk's
// MC x KC block of A is packed once, MR-interleaved (contiguous broadcasts, no cache-set conflicts for
// large leading dimensions), and stays in L2 while every KC x NR panel of B is loaded into L1 once and
// reused by all MR-row tiles of the chunk.
// ldp: the floats between panel starts, in units of NR (K for a whole packed matrix; larger when B is
// a run of rows k of a longer packed operand, as attention's values for one block of keys).
MLXR_TARGET void gemmCore(const float* A, long lda, int rows, const float* Bpanels, long ldp,
                          const float* bias, int K, int N, float* C, long ldc, Act act, const float* residual,
                          long ldr) {
  const int panels = (N + NR - 1) / NR;
  alignas(64) float tileC[MR * NR];
  alignas(64) float packA[MC * KC];
  for (int m0 = 0; m0 < rows; m0 += MC) {
    const int mc = std::min(MC, rows - m0);
    const int tiles = (mc + MR - 1) / MR;
    {
      for (int k0 = 0; k0 < K; k0 += KC) {
        const int kc = std::min(KC, K - k0);
        const bool accumulate = k0 > 0;
        const bool last = k0 + kc == K;
        for (int t = 0; t < tiles; ++t) {  // pack: packA[t][k][i] = A[m0 + t*MR + i][k0 + k], zero-padded
          float* dst = packA + t * MR * KC;
          for (int i = 0; i < MR; ++i) {
            const int row = m0 + t * MR + i;
            if (row < m0 + mc) {
              const float* src = A + row * lda + k0;
              for (int k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
            } else {
              for (int k = 0; k < kc; ++k) dst[k * MR + i] = 0.0f;
            }
          }
        }
        for (int p = 0; p < panels; ++p) {
          const float* Bp = Bpanels + (static_cast<long>(p) * ldp + k0) * NR;
          const int n0 = p * NR, nc = std::min(NR, N - n0);
          for (int t = 0; t < tiles; ++t) {
            const int i0 = m0 + t * MR;
            const int mr = std::min(MR, m0 + mc - i0);
            float* Ct = C + i0 * ldc + n0;
            const float* At = packA + t * MR * KC;
            if (mr == MR && nc == NR) {
              microKernel(At, Bp, kc, Ct, ldc, accumulate);
            } else {  // edge tile: through a zero-padded copy, with the same arithmetic
              std::memset(tileC, 0, sizeof(tileC));
              if (accumulate)
                for (int i = 0; i < mr; ++i) std::memcpy(tileC + i * NR, Ct + i * ldc, nc * sizeof(float));
              microKernel(At, Bp, kc, tileC, NR, accumulate);
              for (int i = 0; i < mr; ++i) std::memcpy(Ct + i * ldc, tileC + i * NR, nc * sizeof(float));
            }
            if (last)
              epilogue(Ct, ldc, mr, nc, bias ? bias + n0 : nullptr, act,
                       residual ? residual + i0 * ldr + n0 : nullptr, ldr);
          }
        }
      }
    }
  }
}

MLXR_TARGET void gemm(const float* A, long lda, int rows, const PackedMatrix& B, float* C, long ldc, Act act,
                      const float* residual, long ldr) {
  gemmCore(A, lda, rows, B.panels.data(), B.K, B.bias.data(), B.K, B.N, C, ldc, act, residual, ldr);
}

MLXR_TARGET float laneSum(const float* s) {
  float t = 0;
  for (int l = 0; l < LANES; ++l) t += s[l];
  return t;
}

MLXR_TARGET void layerNorm(float* x, int rows, int n, long ld, const float* gamma, const float* beta,
                           float eps) {
  for (int r = 0; r < rows; ++r) {
    float* v = x + r * ld;
    float s[LANES] = {0};
    const int nv = n - n % LANES;
    for (int j = 0; j < nv; j += LANES)
      for (int l = 0; l < LANES; ++l) s[l] += v[j + l];
    float sum = laneSum(s);
    for (int j = nv; j < n; ++j) sum += v[j];
    const float mean = sum / n;
    float q[LANES] = {0};
    for (int j = 0; j < nv; j += LANES)
      for (int l = 0; l < LANES; ++l) {
        const float d = v[j + l] - mean;
        q[l] += d * d;
      }
    float var = laneSum(q);
    for (int j = nv; j < n; ++j) var += (v[j] - mean) * (v[j] - mean);
    const float rstd = 1.0f / std::sqrt(var / n + eps);
    for (int j = 0; j < n; ++j) v[j] = (v[j] - mean) * rstd * gamma[j] + beta[j];
  }
}

// Query rows go through attention QB at a time: the scores of one block (QB x keys) are all that is
// ever held, so memory is linear in the pair's length. Each row's arithmetic does not depend on the
// block it is in (gemmCore is row-independent), so blocking changes no bit of the result.
constexpr int QB = 64;

size_t attentionScratch(int len, int hd) {
  const size_t keyPanels = (len + NR - 1) / NR, dimPanels = (hd + NR - 1) / NR;
  return keyPanels * hd * NR + dimPanels * len * NR + static_cast<size_t>(std::min(len, QB)) * (len + NR);
}

// Max, exp and normalise s[lo, hi) of one score row; entries outside are set to 0 (outside the window).
MLXR_TARGET void softmaxRow(float* s, int n, int lo, int hi, float scale) {
  const int len = hi - lo;
  float* r = s + lo;
  float m[LANES];
  for (int l = 0; l < LANES; ++l) m[l] = r[0];
  const int nv = len - len % LANES;
  for (int j = 0; j < nv; j += LANES)
    for (int l = 0; l < LANES; ++l) m[l] = std::max(m[l], r[j + l]);
  float mx = r[0];
  for (int l = 0; l < LANES; ++l) mx = std::max(mx, m[l]);
  for (int j = nv; j < len; ++j) mx = std::max(mx, r[j]);
  for (int j = 0; j < len; ++j) r[j] = expApprox((r[j] - mx) * scale);
  float acc[LANES] = {0};
  for (int j = 0; j < nv; j += LANES)
    for (int l = 0; l < LANES; ++l) acc[l] += r[j + l];
  float sum = laneSum(acc);
  for (int j = nv; j < len; ++j) sum += r[j];
  const float inv = 1.0f / sum;
  for (int j = 0; j < len; ++j) r[j] *= inv;
  for (int j = 0; j < lo; ++j) s[j] = 0.0f;
  for (int j = hi; j < n; ++j) s[j] = 0.0f;
}

// One head of one pair as two small GEMMs through the same micro-kernel, per block of query rows:
// S = Q K^T (K packed as the B operand), row softmax, O = P V (V packed as the B operand). With a
// window w >= 0, row i sees keys |i - j| <= w only, and a block computes only the keys its rows see.
MLXR_TARGET void attention(const float* q, long ldq, int qRows, const float* k, const float* v, long ldkv,
                           int len, int hd, float scale, int window, float* out, long ldo, float* scratch) {
  const int keyPanels = (len + NR - 1) / NR, dimPanels = (hd + NR - 1) / NR;
  float* kp = scratch;                                         // [keyPanels][hd][NR]
  float* vp = kp + static_cast<size_t>(keyPanels) * hd * NR;   // [dimPanels][len][NR]
  float* sc = vp + static_cast<size_t>(dimPanels) * len * NR;  // [QB][keys of the block]
  for (int p = 0; p < keyPanels; ++p)
    for (int d = 0; d < hd; ++d) {
      float* dst = kp + (static_cast<size_t>(p) * hd + d) * NR;
      for (int jj = 0; jj < NR; ++jj) {
        const int j = p * NR + jj;
        dst[jj] = j < len ? k[j * ldkv + d] : 0.0f;
      }
    }
  for (int p = 0; p < dimPanels; ++p)
    for (int j = 0; j < len; ++j) {
      float* dst = vp + (static_cast<size_t>(p) * len + j) * NR;
      for (int dd = 0; dd < NR; ++dd) {
        const int d = p * NR + dd;
        dst[dd] = d < hd ? v[j * ldkv + d] : 0.0f;
      }
    }
  for (int i0 = 0; i0 < qRows; i0 += QB) {
    const int qb = std::min(QB, qRows - i0);
    // keys [j0, j1) of this block; j0 on a panel boundary so that K's panels can be used in place
    int j0 = 0, j1 = len;
    if (window >= 0) {
      j0 = std::max(0, i0 - window) / NR * NR;
      j1 = std::min(len, i0 + qb + window);
    }
    const int n = j1 - j0;
    gemmCore(q + static_cast<long>(i0) * ldq, ldq, qb, kp + static_cast<size_t>(j0) * hd, hd, nullptr, hd, n,
             sc, n, Act::None, nullptr, 0);
    for (int i = 0; i < qb; ++i) {
      const int row = i0 + i;
      const int lo = window >= 0 ? std::max(j0, row - window) : j0;
      const int hi = window >= 0 ? std::min(j1, row + window + 1) : j1;
      softmaxRow(sc + static_cast<size_t>(i) * n, n, lo - j0, hi - j0, scale);
    }
    gemmCore(sc, n, qb, vp + static_cast<size_t>(j0) * NR, len, nullptr, n, hd,
             out + static_cast<long>(i0) * ldo, ldo, Act::None, nullptr, 0);
  }
}

// x[r, 0..n) = act(x[r, 0..n)) * x[r, n..2n): a gated linear unit on a [rows, 2n] GEMM output.
MLXR_TARGET void gatedAct(float* x, int rows, int n, long ld, Act act) {
  epilogue(x, ld, rows, n, nullptr, act, nullptr, 0);
  for (int r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    for (int j = 0; j < n; ++j) row[j] *= row[n + j];
  }
}

const mlxrerank::cpu::Kernels kKernels = {MLXR_NAME,        MR,      NR, gemm, layerNorm, attention,
                                          attentionScratch, gatedAct};

}  // namespace
