// Standalone check of the tensor-core varlen attention kernel (native/mlx_flash_attention.h) against a
// float64 CPU reference and against the CUDA-core kernel (native/mlx_varlen_attention.h), and a timing of
// both at the MiniLM and base shapes. Needs no MLX: it runs the kernel SOURCE STRINGS that ship, wrapped
// the way mx::fast::cuda_kernel wraps them (the template constants become template parameters).
//
// Two passes (scripts/gpu/flash-check.sh runs both):
//   1. built with -DFLASH_CHECK_EMIT (host code only): `flash_emit harness VARLEN_HEADER > kernels.cuh`
//      writes the kernels; `flash_emit mlx D HEADS float16|bfloat16 WINDOW` prints the source exactly as
//      MLX's build_kernel does (for `nvcc -arch=sm_90a -std=c++17 -I<mlx source> -c`).
//   2. built with -DFLASH_CHECK_KERNELS='"kernels.cuh"': the harness.
// The flash source is included at compile time; the CUDA-core kernel's source is read out of its header
// file (the raw string of varlenAttentionSource()), since that header needs MLX.
#define MLX_RERANK_FLASH_SOURCE_ONLY
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../mlx_flash_attention.h"

#ifdef FLASH_CHECK_EMIT
#include <fstream>
#include <sstream>

namespace {

std::string readVarlenSource(const char* path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path);
    std::exit(2);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const size_t fn = text.find("varlenAttentionSource()");
  const size_t open = text.find("R\"(", fn);
  const size_t close = text.find(")\"", open);
  if (fn == std::string::npos || open == std::string::npos || close == std::string::npos) {
    std::fprintf(stderr, "no varlenAttentionSource() raw string in %s\n", path);
    std::exit(2);
  }
  return text.substr(open + 3, close - open - 3);
}

// The kernel's parameters as build_kernel writes them (inputs qkv, offsets, blocks; output out).
std::string params(const std::string& body, const std::string& type) {
  std::string p = "    const " + type + "* qkv,\n";
  if (body.find("qkv_shape") != std::string::npos) p += "    const __grid_constant__ Shape qkv_shape,\n";
  return p + "    const int32_t* offsets,\n    const int32_t* blocks,\n    " + type + "* out) {\n";
}

int emitHarness(const char* varlenHeader) {
  const std::string varlen = readVarlenSource(varlenHeader);
  const std::string flash = mlxrerank::flashAttentionSource();
  std::printf("#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n#include <cuda/std/array>\n#include <cstdint>\n");
  std::printf("namespace mlx::core::cu { using Shape = cuda::std::array<int32_t, 10>; }\n");
  std::printf("%s\n", mlxrerank::flashAttentionHeader());
  std::printf("namespace mlx::core::cu {\n");
  std::printf("template <int D, int HEADS, typename InT, int WINDOW>\n__global__ void flash_kernel(\n%s%s\n}\n",
              params(flash, "InT").c_str(), flash.c_str());
  std::printf("template <int D, int HEADS, typename InT, int WINDOW>\n__global__ void varlen_kernel(\n%s%s\n}\n",
              params(varlen, "InT").c_str(), varlen.c_str());
  std::printf("}  // namespace mlx::core::cu\n");
  return 0;
}

// Exactly mlx/backend/cuda/custom_kernel.cpp's build_kernel (MLX 0.32) for flashVarlenAttention's call.
int emitMlx(int d, int heads, const std::string& dtype, int window) {
  const std::string type = dtype == "bfloat16" ? "__nv_bfloat16" : "__half";
  const std::string flash = mlxrerank::flashAttentionSource();
  std::printf("\n#include \"mlx/backend/cuda/device/utils.cuh\"\n\n#include <cooperative_groups.h>\n\n");
  std::printf("%s", mlxrerank::flashAttentionHeader());
  std::printf("namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n");
  std::printf("__global__ void custom_kernel_mlx_rerank_flash_attention_%d_%d_%s_%d(\n", d, heads, dtype.c_str(),
              window);
  std::printf("%s", params(flash, type).c_str());
  std::printf("  constexpr int D = %d;\n  constexpr int HEADS = %d;\n  using InT = %s;\n  constexpr int WINDOW = %d;\n\n",
              d, heads, type.c_str(), window);
  std::printf("%s\n}\n\n} // namespace mlx::core::cu\n", flash.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "harness") == 0) return emitHarness(argv[2]);
  if (argc == 6 && std::strcmp(argv[1], "mlx") == 0)
    return emitMlx(std::atoi(argv[2]), std::atoi(argv[3]), argv[4], std::atoi(argv[5]));
  std::fprintf(stderr, "usage: flash_emit harness VARLEN_HEADER | mlx D HEADS float16|bfloat16 WINDOW\n");
  return 2;
}

