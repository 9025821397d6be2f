// One concern, the portable cpu engine's forward pass (its kernels are in kernels*.{h,cpp}): a BERT-like
// cross-encoder (BERT, XLM-RoBERTa, ELECTRA, ModernBERT: whatever the ModelSpec describes,
// native/model_spec.h) on packed (unpadded) batches, in float32 or, with dtype 'bfloat16' / 'int8', with the
// dense layers' GEMMs in reduced precision (kernels.h: weights packed or quantised at load, activations
// rounded or quantised at each GEMM input, float32 everywhere else: embeddings, attention, softmax,
// LayerNorm, GELU, residuals, pooler and classifier).
//
// Dense layers run on the T real tokens in row blocks; each row block goes through the attention
// output projection, both layer norms and the whole FFN while it is hot in L2 (the FFN's
// intermediate activations never leave the thread's scratch). Attention runs per (pair, head), 64 query
// rows at a time (memory linear in the pair's length), within a sliding window on the layers that have
// one. With post-norm and [CLS] pooling, the last layer computes keys and values for all tokens but
// queries, attention output and FFN only for each pair's [CLS] row: nothing else reaches the head.
//
// One concern, the engine (load, forward, the load-time quantisation check); the arithmetic lives in
// the kernels (kernels*.h / kernels_*.cpp), the weight packing for reduced precision in kernels_pack.cpp.
#include "engine_cpu.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "kernels.h"
#include "model_spec.h"
#include "threadpool.h"
#include "weights.h"

namespace mlxrerank {

namespace {

using cpu::Act;
using cpu::FloatBuffer;
using cpu::Kernels;
using cpu::LowpKernels;
using cpu::PackedBf16;
using cpu::PackedI8;
using cpu::PackedMatrix;

// The cap on the instruction sets used (EngineOptions::cpuIsa; benchmarks, tests): "amx" (everything),
// "avx512" (no AMX), "avx512f" (AVX-512 F without its BF16 / VNNI extensions, nor AVX-VNNI, nor AMX),
// "avxvnni" (no AVX-512), "avx2" (no AVX-512, no VNNI), "scalar"; "" = the best this CPU has.
const std::string& checkIsaCap(const std::string& cap) {
  for (const char* c : {"", "amx", "avx512", "avx512f", "avxvnni", "avx2", "scalar"})
    if (cap == c) return cap;
  throw EngineError(
      ErrorCode::Input,
      "cpuIsa must be 'amx', 'avx512', 'avx512f', 'avxvnni', 'avx2' or 'scalar' (got '" + cap + "')");
}

const Kernels* pickKernels(const std::string& cap) {
  const std::string& w = checkIsaCap(cap);
  if (w == "scalar") return cpu::kernelsScalar();
  if (w != "avx2" && w != "avxvnni")
    if (const Kernels* k = cpu::kernelsAvx512()) return k;
  if (const Kernels* k = cpu::kernelsAvx2()) return k;
  return cpu::kernelsScalar();
}

enum class Compute { F32, Bf16, I8 };

// Whether vdpbf16ps (zmm) outruns float32 FMA here: AMD's (Zen 4/5), not Intel's.
bool bf16Dp512Fast() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_is("amd");
#else
  return false;
#endif
}

// The best kernel set for the dtype's GEMMs under the cap; the scalar set serves both everywhere.
const LowpKernels* pickLowp(Compute c, const std::string& cap) {
  const std::string& w = checkIsaCap(cap);
  auto serves = [c](const LowpKernels* k) {
    return k && (c == Compute::Bf16 ? k->gemmBf16 != nullptr : k->gemmI8 != nullptr);
  };
  if (w == "scalar") return cpu::lowpScalar();
  const bool amx = w.empty() || w == "amx", avx512x = amx || w == "avx512";
  const bool avx512 = avx512x || w == "avx512f", vnni = w != "avx2" && w != "avx512f";
  // AMX first. For bf16 without it: on Intel (Cooper Lake, Sapphire Rapids) vdpbf16ps issues on one
  // port where FMA issues on two, and measured 0.6x the widened-to-float32 FMA kernel (75 vs 126
  // GFLOP/s a core, docs/cpu-dtypes.md), so avx512-fma comes first there; Zen 4/5 run vdpbf16ps at
  // twice FMA's multiply-adds, so AMD keeps it first.
  const bool dpbf16First = bf16Dp512Fast();
  for (const LowpKernels* k :
       {amx ? cpu::lowpAmx() : nullptr, avx512x && dpbf16First ? cpu::lowpAvx512Bf16() : nullptr,
        avx512 ? cpu::lowpAvx512() : nullptr, avx512x ? cpu::lowpAvx512Bf16() : nullptr,
        avx512x ? cpu::lowpAvx512Vnni() : nullptr, vnni ? cpu::lowpAvxVnni() : nullptr, cpu::lowpAvx2(),
        cpu::lowpNeonMm(), cpu::lowpNeon()})
    if (serves(k)) return k;
  return cpu::lowpScalar();
}

Compute computeOf(const std::string& dtype) {
  if (dtype.empty() || dtype == "float32") return Compute::F32;
  if (dtype == "bfloat16") return Compute::Bf16;
  if (dtype == "int8") return Compute::I8;
  throw EngineError(ErrorCode::Input,
                    "The cpu engine computes in 'float32' (the default), 'bfloat16' or 'int8'; dtype '" +
                        dtype + "' is not one of them.");
}

// The batch size the scheduler defaults to on this engine when no measurement replaces it (load's
// warm-up measures the model's own curve on the CPU: src/scheduler/batch-curve.ts): the smallest batch
// within ~5% of the peak pairs/s of MiniLM-L6 (synthetic weights, MS MARCO-like pairs of ~96 tokens, 2
// threads on a shared 2-core x86-64 machine; `npm run bench:service -- --curve-only`, best of 3 rounds):
//
//   batch tokens   512   1024   2048   4096   8192        (16384: ~3 s a batch on the same machine idle)
//   pairs/s        5.0    6.1    7.2    5.4    4.8        (length-sorted batches at 4096: 4.0)
//
// Past 2048 tokens the curve does not rise, while every batch, every request in it and the wait of a call
// arriving behind it grow linearly with its size. 2048 tokens are also 32+ row blocks (<= 64 rows), enough
// to give each of up to 16 threads several. docs/latency.md has the details.
constexpr int64_t kBatchTokens = 2048;
constexpr int64_t kBatchSize = 256;

int defaultThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min(n, 64u));
}

