// Fused row kernels for the mlx engine on CUDA GPUs (the `fusedKernels` option, docs/engine-options.md):
//   embeddings       out = LN(word[id] + position[pos] + type[tt]): the three gathers, their sum and the
//                    embedding LayerNorm in one pass (it was three mx::take, two adds and a layer_norm,
//                    the gathers alone ~1.5 ms a forward at batch 512 on an H200)
//   residual norm    out = LN(y + bias + residual): a post-norm block's tail after its matmul (it was a
//                    compiled add(add(mm, bias), residual) and a layer_norm: two kernels, three passes)
// Both take one warp per row, 16-byte vector loads, and compute in float32: the sum, then the mean, the
// biased variance of the centred values (two passes over registers), eps inside the square root and
// (x - mean) * rstd * gamma + beta, rounded once to the output type, as torch's LayerNorm (transformers)
// does. Rows are at most 256 16-byte chunks (2048 16-bit values; embedding and hidden sizes of BERT-like
// rerankers are 128..1024), held in registers.
//
// Included by engine_mlx.cpp; scripts/gpu/check-kernels.mjs compiles the source strings with nvcc the way
// mx::fast::cuda_kernel wraps them (MLX_RERANK_FUSED_SOURCE_ONLY leaves out everything that needs MLX).
#pragma once

#include <cstdint>
#include <cstring>

#ifndef MLX_RERANK_FUSED_SOURCE_ONLY
#include <mlx/mlx.h>

#include "mlx_kernel_cache.h"
#endif

namespace mlxrerank {

constexpr int kFusedWarps = 4;  // rows (warps) per block
constexpr int kFusedThreads = kFusedWarps * 32;
constexpr int kFusedMaxChunks = 256;  // 16-byte chunks in a row: 8 per lane

// Device helpers, passed as cuda_kernel's `header` (the bodies are pasted inside the kernel, where
// templates cannot be declared).
inline const char* fusedKernelsHeader() {
  return R"(
namespace mlx_rerank_fused {

// 16 bytes at p (16-byte aligned) as 16 / sizeof(T) floats, added to f (or stored to it).
template <typename T, bool ADD>
__device__ __forceinline__ void load16(const T* p, float* f) {
  constexpr int N = 16 / sizeof(T);
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const T* h = reinterpret_cast<const T*>(&u);
#pragma unroll
  for (int i = 0; i < N; ++i) f[i] = ADD ? f[i] + static_cast<float>(h[i]) : static_cast<float>(h[i]);
}

template <typename T>
__device__ __forceinline__ void store16(T* p, const float* f) {
  constexpr int N = 16 / sizeof(T);
  uint4 u;
  T* h = reinterpret_cast<T*>(&u);
#pragma unroll
  for (int i = 0; i < N; ++i) h[i] = static_cast<T>(f[i]);
  *reinterpret_cast<uint4*>(p) = u;
}

__device__ __forceinline__ float warpSum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// LayerNorm of one row held by a warp: v[CPL * N] (lane's chunks lane, lane + 32, ...; chunks past CH
// hold zeros and are not written), written to out (the row's start).
template <typename T, int W, int CPL>
__device__ __forceinline__ void normRow(float* v, const T* gamma, const T* beta, T* out, float eps) {
  constexpr int N = 16 / sizeof(T);
  constexpr int CH = W / N;
  const int lane = threadIdx.x & 31;
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < CPL * N; ++i) sum += v[i];
  const float mean = warpSum(sum) / W;
  float sq = 0.0f;
#pragma unroll
  for (int c = 0; c < CPL; ++c) {
    if (lane + 32 * c < CH) {
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const float d = v[c * N + i] - mean;
        sq += d * d;
      }
    }
  }
  const float rstd = rsqrtf(warpSum(sq) / W + eps);
#pragma unroll
  for (int c = 0; c < CPL; ++c) {
    const int k = lane + 32 * c;
    if (k < CH) {
      float g[N], b[N];
      load16<T, false>(gamma + k * N, g);
      load16<T, false>(beta + k * N, b);
#pragma unroll
      for (int i = 0; i < N; ++i) v[c * N + i] = (v[c * N + i] - mean) * rstd * g[i] + b[i];
      store16<T>(out + k * N, v + c * N);
    }
  }
}

}  // namespace mlx_rerank_fused
)";
}

// Embeddings. Inputs: word [V, E], position [P, E], tokenType [Ty, E], gamma [E], beta [E] (InT); ids,
// positions, types [rows] (int32). Output: out [rows, E]. Template constants: E, InT, HAS_POS, HAS_TYPE
// (without them the position / type inputs are placeholders, never read), EPS_BITS (eps's float bits).
inline const char* fusedEmbeddingsSource() {
  return R"(
  namespace fu = mlx_rerank_fused;
  constexpr int N = 16 / sizeof(InT);
  constexpr int CH = E / N;
  constexpr int CPL = (CH + 31) / 32;
  static_assert(E % N == 0 && CPL <= 8, "embedding size: a multiple of 16 bytes, at most 256 chunks");
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= ids_shape[0]) return;
  const InT* w = word + static_cast<size_t>(ids[row]) * E;
  const InT* p = position + static_cast<size_t>(HAS_POS ? positions[row] : 0) * E;
  const InT* t = tokenType + static_cast<size_t>(HAS_TYPE ? types[row] : 0) * E;
  float v[CPL * N];
