// One concern, the native test driver for valgrind and ASan+UBSan runs (no Node involved):
//
//   engine_check MODELS_DIR [MUTATIONS]
//
// For every MODELS_DIR/<name>/ holding config.json: loads <dtype>/model.safetensors (or
// model.safetensors) for each storage dtype present, runs expected.json's pairs as one packed batch
// and as single pairs, and checks max |logit - expected| <= 1e-4 and bit-identical batch vs single
// results. Then it mutates the header bytes of the first float32 file MUTATIONS times (seeded; default
// 2000, env MLX_RERANK_MUTATIONS overrides) and opens each mutant: every outcome must be a clean load or
// an EngineError, never a crash (the sanitizer or valgrind is the judge). The reduced-precision dtypes
// ('bfloat16', 'int8') run the same pairs (batch vs single bit-identical, logits within a bound of the
// float32 ones), and every bf16 / int8 GEMM kernel this CPU can run is checked bit for bit against the
// scalar one on odd shapes (edges, K tails, residual, activations). A forward cancelled from another
// thread (CancelToken) must stop at the first layer boundary after the cancel. Exit status 0 = all passed.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "batch_plan.h"
#include "engine.h"
#include "engine_cpu.h"
#include "json.h"
#include "kernels.h"
#include "weights.h"

using namespace mlxrerank;

namespace {

int failures = 0;

#define CHECK(cond, ...)                 \
  do {                                   \
    if (!(cond)) {                       \
      std::fprintf(stderr, "FAIL: ");    \
      std::fprintf(stderr, __VA_ARGS__); \
      std::fprintf(stderr, "\n");        \
      ++failures;                        \
    }                                    \
  } while (0)

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::string readFile(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json::Value readJson(const std::string& p) {
  const std::string s = readFile(p);
  return json::parse(s.data(), s.size());
}

int64_t num(const json::Value& o, const char* key, int64_t fallback) {
  const json::Value* v = o.find(key);
  return v && v->kind == json::Value::Kind::Number ? static_cast<int64_t>(v->number) : fallback;
}

ModelSpec specOf(const json::Value& c) {
  ModelSpec s;
  s.vocabSize = num(c, "vocab_size", 0);
  s.hiddenSize = num(c, "hidden_size", 0);
  s.numLayers = num(c, "num_hidden_layers", 0);
  s.numHeads = num(c, "num_attention_heads", 0);
  s.intermediateSize = num(c, "intermediate_size", 0);
  s.maxPositions = num(c, "max_position_embeddings", 512);
  s.typeVocabSize = num(c, "type_vocab_size", 2);
  const json::Value* id2label = c.find("id2label");
  s.numLabels = num(c, "num_labels", id2label ? static_cast<int64_t>(id2label->object.size()) : 2);
  if (const json::Value* e = c.find("layer_norm_eps")) s.layerNormEps = e->number;
  if (const json::Value* a = c.find("hidden_act")) s.hiddenAct = a->string;
  return s;
}

std::vector<std::string> subdirs(const std::string& root) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(root.c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.' && exists(root + "/" + e->d_name + "/config.json")) out.push_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

using mlxrerank::cpu::Act;

// bf16 (round to nearest even) of a normal float or zero, written independently of toBf16: keep 8
// significant bits with the FPU's round-to-nearest-even.
double bf16Ref(float x) {
  if (x == 0) return 0;
  const int e = std::ilogb(x);
  return std::ldexp(std::nearbyint(std::ldexp(static_cast<double>(x), 7 - e)), e - 7);
}

double actRef(Act act, double x) {
  switch (act) {
    case Act::Gelu:
      return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case Act::GeluTanh:
      return 0.5 * x * (1 + std::tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)));
    case Act::Relu:
      return std::max(x, 0.0);
    case Act::Tanh:
      return std::tanh(x);
    default:
      return x;
  }
}

// A bf16 GEMM against float64 arithmetic on the same bf16-rounded inputs. Products of two bf16 are
// exact in float32, so the one error of any float32 summation order (vdpbf16ps's pairs, AMX's tiles)
// is the additions': at most (K + 2) u sum|a b| (u = 2^-24; + 2 for bias and residual), and the
// epilogue's erf / tanh approximations add a few ulp; a wrong pairing, layout or tail is off by whole
// products (~1e-2 here). Returns the worst error in units of that bound (<= 1 passes). roundToOdd: the
// sums round to odd (Arm's bfmmla, BFDotAdd), whose error is under a whole ulp (2u), not half of one.
double bf16VsFloat64(const std::vector<float>& a, const std::vector<float>& w, const std::vector<float>& b,
                     const float* res, int rows, int K, int N, Act act, const std::vector<float>& got,
                     bool roundToOdd = false) {
  double worst = 0;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < N; ++j) {
      double dot = 0, mag = 0;
      for (int k = 0; k < K; ++k) {
        const double p =
            bf16Ref(a[static_cast<size_t>(i) * K + k]) * bf16Ref(w[static_cast<size_t>(j) * K + k]);
        dot += p;
        mag += std::fabs(p);
      }
      const double pre = dot + b[j];
      double ref = actRef(act, pre);
      if (res) ref += res[static_cast<size_t>(i) * N + j];
      const double u = std::ldexp(1.0, -24), us = roundToOdd ? 2 * u : u;
      const double bound = 1.2 * (K + 2) * us * (mag + std::fabs(b[j])) + 8 * u * (1 + std::fabs(ref)) + 1e-6;
      worst = std::max(worst, std::fabs(got[static_cast<size_t>(i) * N + j] - ref) / bound);
    }
  return worst;
}

