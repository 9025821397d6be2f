// The float32 element-wise functions (exp / erf / tanh approximations) and the GEMM epilogue (bias,
// activation, residual), shared by the float32 driver (kernels_impl.h) and the reduced-precision one
// (kernels_lowp_impl.h). Included by each kernels_<isa>.cpp after it defines MLXR_TARGET; internal
// linkage, one copy per instruction set.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace {

using mlxrerank::cpu::Act;

MLXR_TARGET inline float expApprox(float x) {
  // exp(x) = 2^n * exp(r), |r| <= ln2/2; degree-6 polynomial, < 2 ulp on the range softmax/GELU use.
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

MLXR_TARGET inline float erfApprox(float a) {
  // Rational approximation (as in Eigen / XLA), a few ulp on [-4, 4]; erf is +-1 in float beyond.
  const float x = std::min(std::max(a, -4.0f), 4.0f);
  const float x2 = x * x;
  float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = x2 * p + -2.10102402082508e-06f;
  p = x2 * p + -5.69250639462346e-05f;
  p = x2 * p + -7.34990630326855e-04f;
  p = x2 * p + -2.95459980854025e-03f;
  p = x2 * p + -1.60960333262415e-02f;
  p = x * p;
  float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
  q = x2 * q + -1.68282697438203e-03f;
  q = x2 * q + -7.37332916720468e-03f;
  q = x2 * q + -1.42647390514189e-02f;
  return p / q;
}

MLXR_TARGET inline float tanhApprox(float x) {
  // tanh(x) = 1 - 2 / (exp(2x) + 1), clamped where it is +-1 in float; odd-symmetric.
  const float ax = std::min(std::fabs(x), 9.0f);
  const float e = expApprox(2 * ax);
  const float t = 1.0f - 2.0f / (e + 1.0f);
  return std::copysign(t, x);
}

MLXR_TARGET void epilogue(float* C, long ldc, int rows, int cols, const float* bias, Act act,
                          const float* residual, long ldr) {
  for (int i = 0; i < rows; ++i) {
    float* c = C + i * ldc;
    if (bias)
      for (int j = 0; j < cols; ++j) c[j] += bias[j];
    switch (act) {
      case Act::None:
        break;
      case Act::Gelu:
        for (int j = 0; j < cols; ++j) c[j] = 0.5f * c[j] * (1.0f + erfApprox(c[j] * 0.70710678118654752f));
        break;
      case Act::GeluTanh:
        for (int j = 0; j < cols; ++j) {
          const float x = c[j];
          c[j] = 0.5f * x * (1.0f + tanhApprox(0.79788456080286536f * (x + 0.044715f * x * x * x)));
        }
        break;
      case Act::Relu:
        for (int j = 0; j < cols; ++j) c[j] = std::max(c[j], 0.0f);
        break;
      case Act::Tanh:
        for (int j = 0; j < cols; ++j) c[j] = tanhApprox(c[j]);
        break;
    }
    if (residual) {
      const float* r = residual + i * ldr;
      for (int j = 0; j < cols; ++j) c[j] += r[j];
    }
  }
}

}  // namespace
