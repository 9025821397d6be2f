// Variable-length self-attention on tensor cores (FlashAttention-2 style) for the mlx engine on CUDA
// GPUs of compute capability 8.0 and later (A100, L4, H100, H200). Same inputs and outputs as
// varlenAttention (mlx_varlen_attention.h): the packed QKV rows of all pairs back to back, the pairs'
// offsets and the same block table (varlenBlocks), no padding; the output has zero rows past the real
// tokens. Included by engine_mlx.cpp, and by native/test/flash_check.cu (with
// MLX_RERANK_FLASH_SOURCE_ONLY, which leaves out everything that needs MLX) so that the harness tests
// the very source string that ships.
//
// The kernel: a block of four warps takes one (pair, head, run of 64 queries); each warp owns 16 query
// rows. Q stays in registers as mma A fragments. K and V of the pair's head pass through shared memory
// in tiles of 64 keys (cp.async, zero-filled past the keys in range; two stages where they fit in the
// 48 KB of static shared memory, i.e. head_dim <= 64). Per tile a warp computes S = Q K^T with
// mma.sync.m16n8k16 (16-bit inputs, f32 accumulation; K fragments by ldmatrix), masks keys outside the
// pair (and, with a window, outside |i - j| <= window / 2), updates the running row max and sum in
// registers (online softmax in base 2), converts P to 16-bit in registers (the S accumulator layout is
// the A fragment layout of the next mma) and accumulates O += P V (V fragments by ldmatrix.trans).
// Shared memory rows are padded by 16 bytes so that ldmatrix's eight row addresses hit distinct banks.
#pragma once

#ifndef MLX_RERANK_FLASH_SOURCE_ONLY
#include <mlx/mlx.h>

#include "mlx_varlen_attention.h"
#endif

namespace mlxrerank {

constexpr int kFlashWarps = 4;                   // warps per block, 16 query rows each
constexpr int kFlashQueries = kFlashWarps * 16;  // queries per block: the block table's unit
constexpr int kFlashThreads = kFlashWarps * 32;

// Device helpers, passed as cuda_kernel's `header` (the body below is pasted inside the kernel, where
// templates and asm wrappers cannot be declared).
inline const char* flashAttentionHeader() {
  return R"(
namespace mlx_rerank_flash {

template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// c += a (16x16, row) * b (16x8, col), f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma(float* c, const uint32_t* a, uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma<__half>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldsm4(uint32_t* r, const void* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}
__device__ __forceinline__ void ldsm4t(uint32_t* r, const void* p) {
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

// 16 bytes global -> shared, asynchronously; zero-filled when !valid (src is then not read).
__device__ __forceinline__ void cpAsync16(void* dst, const void* src, bool valid) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}
// 2^x in one instruction (MLX compiles without fast math, where exp2f is several); 2^-inf = 0.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

}  // namespace mlx_rerank_flash
)";
}

