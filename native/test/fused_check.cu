// Standalone check of the fused row kernels (native/mlx_fused_kernels.h: embeddings + LayerNorm, residual +
// bias + LayerNorm) against a float64 CPU reference, and their time and bandwidth at the MiniLM shape. Needs
// no MLX: it runs the kernel SOURCE STRINGS that ship, wrapped the way mx::fast::cuda_kernel wraps them
// (the template constants become template parameters), as native/test/flash_check.cu does for attention.
//
// Two passes (scripts/gpu/fused-check.sh runs both):
//   1. built with -DFUSED_CHECK_EMIT (host code only): `fused_emit > kernels.cuh` writes the kernels;
//   2. built with -DFUSED_CHECK_KERNELS='"kernels.cuh"': the harness. Exit status 1 when a case fails.
#define MLX_RERANK_FUSED_SOURCE_ONLY
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "../mlx_fused_kernels.h"

#ifdef FUSED_CHECK_EMIT

int main() {
  std::printf(
      "#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n#include <cuda/std/array>\n#include <cstdint>\n");
  std::printf("namespace mlx::core::cu { using Shape = cuda::std::array<int32_t, 10>; }\n");
  std::printf("%s\n", mlxrerank::fusedKernelsHeader());
  std::printf("namespace mlx::core::cu {\n");
  // Parameters as build_kernel writes them: each input (with _shape where the body uses it), the output.
  std::printf(
      "template <int E, typename InT, bool HAS_POS, bool HAS_TYPE, int EPS_BITS>\n"
      "__global__ void embeddings_kernel(const InT* word, const InT* position, const InT* tokenType,\n"
      "    const InT* gamma, const InT* beta, const int32_t* ids, const __grid_constant__ Shape ids_shape,\n"
      "    const int32_t* positions, const int32_t* types, InT* out) {\n%s\n}\n",
      mlxrerank::fusedEmbeddingsSource());
  std::printf(
      "template <int H, typename InT, int EPS_BITS>\n"
      "__global__ void residual_kernel(const InT* y, const __grid_constant__ Shape y_shape, const InT* "
      "bias,\n"
      "    const InT* residual, const InT* gamma, const InT* beta, InT* out) {\n%s\n}\n",
      mlxrerank::residualNormSource());
  std::printf("}  // namespace mlx::core::cu\n");
  return 0;
}

#else
#include FUSED_CHECK_KERNELS

namespace {

using mlx::core::cu::Shape;

#define CUDA_OK(call)                                                                             \
  do {                                                                                            \
    cudaError_t e_ = (call);                                                                      \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(2);                                                                               \
    }                                                                                             \
  } while (0)

uint64_t rngState = 0x9e3779b97f4a7c15ull;
float uniform(float lo, float hi) {  // xorshift64*
  rngState ^= rngState >> 12;
  rngState ^= rngState << 25;
  rngState ^= rngState >> 27;
  const uint64_t r = rngState * 0x2545f4914f6cdd1dull;
  return lo + (hi - lo) * static_cast<float>(r >> 40) / static_cast<float>(1 << 24);
}

template <typename T>
struct Host;
template <>
struct Host<__half> {
  static __half from(float f) { return __float2half(f); }
  static float to(__half h) { return __half2float(h); }
  static constexpr int mantissa = 10;
  static constexpr const char* name = "float16";
};
template <>
struct Host<__nv_bfloat16> {
  static __nv_bfloat16 from(float f) { return __float2bfloat16(f); }
  static float to(__nv_bfloat16 h) { return __bfloat162float(h); }
  static constexpr int mantissa = 7;
  static constexpr const char* name = "bfloat16";
};

// 16-bit values drawn uniformly from [lo, hi), and their (exact) float values.
template <typename T>
std::vector<T> randomValues(size_t n, float lo, float hi) {
  std::vector<T> v(n);
  for (auto& x : v) x = Host<T>::from(uniform(lo, hi));
  return v;
}

template <typename T>
T* toDevice(const std::vector<T>& v) {
  T* p = nullptr;
  CUDA_OK(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T)));
  CUDA_OK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

