// Variable-length self-attention for the mlx engine on CUDA GPUs: one custom kernel that works on the
// packed batch directly (the T token rows of all pairs, back to back) with the pairs' offsets, so that
// attention needs no padding, no gathers into a padded layout, and no shape that depends on the
// lengths in the batch. Included by engine_mlx.cpp only.
//
// Why a kernel of our own: mx::fast::scaled_dot_product_attention wants [pairs, heads, L, d] with one
// L per call. Padding every pair to the batch's longest (or grouping pairs by length) costs gathers
// and scatters per layer, attention work on padding, and on CUDA a cuDNN plan for every new
// (pairs, L) shape (tens to hundreds of ms each, measured on an H100). For BERT-sized heads
// (head_dim <= 128, sequences <= a few hundred tokens) a plain online-softmax kernel on CUDA cores is
// far below the dense layers' cost.
//
// The kernel: a block of kQueries threads takes one (pair, head, run of kQueries queries), one query a
// thread. K and V of the pair's head pass through shared memory in tiles (as float); each thread keeps
// its query, its output accumulator, the running max and sum in registers (online softmax, rescaling
// only when the max grows), and writes its context row once. Accumulation is in float32 whatever the
// storage type. Rows past the real tokens (the bucket padding of the dense layers) get zeros, so that
// every output element is written.
//
// Sliding-window layers (ModernBERT's local attention, window > 0): query i sees keys |i - j| <= window / 2
// only, as transformers and the cpu engine do. A block then walks only the keys its queries can see (the
// union of their ranges), and each thread masks the keys outside its own, so a long pair costs
// O(window) per query, not O(len). The window is a compile-time constant of the kernel (one NVRTC build per
// value): global layers (window 0) compile the masking away entirely. Rotary positions are applied before
// this kernel, on the packed QKV rows.
#pragma once

#include <cstdint>
#include <vector>

// MLX_RERANK_FLASH_SOURCE_ONLY: the kernel source and block table only, without MLX (for
// native/test/kernel_store_check.cpp and flash_check.cu).
#ifndef MLX_RERANK_FLASH_SOURCE_ONLY
#include <mlx/mlx.h>

#include "engine.h"
#include "mlx_kernel_cache.h"
#endif