// Every reduced-precision kernel set available here against the scalar one: same bits, on shapes with
// row, column and K tails, through each epilogue (bias, activation, residual). AMX's bf16 sums in its
// own order (kernels_amx.cpp), and so does arm64's bfmmla (kernels_neon_mm.cpp, rounding to odd), so they
// and the scalar kernel are held to a float64 reference instead; their int8 sums are exact integers, so
// they are checked bit for bit like the others.
void checkLowpKernels() {
  using namespace mlxrerank::cpu;
  const LowpKernels* ref = lowpScalar();
  const LowpKernels* amx = lowpAmx();
  const LowpKernels* mmla = lowpNeonMm();
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  struct Shape {
    int rows, K, N;
    Act act;
    bool residual;
  };
  const Shape shapes[] = {{1, 8, 8, Act::None, false},        {7, 37, 45, Act::Gelu, true},
                          {30, 96, 33, Act::GeluTanh, false}, {13, 300, 70, Act::Relu, true},
                          {50, 384, 64, Act::Tanh, false},    {70, 130, 100, Act::None, true}};
  // The reference and its bound hold the scalar kernel too (on every CPU: the check checks itself).
  for (const Shape& sh : shapes) {
    std::vector<float> w(static_cast<size_t>(sh.N) * sh.K), b(sh.N), a(static_cast<size_t>(sh.rows) * sh.K),
        res(static_cast<size_t>(sh.rows) * sh.N), c(res.size());
    for (auto* v : {&w, &b, &a, &res})
      for (float& x : *v) x = u(rng);
    std::vector<const float*> rows;
    for (int n = 0; n < sh.N; ++n) rows.push_back(w.data() + static_cast<size_t>(n) * sh.K);
    PackedBf16 m = packBf16(rows.data(), b.data(), sh.N, sh.K, ref->nr, ref->kBlock);
    const float* r = sh.residual ? res.data() : nullptr;
    ref->gemmBf16(a.data(), sh.K, sh.rows, m, c.data(), sh.N, sh.act, r, sh.N);
    const double e = bf16VsFloat64(a, w, b, r, sh.rows, sh.K, sh.N, sh.act, c);
    CHECK(e <= 1, "scalar bf16 gemm %dx%dx%d off the float64 reference (%.3g of the bound)", sh.rows, sh.K,
          sh.N, e);
  }
  std::printf("ok scalar bf16 gemms within the float64 reference's bound\n");
  int sets = 0;
  for (const LowpKernels* k :
       {lowpAvx2(), lowpAvxVnni(), lowpAvx512(), lowpAvx512Bf16(), lowpAvx512Vnni(), amx, mmla, lowpNeon()}) {
    if (!k) continue;
    ++sets;
    double worstScalar = 0, worstOwn = 0;  // bf16 of amx / mmla: in units of the float64 bound
    for (const Shape& sh : shapes) {
      std::vector<float> w(static_cast<size_t>(sh.N) * sh.K), b(sh.N), a(static_cast<size_t>(sh.rows) * sh.K),
          res(static_cast<size_t>(sh.rows) * sh.N);
      for (auto* v : {&w, &b, &a, &res})
        for (float& x : *v) x = u(rng);
      a[0] = 0;  // a row with a zero, and one all-zero row when there are several
      if (sh.rows > 2) std::fill(a.begin() + sh.K, a.begin() + 2 * sh.K, 0.0f);
      for (int dt = 0; dt < 2; ++dt) {
        const bool bf16 = dt == 0;
        if (bf16 ? !k->gemmBf16 : !k->gemmI8) continue;
        std::vector<float> c0(res.size()), c1(res.size());
        const float* r = sh.residual ? res.data() : nullptr;
        for (int pass = 0; pass < 2; ++pass) {
          const LowpKernels* kk = pass == 0 ? ref : k;
          float* c = pass == 0 ? c0.data() : c1.data();
          std::vector<const float*> rows;
          for (int n = 0; n < sh.N; ++n) rows.push_back(w.data() + static_cast<size_t>(n) * sh.K);
          if (bf16) {
            PackedBf16 m = packBf16(rows.data(), b.data(), sh.N, sh.K, kk->nr, kk->kBlock);
            kk->gemmBf16(a.data(), sh.K, sh.rows, m, c, sh.N, sh.act, r, sh.N);
          } else {
            PackedI8 m = packI8(rows.data(), b.data(), sh.N, sh.K, kk->nr, kk->kBlock);
            kk->gemmI8(a.data(), sh.K, sh.rows, m, c, sh.N, sh.act, r, sh.N);
          }
        }
        if (bf16 && (k == amx || k == mmla)) {
          const double es = bf16VsFloat64(a, w, b, r, sh.rows, sh.K, sh.N, sh.act, c0);
          const double ea = bf16VsFloat64(a, w, b, r, sh.rows, sh.K, sh.N, sh.act, c1, k == mmla);
          worstScalar = std::max(worstScalar, es);
          worstOwn = std::max(worstOwn, ea);
          CHECK(es <= 1, "scalar bf16 gemm %dx%dx%d off the float64 reference (%.3g of the bound)", sh.rows,
                sh.K, sh.N, es);
          CHECK(ea <= 1, "%s bf16 gemm %dx%dx%d off the float64 reference (%.3g of the bound)", k->name,
                sh.rows, sh.K, sh.N, ea);
          continue;
        }
        CHECK(std::memcmp(c0.data(), c1.data(), c0.size() * sizeof(float)) == 0,
              "%s %s gemm %dx%dx%d differs from the scalar kernel", k->name, bf16 ? "bf16" : "int8", sh.rows,
              sh.K, sh.N);
      }
    }
    if (k == amx) {
      std::printf(
          "ok amx: int8 == scalar (bit for bit); bf16 and scalar bf16 within the float64 reference's bound "
          "(worst %.3g and %.3g of it)\n",
          worstOwn, worstScalar);
    } else if (k == mmla) {
      if (k->gemmI8) std::printf("ok smmla (%s): int8 == scalar (bit for bit)\n", k->name);
      if (k->gemmBf16)
        std::printf(
            "ok bfmmla (%s): bf16 and scalar bf16 within the float64 reference's bound (worst %.3g and %.3g "
            "of it)\n",
            k->name, worstOwn, worstScalar);
    } else {
      std::printf("ok %s reduced-precision kernels == scalar (bit for bit)\n", k->name);
    }
  }
  if (!mmla) std::printf("skip neon-mmla kernels (smmla, bfmmla): not arm64 Linux with I8MM / BF16\n");
  if (!amx)
    std::printf("skip amx kernels: not on this CPU (or not Linux x86-64, or the kernel refused tile data)\n");
  std::printf("ok %d reduced-precision kernel sets besides scalar on this CPU\n", sets);
}

