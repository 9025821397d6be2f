// Packing Linear weights for the reduced-precision GEMMs (layouts in kernels.h), once at load. Shared
// by every kernel set: only the panel width nr differs.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace mlxrerank {
namespace cpu {

// W -> bf16 k-pairs in panels of nr columns (kernels.h, PackedBf16).
PackedBf16 packBf16(const float* const* rows, const float* bias, int N, int K, int nr, int kBlock) {
  PackedBf16 m;
  m.K = K;
  const int kb = std::max(2, kBlock);
  m.Kp = (K + kb - 1) / kb * kb;
  m.nr = nr;
  m.N = N;
  const int panels = (m.N + nr - 1) / nr;
  m.panels.resize(static_cast<size_t>(panels) * m.Kp * nr);
  std::fill(m.panels.data(), m.panels.data() + m.panels.size(), uint16_t{0});
  m.bias.resize(m.N);
  for (int row = 0; row < N; ++row) {
    const float* src = rows[row];
    uint16_t* dst = m.panels.data() + static_cast<size_t>(row / nr) * m.Kp * nr + (row % nr) * 2;
    for (int k = 0; k < K; ++k) dst[static_cast<size_t>(k / 2) * nr * 2 + k % 2] = toBf16(src[k]);
    m.bias.data()[row] = bias[row];
  }
  return m;
}

// W -> per-output-channel symmetric int8 in panels of nr columns of k-quads (kernels.h, PackedI8).
PackedI8 packI8(const float* const* rows, const float* bias, int N, int K, int nr, int kBlock) {
  PackedI8 m;
  m.K = K;
  const int kb = std::max(4, kBlock);
  m.Kp = (K + kb - 1) / kb * kb;
  m.nr = nr;
  m.N = N;
  const int panels = (m.N + nr - 1) / nr;
  m.panels.resize(static_cast<size_t>(panels) * m.Kp * nr);
  std::fill(m.panels.data(), m.panels.data() + m.panels.size(), int8_t{0});
  m.colSum.resize(static_cast<size_t>(panels) * nr);
  std::fill(m.colSum.data(), m.colSum.data() + m.colSum.size(), 0);
  m.scale.resize(m.N);
  m.bias.resize(m.N);
  for (int row = 0; row < N; ++row) {
    const float* src = rows[row];
    float mx = 0;
    for (int k = 0; k < K; ++k) mx = std::max(mx, std::fabs(src[k]));
    const float s = mx > 0 ? mx / 127.0f : 0.0f;
    int8_t* dst = m.panels.data() + static_cast<size_t>(row / nr) * m.Kp * nr + (row % nr) * 4;
    int32_t sum = 0;
    for (int k = 0; k < K; ++k) {
      const float q = s > 0 ? std::min(127.0f, std::max(-127.0f, std::nearbyint(src[k] / s))) : 0.0f;
      dst[static_cast<size_t>(k / 4) * nr * 4 + k % 4] = static_cast<int8_t>(q);
      sum += static_cast<int32_t>(q);
    }
    m.colSum.data()[row] = sum;
    m.scale.data()[row] = s;
    m.bias.data()[row] = bias[row];
  }
  return m;
}

}  // namespace cpu
}  // namespace mlxrerank