namespace mlxrerank {

constexpr int kVarlenQueries = 64;  // threads (queries) per block

// One entry per block: {pair, first query} for real pairs, {-1, first row} for padding rows.
inline std::vector<int32_t> varlenBlocks(const std::vector<int32_t>& offsets, int64_t rows) {
  std::vector<int32_t> blocks;
  const size_t pairs = offsets.size() - 1;
  for (size_t p = 0; p < pairs; ++p) {
    for (int32_t q = 0; q < offsets[p + 1] - offsets[p]; q += kVarlenQueries) {
      blocks.push_back(static_cast<int32_t>(p));
      blocks.push_back(q);
    }
  }
  for (int64_t r = offsets.back(); r < rows; r += kVarlenQueries) {
    blocks.push_back(-1);
    blocks.push_back(static_cast<int32_t>(r));
  }
  return blocks;
}

inline const char* varlenAttentionSource() {
  return R"(
  constexpr int ROW = 3 * HEADS * D;  // one packed QKV row: Q | K | V, head-major inside each
  constexpr int KT = 2048 / D;        // keys per shared-memory tile: K and V tiles are 8 KiB each
  constexpr int VEC = 16 / sizeof(InT);  // elements in one 16-byte load
  constexpr int CH = D / VEC;            // 16-byte chunks in one head row
  static_assert(D % 8 == 0 && VEC <= D && D % VEC == 0, "head_dim must be a multiple of 8");
  __shared__ __align__(16) float ks[KT * D];
  __shared__ __align__(16) float vs[KT * D];
  const int pair = blocks[2 * blockIdx.x];
  const int first = blocks[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  if (pair < 0) {  // bucket padding: zero rows [first, first + blockDim.x) of head h
    const int row = first + threadIdx.x;
    if (row < qkv_shape[0]) {
      InT* op = out + (size_t)row * (HEADS * D) + h * D;
#pragma unroll
      for (int d = 0; d < D; ++d) op[d] = (InT)0.0f;
    }
    return;
  }
  const int start = offsets[pair];
  const int len = offsets[pair + 1] - start;
  const int qi = first + threadIdx.x;
  const bool active = qi < len;
  const float scale = rsqrtf((float)D);
  float q[D], acc[D];
  float m = -1e30f, l = 0.0f;
#pragma unroll
  for (int d = 0; d < D; ++d) q[d] = acc[d] = 0.0f;
  if (active) {
    const InT* qp = qkv + (size_t)(start + qi) * ROW + h * D;
#pragma unroll
    for (int d = 0; d < D; ++d) q[d] = (float)qp[d] * scale;
  }
  // Keys this block reads: all of the pair's, or on a window layer the union of its queries' windows.
  // lo / hi: this thread's own window (keys outside it score -inf, i.e. weigh exp(-inf) = 0).
  constexpr int HALF = WINDOW / 2;
  const int kBegin = WINDOW > 0 ? max(0, first - HALF) : 0;
  const int kEnd = WINDOW > 0 ? min(len, first + (int)blockDim.x + HALF) : len;
  const int lo = qi - HALF, hi = qi + HALF;
  const float NEG_INF = __int_as_float(0xff800000);
  for (int k0 = kBegin; k0 < kEnd; k0 += KT) {
    const int n = min(KT, kEnd - k0);
    __syncthreads();  // the previous tile is consumed
    // 16-byte loads of K and V rows (the QKV rows and head offsets are 16-byte aligned), widened
    // to float in shared memory.
#pragma unroll 4
    for (int i = threadIdx.x; i < n * CH; i += blockDim.x) {
      const int j = i / CH, c = i % CH;
      const InT* kp = qkv + (size_t)(start + k0 + j) * ROW + HEADS * D + h * D + c * VEC;
      const uint4 kraw = *reinterpret_cast<const uint4*>(kp);
      const uint4 vraw = *reinterpret_cast<const uint4*>(kp + HEADS * D);
      const InT* ke = reinterpret_cast<const InT*>(&kraw);
      const InT* ve = reinterpret_cast<const InT*>(&vraw);
#pragma unroll
      for (int e = 0; e < VEC; ++e) {
        ks[j * D + c * VEC + e] = (float)ke[e];
        vs[j * D + c * VEC + e] = (float)ve[e];
      }
    }
    __syncthreads();
    if (active) {
      // Four keys at a time: four independent dot products, one max check and one rescale.
      int j = 0;
      for (; j + 4 <= n; j += 4) {
        float s[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const float4* k4 = reinterpret_cast<const float4*>(ks + (j + u) * D);
          float a = 0.0f;
#pragma unroll
          for (int d4 = 0; d4 < D / 4; ++d4) {
            const float4 kv = k4[d4];
            a += q[4 * d4] * kv.x + q[4 * d4 + 1] * kv.y + q[4 * d4 + 2] * kv.z + q[4 * d4 + 3] * kv.w;
          }
          s[u] = WINDOW > 0 && (k0 + j + u < lo || k0 + j + u > hi) ? NEG_INF : a;
        }
        const float mx = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[2], s[3]));
        if (mx > m) {  // new running max: rescale what was summed so far
          const float c = __expf(m - mx);
          l *= c;
#pragma unroll
          for (int d = 0; d < D; ++d) acc[d] *= c;
          m = mx;
        }
        float p[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) p[u] = __expf(s[u] - m);
        l += (p[0] + p[1]) + (p[2] + p[3]);
#pragma unroll
        for (int d4 = 0; d4 < D / 4; ++d4) {
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            const float4 vv = reinterpret_cast<const float4*>(vs + (j + u) * D)[d4];
            acc[4 * d4] += p[u] * vv.x;
            acc[4 * d4 + 1] += p[u] * vv.y;
            acc[4 * d4 + 2] += p[u] * vv.z;
            acc[4 * d4 + 3] += p[u] * vv.w;
          }
        }
      }
      for (; j < n; ++j) {  // the last n % 4 keys of the tile
        if (WINDOW > 0 && (k0 + j < lo || k0 + j > hi)) continue;
        float s = 0.0f;
#pragma unroll
        for (int d = 0; d < D; ++d) s += q[d] * ks[j * D + d];
        if (s > m) {
          const float c = __expf(m - s);
          l *= c;
#pragma unroll
          for (int d = 0; d < D; ++d) acc[d] *= c;
          m = s;
        }
        const float p = __expf(s - m);
        l += p;
#pragma unroll
        for (int d = 0; d < D; ++d) acc[d] += p * vs[j * D + d];
      }
    }
  }
  if (active) {
    InT* op = out + (size_t)(start + qi) * (HEADS * D) + h * D;
    const float inv = 1.0f / l;
#pragma unroll
    for (int d = 0; d < D; ++d) op[d] = (InT)(acc[d] * inv);
  }
)";
}

#ifndef MLX_RERANK_FLASH_SOURCE_ONLY
namespace mx = mlx::core;

// qkv [rows, 3 * heads * headDim] (rows >= offsets.back()), offsets [pairs + 1], blocks from
// varlenBlocks(); window 0: global attention, > 0: keys |i - j| <= window / 2 only. Returns the context
// [rows, heads * headDim], zero on rows past the real tokens.
inline mx::array varlenAttention(const mx::array& qkv, const mx::array& offsets, const mx::array& blocks,
                                 int heads, int headDim, int window, mx::Stream stream) {
  static const mx::fast::CustomKernelFunction kernel = cachedCudaKernel(
      "mlx_rerank_varlen_attention", {"qkv", "offsets", "blocks"}, {"out"}, varlenAttentionSource());
  const int numBlocks = blocks.shape(0) / 2;
  return kernel({qkv, offsets, blocks}, {mx::Shape{qkv.shape(0), heads * headDim}}, {qkv.dtype()},
                {numBlocks * kVarlenQueries, heads, 1}, {kVarlenQueries, 1, 1},
                {{"D", headDim}, {"HEADS", heads}, {"WINDOW", window}, {"InT", qkv.dtype()}}, std::nullopt,
                false, stream)[0];
}
#endif

// The head sizes the kernel is built for: 16-byte loads need headDim % 8 == 0, a tile at least one
// key (2048 / headDim), and per-thread registers hold 2 * headDim floats.
inline bool varlenSupports(int headDim) { return headDim > 0 && headDim <= 128 && headDim % 8 == 0; }

}  // namespace mlxrerank