void checkModel(const std::string& dir, std::string& firstF32) {
  const ModelSpec spec = specOf(readJson(dir + "/config.json"));
  const bool hasExpected = exists(dir + "/expected.json");
  json::Value expected;
  if (hasExpected) expected = readJson(dir + "/expected.json");
  // storage dtypes computed in float32, then the float32 file computed in bfloat16 and int8 ("@").
  for (const char* dtype : {"float32", "float16", "bfloat16", "", "@bfloat16", "@int8"}) {
    const std::string d = dtype;
    const bool lowp = !d.empty() && d[0] == '@';
    const std::string storage = lowp ? "float32" : d;
    std::string file =
        storage.empty() ? dir + "/model.safetensors" : dir + "/" + storage + "/model.safetensors";
    if (lowp && !exists(file)) file = dir + "/model.safetensors";
    if (!exists(file)) continue;
    if (firstF32.empty() && (d == "float32" || d.empty())) firstF32 = file;
    std::unique_ptr<Engine> engine;
    EngineOptions options;
    if (lowp) options.dtype = d.substr(1);
    // MLX_RERANK_CPU_ISA caps the kernels (valgrind runs with "avx2": it does not know AVX-512).
    if (const char* isa = std::getenv("MLX_RERANK_CPU_ISA")) options.cpuIsa = isa;
    try {
      engine = makeCpuEngine(spec, {file}, options);
    } catch (const std::exception& e) {
      CHECK(false, "%s: load failed: %s", file.c_str(), e.what());
      continue;
    }
    PackedBatch batch;
    batch.offsets.push_back(0);
    std::vector<PackedBatch> singles;
    if (hasExpected) {
      // MLX_RERANK_CHECK_PAIRS limits the pairs per model (valgrind is ~50x slower than native).
      const char* limitEnv = std::getenv("MLX_RERANK_CHECK_PAIRS");
      const size_t limit = limitEnv ? static_cast<size_t>(std::atol(limitEnv)) : SIZE_MAX;
      for (const auto& p : expected.find("pairs")->array) {
        if (singles.size() >= limit) break;
        PackedBatch one;
        for (const auto& v : p.find("ids")->array) one.tokens.push_back(static_cast<int32_t>(v.integer));
        for (const auto& v : p.find("typeIds")->array) one.typeIds.push_back(static_cast<int32_t>(v.integer));
        one.offsets = {0, static_cast<int32_t>(one.tokens.size())};
        batch.tokens.insert(batch.tokens.end(), one.tokens.begin(), one.tokens.end());
        batch.typeIds.insert(batch.typeIds.end(), one.typeIds.begin(), one.typeIds.end());
        batch.offsets.push_back(static_cast<int32_t>(batch.tokens.size()));
        singles.push_back(std::move(one));
      }
    } else {  // no reference: a few synthetic pairs, for the batching invariant and the sanitizers
      std::mt19937 rng(7);
      for (int p = 0; p < 6; ++p) {
        PackedBatch one;
        const int len = 2 + static_cast<int>(rng() % std::min<int64_t>(spec.maxPositions - 1, 40));
        for (int t = 0; t < len; ++t) {
          one.tokens.push_back(static_cast<int32_t>(rng() % spec.vocabSize));
          one.typeIds.push_back(t > len / 2 ? 1 : 0);
        }
        one.offsets = {0, len};
        batch.tokens.insert(batch.tokens.end(), one.tokens.begin(), one.tokens.end());
        batch.typeIds.insert(batch.typeIds.end(), one.typeIds.begin(), one.typeIds.end());
        batch.offsets.push_back(static_cast<int32_t>(batch.tokens.size()));
        singles.push_back(std::move(one));
      }
    }
    validateBatch(batch, spec);
    const ForwardResult all = engine->forward(batch);
    CHECK(all.computedSlots == static_cast<int64_t>(batch.tokens.size()), "computedSlots");
    double maxErr = 0, spread = 0;
    const int L = static_cast<int>(spec.numLabels);
    for (size_t p = 0; p < singles.size(); ++p) {
      const ForwardResult one = engine->forward(singles[p]);
      CHECK(std::memcmp(one.logits.data(), all.logits.data() + p * L, L * sizeof(float)) == 0,
            "%s: pair %zu alone differs from the batch", file.c_str(), p);
      if (hasExpected) {
        const std::string key = storage.empty() ? "float32" : storage;
        const auto& row = expected.find("logits")->find(key)->array[p].array;
        for (int j = 0; j < L; ++j) {
          maxErr = std::max(maxErr, std::fabs(row[j].number - all.logits[p * L + j]));
          spread = std::max(spread, std::fabs(row[j].number -
                                              expected.find("logits")->find(key)->array[0].array[j].number));
        }
      }
    }
    // Reduced precision: within a tenth of how far apart the pairs' logits are (the load check refuses
    // at half); float32: the fixtures' 1e-4.
    const double bound = lowp ? 0.1 * spread : 1e-4;
    CHECK(!hasExpected || maxErr <= bound, "%s %s: max abs error %.3g > %.3g", file.c_str(), dtype, maxErr,
          bound);
    std::printf("ok %s %s(%zu pairs, max abs error %.3g)\n", file.c_str(), lowp ? dtype : "", singles.size(),
                maxErr);
  }
}