FloatBuffer toBuffer(const std::vector<float>& v) {
  FloatBuffer b(v.size());
  if (!v.empty()) std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
  return b;
}

// W [N, K] row-major (several matrices stacked along N) -> panels of nr columns of B = W^T.
PackedMatrix pack(const std::vector<const std::vector<float>*>& ws,
                  const std::vector<const std::vector<float>*>& bs, int K, int nr) {
  PackedMatrix m;
  m.K = K;
  m.nr = nr;
  for (const auto* w : ws) m.N += static_cast<int>(w->size() / K);
  const int panels = (m.N + nr - 1) / nr;
  m.panels.resize(static_cast<size_t>(panels) * K * nr);
  std::fill(m.panels.data(), m.panels.data() + m.panels.size(), 0.0f);
  m.bias.resize(m.N);
  int row = 0;
  for (size_t s = 0; s < ws.size(); ++s) {
    const std::vector<float>& w = *ws[s];
    const int n = static_cast<int>(w.size() / K);
    for (int r = 0; r < n; ++r, ++row) {
      const int p = row / nr, j = row % nr;
      float* dst = m.panels.data() + static_cast<size_t>(p) * K * nr + j;
      const float* src = w.data() + static_cast<size_t>(r) * K;
      for (int k = 0; k < K; ++k) dst[static_cast<size_t>(k) * nr] = src[k];
      m.bias.data()[row] = (*bs[s])[r];
    }
  }
  return m;
}

// Row pointers and biases of several stacked W [n, K], output channel by channel (kernels.h packers).
struct Rows {
  std::vector<const float*> rows;
  std::vector<float> bias;
};
Rows rowsOf(const std::vector<const std::vector<float>*>& ws,
            const std::vector<const std::vector<float>*>& bs, int K) {
  Rows r;
  for (size_t s = 0; s < ws.size(); ++s)
    for (size_t i = 0; i < ws[s]->size() / K; ++i) {
      r.rows.push_back(ws[s]->data() + i * K);
      r.bias.push_back((*bs[s])[i]);
    }
  return r;
}

// One Linear layer, packed for float32 and, when the engine computes in reduced precision, for its
// dtype (the float32 copy is dropped after the load check).
struct Linear {
  PackedMatrix f32;
  PackedBf16 bf16;
  PackedI8 i8;
  size_t bytes() const { return f32.bytes() + bf16.bytes() + i8.bytes(); }
};

// ln1: post-norm, after attention; pre-norm, before it (none in layer 0). ln2: after / before the MLP.
struct Layer {
  Linear q, kv, o, up, down;
  FloatBuffer ln1g, ln1b, ln2g, ln2b;
};

Act actOf(ActKind a) {
  switch (a) {
    case ActKind::Gelu:
      return Act::Gelu;
    case ActKind::GeluTanh:
      return Act::GeluTanh;
    case ActKind::Relu:
      return Act::Relu;
    case ActKind::Tanh:
      return Act::Tanh;
  }
  return Act::None;
}

// cos and sin of position * inv_freq for every position and frequency, as transformers computes them:
// inv_freq = 1 / theta^(2i / d) and the angle in float32 (its rotary module casts to float32 even in a
// float64 model), then cos / sin of that angle. Rows are made up to the longest pair seen, so the table
// costs what the traffic needs, not max_position_embeddings' worth.
struct RotaryTable {
  FloatBuffer cos, sin;  // [rows][hd / 2]
  int rows = 0, hd = 0;
  double theta = 0;
  void ensure(int positions, int cap) {  // geometric growth: rebuilt O(log cap) times at most
    if (positions <= rows) return;
    rows = std::max(positions, std::min(2 * rows, cap));
    const int half = hd / 2;
    cos.resize(static_cast<size_t>(rows) * half);
    sin.resize(static_cast<size_t>(rows) * half);
    for (int i = 0; i < half; ++i) {
      const float e = static_cast<float>(2 * i) / static_cast<float>(hd);
      const float invFreq = 1.0f / std::pow(static_cast<float>(theta), e);
      for (int p = 0; p < rows; ++p) {
        const float angle = static_cast<float>(p) * invFreq;
        cos.data()[static_cast<size_t>(p) * half + i] =
            static_cast<float>(std::cos(static_cast<double>(angle)));
        sin.data()[static_cast<size_t>(p) * half + i] =
            static_cast<float>(std::sin(static_cast<double>(angle)));
      }
    }
  }
  // Rotates each head of one row: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), halves of the head.
  void apply(float* row, int heads, int hd, int position) const {
    const int half = hd / 2;
    const float* c = cos.data() + static_cast<size_t>(position) * half;
    const float* s = sin.data() + static_cast<size_t>(position) * half;
    for (int h = 0; h < heads; ++h) {
      float* x = row + h * hd;
      for (int i = 0; i < half; ++i) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * c[i] - x2 * s[i];
        x[i + half] = x2 * c[i] + x1 * s[i];
      }
    }
  }
  size_t bytes() const { return cos.bytes() + sin.bytes(); }
};