// The kernel body. Template constants: D (head_dim), HEADS, InT (__half or __nv_bfloat16), WINDOW
// (0: global attention; > 0: keys j with |i - j| <= WINDOW / 2).
inline const char* flashAttentionSource() {
  return R"(
  namespace fl = mlx_rerank_flash;
  constexpr int ROW = 3 * HEADS * D;  // one packed QKV row: Q | K | V, head-major inside each
  constexpr int NW = 4;               // warps per block
  constexpr int KT = 64;              // keys per tile
  constexpr int LD = D + 8;           // shared row stride in 16-bit elements (16 bytes of padding)
  constexpr int CH = D / 8;           // 16-byte chunks in one head row
  constexpr int TILE = KT * LD;       // elements of one K (or V) tile
  constexpr int STAGES = 2 * 2 * TILE * 2 <= 48 * 1024 ? 2 : 1;
  static_assert(D % 16 == 0 && D >= 16 && D <= 128, "head_dim must be 16..128, a multiple of 16");
  static_assert(sizeof(InT) == 2, "16-bit inputs only");
  __shared__ __align__(16) uint16_t ks[STAGES * TILE];
  __shared__ __align__(16) uint16_t vs[STAGES * TILE];

  const int pair = blocks[2 * blockIdx.x];
  const int first = blocks[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int tid = threadIdx.x;
  if (pair < 0) {  // bucket padding: zero rows [first, first + 16 * NW) of head h
    for (int i = tid; i < 16 * NW * CH; i += 32 * NW) {
      const int row = first + i / CH;
      if (row < qkv_shape[0])
        *reinterpret_cast<uint4*>(out + (size_t)row * (HEADS * D) + h * D + (i % CH) * 8) = make_uint4(0, 0, 0, 0);
    }
    return;
  }
  const int warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t = lane & 3;  // mma fragment coordinates: row group, thread in group
  const int start = offsets[pair];
  const int len = offsets[pair + 1] - start;
  const int q0 = first + warp * 16;  // this warp's first query (pair-relative)
  const bool busy = q0 < len;        // warp-uniform: a warp past the pair's end only helps to load
  // Keys any query of this block may see.
  int kbeg = 0, kend = len;
  if (WINDOW > 0) {
    kbeg = max(0, first - WINDOW / 2);
    kend = min(len, min(len, first + 16 * NW) + WINDOW / 2);
  }
  const InT* base = qkv + (size_t)start * ROW + h * D;

  // Q as A fragments: qf[kk] covers head dims 16kk..16kk+15 of rows q0+g and q0+g+8.
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int q = q0 + g + 8 * r;
      const uint32_t* p = reinterpret_cast<const uint32_t*>(base + (size_t)(q < len ? q : 0) * ROW + 16 * kk + 2 * t);
      qf[kk][r] = q < len ? p[0] : 0u;
      qf[kk][2 + r] = q < len ? p[4] : 0u;
    }
  }
  float o[D / 8][4];
#pragma unroll
  for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-1e30f, -1e30f}, l[2] = {0.0f, 0.0f};  // running max (base 2) and this thread's part of the sum
  const float sl2 = rsqrtf((float)D) * 1.4426950408889634f;  // softmax scale, in base 2

  auto load = [&](int stage, int k0) {
    for (int i = tid; i < KT * CH; i += 32 * NW) {
      const int j = i / CH, c = i % CH;
      const bool ok = k0 + j < kend;
      const InT* kp = base + (size_t)(ok ? k0 + j : kbeg) * ROW + HEADS * D + c * 8;
      fl::cpAsync16(ks + stage * TILE + j * LD + c * 8, kp, ok);
      fl::cpAsync16(vs + stage * TILE + j * LD + c * 8, kp + HEADS * D, ok);
    }
    fl::cpAsyncCommit();
  };

  const int tiles = (kend - kbeg + KT - 1) / KT;
  load(0, kbeg);
  for (int it = 0; it < tiles; ++it) {
    const int stage = STAGES == 2 ? (it & 1) : 0;
    const int k0 = kbeg + it * KT;
    if (STAGES == 2 && it + 1 < tiles) {
      load(stage ^ 1, k0 + KT);
      fl::cpAsyncWait<1>();
    } else {
      fl::cpAsyncWait<0>();
    }
    __syncthreads();
    if (busy) {
      const uint16_t* K = ks + stage * TILE;
      const uint16_t* V = vs + stage * TILE;
      // S = Q K^T for 16 rows x KT keys.
      float s[KT / 8][4];
#pragma unroll
      for (int j = 0; j < KT / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
      const int mat = lane >> 3, mr = lane & 7;  // ldmatrix: which 8x8 matrix this lane addresses, which row
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int j = 0; j < KT / 8; j += 2) {
          uint32_t b[4];
          fl::ldsm4(b, K + (8 * (j + (mat >> 1)) + mr) * LD + 16 * kk + 8 * (mat & 1));
          fl::mma<InT>(s[j], qf[kk], b[0], b[1]);
          fl::mma<InT>(s[j + 1], qf[kk], b[2], b[3]);
        }
      }
      // Scale, mask, and the online softmax update (rows g and g + 8 of the warp's 16).
      const bool edge = WINDOW > 0 || k0 + KT > kend;
      float mx[2] = {-1e30f, -1e30f};
#pragma unroll
      for (int j = 0; j < KT / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float v = s[j][e] * sl2;
          if (edge) {
            const int key = k0 + 8 * j + 2 * t + (e & 1);
            const int q = q0 + g + 8 * (e >> 1);
            const bool ok = key < kend && (WINDOW == 0 || abs(q - key) <= WINDOW / 2);
            v = ok ? v : __int_as_float(0xff800000);  // -inf
          }
          s[j][e] = v;
          mx[e >> 1] = fmaxf(mx[e >> 1], v);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        const float mnew = fmaxf(m[r], mx[r]);
        const float c = fl::ex2(m[r] - mnew);
        m[r] = mnew;
        l[r] *= c;
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
          o[j][2 * r] *= c;
          o[j][2 * r + 1] *= c;
        }
      }
