// The cpu engine's compute kernels, compiled once per instruction set (kernels_avx512.cpp,
// kernels_avx2.cpp, kernels_scalar.cpp from the same kernels_impl.h) and picked at run time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

namespace mlxrerank {
namespace cpu {

enum class Act { None, Gelu, GeluTanh, Relu, Tanh };

// 64-byte aligned float storage (SIMD loads of packed panels never straddle cache lines).
class FloatBuffer {
 public:
  FloatBuffer() = default;
  explicit FloatBuffer(size_t n) { resize(n); }
  ~FloatBuffer() { std::free(p_); }
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;
  FloatBuffer(FloatBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  FloatBuffer& operator=(FloatBuffer&& o) noexcept {
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
    if (posix_memalign(&p, 64, ((n * sizeof(float) + 63) / 64) * 64) != 0) throw std::bad_alloc();
    p_ = static_cast<float*>(p);
    n_ = n;
  }
  float* data() { return p_; }
  const float* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(float); }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

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
  // pair (qRows = len, or 1 for [CLS] only). scratch holds attentionScratch(len, hd) floats.
  void (*attention)(const float* q, long ldq, int qRows, const float* k, const float* v, long ldkv, int len,
                    int hd, float scale, float* out, long ldo, float* scratch);
  size_t (*attentionScratch)(int len, int hd);
};

const Kernels* kernelsScalar();
const Kernels* kernelsAvx2();    // nullptr when not built for x86-64
const Kernels* kernelsAvx512();  // nullptr when not built for x86-64

}  // namespace cpu
}  // namespace mlxrerank