#else  // the harness

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include FLASH_CHECK_KERNELS

namespace {

using mlx::core::cu::Shape;

#define CHECK(call)                                                                                     \
  do {                                                                                                  \
    cudaError_t err_ = (call);                                                                          \
    if (err_ != cudaSuccess) {                                                                          \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(err_));     \
      std::exit(1);                                                                                     \
    }                                                                                                   \
  } while (0)

int failures = 0;

// The block table, as varlenBlocks() (mlx_varlen_attention.h) builds it: {pair, first query} per 64
// queries, then {-1, first row} per 64 padding rows.
std::vector<int32_t> blockTable(const std::vector<int32_t>& offsets, int rows) {
  std::vector<int32_t> b;
  for (size_t p = 0; p + 1 < offsets.size(); ++p)
    for (int32_t q = 0; q < offsets[p + 1] - offsets[p]; q += mlxrerank::kFlashQueries) {
      b.push_back(static_cast<int32_t>(p));
      b.push_back(q);
    }
  for (int r = offsets.back(); r < rows; r += mlxrerank::kFlashQueries) {
    b.push_back(-1);
    b.push_back(r);
  }
  return b;
}

template <typename T>
float toF(T v) {
  return static_cast<float>(v);
}
template <typename T>
T fromF(float v);
template <>
__half fromF<__half>(float v) {
  return __float2half(v);
}
template <>
__nv_bfloat16 fromF<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}

struct Batch {
  std::vector<int32_t> offsets, blocks;
  int rows = 0;  // offsets.back() plus bucket padding
};

Batch makeBatch(const std::vector<int>& lengths, int padding) {
  Batch b;
  b.offsets.push_back(0);
  for (int len : lengths) b.offsets.push_back(b.offsets.back() + len);
  b.rows = b.offsets.back() + padding;
  b.blocks = blockTable(b.offsets, b.rows);
  return b;
}

// float64 reference on the 16-bit inputs as stored.
std::vector<double> reference(const std::vector<float>& qkv, const Batch& b, int heads, int d, int window) {
  const int row = 3 * heads * d;
  std::vector<double> out(static_cast<size_t>(b.rows) * heads * d, 0.0);
  std::vector<double> s;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (size_t p = 0; p + 1 < b.offsets.size(); ++p) {
    const int start = b.offsets[p], len = b.offsets[p + 1] - start;
    s.assign(len, 0.0);
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < len; ++i) {
        const float* q = &qkv[static_cast<size_t>(start + i) * row + h * d];
        double mx = -1e300;
        for (int j = 0; j < len; ++j) {
          if (window > 0 && std::abs(i - j) > window / 2) continue;
          const float* k = &qkv[static_cast<size_t>(start + j) * row + heads * d + h * d];
          double a = 0;
          for (int e = 0; e < d; ++e) a += static_cast<double>(q[e]) * k[e];
          s[j] = a * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        double* o = &out[static_cast<size_t>(start + i) * heads * d + h * d];
        for (int j = 0; j < len; ++j) {
          if (window > 0 && std::abs(i - j) > window / 2) continue;
          const double w = std::exp(s[j] - mx);
          sum += w;
          const float* v = &qkv[static_cast<size_t>(start + j) * row + 2 * heads * d + h * d];
          for (int e = 0; e < d; ++e) o[e] += w * v[e];
        }
        for (int e = 0; e < d; ++e) o[e] /= sum;
      }
  }
  return out;
}

template <typename T>
struct Device {
  T *qkv = nullptr, *out = nullptr;
  int32_t *offsets = nullptr, *blocks = nullptr;
  Shape shape{};
  int numBlocks = 0;
  size_t outCount = 0;

