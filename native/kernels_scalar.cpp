// Portable kernels: plain C++ that the compiler vectorises for the baseline ISA (SSE2 on x86-64,
// NEON on arm64). Always available.
#include <cstring>

#include "kernels.h"

#define MLXR_TARGET
#define MLXR_MR 4
#define MLXR_NR 8
#define MLXR_NAME "scalar"

namespace {
void microKernel(const float* A, const float* B, int kc, float* C, long ldc, bool accumulate) {
  // 4 x 8 accumulators as 8 four-lane vectors (GCC / Clang vector extensions: SSE2 or NEON).
  typedef float v4 __attribute__((vector_size(16)));
  v4 c[4][2];
  for (int i = 0; i < 4; ++i)
    for (int h = 0; h < 2; ++h) {
      v4 t = {0, 0, 0, 0};
      if (accumulate) std::memcpy(&t, C + i * ldc + 4 * h, sizeof(t));
      c[i][h] = t;
    }
  for (int k = 0; k < kc; ++k) {
    v4 b0, b1;
    std::memcpy(&b0, B + k * 8, sizeof(b0));
    std::memcpy(&b1, B + k * 8 + 4, sizeof(b1));
    for (int i = 0; i < 4; ++i) {
      const float a = A[k * 4 + i];
      c[i][0] += a * b0;
      c[i][1] += a * b1;
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int h = 0; h < 2; ++h) std::memcpy(C + i * ldc + 4 * h, &c[i][h], sizeof(v4));
}
}  // namespace

#include "kernels_impl.h"

const mlxrerank::cpu::Kernels* mlxrerank::cpu::kernelsScalar() { return &kKernels; }

// Reduced precision, plain C++: 4 x 8 tiles. The float32 FMAs are std::fma (one rounding, as the SIMD
// kernels' FMAs), so this is the bit-exact reference the other kernels are checked against.
#define MLXR_LOWP_MR 4
#define MLXR_LOWP_NR 8
#define MLXR_LOWP_NAME "scalar"
#define MLXR_LOWP_BF16
#define MLXR_BF16_A_FLOAT
#define MLXR_LOWP_I8
#define MLXR_I8_A_MODE 0

namespace {
void microBf16(const float* A, const uint16_t* B, int k2n, float* C, long ldc, bool accumulate) {
  float c[4][8];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) c[i][j] = accumulate ? C[i * ldc + j] : 0.0f;
  for (int k2 = 0; k2 < k2n; ++k2) {
    float be[8], bo[8];
    for (int j = 0; j < 8; ++j) {
      const uint32_t e = static_cast<uint32_t>(B[(k2 * 8 + j) * 2]) << 16;
      const uint32_t o = static_cast<uint32_t>(B[(k2 * 8 + j) * 2 + 1]) << 16;
      std::memcpy(&be[j], &e, 4);
      std::memcpy(&bo[j], &o, 4);
    }
    for (int i = 0; i < 4; ++i) {
      const float ae = A[(2 * k2) * 4 + i], ao = A[(2 * k2 + 1) * 4 + i];
      for (int j = 0; j < 8; ++j) c[i][j] = std::fma(ae, be[j], std::fma(ao, bo[j], c[i][j]));
    }
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) C[i * ldc + j] = c[i][j];
}

void microI8(const int8_t* A, const int8_t* B, int k4n, int32_t* C) {
  int32_t c[4][8] = {};
  for (int k4 = 0; k4 < k4n; ++k4)
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 8; ++j)
        for (int u = 0; u < 4; ++u) c[i][j] += A[(k4 * 4 + i) * 4 + u] * B[(k4 * 8 + j) * 4 + u];
  std::memcpy(C, c, sizeof(c));
}
}  // namespace

#include "kernels_lowp_impl.h"

const mlxrerank::cpu::LowpKernels* mlxrerank::cpu::lowpScalar() { return &kLowp; }
