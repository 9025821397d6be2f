// The portable cpu engine: a BERT cross-encoder in float32 on packed (unpadded) batches.
//
// Dense layers run on the T real tokens in row blocks; each row block goes through the attention
// output projection, both layer norms and the whole FFN while it is hot in L2 (the FFN's
// intermediate activations never leave the thread's scratch). Attention runs per (pair, head). The
// last layer computes keys and values for all tokens but queries, attention output and FFN only for
// each pair's [CLS] row: nothing else reaches the pooler.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "engine.h"
#include "kernels.h"
#include "threadpool.h"
#include "weights.h"

namespace mlxrerank {

namespace {

using cpu::Act;
using cpu::FloatBuffer;
using cpu::Kernels;
using cpu::PackedMatrix;

const Kernels* pickKernels() {
  const char* want = std::getenv("MLX_RERANK_CPU_ISA");  // "avx512" | "avx2" | "scalar" (benchmarks)
  const std::string w = want ? want : "";
  if (w == "scalar") return cpu::kernelsScalar();
  if (w != "avx2")
    if (const Kernels* k = cpu::kernelsAvx512()) return k;
  if (const Kernels* k = cpu::kernelsAvx2()) return k;
  return cpu::kernelsScalar();
}

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

struct Layer {
  PackedMatrix q, kv, o, up, down;
  FloatBuffer ln1g, ln1b, ln2g, ln2b;
};

class CpuEngine final : public Engine {
 public:
  CpuEngine(const ModelSpec& spec, const std::vector<std::string>& files, const EngineOptions& opts)
      : spec_(spec),
        k_(pickKernels()),
        pool_(opts.threads > 0 ? std::min(opts.threads, 256) : defaultThreads()),
        H_(static_cast<int>(spec.hiddenSize)),
        I_(static_cast<int>(spec.intermediateSize)),
        hd_(static_cast<int>(spec.hiddenSize / std::max<int64_t>(spec.numHeads, 1))) {
    if (opts.device == "gpu")
      throw EngineError(ErrorCode::Unavailable,
                        "The cpu engine runs on the CPU only; use device 'cpu' or 'auto'.");
    if (!opts.dtype.empty() && opts.dtype != "float32")
      throw EngineError(ErrorCode::Input,
                        "The cpu engine computes in float32 (weights may be stored as float16 or "
                        "bfloat16); dtype '" +
                            opts.dtype + "' is not available on it.");
    load(files);
  }

  ForwardResult forward(const PackedBatch& batch) override {
    const auto t0 = std::chrono::steady_clock::now();
    const int T = static_cast<int>(batch.tokens.size());
    const int B = static_cast<int>(batch.pairs());
    reserve(T, B, batch);
    embed(batch);
    for (int l = 0; l < static_cast<int>(layers_.size()); ++l) {
      if (l + 1 < static_cast<int>(layers_.size()))
        fullLayer(layers_[l], batch);
      else
        clsLayer(layers_[l], batch);
    }
    // Pooler (dense + tanh on [CLS]) and classifier, on B rows.
    const int L = static_cast<int>(spec_.numLabels);
    ForwardResult r;
    r.logits.resize(static_cast<size_t>(B) * L);
    rowBlocks(B, [&](int r0, int n, int) {
      k_->gemm(xc_.data() + r0 * H_, H_, n, pooler_, pooled_.data() + r0 * H_, H_, Act::Tanh, nullptr, 0);
      k_->gemm(pooled_.data() + r0 * H_, H_, n, classifier_, r.logits.data() + r0 * L, L, Act::None, nullptr,
               0);
    });
    r.computedSlots = T;
    r.inferenceMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }

  MemoryInfo memory() const override {
    MemoryInfo m;
    m.activeBytes = weightBytes_ + scratchBytes_.load();
    m.peakBytes = weightBytes_ + peakScratch_.load();
    return m;
  }
  std::string backend() const override { return "cpu"; }
  std::string device() const override { return "cpu"; }
  std::string deviceName() const override {
    return std::string(k_->name) + " x " + std::to_string(pool_.size()) + " threads";
  }
  std::string dtype() const override { return "float32"; }
  std::string version() const override { return "mlx-rerank cpu 0.1.0"; }
  void warmup() override {
    PackedBatch b;  // one short pair touches every code path and sizes the scratch for small batches
    const int n = static_cast<int>(std::min<int64_t>(16, spec_.maxPositions));
    b.tokens.assign(n, 0);
    b.typeIds.assign(n, 0);
    b.offsets = {0, n};
    forward(b);
  }