  Device(const std::vector<T>& hqkv, const Batch& b, int heads, int d) {
    CHECK(cudaMalloc(&qkv, hqkv.size() * sizeof(T)));
    CHECK(cudaMemcpy(qkv, hqkv.data(), hqkv.size() * sizeof(T), cudaMemcpyHostToDevice));
    outCount = static_cast<size_t>(b.rows) * heads * d;
    CHECK(cudaMalloc(&out, outCount * sizeof(T)));
    CHECK(cudaMalloc(&offsets, b.offsets.size() * 4));
    CHECK(cudaMemcpy(offsets, b.offsets.data(), b.offsets.size() * 4, cudaMemcpyHostToDevice));
    CHECK(cudaMalloc(&blocks, b.blocks.size() * 4));
    CHECK(cudaMemcpy(blocks, b.blocks.data(), b.blocks.size() * 4, cudaMemcpyHostToDevice));
    shape[0] = b.rows;
    shape[1] = 3 * heads * d;
    numBlocks = static_cast<int>(b.blocks.size() / 2);
  }
  ~Device() {
    cudaFree(qkv);
    cudaFree(out);
    cudaFree(offsets);
    cudaFree(blocks);
  }
  void poison() { CHECK(cudaMemset(out, 0x7f, outCount * sizeof(T))); }  // NaN-ish: every element must be written
  std::vector<float> read() const {
    std::vector<T> h(outCount);
    CHECK(cudaMemcpy(h.data(), out, outCount * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> f(outCount);
    for (size_t i = 0; i < outCount; ++i) f[i] = toF(h[i]);
    return f;
  }
};

// Grids as MLX computes them from flashVarlenAttention's / varlenAttention's (grid, threadgroup).
template <int D, int H, typename T, int W>
void launchFlash(Device<T>& dev) {
  mlx::core::cu::flash_kernel<D, H, T, W>
      <<<dim3(dev.numBlocks, H), mlxrerank::kFlashThreads>>>(dev.qkv, dev.shape, dev.offsets, dev.blocks, dev.out);
}
template <int D, int H, typename T, int W>
void launchVarlen(Device<T>& dev) {
  mlx::core::cu::varlen_kernel<D, H, T, W>
      <<<dim3(dev.numBlocks, H), 64>>>(dev.qkv, dev.shape, dev.offsets, dev.blocks, dev.out);
}

template <typename T>
std::vector<T> randomQkv(const Batch& b, int heads, int d, uint32_t seed, std::vector<float>& asFloat) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> qk(0.0f, 1.2f);  // scores with a spread like a trained model's
  std::uniform_real_distribution<float> v(-1.0f, 1.0f);
  const size_t row = 3 * heads * d;
  std::vector<T> h(static_cast<size_t>(b.rows) * row);
  asFloat.resize(h.size());
  for (size_t r = 0; r < static_cast<size_t>(b.rows); ++r)
    for (size_t c = 0; c < row; ++c) {
      const float x = c < 2 * static_cast<size_t>(heads) * d ? qk(rng) : v(rng);
      h[r * row + c] = fromF<T>(x);
      asFloat[r * row + c] = toF(h[r * row + c]);
    }
  return h;
}

// Max abs error against the reference over real rows (`worst`: where); padding rows must be exactly zero.
double compare(const std::vector<float>& got, const std::vector<double>& want, const Batch& b, int width,
               bool& paddingOk, size_t& worst) {
  double err = 0;
  paddingOk = true;
  worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool real = static_cast<int>(i / width) < b.offsets.back();
    if (real) {
      const double e = std::isnan(got[i]) ? INFINITY : std::fabs(got[i] - want[i]);
      if (e > err) {
        err = e;
        worst = i;
      }
    } else if (got[i] != 0.0f) {
      paddingOk = false;
    }
  }
  return err;
}

template <int D, int H, typename T, int W>
void checkCase(const char* dtype, const std::vector<int>& lengths, double tolerance) {
  const Batch b = makeBatch(lengths, 37);
  std::vector<float> f;
  const std::vector<T> h = randomQkv<T>(b, H, D, 1234 + D + W, f);
  const std::vector<double> ref = reference(f, b, H, D, W);
  Device<T> dev(h, b, H, D);
  dev.poison();
  launchFlash<D, H, T, W>(dev);
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  bool padOk = false;
  size_t worst = 0;
  const std::vector<float> flash = dev.read();
  const double errRef = compare(flash, ref, b, H * D, padOk, worst);
  double errVarlen = NAN;
  if constexpr (W == 0) {  // the CUDA-core kernel, where it takes the same case
    dev.poison();
    launchVarlen<D, H, T, W>(dev);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    const std::vector<float> varlen = dev.read();
    errVarlen = 0;
    for (size_t i = 0; i < static_cast<size_t>(b.offsets.back()) * H * D; ++i)
      errVarlen = std::max(errVarlen, static_cast<double>(std::fabs(flash[i] - varlen[i])));
  }
  const bool ok = errRef <= tolerance && padOk;
  if (!ok) ++failures;
  std::printf("check D=%-3d heads=%d %-8s window=%-3d rows=%-5d max|flash-ref|=%.3e max|flash-varlen|=%.3e "
              "padding=%s %s\n",
              D, H, dtype, W, b.rows, errRef, errVarlen, padOk ? "zero" : "NOT-ZERO", ok ? "PASS" : "FAIL");
  if (!ok) {  // where: the pair, the query in it, the head and the dimension of the worst element
    const int row = static_cast<int>(worst / (H * D)), col = static_cast<int>(worst % (H * D));
    const int pair = static_cast<int>(std::upper_bound(b.offsets.begin(), b.offsets.end(), row) - b.offsets.begin()) - 1;
    std::printf("  worst: pair %d (len %d) query %d head %d dim %d: flash %.5f ref %.5f\n", pair,
                b.offsets[pair + 1] - b.offsets[pair], row - b.offsets[pair], col / D, col % D, flash[worst],
                ref[worst]);
  }
}