class CpuEngine final : public Engine {
 public:
  CpuEngine(const ModelSpec& spec, const std::vector<std::string>& files, const EngineOptions& opts)
      : spec_(spec),
        arch_(archOf(spec)),
        names_(tensorNames(arch_.family)),
        k_(pickKernels(opts.cpuIsa)),
        compute_(computeOf(opts.dtype)),
        lk_(compute_ == Compute::F32 ? nullptr : pickLowp(compute_, opts.cpuIsa)),
        pool_(opts.threads > 0 ? std::min(opts.threads, 256) : defaultThreads()),
        H_(static_cast<int>(spec.hiddenSize)),
        I_(static_cast<int>(spec.intermediateSize)),
        E_(static_cast<int>(arch_.embeddingSize)),
        ffnW_(arch_.glu ? 2 * I_ : I_),
        hd_(static_cast<int>(spec.hiddenSize / std::max<int64_t>(spec.numHeads, 1))) {
    if (opts.device == "gpu")
      throw EngineError(ErrorCode::Unavailable,
                        "The cpu engine runs on the CPU only; use device 'cpu' or 'auto'.");
    load(files);
    if (compute_ != Compute::F32) checkQuantisation();
  }

  ForwardResult forward(const PackedBatch& batch, CancelToken* cancel = nullptr) override {
    const auto t0 = std::chrono::steady_clock::now();
    const int T = static_cast<int>(batch.tokens.size());
    const int B = static_cast<int>(batch.pairs());
    cancel_ = cancel;
    // However the forward ends (done, cancelled, thrown), no later work may see this batch's token.
    struct Forget {
      CancelToken*& token;
      ~Forget() { token = nullptr; }
    } forget{cancel_};
    reserve(T, B, batch);
    embed(batch);
    // Post-norm with [CLS] pooling: the last layer computes only what reaches the [CLS] row.
    const bool clsLast = !arch_.preNorm && !arch_.meanPool;
    const int layers = static_cast<int>(layers_.size());
    for (int l = 0; l < layers; ++l) {
      if (cancel && cancel->stopAt(l)) return cancelledAt(l, t0);
      const int window = arch_.localLayer(spec_, l) ? static_cast<int>(spec_.localWindow / 2) : -1;
      if (arch_.preNorm)
        preNormLayer(layers_[l], l, window, batch);
      else if (l + 1 < layers || !clsLast)
        fullLayer(layers_[l], window, batch);
      else
        clsLayer(layers_[l], window, batch);
    }
    // A cancel during the last layer may have skipped part of it: the boundary after it stops too.
    if (cancel && cancel->stopAt(layers)) return cancelledAt(layers, t0);
    cancel_ = nullptr;  // the pooling and the head run to the end
    if (!clsLast) pool(batch);
    // The head (BERT's pooler, XLM-R's and ELECTRA's classifier.dense, ModernBERT's head) and the
    // output projection, on B rows.
    const int L = static_cast<int>(spec_.numLabels);
    ForwardResult r;
    r.logits.resize(static_cast<size_t>(B) * L);
    rowBlocks(B, [&](int r0, int n, int) {
      k_->gemm(xc_.data() + r0 * H_, H_, n, pooler_, pooled_.data() + r0 * H_, H_, headAct_, nullptr, 0);
      if (spec_.headNorm)
        k_->layerNorm(pooled_.data() + r0 * H_, n, H_, H_, headG_.data(), headB_.data(),
                      static_cast<float>(spec_.layerNormEps));
      k_->gemm(pooled_.data() + r0 * H_, H_, n, classifier_, r.logits.data() + r0 * L, L, Act::None, nullptr,
               0);
    });
    r.computedSlots = T;
    r.layersRun = static_cast<int>(layers_.size());
    r.inferenceMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  // What a forward stopped before layer `layer` returns: no logits, its time so far.
  ForwardResult cancelledAt(int layer, std::chrono::steady_clock::time_point t0) const {
    ForwardResult r;
    r.cancelled = true;
    r.layersRun = layer;
    r.inferenceMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  // Cancelled mid-layer: the layer's remaining row blocks and attention tasks are skipped (their
  // output is never read), so a long layer does not delay the stop at the next boundary.
  bool skipping() const { return cancel_ != nullptr && cancel_->cancelled(); }

  MemoryInfo memory() const override {
    MemoryInfo m;
    m.activeBytes = weightBytes_ + scratchBytes_.load();
    m.peakBytes = weightBytes_ + peakScratch_.load();
    return m;
  }
  std::string backend() const override { return "cpu"; }
  std::string device() const override { return "cpu"; }
  std::string deviceName() const override {
    std::string s = std::string(k_->name) + " x " + std::to_string(pool_.size()) + " threads";
    if (lk_) s += ", " + dtype() + " GEMMs on " + lk_->name + " (load check: " + check_ + ")";
    return s;
  }
  std::string dtype() const override {
    return compute_ == Compute::Bf16 ? "bfloat16" : compute_ == Compute::I8 ? "int8" : "float32";
  }
  std::string version() const override { return "mlx-rerank cpu 0.1.0"; }
  // One batch in the engine at a time: its thread computes one at a time anyway, and a batch that
  // waits in the scheduler's queue instead can still lose an aborted call's pairs. No padding anywhere.
  EngineLimits limits() const override { return {kBatchTokens, kBatchSize, 1, false, 0}; }
  void warmup() override {
    PackedBatch b;  // one short pair touches every code path and sizes the scratch for small batches
    const int n = static_cast<int>(std::min<int64_t>(16, spec_.maxPositions));
    b.tokens.assign(n, 0);
    b.typeIds.assign(n, 0);
    b.offsets = {0, n};
    forward(b);
  }

 private:
  // packs W (and bias) for float32 and for the engine's dtype
  Linear linearOf(const std::vector<const std::vector<float>*>& ws,
                  const std::vector<const std::vector<float>*>& bs, int K) const {
    Linear l;
    l.f32 = pack(ws, bs, K, k_->nr);
    if (compute_ != Compute::F32) {
      const Rows r = rowsOf(ws, bs, K);
      const int n = static_cast<int>(r.rows.size());
      if (compute_ == Compute::Bf16)
        l.bf16 = cpu::packBf16(r.rows.data(), r.bias.data(), n, K, lk_->nr, lk_->kBlock);
      if (compute_ == Compute::I8)
        l.i8 = cpu::packI8(r.rows.data(), r.bias.data(), n, K, lk_->nr, lk_->kBlock);
    }
    return l;
  }

  // C = act(A W^T + b) (+ residual) in the dtype being computed (active_).
  void linear(const Linear& l, const float* A, long lda, int rows, float* C, long ldc, Act act,
              const float* residual, long ldr) const {
    if (active_ == Compute::Bf16)
      lk_->gemmBf16(A, lda, rows, l.bf16, C, ldc, act, residual, ldr);
    else if (active_ == Compute::I8)
      lk_->gemmI8(A, lda, rows, l.i8, C, ldc, act, residual, ldr);
    else
      k_->gemm(A, lda, rows, l.f32, C, ldc, act, residual, ldr);
  }

  void setActive(Compute c) {
    active_ = c;
    rowMr_ = c == Compute::F32 ? k_->mr : lk_->mr;
    rowBlockMax_ = 8 * rowMr_;
  }

  // A few built-in pairs through the float32 path and the reduced-precision one: a model whose scores
  // cannot bear the rounding (outlier weights or activations swamping a per-row scale) is refused at
  // load with the figures, rather than ranking wrong in silence; a marginal one gets a warning.
  void checkQuantisation() {
    PackedBatch b;
    b.offsets.push_back(0);
    uint32_t x = 12345;
    const int maxLen = static_cast<int>(std::min<int64_t>(spec_.maxPositions, 64));
    for (int p = 0; p < 8; ++p) {
      const int len = std::max(2, std::min(maxLen, 8 + 8 * p));
      for (int t = 0; t < len; ++t) {
        x = x * 1664525u + 1013904223u;
        b.tokens.push_back(static_cast<int32_t>((x >> 8) % static_cast<uint32_t>(spec_.vocabSize)));
        b.typeIds.push_back(spec_.typeVocabSize > 1 && t >= len / 2 ? 1 : 0);
      }
      b.offsets.push_back(static_cast<int32_t>(b.tokens.size()));
    }
    const Compute lowp = compute_;
    setActive(Compute::F32);
    const std::vector<float> ref = forward(b).logits;
    setActive(lowp);
    const std::vector<float> got = forward(b).logits;
    for (auto& l : layers_)
      for (Linear* m : {&l.q, &l.kv, &l.o, &l.up, &l.down}) m->f32 = PackedMatrix();
    weightBytes_ = weightBytesNow();
    const int L = static_cast<int>(spec_.numLabels), B = static_cast<int>(b.pairs());
    double err = 0, spread = 0;
    bool finite = true;
    for (int j = 0; j < L; ++j) {
      double lo = ref[j], hi = ref[j];
      for (int p = 0; p < B; ++p) {
        const double r = ref[p * L + j], g = got[p * L + j];
        finite = finite && std::isfinite(g);
        err = std::max(err, std::fabs(r - g));
        lo = std::min(lo, r);
        hi = std::max(hi, r);
      }
      spread = std::max(spread, hi - lo);
    }
    char buf[160];
    std::snprintf(buf, sizeof(buf), "max |logit - float32| %.3g on %d pairs whose float32 logits span %.3g",
                  err, B, spread);
    check_ = buf;
    const double floor = 1e-3;  // below this the scores agree to the digits anyone reads
    if (!finite || (err > floor && err > 0.5 * spread))
      throw EngineError(ErrorCode::Input, "dtype '" + dtype() + "' loses too much on this model: " + check_ +
                                              ". Load it with dtype 'float32' (or 'bfloat16').");
    if (err > floor && err > 0.1 * spread)
      std::fprintf(stderr,
                   "mlx-rerank: warning: dtype '%s' is marginal on this model (%s); rankings may change.\n",
                   dtype().c_str(), check_.c_str());
  }

  int64_t weightBytesNow() const {
    int64_t bytes = wordEmb_.bytes() + posEmb_.bytes() + typeEmb_.bytes() + embLnG_.bytes() +
                    embLnB_.bytes() + embProj_.bytes() + finalG_.bytes() + finalB_.bytes() + headG_.bytes() +
                    headB_.bytes() + pooler_.bytes() + classifier_.bytes();
    for (const auto& l : layers_)
      bytes += l.q.bytes() + l.kv.bytes() + l.o.bytes() + l.up.bytes() + l.down.bytes() + l.ln1g.bytes() * 4;
    return bytes;
  }

  void load(const std::vector<std::string>& files) {
    auto store =
        WeightStore::open(files, spec_);  // validates everything; the file is closed when this returns
    const TensorNames& nm = names_;
    auto w = [&](const std::string& n) { return store->toFloat32(n + ".weight"); };
    // A bias the architecture leaves out is a zero bias (the GEMM epilogue adds it either way).
    auto b = [&](const std::string& n, bool present, int size) {
      return present ? store->toFloat32(n + ".bias") : std::vector<float>(size, 0.0f);
    };
    const int nr = k_->nr;
    wordEmb_ = toBuffer(w(nm.wordEmb));
    if (!arch_.rotary) posEmb_ = toBuffer(w(nm.posEmb));
    if (spec_.typeEmbeddings) typeEmb_ = toBuffer(w(nm.typeEmb));
    embLnG_ = toBuffer(w(nm.embNorm));
    embLnB_ = toBuffer(b(nm.embNorm, spec_.normBias, E_));
    if (E_ != H_) {
      const auto pw = w(nm.embProject), pb = b(nm.embProject, true, H_);
      embProj_ = pack({&pw}, {&pb}, E_, nr);
    }
    const size_t HH = static_cast<size_t>(H_) * H_;
    for (int64_t l = 0; l < spec_.numLayers; ++l) {
      const std::string p = nm.layerPrefix(l);
      Layer layer;
      {
        std::vector<float> wq, bq, wk, bk, wv, bv;
        if (nm.fusedQkv) {  // [3H, H]: query, key, value rows in that order
          const auto wqkv = w(p + nm.qkv), bqkv = b(p + nm.qkv, spec_.attentionBias, 3 * H_);
          wq.assign(wqkv.begin(), wqkv.begin() + HH);
          wk.assign(wqkv.begin() + HH, wqkv.begin() + 2 * HH);
          wv.assign(wqkv.begin() + 2 * HH, wqkv.end());
          bq.assign(bqkv.begin(), bqkv.begin() + H_);
          bk.assign(bqkv.begin() + H_, bqkv.begin() + 2 * H_);
          bv.assign(bqkv.begin() + 2 * H_, bqkv.end());
        } else {
          wq = w(p + nm.q), bq = b(p + nm.q, spec_.attentionBias, H_);
          wk = w(p + nm.k), bk = b(p + nm.k, spec_.attentionBias, H_);
          wv = w(p + nm.v), bv = b(p + nm.v, spec_.attentionBias, H_);
        }
        layer.q = linearOf({&wq}, {&bq}, H_);
        layer.kv = linearOf({&wk, &wv}, {&bk, &bv}, H_);
      }
      {
        const auto ww = w(p + nm.attnOut), bb = b(p + nm.attnOut, spec_.attentionBias, H_);
        layer.o = linearOf({&ww}, {&bb}, H_);
      }
      {
        const auto ww = w(p + nm.mlpIn), bb = b(p + nm.mlpIn, spec_.mlpBias, ffnW_);
        layer.up = linearOf({&ww}, {&bb}, H_);
      }
      {
        const auto ww = w(p + nm.mlpOut), bb = b(p + nm.mlpOut, spec_.mlpBias, H_);
        layer.down = linearOf({&ww}, {&bb}, I_);
      }
      if (!arch_.preNorm || l > 0) {
        layer.ln1g = toBuffer(w(p + nm.attnNorm));
        layer.ln1b = toBuffer(b(p + nm.attnNorm, spec_.normBias, H_));
      }
      layer.ln2g = toBuffer(w(p + nm.mlpNorm));
      layer.ln2b = toBuffer(b(p + nm.mlpNorm, spec_.normBias, H_));
      layers_.push_back(std::move(layer));
    }
    if (arch_.preNorm) {
      finalG_ = toBuffer(w(nm.finalNorm));
      finalB_ = toBuffer(b(nm.finalNorm, spec_.normBias, H_));
    }
    {
      const auto ww = w(nm.headDense), bb = b(nm.headDense, spec_.headBias, H_);
      pooler_ = pack({&ww}, {&bb}, H_, nr);
    }
    if (spec_.headNorm) {
      headG_ = toBuffer(w(nm.headNorm));
      headB_ = toBuffer(b(nm.headNorm, spec_.normBias, H_));
    }
    {
      const auto ww = w(nm.out), bb = b(nm.out, true, static_cast<int>(spec_.numLabels));
      classifier_ = pack({&ww}, {&bb}, H_, nr);
    }
    ropeGlobal_.hd = ropeLocal_.hd = hd_;
    ropeGlobal_.theta = spec_.ropeTheta;
    ropeLocal_.theta = spec_.ropeLocalTheta;
    act_ = actOf(arch_.hiddenAct);
    headAct_ = actOf(arch_.headAct);
    weightBytes_ = weightBytesNow();
    setActive(compute_);
    workerFfn_.resize(pool_.size());
    workerAttn_.resize(pool_.size());
  }

  // Buffers grow to the largest batch seen and are then reused: memory does not grow with traffic.
  void reserve(int T, int B, const PackedBatch& batch) {
    int maxLen = 0;
    for (size_t i = 0; i + 1 < batch.offsets.size(); ++i)
      maxLen = std::max(maxLen, batch.offsets[i + 1] - batch.offsets[i]);
    auto grow = [](FloatBuffer& b, size_t n) {
      if (b.size() < n) b.resize(n);
    };
    grow(x_, static_cast<size_t>(T) * H_);
    if (E_ != H_) grow(e_, static_cast<size_t>(T) * E_);
    grow(x1_, static_cast<size_t>(T) * H_);
    grow(q_, static_cast<size_t>(T) * H_);
    grow(kv_, static_cast<size_t>(T) * 2 * H_);
    grow(ctx_, static_cast<size_t>(T) * H_);
    grow(xc_, static_cast<size_t>(B) * H_);
    grow(pooled_, static_cast<size_t>(B) * H_);
    for (auto& b : workerFfn_) grow(b, static_cast<size_t>(rowBlockMax_) * ffnW_);
    for (auto& b : workerAttn_) grow(b, k_->attentionScratch(maxLen, hd_));
    int64_t s = x_.bytes() + e_.bytes() + x1_.bytes() + q_.bytes() + kv_.bytes() + ctx_.bytes() +
                xc_.bytes() + pooled_.bytes();
    if (arch_.rotary) {
      const int cap = static_cast<int>(spec_.maxPositions);
      ropeGlobal_.ensure(maxLen, cap);
      if (spec_.localWindow > 0) ropeLocal_.ensure(maxLen, cap);
      s += ropeGlobal_.bytes() + ropeLocal_.bytes();
    }
    for (auto& b : workerFfn_) s += b.bytes();
    for (auto& b : workerAttn_) s += b.bytes();
    scratchBytes_ = s;
    peakScratch_ = std::max(peakScratch_.load(), s);
    // Positions within the pair; RoBERTa's padding id takes position -1 (offset - 1 in the table) and is
    // not counted (create_position_ids_from_input_ids).
    positions_.resize(T);
    const int64_t padId = spec_.positionPadId;
    for (int p = 0; p < B; ++p) {
      int next = 0;
      for (int t = batch.offsets[p]; t < batch.offsets[p + 1]; ++t)
        positions_[t] = batch.tokens[t] == padId ? -1 : next++;
    }
  }

  // fn(firstRow, rows, worker) over [0, rows) in blocks sized so that every thread gets several.
  template <typename Fn>
  void rowBlocks(int rows, Fn&& fn) {
    const int mr = rowMr_;
    const int want = (rows + 2 * pool_.size() - 1) / (2 * pool_.size());
    const int mb = std::max(mr, std::min(rowBlockMax_, (want + mr - 1) / mr * mr));
    const int blocks = (rows + mb - 1) / mb;
    pool_.parallelFor(blocks, [&](int b, int w) {
      if (!skipping()) fn(b * mb, std::min(mb, rows - b * mb), w);
    });
  }

  // word (+ token type) (+ absolute position) embeddings -> LN (-> embeddings_project when E != H).
  void embed(const PackedBatch& batch) {
    const int T = static_cast<int>(batch.tokens.size());
    const int E = E_;
    float* e = E_ == H_ ? x_.data() : e_.data();
    const bool types = spec_.typeEmbeddings, absolute = !arch_.rotary;
    const int offset = static_cast<int>(spec_.positionOffset);
    rowBlocks(T, [&](int r0, int n, int) {
      for (int t = r0; t < r0 + n; ++t) {
        float* x = e + static_cast<size_t>(t) * E;
        const float* w = wordEmb_.data() + static_cast<size_t>(batch.tokens[t]) * E;
        const float* ty = types ? typeEmb_.data() + static_cast<size_t>(batch.typeIds[t]) * E : nullptr;
        const float* po =
            absolute ? posEmb_.data() + static_cast<size_t>(positions_[t] + offset) * E : nullptr;
        if (ty && po)
          for (int j = 0; j < E; ++j) x[j] = (w[j] + ty[j]) + po[j];
        else if (po)
          for (int j = 0; j < E; ++j) x[j] = w[j] + po[j];
        else if (ty)
          for (int j = 0; j < E; ++j) x[j] = w[j] + ty[j];
        else
          std::memcpy(x, w, E * sizeof(float));
      }
      k_->layerNorm(e + static_cast<size_t>(r0) * E, n, E, E, embLnG_.data(), embLnB_.data(),
                    static_cast<float>(spec_.layerNormEps));
      if (E_ != H_)
        k_->gemm(e + static_cast<size_t>(r0) * E, E, n, embProj_, x_.data() + static_cast<size_t>(r0) * H_,
                 H_, Act::None, nullptr, 0);
    });
  }

  // The MLP on rows [0, n): out = act(in W1) W2 + res, or with a GLU (act(a) * g) W2 + res.
  void mlp(const Layer& L, const float* in, const float* res, float* out, int n, int w) {
    float* buf = workerFfn_[w].data();
    for (int i0 = 0; i0 < n; i0 += rowBlockMax_) {
      const int m = std::min(rowBlockMax_, n - i0);
      linear(L.up, in + i0 * H_, H_, m, buf, ffnW_, arch_.glu ? Act::None : act_, nullptr, 0);
      if (arch_.glu) k_->gatedAct(buf, m, I_, ffnW_, act_);
      linear(L.down, buf, ffnW_, m, out + i0 * H_, H_, Act::None, res + i0 * H_, H_);
    }
  }

  // Rotary positions on the query rows and the key half of the key/value rows [r0, r0 + n).
  void rotate(int window, int r0, int n) {
    if (!arch_.rotary) return;
    const RotaryTable& table = window >= 0 ? ropeLocal_ : ropeGlobal_;
    const int heads = static_cast<int>(spec_.numHeads);
    for (int t = r0; t < r0 + n; ++t) {
      table.apply(q_.data() + static_cast<size_t>(t) * H_, heads, hd_, positions_[t]);
      table.apply(kv_.data() + static_cast<size_t>(t) * 2 * H_, heads, hd_, positions_[t]);
    }
  }

  // A pre-norm layer (ModernBERT): x += Wo attn(LN1(x)) (layer 0: of x itself), x += mlp(LN2(x)).
  void preNormLayer(const Layer& L, int l, int window, const PackedBatch& batch) {
    const int T = static_cast<int>(batch.tokens.size());
    const float eps = static_cast<float>(spec_.layerNormEps);
    rowBlocks(T, [&](int r0, int n, int) {
      const size_t o = static_cast<size_t>(r0) * H_;
      const float* in = x_.data() + o;
      if (l > 0) {
        std::memcpy(x1_.data() + o, in, static_cast<size_t>(n) * H_ * sizeof(float));
        k_->layerNorm(x1_.data() + o, n, H_, H_, L.ln1g.data(), L.ln1b.data(), eps);
        in = x1_.data() + o;
      }
      linear(L.q, in, H_, n, q_.data() + o, H_, Act::None, nullptr, 0);
      linear(L.kv, in, H_, n, kv_.data() + 2 * o, 2 * H_, Act::None, nullptr, 0);
      rotate(window, r0, n);
    });
    attendAll(batch, q_.data(), ctx_.data(), /*clsOnly=*/false, window);
    rowBlocks(T, [&](int r0, int n, int w) {
      const size_t o = static_cast<size_t>(r0) * H_;
      float* x1 = x1_.data() + o;  // x + attention
      float* m = ctx_.data() + o;  // LN2 of it (the context rows are spent)
      linear(L.o, ctx_.data() + o, H_, n, x1, H_, Act::None, x_.data() + o, H_);
      std::memcpy(m, x1, static_cast<size_t>(n) * H_ * sizeof(float));
      k_->layerNorm(m, n, H_, H_, L.ln2g.data(), L.ln2b.data(), eps);
      mlp(L, m, x1, x_.data() + o, n, w);
    });
  }

  // After the last full layer: each pair's row for the head in xc_ ([CLS], or the mean of its rows),
  // through the final norm of a pre-norm model.
  void pool(const PackedBatch& batch) {
    const int B = static_cast<int>(batch.pairs());
    const float eps = static_cast<float>(spec_.layerNormEps);
    if (arch_.meanPool) {
      if (arch_.preNorm)
        rowBlocks(static_cast<int>(batch.tokens.size()), [&](int r0, int n, int) {
          k_->layerNorm(x_.data() + static_cast<size_t>(r0) * H_, n, H_, H_, finalG_.data(), finalB_.data(),
                        eps);
        });
      pool_.parallelFor(B, [&](int p, int) {
        const int off = batch.offsets[p], len = batch.offsets[p + 1] - off;
        std::vector<double> sum(H_, 0.0);
        for (int t = off; t < off + len; ++t) {
          const float* x = x_.data() + static_cast<size_t>(t) * H_;
          for (int j = 0; j < H_; ++j) sum[j] += x[j];
        }
        float* out = xc_.data() + static_cast<size_t>(p) * H_;
        for (int j = 0; j < H_; ++j) out[j] = static_cast<float>(sum[j] / len);
      });
      return;
    }
    for (int p = 0; p < B; ++p)
      std::memcpy(xc_.data() + static_cast<size_t>(p) * H_,
                  x_.data() + static_cast<size_t>(batch.offsets[p]) * H_, H_ * sizeof(float));
    if (arch_.preNorm) k_->layerNorm(xc_.data(), B, H_, H_, finalG_.data(), finalB_.data(), eps);
  }

  // Attention output projection + residual + LN, then FFN + residual + LN, on rows [r0, r0+n):
  // ctx -> x1 (scratch) -> out. res is the layer input (residual of the first sub-layer).
  void postAttention(const Layer& L, const float* ctx, const float* res, float* x1, float* out, int n,
                     int w) {
    const float eps = static_cast<float>(spec_.layerNormEps);
    linear(L.o, ctx, H_, n, x1, H_, Act::None, res, H_);
    k_->layerNorm(x1, n, H_, H_, L.ln1g.data(), L.ln1b.data(), eps);
    mlp(L, x1, x1, out, n, w);
    k_->layerNorm(out, n, H_, H_, L.ln2g.data(), L.ln2b.data(), eps);
  }

  void fullLayer(const Layer& L, int window, const PackedBatch& batch) {
    const int T = static_cast<int>(batch.tokens.size());
    rowBlocks(T, [&](int r0, int n, int) {
      const float* x = x_.data() + static_cast<size_t>(r0) * H_;
      linear(L.q, x, H_, n, q_.data() + static_cast<size_t>(r0) * H_, H_, Act::None, nullptr, 0);
      linear(L.kv, x, H_, n, kv_.data() + static_cast<size_t>(r0) * 2 * H_, 2 * H_, Act::None, nullptr, 0);
      rotate(window, r0, n);
    });
    attendAll(batch, q_.data(), ctx_.data(), /*clsOnly=*/false, window);
    rowBlocks(T, [&](int r0, int n, int w) {
      const size_t o = static_cast<size_t>(r0) * H_;
      postAttention(L, ctx_.data() + o, x_.data() + o, x1_.data() + o, x_.data() + o, n, w);
    });
  }

  // Attention of every (pair, head) over all of the pair's keys and values (kv_). Queries and context
  // rows: the pair's token rows of q / out, or with clsOnly its one [CLS] row, at row p. window: as
  // Kernels::attention.
  void attendAll(const PackedBatch& batch, const float* q, float* out, bool clsOnly, int window) {
    const int heads = static_cast<int>(spec_.numHeads);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd_));
    pool_.parallelFor(static_cast<int>(batch.pairs()) * heads, [&](int task, int w) {
      if (skipping()) return;
      const int p = task / heads, h = task % heads;
      const int off = batch.offsets[p], len = batch.offsets[p + 1] - off;
      const size_t row = static_cast<size_t>(clsOnly ? p : off) * H_ + h * hd_;
      const float* kv = kv_.data() + static_cast<size_t>(off) * 2 * H_;
      k_->attention(q + row, H_, clsOnly ? 1 : len, kv + h * hd_, kv + H_ + h * hd_, 2 * H_, len, hd_, scale,
                    window, out + row, H_, workerAttn_[w].data());
    });
  }