void mutateHeaders(const std::string& file, const ModelSpec& spec, long count) {
  const std::string original = readFile(file);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(original[i]);
  const size_t headerEnd = std::min<size_t>(original.size(), 8 + n);
  const std::string tmp = "/tmp/engine_check_mutant_" + std::to_string(::getpid()) + ".safetensors";
  std::mt19937_64 rng(12345);
  long loaded = 0, refused = 0;
  for (long i = 0; i < count; ++i) {
    std::string m = original;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      if (m.empty()) break;
      const size_t pos = rng() % std::min(headerEnd, m.size());
      switch (rng() % 5) {
        case 0:
          m[pos] = static_cast<char>(rng() & 0xFF);
          break;
        case 1:
          m[pos] = "0123456789[]{}\",:-.eE"[rng() % 21];
          break;
        case 2:
          m.erase(pos, 1 + rng() % 8);
          break;
        case 3:
          m.insert(pos, 1, "0123456789\""[rng() % 11]);
          break;
        default:
          m.resize(rng() % m.size());
      }
    }
    std::ofstream(tmp, std::ios::binary | std::ios::trunc) << m;
    try {
      auto store = WeightStore::open({tmp}, spec);
      ++loaded;
    } catch (const EngineError&) {
      ++refused;
    }
  }
  std::remove(tmp.c_str());
  std::printf("ok %ld header mutants of %s: %ld refused, %ld still valid\n", count, file.c_str(), refused,
              loaded);
}