#pragma unroll
      for (int j = 0; j < KT / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float p = fl::ex2(s[j][e] - m[e >> 1]);
          s[j][e] = p;
          l[e >> 1] += p;
        }
      }
      // O += P V: P (16 x KT, 16-bit) as A fragments straight from the S accumulators.
#pragma unroll
      for (int kk = 0; kk < KT / 16; ++kk) {
        uint32_t a[4];
        a[0] = fl::pack2<InT>(s[2 * kk][0], s[2 * kk][1]);
        a[1] = fl::pack2<InT>(s[2 * kk][2], s[2 * kk][3]);
        a[2] = fl::pack2<InT>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        a[3] = fl::pack2<InT>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int j = 0; j < D / 8; j += 2) {
          uint32_t b[4];
          fl::ldsm4t(b, V + (16 * kk + 8 * (mat & 1) + mr) * LD + 8 * (j + (mat >> 1)));
          fl::mma<InT>(o[j], a, b[0], b[1]);
          fl::mma<InT>(o[j + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is loaded again
    if (STAGES == 1 && it + 1 < tiles) load(0, k0 + KT);
  }
  if (busy) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
      const int q = q0 + g + 8 * r;
      if (q < len) {
        const float inv = 1.0f / l[r];
        uint32_t* op = reinterpret_cast<uint32_t*>(out + (size_t)(start + q) * (HEADS * D) + h * D + 2 * t);
#pragma unroll
        for (int j = 0; j < D / 8; ++j) op[4 * j] = fl::pack2<InT>(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
      }
    }
  }
)";
}

// Head sizes and storage types the kernel is built for: 16-bit inputs (mma has no f32 form of this
// shape), head_dim a multiple of 16 up to 128 (Q fragments and the f32 O accumulators stay in registers).
inline bool flashSupportsHeadDim(int headDim) { return headDim >= 16 && headDim <= 128 && headDim % 16 == 0; }

#ifndef MLX_RERANK_FLASH_SOURCE_ONLY
namespace mx = mlx::core;

// Also needs a CUDA GPU of compute capability 8.0 or later (mma.sync m16n8k16, ldmatrix, cp.async).
inline bool flashSupports(int headDim, mx::Dtype dtype) {
  if (!flashSupportsHeadDim(headDim) || (dtype != mx::float16 && dtype != mx::bfloat16)) return false;
  if (!mx::cu::is_available()) return false;
  const auto& info = mx::device_info(mx::Device::gpu);
  const auto it = info.find("compute_capability_major");
  return it != info.end() && std::holds_alternative<size_t>(it->second) && std::get<size_t>(it->second) >= 8;
}

static_assert(kFlashQueries == kVarlenQueries, "the flash kernel reads varlenBlocks' table");

// qkv [rows, 3 * heads * headDim] (rows >= offsets.back()), offsets [pairs + 1], blocks from
// varlenBlocks(); window 0 = global attention, > 0: keys j with |i - j| <= window / 2. Returns the
// context [rows, heads * headDim], zero on rows past the real tokens. Needs flashSupports() and a GPU of
// compute capability 8.0 or later.
inline mx::array flashVarlenAttention(const mx::array& qkv, const mx::array& offsets, const mx::array& blocks,
                                      int heads, int headDim, int window, mx::Stream stream) {
  static const mx::fast::CustomKernelFunction kernel =
      cachedCudaKernel("mlx_rerank_flash_attention", {"qkv", "offsets", "blocks"}, {"out"},
                       flashAttentionSource(), flashAttentionHeader());
  const int numBlocks = blocks.shape(0) / 2;
  return kernel({qkv, offsets, blocks}, {mx::Shape{qkv.shape(0), heads * headDim}}, {qkv.dtype()},
                {numBlocks * kFlashThreads, heads, 1}, {kFlashThreads, 1, 1},
                {{"D", headDim}, {"HEADS", heads}, {"InT", qkv.dtype()}, {"WINDOW", window}}, std::nullopt,
                false, stream)[0];
}
#endif

}  // namespace mlxrerank