template <typename T>
std::vector<T> fromDevice(const T* p, size_t n) {
  std::vector<T> v(n);
  CUDA_OK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

template <typename T>
std::vector<double> toDoubles(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = Host<T>::to(v[i]);
  return d;
}

void freeAll(std::initializer_list<void*> pointers) {
  for (void* p : pointers) CUDA_OK(cudaFree(p));
}

// Microseconds a launch of `launch` takes: 20 untimed, then the mean of 200 between two events.
template <typename F>
double timeLaunches(F launch) {
  for (int i = 0; i < 20; ++i) launch();
  CUDA_OK(cudaGetLastError());
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  CUDA_OK(cudaEventRecord(start));
  constexpr int reps = 200;
  for (int i = 0; i < reps; ++i) launch();
  CUDA_OK(cudaEventRecord(stop));
  CUDA_OK(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
  CUDA_OK(cudaEventDestroy(start));
  CUDA_OK(cudaEventDestroy(stop));
  return 1000.0 * ms / reps;
}

Shape shapeOf(int rows, int width) {
  Shape s{};
  s[0] = rows;
  s[1] = width;
  return s;
}

// LayerNorm of a float64 row as torch computes it (biased variance, eps inside the square root).
std::vector<double> layerNorm(const std::vector<double>& x, const std::vector<double>& g,
                              const std::vector<double>& b, double eps) {
  const size_t n = x.size();
  double mean = 0;
  for (double v : x) mean += v;
  mean /= static_cast<double>(n);
  double var = 0;
  for (double v : x) var += (v - mean) * (v - mean);
  var /= static_cast<double>(n);
  std::vector<double> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = (x[i] - mean) / std::sqrt(var + eps) * g[i] + b[i];
  return y;
}

// Kernel output [rows, width] against the reference rows: within about one unit in the last place of the
// 16-bit output (the kernel computes in float32 and rounds once).
template <typename T>
bool compare(const char* what, const std::vector<T>& out, const std::vector<std::vector<double> >& ref,
             int width) {
  double worst = 0, worstRatio = 0;
  for (size_t r = 0; r < ref.size(); ++r)
    for (int i = 0; i < width; ++i) {
      const double expect = ref[r][i];
      const double err = std::fabs(static_cast<double>(Host<T>::to(out[r * width + i])) - expect);
      const double allowed = std::ldexp(std::max(std::fabs(expect), 1.0 / 64), -Host<T>::mantissa) + 1e-5;
      worst = std::max(worst, err);
      worstRatio = std::max(worstRatio, err / allowed);
    }
  const bool ok = worstRatio <= 1.0;
  std::printf("%-4s %-48s max abs error %.3e (%.2f of the bound)\n", ok ? "ok" : "FAIL", what, worst,
              worstRatio);
  return ok;
}

template <typename T, int E, bool HAS_POS, bool HAS_TYPE>
bool checkEmbeddings(int rows, double eps) {
  constexpr int V = 700, P = 514, TY = 2;
  const auto word = randomValues<T>(size_t{V} * E, -1.0f, 1.0f);
  const auto pos = randomValues<T>(size_t{P} * E, -0.5f, 0.5f);
  const auto type = randomValues<T>(size_t{TY} * E, -0.2f, 0.2f);
  const auto gamma = randomValues<T>(E, 0.8f, 1.2f);
  const auto beta = randomValues<T>(E, -0.1f, 0.1f);
  std::vector<int32_t> ids(rows), positions(rows), types(rows);
  for (int r = 0; r < rows; ++r) {
    ids[r] = static_cast<int32_t>(uniform(0, V)) % V;
    positions[r] = static_cast<int32_t>(uniform(0, P)) % P;
    types[r] = static_cast<int32_t>(uniform(0, TY)) % TY;
  }
  T *dw = toDevice(word), *dp = toDevice(pos), *dt = toDevice(type), *dg = toDevice(gamma),
    *db = toDevice(beta);
  int32_t *di = toDevice(ids), *dpos = toDevice(positions), *dty = toDevice(types);
  T* dout = nullptr;
  CUDA_OK(cudaMalloc(&dout, size_t{static_cast<size_t>(rows)} * E * sizeof(T)));
  const int blocks = (rows + mlxrerank::kFusedWarps - 1) / mlxrerank::kFusedWarps;
  auto launch = [&] {
    mlx::core::cu::embeddings_kernel<E, T, HAS_POS, HAS_TYPE, 0x2b8cbccc>
        <<<blocks, mlxrerank::kFusedThreads>>>(dw, dp, dt, dg, db, di, shapeOf(rows, 1), dpos, dty, dout);
  };
  launch();
  CUDA_OK(cudaGetLastError());
  const std::vector<T> out = fromDevice(dout, size_t{static_cast<size_t>(rows)} * E);
  std::vector<std::vector<double> > ref(rows);
  const std::vector<double> g = toDoubles(gamma), b = toDoubles(beta);
  for (int r = 0; r < rows; ++r) {
    std::vector<double> x(E);
    for (int i = 0; i < E; ++i) {
      x[i] = Host<T>::to(word[size_t{static_cast<size_t>(ids[r])} * E + i]);
      if (HAS_POS) x[i] += Host<T>::to(pos[size_t{static_cast<size_t>(positions[r])} * E + i]);
      if (HAS_TYPE) x[i] += Host<T>::to(type[size_t{static_cast<size_t>(types[r])} * E + i]);
    }
    ref[r] = layerNorm(x, g, b, eps);
  }
  char what[96];
  std::snprintf(what, sizeof what, "embeddings %s E=%d pos=%d type=%d rows=%d", Host<T>::name, E, HAS_POS,
                HAS_TYPE, rows);
  const bool ok = compare(what, out, ref, E);
  freeAll({dw, dp, dt, dg, db, di, dpos, dty, dout});
  return ok;
}

template <typename T, int H>
bool checkResidual(int rows, double eps, bool timed) {
  const auto y = randomValues<T>(size_t{static_cast<size_t>(rows)} * H, -2.0f, 2.0f);
  const auto res = randomValues<T>(size_t{static_cast<size_t>(rows)} * H, -2.0f, 2.0f);
  const auto bias = randomValues<T>(H, -0.5f, 0.5f);
  const auto gamma = randomValues<T>(H, 0.8f, 1.2f);
  const auto beta = randomValues<T>(H, -0.1f, 0.1f);
  T *dy = toDevice(y), *dr = toDevice(res), *dbias = toDevice(bias), *dg = toDevice(gamma),
    *db = toDevice(beta);
  T* dout = nullptr;
  CUDA_OK(cudaMalloc(&dout, y.size() * sizeof(T)));
  const int blocks = (rows + mlxrerank::kFusedWarps - 1) / mlxrerank::kFusedWarps;
  // EPS_BITS 0x3727c5ac = 1e-5f (the fixtures' BERT eps is 1e-12: the embeddings case covers that one).
  auto launch = [&] {
    mlx::core::cu::residual_kernel<H, T, 0x3727c5ac>
        <<<blocks, mlxrerank::kFusedThreads>>>(dy, shapeOf(rows, H), dbias, dr, dg, db, dout);
  };
  launch();
  CUDA_OK(cudaGetLastError());
  const std::vector<T> out = fromDevice(dout, y.size());
  std::vector<std::vector<double> > ref(rows);
  const std::vector<double> g = toDoubles(gamma), b = toDoubles(beta);
  for (int r = 0; r < rows; ++r) {
    std::vector<double> x(H);
    for (int i = 0; i < H; ++i) {
      const size_t at = size_t{static_cast<size_t>(r)} * H + i;
      x[i] = static_cast<double>(Host<T>::to(y[at])) + Host<T>::to(bias[i]) + Host<T>::to(res[at]);
    }
    ref[r] = layerNorm(x, g, b, eps);
  }
  char what[96];
  std::snprintf(what, sizeof what, "residual norm %s H=%d rows=%d", Host<T>::name, H, rows);
  const bool ok = compare(what, out, ref, H);
  if (timed) {
    const double us = timeLaunches(launch);
    const double bytes = 3.0 * static_cast<double>(y.size()) * sizeof(T);  // y, residual in; out
    std::printf("     residual norm %s H=%d rows=%d: %.1f us a launch, %.0f GB/s\n", Host<T>::name, H, rows,
                us, bytes / us / 1e3);
  }
  freeAll({dy, dr, dbias, dg, db, dout});
  return ok;
}

// The embeddings kernel's time at the MiniLM shape (rows of 384, gathers from a 30,522-row table).
template <typename T>
void timeEmbeddings(int rows) {
  constexpr int E = 384, V = 30522, P = 512;
  const auto word = randomValues<T>(size_t{V} * E, -1.0f, 1.0f);
  const auto pos = randomValues<T>(size_t{P} * E, -0.5f, 0.5f);
  const auto type = randomValues<T>(size_t{2} * E, -0.2f, 0.2f);
  const auto gamma = randomValues<T>(E, 0.8f, 1.2f);
  const auto beta = randomValues<T>(E, -0.1f, 0.1f);
  std::vector<int32_t> ids(rows), positions(rows), types(rows);
  for (int r = 0; r < rows; ++r) {
    ids[r] = static_cast<int32_t>(uniform(0, V)) % V;
    positions[r] = r % 96;
    types[r] = (r % 96) < 20 ? 0 : 1;
  }
  T *dw = toDevice(word), *dp = toDevice(pos), *dt = toDevice(type), *dg = toDevice(gamma),
    *db = toDevice(beta);
  int32_t *di = toDevice(ids), *dpos = toDevice(positions), *dty = toDevice(types);
  T* dout = nullptr;
  CUDA_OK(cudaMalloc(&dout, size_t{static_cast<size_t>(rows)} * E * sizeof(T)));
  const int blocks = (rows + mlxrerank::kFusedWarps - 1) / mlxrerank::kFusedWarps;
  auto launch = [&] {
    mlx::core::cu::embeddings_kernel<E, T, true, true, 0x2b8cbccc>
        <<<blocks, mlxrerank::kFusedThreads>>>(dw, dp, dt, dg, db, di, shapeOf(rows, 1), dpos, dty, dout);
  };
  const double us = timeLaunches(launch);
  const double bytes = 4.0 * rows * E * sizeof(T);  // three rows gathered, one written
  std::printf("     embeddings %s E=%d rows=%d: %.1f us a launch, %.0f GB/s\n", Host<T>::name, E, rows, us,
              bytes / us / 1e3);
  freeAll({dw, dp, dt, dg, db, di, dpos, dty, dout});
}

}  // namespace

int main() {
  const double bertEps = static_cast<double>(1e-12f);  // EPS_BITS 0x2b8cbccc
  const double eps5 = static_cast<double>(1e-5f);
  bool ok = true;
  ok &= checkEmbeddings<__half, 384, true, true>(3001, bertEps);
  ok &= checkEmbeddings<__nv_bfloat16, 384, true, true>(3001, bertEps);
  ok &= checkEmbeddings<__half, 768, true, true>(1001, bertEps);
  ok &= checkEmbeddings<__half, 1024, true, false>(1001, bertEps);
  ok &= checkEmbeddings<__nv_bfloat16, 128, false, false>(1001, bertEps);
  ok &= checkEmbeddings<__half, 24, true, true>(777, bertEps);
  ok &= checkResidual<__half, 384>(3001, eps5, false);
  ok &= checkResidual<__nv_bfloat16, 384>(3001, eps5, false);
  ok &= checkResidual<__half, 768>(1001, eps5, false);
  ok &= checkResidual<__nv_bfloat16, 1024>(1001, eps5, false);
  ok &= checkResidual<__half, 32>(1001, eps5, false);
  // Time at batch 512 of the MiniLM shape (~48k token rows).
  ok &= checkResidual<__half, 384>(48000, eps5, true);
  timeEmbeddings<__half>(48000);
  timeEmbeddings<__half>(3000);
  std::printf("%s\n", ok ? "fused-check: all passed" : "fused-check: FAILED");
  return ok ? 0 : 1;
}
#endif