  // The last layer: keys/values for all tokens, everything else for the [CLS] rows only.
  void clsLayer(const Layer& L, int window, const PackedBatch& batch) {
    const int T = static_cast<int>(batch.tokens.size());
    const int B = static_cast<int>(batch.pairs());
    rowBlocks(T, [&](int r0, int n, int) {
      linear(L.kv, x_.data() + static_cast<size_t>(r0) * H_, H_, n,
             kv_.data() + static_cast<size_t>(r0) * 2 * H_, 2 * H_, Act::None, nullptr, 0);
    });
    if (arch_.rotary)  // keys rotate for every row; the [CLS] query is at position 0
      rowBlocks(T, [&](int r0, int n, int) {
        for (int t = r0; t < r0 + n; ++t)
          (window >= 0 ? ropeLocal_ : ropeGlobal_)
              .apply(kv_.data() + static_cast<size_t>(t) * 2 * H_, static_cast<int>(spec_.numHeads), hd_,
                     positions_[t]);
      });
    float* xc = xc_.data();  // [B, H]: each pair's [CLS] row of the layer input
    float* qc = q_.data();   // [B, H] (q_ is free in this layer)
    float* cc = ctx_.data();
    for (int p = 0; p < B; ++p)
      std::memcpy(xc + static_cast<size_t>(p) * H_, x_.data() + static_cast<size_t>(batch.offsets[p]) * H_,
                  H_ * sizeof(float));
    rowBlocks(B, [&](int r0, int n, int) {
      linear(L.q, xc + r0 * H_, H_, n, qc + r0 * H_, H_, Act::None, nullptr, 0);
    });
    attendAll(batch, qc, cc, /*clsOnly=*/true, window);
    rowBlocks(B, [&](int r0, int n, int w) {
      const size_t o = static_cast<size_t>(r0) * H_;
      postAttention(L, cc + o, xc + o, x1_.data() + o, xc + o, n, w);
    });
  }