 private:
  void load(const std::vector<std::string>& files) {
    auto store = WeightStore::open(files, spec_);  // validates everything; unmapped when this returns
    auto f = [&](const std::string& n) { return store->toFloat32(n); };
    const int nr = k_->nr;
    wordEmb_ = toBuffer(f("embeddings.word_embeddings.weight"));
    posEmb_ = toBuffer(f("embeddings.position_embeddings.weight"));
    typeEmb_ = toBuffer(f("embeddings.token_type_embeddings.weight"));
    embLnG_ = toBuffer(f("embeddings.LayerNorm.weight"));
    embLnB_ = toBuffer(f("embeddings.LayerNorm.bias"));
    for (int64_t l = 0; l < spec_.numLayers; ++l) {
      const std::string p = "encoder.layer." + std::to_string(l) + ".";
      Layer layer;
      {
        const auto wq = f(p + "attention.self.query.weight"), bq = f(p + "attention.self.query.bias");
        const auto wk = f(p + "attention.self.key.weight"), bk = f(p + "attention.self.key.bias");
        const auto wv = f(p + "attention.self.value.weight"), bv = f(p + "attention.self.value.bias");
        layer.q = pack({&wq}, {&bq}, H_, nr);
        layer.kv = pack({&wk, &wv}, {&bk, &bv}, H_, nr);
      }
      {
        const auto w = f(p + "attention.output.dense.weight"), b = f(p + "attention.output.dense.bias");
        layer.o = pack({&w}, {&b}, H_, nr);
      }
      {
        const auto w = f(p + "intermediate.dense.weight"), b = f(p + "intermediate.dense.bias");
        layer.up = pack({&w}, {&b}, H_, nr);
      }
      {
        const auto w = f(p + "output.dense.weight"), b = f(p + "output.dense.bias");
        layer.down = pack({&w}, {&b}, I_, nr);
      }
      layer.ln1g = toBuffer(f(p + "attention.output.LayerNorm.weight"));
      layer.ln1b = toBuffer(f(p + "attention.output.LayerNorm.bias"));
      layer.ln2g = toBuffer(f(p + "output.LayerNorm.weight"));
      layer.ln2b = toBuffer(f(p + "output.LayerNorm.bias"));
      layers_.push_back(std::move(layer));
    }
    {
      const auto w = f("pooler.dense.weight"), b = f("pooler.dense.bias");
      pooler_ = pack({&w}, {&b}, H_, nr);
    }
    {
      const auto w = f("classifier.weight"), b = f("classifier.bias");
      classifier_ = pack({&w}, {&b}, H_, nr);
    }
    act_ = spec_.hiddenAct == "relu" ? Act::Relu : spec_.hiddenAct == "gelu" ? Act::Gelu : Act::GeluTanh;
    int64_t bytes = wordEmb_.bytes() + posEmb_.bytes() + typeEmb_.bytes() + embLnG_.bytes() +
                    embLnB_.bytes() + pooler_.bytes() + classifier_.bytes();
    for (const auto& l : layers_)
      bytes += l.q.bytes() + l.kv.bytes() + l.o.bytes() + l.up.bytes() + l.down.bytes() + l.ln1g.bytes() * 4;
    weightBytes_ = bytes;
    rowBlockMax_ = 8 * k_->mr;
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
    grow(x1_, static_cast<size_t>(T) * H_);
    grow(q_, static_cast<size_t>(T) * H_);
    grow(kv_, static_cast<size_t>(T) * 2 * H_);
    grow(ctx_, static_cast<size_t>(T) * H_);
    grow(xc_, static_cast<size_t>(B) * H_);
    grow(pooled_, static_cast<size_t>(B) * H_);
    for (auto& b : workerFfn_) grow(b, static_cast<size_t>(rowBlockMax_) * I_);
    for (auto& b : workerAttn_) grow(b, k_->attentionScratch(maxLen, hd_));
    int64_t s =
        x_.bytes() + x1_.bytes() + q_.bytes() + kv_.bytes() + ctx_.bytes() + xc_.bytes() + pooled_.bytes();
    for (auto& b : workerFfn_) s += b.bytes();
    for (auto& b : workerAttn_) s += b.bytes();
    scratchBytes_ = s;
    peakScratch_ = std::max(peakScratch_.load(), s);
    positions_.resize(T);
    pairOf_.resize(T);
    for (int p = 0; p < B; ++p)
      for (int t = batch.offsets[p]; t < batch.offsets[p + 1]; ++t) {
        positions_[t] = t - batch.offsets[p];
        pairOf_[t] = p;
      }
  }

