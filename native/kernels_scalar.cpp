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