#pragma unroll
  for (int c = 0; c < CPL; ++c) {
    const int k = lane + 32 * c;
    if (k < CH) {
      fu::load16<InT, false>(w + k * N, v + c * N);
      if (HAS_TYPE) fu::load16<InT, true>(t + k * N, v + c * N);
      if (HAS_POS) fu::load16<InT, true>(p + k * N, v + c * N);
    } else {
#pragma unroll
      for (int i = 0; i < N; ++i) v[c * N + i] = 0.0f;
    }
  }
  fu::normRow<InT, E, CPL>(v, gamma, beta, out + static_cast<size_t>(row) * E, __int_as_float(EPS_BITS));
)";
}

// Residual + bias + LayerNorm. Inputs: y [rows, H] (a matmul's output, no bias), bias [H], residual
// [rows, H], gamma [H], beta [H]. Output: out [rows, H]. Template constants: H, InT, EPS_BITS.
inline const char* residualNormSource() {
  return R"(
  namespace fu = mlx_rerank_fused;
  constexpr int N = 16 / sizeof(InT);
  constexpr int CH = H / N;
  constexpr int CPL = (CH + 31) / 32;
  static_assert(H % N == 0 && CPL <= 8, "hidden size: a multiple of 16 bytes, at most 256 chunks");
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= y_shape[0]) return;
  const size_t at = static_cast<size_t>(row) * H;
  float v[CPL * N];
#pragma unroll
  for (int c = 0; c < CPL; ++c) {
    const int k = lane + 32 * c;
    if (k < CH) {
      fu::load16<InT, false>(y + at + k * N, v + c * N);
      fu::load16<InT, true>(bias + k * N, v + c * N);
      fu::load16<InT, true>(residual + at + k * N, v + c * N);
    } else {
#pragma unroll
      for (int i = 0; i < N; ++i) v[c * N + i] = 0.0f;
    }
  }
  fu::normRow<InT, H, CPL>(v, gamma, beta, out + at, __int_as_float(EPS_BITS));
)";
}

// Whether a row of `width` elements of `itemSize` bytes fits the kernels.
inline bool fusedSupportsWidth(int width, int itemSize) {
  return width > 0 && (width * itemSize) % 16 == 0 && width * itemSize / 16 <= kFusedMaxChunks;
}

// eps as the template constant EPS_BITS (cuda_kernel's template arguments are int, bool or a dtype).
inline int floatBits(float value) {
  int bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

#ifndef MLX_RERANK_FUSED_SOURCE_ONLY
namespace mx = mlx::core;

inline std::tuple<int, int, int> fusedGrid(int rows) {
  return {(rows + kFusedWarps - 1) / kFusedWarps * kFusedThreads, 1, 1};
}

// LN(word[ids] (+ position[positions]) (+ tokenType[types])) [rows, E]. position / tokenType are read
// only when hasPosition / hasType (pass any array of the right dtype otherwise, e.g. word; likewise the
// index arrays). All float inputs of one dtype, contiguous; indices int32 and in range (validated).
inline mx::array fusedEmbeddings(const mx::array& word, const mx::array& position, const mx::array& tokenType,
                                 const mx::array& gamma, const mx::array& beta, const mx::array& ids,
                                 const mx::array& positions, const mx::array& types, bool hasPosition,
                                 bool hasType, float eps, mx::Stream stream) {
  static const mx::fast::CustomKernelFunction kernel =
      cachedCudaKernel("mlx_rerank_fused_embeddings",
                       {"word", "position", "tokenType", "gamma", "beta", "ids", "positions", "types"},
                       {"out"}, fusedEmbeddingsSource(), fusedKernelsHeader());
  const int rows = ids.shape(0);
  const int width = word.shape(1);
  return kernel({word, position, tokenType, gamma, beta, ids, positions, types}, {mx::Shape{rows, width}},
                {word.dtype()}, fusedGrid(rows), {kFusedThreads, 1, 1},
                {{"E", width},
                 {"InT", word.dtype()},
                 {"HAS_POS", hasPosition},
                 {"HAS_TYPE", hasType},
                 {"EPS_BITS", floatBits(eps)}},
                std::nullopt, false, stream)[0];
}

// LN(y + bias + residual) [rows, H], all of one dtype.
inline mx::array residualLayerNorm(const mx::array& y, const mx::array& bias, const mx::array& residual,
                                   const mx::array& gamma, const mx::array& beta, float eps,
                                   mx::Stream stream) {
  static const mx::fast::CustomKernelFunction kernel =
      cachedCudaKernel("mlx_rerank_residual_norm", {"y", "bias", "residual", "gamma", "beta"}, {"out"},
                       residualNormSource(), fusedKernelsHeader());
  const int rows = y.shape(0);
  const int width = y.shape(1);
  return kernel({y, bias, residual, gamma, beta}, {mx::Shape{rows, width}}, {y.dtype()}, fusedGrid(rows),
                {kFusedThreads, 1, 1}, {{"H", width}, {"InT", y.dtype()}, {"EPS_BITS", floatBits(eps)}},
                std::nullopt, false, stream)[0];
}
#endif

}  // namespace mlxrerank