  // fn(firstRow, rows, worker) over [0, rows) in blocks sized so that every thread gets several.
  template <typename Fn>
  void rowBlocks(int rows, Fn&& fn) {
    const int mr = k_->mr;
    const int want = (rows + 2 * pool_.size() - 1) / (2 * pool_.size());
    const int mb = std::max(mr, std::min(rowBlockMax_, (want + mr - 1) / mr * mr));
    const int blocks = (rows + mb - 1) / mb;
    pool_.parallelFor(blocks, [&](int b, int w) { fn(b * mb, std::min(mb, rows - b * mb), w); });
  }

  void embed(const PackedBatch& batch) {
    const int T = static_cast<int>(batch.tokens.size());
    rowBlocks(T, [&](int r0, int n, int) {
      for (int t = r0; t < r0 + n; ++t) {
        float* x = x_.data() + static_cast<size_t>(t) * H_;
        const float* w = wordEmb_.data() + static_cast<size_t>(batch.tokens[t]) * H_;
        const float* ty = typeEmb_.data() + static_cast<size_t>(batch.typeIds[t]) * H_;
        const float* po = posEmb_.data() + static_cast<size_t>(positions_[t]) * H_;
        for (int j = 0; j < H_; ++j) x[j] = (w[j] + ty[j]) + po[j];
      }
      k_->layerNorm(x_.data() + static_cast<size_t>(r0) * H_, n, H_, H_, embLnG_.data(), embLnB_.data(),
                    static_cast<float>(spec_.layerNormEps));
    });
  }

  // Attention output projection + residual + LN, then FFN + residual + LN, on rows [r0, r0+n):
  // ctx -> x1 (scratch) -> out. res is the layer input (residual of the first sub-layer).
  void postAttention(const Layer& L, const float* ctx, const float* res, float* x1, float* out, int n,
                     int w) {
    const float eps = static_cast<float>(spec_.layerNormEps);
    k_->gemm(ctx, H_, n, L.o, x1, H_, Act::None, res, H_);
    k_->layerNorm(x1, n, H_, H_, L.ln1g.data(), L.ln1b.data(), eps);
    float* ffn = workerFfn_[w].data();
    for (int i0 = 0; i0 < n; i0 += rowBlockMax_) {
      const int m = std::min(rowBlockMax_, n - i0);
      k_->gemm(x1 + i0 * H_, H_, m, L.up, ffn, I_, act_, nullptr, 0);
      k_->gemm(ffn, I_, m, L.down, out + i0 * H_, H_, Act::None, x1 + i0 * H_, H_);
    }
    k_->layerNorm(out, n, H_, H_, L.ln2g.data(), L.ln2b.data(), eps);
  }

  void fullLayer(const Layer& L, const PackedBatch& batch) {
    const int T = static_cast<int>(batch.tokens.size());
    rowBlocks(T, [&](int r0, int n, int) {
      const float* x = x_.data() + static_cast<size_t>(r0) * H_;
      k_->gemm(x, H_, n, L.q, q_.data() + static_cast<size_t>(r0) * H_, H_, Act::None, nullptr, 0);
      k_->gemm(x, H_, n, L.kv, kv_.data() + static_cast<size_t>(r0) * 2 * H_, 2 * H_, Act::None, nullptr, 0);
    });
    attendAll(batch, q_.data(), ctx_.data(), /*clsOnly=*/false);
    rowBlocks(T, [&](int r0, int n, int w) {
      const size_t o = static_cast<size_t>(r0) * H_;
      postAttention(L, ctx_.data() + o, x_.data() + o, x1_.data() + o, x_.data() + o, n, w);
    });
  }

