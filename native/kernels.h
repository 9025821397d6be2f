// The cpu engine's compute kernels, compiled once per instruction set (kernels_avx512.cpp,
// kernels_avx2.cpp, kernels_scalar.cpp from the same kernels_impl.h) and picked at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace mlxrerank {
namespace cpu {

enum class Act { None, Gelu, GeluTanh, Relu, Tanh };

// 64-byte aligned storage (SIMD loads of packed panels never straddle cache lines).
template <typename T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n) { resize(n); }
  ~AlignedBuffer() { std::free(p_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  void resize(size_t n) {  // contents are not kept
    if (n == n_) return;
    std::free(p_);
    p_ = nullptr;
    n_ = 0;
    if (n == 0) return;
    void* p = nullptr;
    if (posix_memalign(&p, 64, ((n * sizeof(T) + 63) / 64) * 64) != 0) throw std::bad_alloc();
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};
using FloatBuffer = AlignedBuffer<float>;

// B = W^T for a Linear weight W [N, K] (row-major, as Hugging Face stores it), packed into panels of
// nr columns: panel p holds B[k][p*nr .. p*nr+nr) for k = 0..K-1 contiguously (zero-padded).
struct PackedMatrix {
  int K = 0, N = 0, nr = 0;
  FloatBuffer panels;
  FloatBuffer bias;  // N entries
  size_t bytes() const { return panels.bytes() + bias.bytes(); }
};

struct Kernels {
  const char* name;
  int mr, nr;
  // C[rows, N] = act(A[rows, K] * B + bias) (+ residual); one thread, any rows >= 1.
  void (*gemm)(const float* A, long lda, int rows, const PackedMatrix& B, float* C, long ldc, Act act,
               const float* residual, long ldr);
  // In place, each of rows rows of n floats (stride ld).
  void (*layerNorm)(float* x, int rows, int n, long ld, const float* gamma, const float* beta, float eps);
  // One head of one pair: out[qRows, hd] = softmax(q k^T * scale) v; q rows are the first qRows of the
  // pair (qRows = len, or 1 for [CLS] only). window >= 0: query i sees keys |i - j| <= window only;
  // < 0: all keys. scratch holds attentionScratch(len, hd) floats, linear in len (query rows are tiled).
  void (*attention)(const float* q, long ldq, int qRows, const float* k, const float* v, long ldkv, int len,
                    int hd, float scale, int window, float* out, long ldo, float* scratch);
  size_t (*attentionScratch)(int len, int hd);
  // In place on each of rows rows (stride ld): x[0..n) = act(x[0..n)) * x[n..2n) (GeGLU and kin).
  void (*gatedAct)(float* x, int rows, int n, long ld, Act act);
};

// The reduced-precision GEMMs (dtype 'bfloat16' and 'int8'): the same C = act(A * B + bias) (+ residual)
// contract as Kernels::gemm, with B packed at load and A rounded / quantised at the GEMM input.
//
// bfloat16: B panel p holds, for k2 = 0..Kp/2-1 and column j < nr, the pair (B[2k2][j], B[2k2+1][j]) as
// two bf16 (round to nearest even); A rows are rounded to bf16 the same way; products are exact in
// float32 and accumulate in float32 with fused multiply-adds, the odd k of a pair first, then the even
// one (the order of vdpbf16ps), so every FMA-based kernel gives the same bits. The matrix-unit kernels
// (AMX tdpbf16ps, arm64 bfmmla) sum in their own order and rounding; engine_check bounds them against a
// float64 reference instead.
struct PackedBf16 {
  int K = 0, Kp = 0, N = 0, nr = 0;  // Kp = K rounded up to 2
  AlignedBuffer<uint16_t> panels;
  FloatBuffer bias;
  size_t bytes() const { return panels.bytes() + bias.bytes(); }
};

// int8: W quantised per output channel, symmetric: q = round(w / s), s = max|w| / 127 (q in
// [-127, 127]). B panel p holds, for k4 = 0..Kp/4-1 and column j < nr, the four int8 q[j][4k4 .. 4k4+4).
// A rows are quantised per row (asymmetric, u8 with a zero point: kernels_lowp_impl.h) at the GEMM
// input; the int32 dot product, scaled by sA * sB[j], goes through the float32 epilogue.
// colSum[j] = sum_k q[j][k] turns sums over stored activation codes into sums over (q - zero point).
struct PackedI8 {
  int K = 0, Kp = 0, N = 0, nr = 0;  // Kp = K rounded up to 4
  AlignedBuffer<int8_t> panels;
  FloatBuffer scale, bias;        // N entries
  AlignedBuffer<int32_t> colSum;  // panels * nr entries (zero past N)
  size_t bytes() const { return panels.bytes() + scale.bytes() + bias.bytes() + colSum.bytes(); }
};

struct LowpKernels {
  const char* name;
  int mr, nr;
  int kBlock;  // the packers pad K (zeros) to a multiple of this (AMX loads whole 64-byte tile rows)
  // Either may be nullptr: a kernel set serves the dtypes its instructions serve.
  void (*gemmBf16)(const float* A, long lda, int rows, const PackedBf16& B, float* C, long ldc, Act act,
                   const float* residual, long ldr);
  void (*gemmI8)(const float* A, long lda, int rows, const PackedI8& B, float* C, long ldc, Act act,
                 const float* residual, long ldr);
};

// float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). The one rounding every bf16 kernel
// and the packer use.
inline uint16_t toBf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

const Kernels* kernelsScalar();
const Kernels* kernelsAvx2();    // nullptr when not built for x86-64
const Kernels* kernelsAvx512();  // nullptr when not built for x86-64

// W [N, K] (row r at rows[r]) and bias [N] packed for the reduced-precision GEMMs in panels of nr
// columns, K zero-padded to a multiple of kBlock (and of 2 / 4) (kernels_pack.cpp).
PackedBf16 packBf16(const float* const* rows, const float* bias, int N, int K, int nr, int kBlock = 2);
PackedI8 packI8(const float* const* rows, const float* bias, int N, int K, int nr, int kBlock = 4);

// Reduced-precision kernel sets, each nullptr where this CPU (or build) lacks its instructions.
const LowpKernels* lowpScalar();      // bf16 + int8, plain C++ (always)
const LowpKernels* lowpAvx2();        // bf16 (emulated with FMA) + int8 (vpmaddubsw), AVX2 + FMA
const LowpKernels* lowpAvxVnni();     // int8 (vpdpbusd, 256-bit), AVX-VNNI
const LowpKernels* lowpAvx512();      // bf16 (widened + FMA, float32's speed), AVX-512 F
const LowpKernels* lowpAvx512Bf16();  // bf16 (vdpbf16ps), AVX-512 BF16
const LowpKernels* lowpAvx512Vnni();  // int8 (vpdpbusd, 512-bit), AVX-512 VNNI
const LowpKernels* lowpAmx();         // bf16 (tdpbf16ps) + int8 (tdpbusd), AMX (Linux; kernels_amx.cpp)
const LowpKernels* lowpNeon();        // bf16 (fmla) + int8 (sdot), arm64 with dotprod; nullptr elsewhere
const LowpKernels* lowpNeonMm();      // bf16 (bfmmla) and / or int8 (smmla), arm64 with BF16 / I8MM

}  // namespace cpu
}  // namespace mlxrerank