  ModelSpec spec_;
  Arch arch_;
  const TensorNames& names_;
  const Kernels* k_;               // float32 GEMMs, attention, LayerNorm
  Compute compute_;                // the dtype asked for
  const LowpKernels* lk_;          // its GEMMs (nullptr for float32)
  Compute active_ = Compute::F32;  // what linear() computes in now (float32 during the load check)
  int rowMr_ = 1;
  std::string check_;
  cpu::ThreadPool pool_;
  int H_, I_, E_, ffnW_, hd_;
  Act act_ = Act::Gelu, headAct_ = Act::Tanh;
  int rowBlockMax_ = 96;
  FloatBuffer wordEmb_, posEmb_, typeEmb_, embLnG_, embLnB_;
  PackedMatrix embProj_;
  std::vector<Layer> layers_;
  FloatBuffer finalG_, finalB_, headG_, headB_;
  RotaryTable ropeGlobal_, ropeLocal_;
  PackedMatrix pooler_, classifier_;
  FloatBuffer x_, e_, x1_, q_, kv_, ctx_, xc_, pooled_;
  std::vector<FloatBuffer> workerFfn_, workerAttn_;
  std::vector<int> positions_;
  CancelToken* cancel_ = nullptr;  // the running forward's (engine thread only)
  int64_t weightBytes_ = 0;
  std::atomic<int64_t> scratchBytes_{0}, peakScratch_{0};
};

}  // namespace

