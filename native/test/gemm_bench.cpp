// One concern, the GEMM micro-benchmark of the cpu engine's kernel sets (no Node): GFLOP/s of each
// float32 / bf16 / int8 kernel set this CPU has, on the MiniLM-L6 dense-layer shapes, called as the
// engine calls them (row blocks of at most 8 tiles per call, the blocks spread over a thread pool),
// and each one's max |C - scalar C| on the first rows (a sanity line; engine_check is the test).
//
//   gemm_bench [THREADS,...] [SECONDS]     e.g. gemm_bench 1,2,16 0.3
//
// Prints one line per (dtype, kernel, shape, threads): "gemm <dtype> <kernel> MxKxN tN: X GFLOP/s".
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels.h"
#include "threadpool.h"

using namespace mlxrerank::cpu;

namespace {

struct Shape {
  int M, K, N;
  const char* what;
};

// Rows per call as the engine's rowBlocks picks them: two blocks a thread, a multiple of mr, <= 8 mr.
int rowsPerCall(int M, int threads, int mr) {
  const int want = (M + 2 * threads - 1) / (2 * threads);
  return std::max(mr, std::min(8 * mr, (want + mr - 1) / mr * mr));
}

double timeIt(ThreadPool& pool, int M, int mb, double seconds,
              const std::function<void(int r0, int n)>& call) {
  const int blocks = (M + mb - 1) / mb;
  auto once = [&] { pool.parallelFor(blocks, [&](int b, int) { call(b * mb, std::min(mb, M - b * mb)); }); };
  return secondsPerCall(once, seconds);
}

PackedMatrix packF32(const std::vector<float>& w, const std::vector<float>& bias, int N, int K, int nr) {
  PackedMatrix m;
  m.K = K;
  m.N = N;
  m.nr = nr;
  const int panels = (N + nr - 1) / nr;
  m.panels.resize(static_cast<size_t>(panels) * K * nr);
  std::fill(m.panels.data(), m.panels.data() + m.panels.size(), 0.0f);
  m.bias.resize(N);
  for (int n = 0; n < N; ++n) {
    for (int k = 0; k < K; ++k)
      m.panels.data()[(static_cast<size_t>(n / nr) * K + k) * nr + n % nr] =
          w[static_cast<size_t>(n) * K + k];
    m.bias.data()[n] = bias[n];
  }
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line into a pipe: a crash loses no figure
  std::vector<int> threads = {1, 2, 16};
  if (argc > 1) {
    threads.clear();
    for (const char* p = argv[1]; *p;) {
      threads.push_back(std::max(1, std::atoi(p)));
      while (*p && *p != ',') ++p;
      if (*p == ',') ++p;
    }
  }
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.3;
  // MiniLM-L6 at a 2048-token-class batch (~32 pairs of ~96 tokens): q / kv stacked, FFN up, attention
  // out, FFN down.
  const Shape shapes[] = {{3072, 384, 1152, "qkv"},
                          {3072, 384, 1536, "ffn-up"},
                          {3072, 384, 384, "attn-out"},
                          {3072, 1536, 384, "ffn-down"}};
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  // float32: the best set here, the yardstick
  const Kernels* k32 = kernelsAvx512() ? kernelsAvx512() : kernelsAvx2() ? kernelsAvx2() : kernelsScalar();
  // AMX last: the others' figures are printed even if it fails
  const LowpKernels* lowp[] = {lowpAvx512Bf16(), lowpAvx512Vnni(), lowpAvx512(),
                               lowpAvxVnni(),    lowpAvx2(),       lowpAmx()};
  for (const Shape& sh : shapes) {
    std::vector<float> w(static_cast<size_t>(sh.N) * sh.K), bias(sh.N), a(static_cast<size_t>(sh.M) * sh.K);
    for (float& x : w) x = 0.05f * g(rng);
    for (float& x : bias) x = 0.1f * g(rng);
    for (float& x : a) x = g(rng);
    std::vector<float> c(static_cast<size_t>(sh.M) * sh.N), ref(static_cast<size_t>(96) * sh.N);
    std::vector<const float*> rows;
    for (int n = 0; n < sh.N; ++n) rows.push_back(w.data() + static_cast<size_t>(n) * sh.K);
    const double flop = 2.0 * sh.M * sh.K * sh.N;
    for (int t : threads) {
      ThreadPool pool(t);
      {
        const Kernels* k = k32;
        const PackedMatrix m = packF32(w, bias, sh.N, sh.K, k->nr);
        const double s = timeIt(pool, sh.M, rowsPerCall(sh.M, t, k->mr), seconds, [&](int r0, int n) {
          k->gemm(a.data() + static_cast<size_t>(r0) * sh.K, sh.K, n, m,
                  c.data() + static_cast<size_t>(r0) * sh.N, sh.N, Act::None, nullptr, 0);
        });
        std::printf("gemm float32 %-12s %-8s %dx%dx%d t%d: %7.1f GFLOP/s\n", k->name, sh.what, sh.M, sh.K,
                    sh.N, t, flop / s / 1e9);
      }
      for (int dt = 0; dt < 2; ++dt) {
        const bool bf16 = dt == 0;
        // the scalar set's first 96 rows: what each kernel's are compared to
        const LowpKernels* sc = lowpScalar();
        if (bf16) {
          const PackedBf16 m = packBf16(rows.data(), bias.data(), sh.N, sh.K, sc->nr, sc->kBlock);
          sc->gemmBf16(a.data(), sh.K, 96, m, ref.data(), sh.N, Act::None, nullptr, 0);
        } else {
          const PackedI8 m = packI8(rows.data(), bias.data(), sh.N, sh.K, sc->nr, sc->kBlock);
          sc->gemmI8(a.data(), sh.K, 96, m, ref.data(), sh.N, Act::None, nullptr, 0);
        }
        for (const LowpKernels* k : lowp) {
          if (!k || (bf16 ? !k->gemmBf16 : !k->gemmI8)) continue;
          const int mb = rowsPerCall(sh.M, t, k->mr);
          double s = 0;
          if (bf16) {
            const PackedBf16 m = packBf16(rows.data(), bias.data(), sh.N, sh.K, k->nr, k->kBlock);
            s = timeIt(pool, sh.M, mb, seconds, [&](int r0, int n) {
              k->gemmBf16(a.data() + static_cast<size_t>(r0) * sh.K, sh.K, n, m,
                          c.data() + static_cast<size_t>(r0) * sh.N, sh.N, Act::None, nullptr, 0);
            });
          } else {
            const PackedI8 m = packI8(rows.data(), bias.data(), sh.N, sh.K, k->nr, k->kBlock);
            s = timeIt(pool, sh.M, mb, seconds, [&](int r0, int n) {
              k->gemmI8(a.data() + static_cast<size_t>(r0) * sh.K, sh.K, n, m,
                        c.data() + static_cast<size_t>(r0) * sh.N, sh.N, Act::None, nullptr, 0);
            });
          }
          double diff = 0;
          for (size_t i = 0; i < ref.size(); ++i)
            diff = std::max(diff, static_cast<double>(std::fabs(c[i] - ref[i])));
          std::printf("gemm %-7s %-12s %-8s %dx%dx%d t%d: %7.1f GFLOP/s  (max |C - scalar| %.3g)\n",
                      bf16 ? "bf16" : "int8", k->name, sh.what, sh.M, sh.K, sh.N, t, flop / s / 1e9, diff);
        }
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