// Mid-batch cancellation (issue 15), counted in layer boundary checks rather than timed: a forward
// cancelled from another thread makes at most one check after the cancel (it stops at the first
// boundary after it), whenever the cancel lands; one never cancelled gives the same bits as a forward
// without a token; one cancelled before it starts computes no layer.
void checkCancel(const std::string& file, const ModelSpec& spec) {
  std::unique_ptr<Engine> engine = makeCpuEngine(spec, {file}, EngineOptions{});
  const int L = static_cast<int>(spec.numLayers);
  PackedBatch batch;
  batch.offsets.push_back(0);
  std::mt19937 rng(5);
  for (int p = 0; p < 24; ++p) {
    const int len = 2 + static_cast<int>(rng() % std::min<int64_t>(spec.maxPositions - 1, 60));
    for (int t = 0; t < len; ++t) {
      batch.tokens.push_back(static_cast<int32_t>(rng() % spec.vocabSize));
      batch.typeIds.push_back(t > len / 2 && spec.typeVocabSize > 1 ? 1 : 0);
    }
    batch.offsets.push_back(static_cast<int32_t>(batch.tokens.size()));
  }
  const ForwardResult plain = engine->forward(batch);
  auto samePlain = [&](const ForwardResult& r) {
    return r.logits.size() == plain.logits.size() &&
           std::memcmp(r.logits.data(), plain.logits.data(), plain.logits.size() * sizeof(float)) == 0;
  };
  {
    CancelToken t;
    const ForwardResult r = engine->forward(batch, &t);
    CHECK(!r.cancelled && r.layersRun == L && samePlain(r) && t.checks() == L + 1,
          "cancel: an uncancelled forward with a token differs (layers %d, checks %d)", r.layersRun,
          t.checks());
  }
  {
    CancelToken t;
    t.cancel();
    const ForwardResult r = engine->forward(batch, &t);
    CHECK(r.cancelled && r.layersRun == 0 && r.logits.empty() && t.checks() == 1,
          "cancel: a token cancelled before the forward ran %d layers, %d checks", r.layersRun, t.checks());
  }
  {  // the engine waits at boundary 1 until another thread has cancelled: it stops right there
    CancelToken t;
    std::mutex m;
    std::condition_variable cv;
    bool asked = false, done = false;
    std::thread canceller([&] {
      std::unique_lock<std::mutex> lock(m);
      cv.wait(lock, [&] { return asked; });
      t.cancel();
      done = true;
      cv.notify_all();
    });
    t.onCheck = [&](int layer) {
      if (layer != 1) return;
      std::unique_lock<std::mutex> lock(m);
      asked = true;
      cv.notify_all();
      cv.wait(lock, [&] { return done; });
    };
    const ForwardResult r = engine->forward(batch, &t);
    canceller.join();
    CHECK(r.cancelled && r.layersRun == 1 && r.logits.empty() && t.checks() == 2,
          "cancel at boundary 1: cancelled %d, layers %d, checks %d", r.cancelled, r.layersRun, t.checks());
  }
  // Cancels landing anywhere in the forward (after 0..5 ms): never more than one check after it.
  int stopped = 0;
  for (int round = 0; round < 6; ++round) {
    CancelToken t;
    std::atomic<bool> started{false};
    int seen = -1;
    t.onCheck = [&](int) { started = true; };
    std::thread canceller([&] {
      while (!started) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(1000 * round));
      t.cancel();
      seen = t.checks();
    });
    const ForwardResult r = engine->forward(batch, &t);
    canceller.join();
    CHECK(t.checks() <= seen + 1, "cancel after %d checks: the forward made %d", seen, t.checks());
    CHECK(seen > L || r.cancelled, "cancel after %d of %d checks: not cancelled", seen, L + 1);
    CHECK(r.cancelled ? r.logits.empty() && r.layersRun == t.checks() - 1 : samePlain(r),
          "cancel after %d checks: wrong result (cancelled %d, layers %d)", seen, r.cancelled, r.layersRun);
    stopped += r.cancelled;
  }
  std::printf("ok cancellation at layer boundaries (%d layers; %d of 6 timed cancels stopped a forward)\n", L,
              stopped);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: engine_check MODELS_DIR [MUTATIONS]\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // line by line into a pipe: a crash loses no line
  const std::string root = argv[1];
  long mutations = argc > 2 ? std::atol(argv[2]) : 2000;
  if (const char* env = std::getenv("MLX_RERANK_MUTATIONS")) mutations = std::atol(env);
  std::vector<std::string> models = subdirs(root);
  if (exists(root + "/config.json")) models = {"."};
  CHECK(!models.empty(), "no model folders with config.json under %s", root.c_str());
  checkLowpKernels();
  std::string firstF32;
  ModelSpec firstSpec;
  for (const auto& name : models) {
    const std::string dir = root + "/" + name;
    const bool first = firstF32.empty();
    try {
      checkModel(dir, firstF32);
    } catch (const std::exception& e) {
      CHECK(false, "%s: %s", dir.c_str(), e.what());
    }
    if (first && !firstF32.empty()) firstSpec = specOf(readJson(dir + "/config.json"));
  }
  if (!firstF32.empty()) {
    try {
      checkCancel(firstF32, firstSpec);
    } catch (const std::exception& e) {
      CHECK(false, "cancel: %s", e.what());
    }
  }
  if (!firstF32.empty() && mutations > 0) mutateHeaders(firstF32, firstSpec, mutations);
  failures += checkBatchPlans();
  std::printf(failures ? "FAILED (%d)\n" : "all passed\n", failures);
  return failures ? 1 : 0;
}