std::unique_ptr<Engine> makeCpuEngine(const ModelSpec& spec, const std::vector<std::string>& weightFiles,
                                      const EngineOptions& options) {
  return std::make_unique<CpuEngine>(spec, weightFiles, options);
}

double cpuGemmGflops(int n, int threads, double seconds, const std::string& isaCap) {
  const Kernels* k = pickKernels(isaCap);
  cpu::ThreadPool pool(threads > 0 ? threads : defaultThreads());
  std::vector<float> w(static_cast<size_t>(n) * n), bias(n, 0.0f);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  const PackedMatrix B = pack({&w}, {&bias}, n, k->nr);
  FloatBuffer A(static_cast<size_t>(n) * n), C(static_cast<size_t>(n) * n);
  std::memcpy(A.data(), w.data(), w.size() * sizeof(float));
  const int mb = 8 * k->mr, blocks = (n + mb - 1) / mb;
  auto once = [&] {
    pool.parallelFor(blocks, [&](int b, int) {
      const int r0 = b * mb;
      k->gemm(A.data() + static_cast<size_t>(r0) * n, n, std::min(mb, n - r0), B,
              C.data() + static_cast<size_t>(r0) * n, n, Act::None, nullptr, 0);
    });
  };
  return 2.0 * n * n * static_cast<double>(n) / cpu::secondsPerCall(once, seconds) / 1e9;
}

std::string cpuIsaName(const std::string& isaCap) { return pickKernels(isaCap)->name; }
std::string cpuLowpIsaName(const std::string& dtype, const std::string& isaCap) {
  if (dtype == "bfloat16") return pickLowp(Compute::Bf16, isaCap)->name;
  if (dtype == "int8") return pickLowp(Compute::I8, isaCap)->name;
  return "";
}
int cpuDefaultThreads() { return defaultThreads(); }

}  // namespace mlxrerank