  // Attention of every (pair, head) over all of the pair's keys and values (kv_). Queries and context
  // rows: the pair's token rows of q / out, or with clsOnly its one [CLS] row, at row p.
  void attendAll(const PackedBatch& batch, const float* q, float* out, bool clsOnly) {
    const int heads = static_cast<int>(spec_.numHeads);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd_));
    pool_.parallelFor(static_cast<int>(batch.pairs()) * heads, [&](int task, int w) {
      const int p = task / heads, h = task % heads;
      const int off = batch.offsets[p], len = batch.offsets[p + 1] - off;
      const size_t row = static_cast<size_t>(clsOnly ? p : off) * H_ + h * hd_;
      const float* kv = kv_.data() + static_cast<size_t>(off) * 2 * H_;
      k_->attention(q + row, H_, clsOnly ? 1 : len, kv + h * hd_, kv + H_ + h * hd_, 2 * H_, len, hd_, scale,
                    out + row, H_, workerAttn_[w].data());
    });
  }

  // The last layer: keys/values for all tokens, everything else for the [CLS] rows only.
  void clsLayer(const Layer& L, const PackedBatch& batch) {
    const int T = static_cast<int>(batch.tokens.size());
    const int B = static_cast<int>(batch.pairs());
    rowBlocks(T, [&](int r0, int n, int) {
      k_->gemm(x_.data() + static_cast<size_t>(r0) * H_, H_, n, L.kv,
               kv_.data() + static_cast<size_t>(r0) * 2 * H_, 2 * H_, Act::None, nullptr, 0);
    });
    float* xc = xc_.data();  // [B, H]: each pair's [CLS] row of the layer input
    float* qc = q_.data();   // [B, H] (q_ is free in this layer)
    float* cc = ctx_.data();
    for (int p = 0; p < B; ++p)
      std::memcpy(xc + static_cast<size_t>(p) * H_, x_.data() + static_cast<size_t>(batch.offsets[p]) * H_,
                  H_ * sizeof(float));
    rowBlocks(B, [&](int r0, int n, int) {
      k_->gemm(xc + r0 * H_, H_, n, L.q, qc + r0 * H_, H_, Act::None, nullptr, 0);
    });
    attendAll(batch, qc, cc, /*clsOnly=*/true);
    rowBlocks(B, [&](int r0, int n, int w) {
      const size_t o = static_cast<size_t>(r0) * H_;
      postAttention(L, cc + o, xc + o, x1_.data() + o, xc + o, n, w);
    });
  }

  ModelSpec spec_;
  const Kernels* k_;
  cpu::ThreadPool pool_;
  int H_, I_, hd_;
  Act act_ = Act::Gelu;
  int rowBlockMax_ = 96;
  FloatBuffer wordEmb_, posEmb_, typeEmb_, embLnG_, embLnB_;
  std::vector<Layer> layers_;
  PackedMatrix pooler_, classifier_;
  FloatBuffer x_, x1_, q_, kv_, ctx_, xc_, pooled_;
  std::vector<FloatBuffer> workerFfn_, workerAttn_;
  std::vector<int> positions_, pairOf_;
  int64_t weightBytes_ = 0;
  std::atomic<int64_t> scratchBytes_{0}, peakScratch_{0};
};

}  // namespace

std::unique_ptr<Engine> makeCpuEngine(const ModelSpec& spec, const std::vector<std::string>& weightFiles,
                                      const EngineOptions& options) {
  return std::make_unique<CpuEngine>(spec, weightFiles, options);
}

// The float32 GEMM ceiling of this machine for benchmarks: C = A * B on n x n, all threads.
double cpuGemmGflops(int n, int threads, double seconds) {
  const Kernels* k = pickKernels();
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
  once();
  const auto t0 = std::chrono::steady_clock::now();
  int iters = 0;
  double elapsed = 0;
  do {
    once();
    ++iters;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (elapsed < seconds);
  return 2.0 * n * n * static_cast<double>(n) * iters / elapsed / 1e9;
}

// For backends(): the instruction set the cpu engine would pick and its default thread count.
std::string cpuIsaName() { return pickKernels()->name; }
int cpuDefaultThreads() { return defaultThreads(); }

}  // namespace mlxrerank