template <int D, typename T>
void checkAll(const char* dtype, double tolerance) {
  // Lengths around the tile and block edges (16, 64), one token, a typical pair and long pairs.
  const std::vector<int> lengths = {1, 15, 16, 17, 90, 512, 2048, 63, 64, 65, 129, 3};
  checkCase<D, 2, T, 0>(dtype, lengths, tolerance);
  checkCase<D, 2, T, 128>(dtype, lengths, tolerance);
}

template <int D, int H, int W>
void timeShape(const char* name, const std::vector<int>& lengths) {
  const Batch b = makeBatch(lengths, 0);
  std::vector<float> f;
  const std::vector<__half> h = randomQkv<__half>(b, H, D, 99, f);
  Device<__half> dev(h, b, H, D);
  double flops = 0;  // QK^T and PV: 4 * keys * D per query and head
  for (size_t p = 0; p + 1 < b.offsets.size(); ++p) {
    const double len = b.offsets[p + 1] - b.offsets[p];
    const double keys = W > 0 ? std::min(len, static_cast<double>(W + 1)) : len;
    flops += 4.0 * len * keys * D * H;
  }
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  auto time = [&](auto launch) {
    for (int i = 0; i < 5; ++i) launch();
    CHECK(cudaDeviceSynchronize());
    constexpr int kReps = 50;
    CHECK(cudaEventRecord(e0));
    for (int i = 0; i < kReps; ++i) launch();
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    CHECK(cudaGetLastError());
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    return ms / kReps;
  };
  const float flashMs = time([&] { launchFlash<D, H, __half, W>(dev); });
  float varlenMs = NAN;
  if constexpr (W == 0) varlenMs = time([&] { launchVarlen<D, H, __half, W>(dev); });
  std::printf("time %-34s tokens=%-7d flash %.4f ms (%.1f TFLOP/s)  varlen %.4f ms  varlen/flash %.2fx\n", name,
              b.offsets.back(), flashMs, flops / flashMs / 1e9, varlenMs, varlenMs / flashMs);
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
}

std::vector<int> msmarcoLike(int pairs, uint32_t seed) {  // ~90 tokens a pair, 40..140
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(90.0f, 20.0f);
  std::vector<int> l(pairs);
  for (int& x : l) x = std::clamp(static_cast<int>(n(rng)), 40, 140);
  return l;
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s, sm_%d%d, %d SMs\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  // f16 keeps ~11 bits (P and the output are rounded to it), bf16 ~8.
  checkAll<16, __half>("float16", 4e-3);
  checkAll<32, __half>("float16", 4e-3);
  checkAll<64, __half>("float16", 4e-3);
  checkAll<128, __half>("float16", 4e-3);
  checkAll<32, __nv_bfloat16>("bfloat16", 3e-2);
  checkAll<64, __nv_bfloat16>("bfloat16", 3e-2);
  checkAll<128, __nv_bfloat16>("bfloat16", 3e-2);
  timeShape<32, 12, 0>("MiniLM: 512 pairs ~90 tok, D32 h12", msmarcoLike(512, 7));
  timeShape<64, 12, 0>("base: 512 pairs ~90 tok, D64 h12", msmarcoLike(512, 7));
  timeShape<32, 12, 0>("MiniLM: 32 pairs ~90 tok, D32 h12", msmarcoLike(32, 8));
  timeShape<64, 12, 0>("long: 16 pairs x 2048, D64 h12", std::vector<int>(16, 2048));
  timeShape<64, 12, 128>("long local: 16 x 2048, D64 h12 w128", std::vector<int>(16, 2048));
  std::printf("%s (%d failed)\n", failures ? "FAILED" : "ALL PASSED", failures);
  return failures ? 1 : 0;
}

#endif
