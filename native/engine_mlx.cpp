// The mlx engine: BERT-like cross-encoders (BERT, XLM-RoBERTa / CamemBERT, ELECTRA, ModernBERT: whatever
// the ModelSpec describes, native/model_spec.h) through MLX's C++ API (mlx::core). One concern, the
// engine's MLX side; its MLX-free batch layout is native/batch_plan.{h,cpp}.
//
// Layout of one forward (see docs/architecture.md, "The packed batch"):
//   embeddings   gather word (+ learned position) (+ type) rows for the T real tokens, add, layer norm
//                (-> embeddings_project when embedding_size != hidden_size)
//   per layer    post-norm (BERT, XLM-R, ELECTRA): fused QKV matmul on the token rows; attention (one of
//                three layouts, see Attention); output projection + residual + layer norm; FFN (+
//                activation) + residual + layer norm. Pre-norm (ModernBERT): layer norm (not in layer 0),
//                QKV, rotary positions on Q and K, attention (global, or a sliding window on the local
//                layers), output projection + residual, layer norm, GeGLU MLP + residual
//   head         each pair's [CLS] row (or the mean of its rows; a pre-norm model's final norm first),
//                dense -> activation (-> layer norm) -> output projection, logits cast to float32
//
// Which of these a model takes is decided once, from its Arch, when the graph is built: a BERT
// forward has the same ops as before the other families existed.
//
// Token rows: on a CPU the dense layers run on exactly the T real tokens. On a GPU T is rounded up
// to a row bucket (32 steps an octave: at most 3.1% padding), because every new shape costs there
// (kernel selection, module loading, graph instantiation) and a few hundred buckets cover every batch
// up to 64k tokens, so warmup() can visit them all.
//
// Threading: every MLX call of one engine happens on the engine's own thread (the addon's per-engine
// thread). Each engine evaluates on a stream taken from a small process-wide pool (see StreamPool), so
// that loading and disposing engines does not leave one MLX stream worker thread behind per load.
// memory() may be called from any thread: it returns numbers cached after each MLX call.
#include <mlx/mlx.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <numeric>
#include <optional>
#include <thread>
#include <variant>

#include "batch_plan.h"
#include "engine.h"
#include "mlx_device_upload.h"
#include "mlx_flash_attention.h"
#include "mlx_fused_kernels.h"
#include "mlx_kernel_cache.h"
#include "mlx_varlen_attention.h"
#include "model_spec.h"
#include "weights.h"

namespace mx = mlx::core;

namespace mlxrerank {

namespace {

// ---------------------------------------------------------------------------------------------------
// Streams

// MLX keeps one worker thread per stream for the life of the process, and a thread's default stream
// is created anew for every thread. An addon that starts a thread per engine would thus leak one
// worker per load. Instead, engines borrow "thread-unsafe" streams (usable from any thread, by one
// thread at a time) from this pool and give them back when destroyed. All streams of a device are
// created at once, before the first engine of that device exists, because MLX registers them in a
// global map that engines running on other threads read without a lock.
class StreamPool {
 public:
  static StreamPool& instance() {
    static StreamPool* pool = new StreamPool;  // leaked on purpose: MLX's own singletons are leaked too
    return *pool;
  }

  mx::Stream acquire(mx::Device device) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = device == mx::Device::gpu ? gpu_ : cpu_;
    if (!slot.created) {
      for (int i = 0; i < kStreamsPerDevice; ++i) slot.free.push_back(mx::new_thread_unsafe_stream(device));
      slot.created = true;
    }
    if (slot.free.empty()) {
      // More engines alive at once than pooled streams: a stream of this thread's own (MLX keeps its
      // worker until the process exits). Still correct; only costs a thread.
      return mx::new_stream(device);
    }
    mx::Stream stream = slot.free.back();
    slot.free.pop_back();
    return stream;
  }

  void release(mx::Stream stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& slot = stream.device == mx::Device::gpu ? gpu_ : cpu_;
    slot.free.push_back(stream);
  }

 private:
  static constexpr int kStreamsPerDevice = 8;
  struct Slot {
    bool created = false;
    std::vector<mx::Stream> free;
  };
  std::mutex mutex_;
  Slot cpu_, gpu_;
};

// ---------------------------------------------------------------------------------------------------
// Process exit with MLX's CUDA backend

// MLX 0.32's CUDA backend can throw from a destructor while the process exits, once the CUDA runtime
// has unloaded ("Destroy(handle_) failed: driver shutting down", ml-explore/mlx#4531, open): the
// process aborts (SIGABRT) after all its work is done. Once a CUDA engine exists, an exit hook
// (registered after the CUDA runtime's own, so it runs first) records the exit status, and a terminate
// handler that fires after that ends the process with the recorded status instead. Any other call of
// terminate goes to the previous handler as before.
#if defined(__GLIBC__)
std::atomic<bool> exiting{false};
std::atomic<int> exitStatus{0};
std::terminate_handler previousTerminate = nullptr;

[[noreturn]] void terminateDuringExit() {
  if (exiting.load()) {
    std::fflush(nullptr);
    std::_Exit(exitStatus.load());
  }
  if (previousTerminate) previousTerminate();
  std::abort();
}

void guardCudaExit() {
  static std::once_flag once;
  std::call_once(once, [] {
    on_exit(
        [](int status, void*) {
          exitStatus = status;
          exiting = true;
        },
        nullptr);
    previousTerminate = std::set_terminate(terminateDuringExit);
  });
}
#else
void guardCudaExit() {}
#endif

// ---------------------------------------------------------------------------------------------------
// Process settings

// MLX's buffer cache limit for GPU engines when the caller sets none (cacheLimitBytes < 0): room for
// the buffers of the largest batch the scheduler forms on a GPU (a forward of 65536 MiniLM token rows
// peaked at 3.2 GB of MLX memory on an H100, buffers in flight included).
constexpr size_t kGpuCacheLimit = size_t{4} << 30;

// Batch limits on a GPU, where a forward has a fixed host cost of ~1-2 ms (building and launching some 55
// kernels) whatever its size, so larger batches amortise it. Two batches in the engine at once: the next
// one is packed and handed over while the GPU computes. On a CPU the cpu engine's figures hold
// (engine_cpu.cpp, kBatchTokens: the smallest batch within ~5% of the peak pairs/s).
constexpr int64_t kGpuBatchTokens = 65536;
// The GPU warm-up visits every row bucket up to this many rows by default (EngineOptions::warmupRows).
// With our kernels loaded from the kernel cache, a warm second start spent most of its warm-up on the
// buckets (~4-5 ms each: graph building, cuBLAS plans; H200, MiniLM-L6, docs/latency-gpu.md): up to
// 65536 rows, 256 forwards, a load of 1.8-2.4 s; up to 16384, 192 forwards, 1.56 s. A batch above it
// meets a cold bucket once, which then cost 3-5 ms more than a warm one.
constexpr int64_t kGpuWarmupRows = 16384;
// From this many tokens a batch that can be cancelled runs a layer at a time (EngineOptions::cancelRows).
constexpr int64_t kCancelRows = 8192;
constexpr int64_t kGpuBatchSize = 1024;
constexpr int64_t kCpuBatchTokens = 2048;
constexpr int64_t kCpuBatchSize = 256;
// On a GPU the scheduler's earlyBatchTokens: while tokenizer workers still encode a call, an idle engine
// takes a batch of at least this many ready tokens. H200 (MiniLM-L6 float16, 8 tokenizer threads, one
// client; docs/latency-gpu.md, second run): a request of 512 pairs went from 57.6k to 61.7k pairs/s with
// 8192 and 62.1k with 16384, one of 1024 pairs from 67.3k to 71.6k; a batch of 32 pairs (~3,000 tokens)
// never leaves early, and under load the engine is never idle. On a CPU device the engine and the
// workers share the cores, so nothing is gained by starting early: 0 there.
constexpr int64_t kGpuEarlyBatchTokens = 16384;
// Row-bucket warm-up forwards in flight at once (EngineOptions::warmupDepth), as the scheduler keeps
// two batches in the engine.
constexpr int64_t kWarmupDepth = 2;

// ---------------------------------------------------------------------------------------------------
// Shapes

mx::Dtype toMx(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return mx::float32;
    case DType::F16:
      return mx::float16;
    case DType::BF16:
      return mx::bfloat16;
  }
  return mx::float32;
}

std::string dtypeString(mx::Dtype dtype) {
  if (dtype == mx::float16) return "float16";
  if (dtype == mx::bfloat16) return "bfloat16";
  return "float32";
}

// The activation of the FFN, as config.json's hidden_act names it (and of the head: tanh too).
using Activation = std::function<mx::array(const mx::array&, mx::StreamOrDevice)>;

Activation makeActivation(const std::string& name) {
  if (name == "tanh") return [](const mx::array& x, mx::StreamOrDevice s) { return mx::tanh(x, s); };
  if (name == "gelu") {
    // BERT's exact GELU: x * (1 + erf(x / sqrt(2))) / 2.
    return [](const mx::array& x, mx::StreamOrDevice s) {
      auto dt = x.dtype();
      auto e = mx::erf(mx::multiply(x, mx::array(static_cast<float>(M_SQRT1_2), dt), s), s);
      return mx::multiply(mx::multiply(x, mx::array(0.5f, dt), s), mx::add(e, mx::array(1.0f, dt), s), s);
    };
  }
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") {
    return [](const mx::array& x, mx::StreamOrDevice s) {
      auto dt = x.dtype();
      auto x3 = mx::multiply(mx::multiply(x, x, s), x, s);
      auto inner = mx::multiply(mx::add(x, mx::multiply(x3, mx::array(0.044715f, dt), s), s),
                                mx::array(static_cast<float>(std::sqrt(2.0 / M_PI)), dt), s);
      return mx::multiply(mx::multiply(x, mx::array(0.5f, dt), s),
                          mx::add(mx::tanh(inner, s), mx::array(1.0f, dt), s), s);
    };
  }
  if (name == "relu") {
    return [](const mx::array& x, mx::StreamOrDevice s) {
      return mx::maximum(x, mx::array(0.0f, x.dtype()), s);
    };
  }
  throw EngineError(ErrorCode::BadConfig, "mlx engine: unsupported hidden_act \"" + name +
                                              "\" (supported: gelu, gelu_new, gelu_pytorch_tanh, relu)");
}

// ---------------------------------------------------------------------------------------------------
// The batch, laid out for attention (the plan itself: batch_plan.h)

// ---------------------------------------------------------------------------------------------------
// Start-up timings (Engine::startupTimings)

// Milliseconds since construction or the previous lap().
class Stopwatch {
 public:
  double lap() {
    const auto now = std::chrono::steady_clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - last_).count();
    last_ = now;
    return ms;
  }

 private:
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

// warmup()'s phases (ms) and forwards; doubles, as they are reported.
struct WarmupTimings {
  double firstForwardMs = 0, groupedMs = 0, groupedForwards = 0, bucketsMs = 0, bucketForwards = 0;
  int64_t bucketMaxRows = 0;
  double bucketSmallMs = 0, lastForwardMs = 0, clearCacheMs = 0;
  double kernelsCompiled = 0, kernelsFromDisk = 0, kernelsFailed = 0, kernelCompileMs = 0;
};

// ---------------------------------------------------------------------------------------------------
// The engine

// A bias the architecture leaves out is loaded as zeros (same ops as with one); a norm a layer lacks
// (pre-norm layer 0's attention norm) and the gate of a dense MLP are placeholders, never read.
struct Layer {
  mx::array qkvW, qkvB;          // [H, 3H] (transposed: x @ W), [3H]
  mx::array outW, outB;          // [H, H], [H]
  mx::array ln1G, ln1B;          // post-norm: after attention; pre-norm: before it
  mx::array ffnInW, ffnInB;      // [H, I], [I]; GLU: the activated half
  mx::array ffnGateW, ffnGateB;  // GLU: the gate half [H, I], [I]
  mx::array ffnOutW, ffnOutB;    // [I, H], [H]
  mx::array ln2G, ln2B;          // post-norm: after the FFN; pre-norm: before it
};

class MlxEngine final : public Engine {
 public:
  MlxEngine(const ModelSpec& spec, const std::vector<std::string>& weightFiles, const EngineOptions& options)
      : spec_(spec),
        device_(pickDevice(options.device)),
        dtype_(pickDtype(options.dtype, device_)),
        arch_(archOf(spec)),
        activation_(makeActivation(spec.hiddenAct)),
        headActivation_(makeActivation(spec.headAct)),
        stream_(StreamPool::instance().acquire(device_)) {
    Stopwatch constructClock;
    try {
      if (spec.numHeads <= 0 || spec.hiddenSize % spec.numHeads != 0)
        throw EngineError(ErrorCode::BadConfig, "mlx engine: hidden_size " + std::to_string(spec.hiddenSize) +
                                                    " is not a multiple of num_attention_heads " +
                                                    std::to_string(spec.numHeads));
      if (options.cacheLimitBytes >= 0) {
        mx::set_cache_limit(static_cast<size_t>(options.cacheLimitBytes));
      } else if (device_ == mx::Device::gpu) {
        // MLX keeps freed buffers up to about the device's memory by default (122 GB of an H200 was
        // held after a warm-up); a reranker shares its GPU, so it keeps about one large batch's worth.
        mx::set_cache_limit(kGpuCacheLimit);
      }
      fused_ = pickFused(options.fusedKernels);
      Stopwatch weightsClock;
      loadWeights(weightFiles);
      weightsMs_ = weightsClock.lap();
      compile_ = options.compile && (device_ == mx::Device::gpu || options.cpuCompile);
      if (device_ == mx::Device::gpu && mx::cu::is_available()) guardCudaExit();
      attention_ = pickAttention(options.attention);
      // The tensor-core kernel by default where it applies: on the H200 it ran the MiniLM shape's
      // attention 5-6x faster than the CUDA-core one, and batch 512 end to end 1.38x (docs/latency-gpu.md).
      // 'varlen' asks for the CUDA-core kernel.
      flash_ = (options.attention.empty() || options.attention == "flash") &&
               attention_ == Attention::Varlen &&
               flashSupports(static_cast<int>(spec_.hiddenSize / spec_.numHeads), dtype_);
      bucketRows_ = options.rowBuckets < 0 ? device_ == mx::Device::gpu : options.rowBuckets != 0;
      warmupRows_ = options.warmupRows < 0 ? kGpuWarmupRows : options.warmupRows;
      warmupDepth_ = options.warmupDepth < 1 ? kWarmupDepth : std::min<int64_t>(options.warmupDepth, 8);
      cancelRows_ = options.cancelRows < 0 ? kCancelRows : options.cancelRows;
      startAhead_ = options.startAhead < 0 ? device_ == mx::Device::gpu : options.startAhead != 0;
      buildBlocks();
      refreshMemory();
      constructMs_ = constructClock.lap();
    } catch (...) {
      StreamPool::instance().release(stream_);
      throw;
    }
  }

  ~MlxEngine() override {
    // Make sure no work of ours is still queued on the stream before another engine borrows it.
    try {
      mx::synchronize(stream_);
    } catch (...) {
    }
    StreamPool::instance().release(stream_);
  }

  ForwardResult forward(const PackedBatch& batch, CancelToken* cancel = nullptr) override {
    std::unique_ptr<Forward> f = begin(batch, cancel);
    return finish(*f, nullptr);
  }

  // Started ahead only where it was asked for (startAhead_): on a GPU by default, where the device
  // computes while the host builds the next batch's graph.
  std::unique_ptr<StartedForward> startForward(const PackedBatch& batch, CancelToken* cancel) override {
    if (!startAhead_) return nullptr;
    return begin(batch, cancel);
  }

  ForwardResult finishForward(std::unique_ptr<StartedForward> started,
                              const std::function<bool()>& whileWaiting) override {
    auto* f = dynamic_cast<Forward*>(started.get());
    if (!f) throw EngineError(ErrorCode::Engine, "mlx engine: finishForward() of another engine's forward");
    return finish(*f, whileWaiting);
  }

  MemoryInfo memory() const override {
    MemoryInfo info;
    info.activeBytes = active_.load();
    info.peakBytes = peak_.load();
    info.cacheBytes = cache_.load();
    return info;
  }

  std::string backend() const override { return "mlx"; }
  std::string device() const override { return device_ == mx::Device::gpu ? "gpu" : "cpu"; }
  std::string deviceName() const override { return deviceName_; }
  std::string dtype() const override { return dtypeString(dtype_); }
  std::string version() const override { return mx::version(); }
  // `pads`: only the coarse layout's padding depends on which pairs share a batch (fine pads each pair
  // to its own bucket length, varlen not at all), so only there does batching pairs of like length pay.
  EngineLimits limits() const override {
    const bool gpu = device_ == mx::Device::gpu;
    return {gpu ? kGpuBatchTokens : kCpuBatchTokens, gpu ? kGpuBatchSize : kCpuBatchSize, gpu ? 2 : 1,
            attention_ == Attention::Coarse, gpu ? kGpuEarlyBatchTokens : 0};
  }

  // Where kernels are built per shape (GPUs; CPUs with compile on), one batch holding a pair of every
  // bucket length up to min(maxPositions, 512) (the grouped layouts' attention shapes). On a GPU, then
  // one batch for every row bucket up to EngineOptions::warmupRows token rows (default kGpuWarmupRows:
  // 16384, ~170 pairs of 96 tokens), so that the first batch of each size meets selected kernels, loaded
  // modules and instantiated graphs (~0.7 s of a ~1.5 s warm start on an H200). A small batch first (it meets
  // every kernel once: module compile or load, timed on its own as firstForwardMs) and last. On a CPU
  // without compile nothing is built per shape, so the small batches (threads, buffer cache) are all the
  // warm-up there is to do. Each phase's time goes to startupTimings().
  void warmup() override {
    const int limit = static_cast<int>(std::min<int64_t>(spec_.maxPositions, 512));
    const int32_t secondType = std::min<int32_t>(1, static_cast<int32_t>(spec_.typeVocabSize - 1));
    auto batchOf = [&](const std::vector<int>& lengths) {
      PackedBatch batch;
      batch.offsets.push_back(0);
      for (int len : lengths) {
        for (int t = 0; t < len; ++t) {
          batch.tokens.push_back(static_cast<int32_t>((t * 7919 + 101) % spec_.vocabSize));
          batch.typeIds.push_back(t < len / 2 ? 0 : secondType);
        }
        batch.offsets.push_back(static_cast<int32_t>(batch.tokens.size()));
      }
      return batch;
    };
    const auto small = batchOf({std::min(limit, 12), std::min(limit, 5)});
    const auto kernelsBefore = kernelCacheStats();
    WarmupTimings t;
    Stopwatch clock;
    forward(small);
    t.firstForwardMs = clock.lap();
    if ((device_ == mx::Device::gpu || compile_) && attention_ != Attention::Varlen) {
      std::vector<int> sweep;
      for (int len = 1; len <= limit; len = bucketLength(len) + 1)
        sweep.push_back(std::min(bucketLength(len), limit));
      forward(batchOf(sweep));
      t.groupedForwards = 1;
      t.groupedMs = clock.lap();
    }
    if (device_ == mx::Device::gpu && bucketRows_) {
      const int pairLength = std::min(limit, 128);
      // warmupDepth forwards in flight: with 2, the host builds (and meets the new shapes of) bucket
      // k + 1 while the GPU computes bucket k, instead of each waiting for the other; 1 waits for each.
      // (begin() queues a forward's work; finish() waits for it.)
      std::deque<std::unique_ptr<Forward>> inFlight;
      bool smallDone = false;
      for (int64_t rows = rowBucket(1); rows <= warmupRows_; rows = rowBucket(rows + 1)) {
        if (!smallDone && rows > 4096) {
          t.bucketSmallMs = t.bucketsMs = clock.lap();
          smallDone = true;
        }
        std::vector<int> lengths(static_cast<size_t>(rows / pairLength), pairLength);
        if (rows % pairLength) lengths.push_back(static_cast<int>(rows % pairLength));
        inFlight.push_back(begin(batchOf(lengths), nullptr));
        if (static_cast<int64_t>(inFlight.size()) >= warmupDepth_) {
          finish(*inFlight.front(), nullptr);
          inFlight.pop_front();
        }
        ++t.bucketForwards;
        t.bucketMaxRows = rows;
      }
      for (auto& f : inFlight) finish(*f, nullptr);
      t.bucketsMs += clock.lap();
      if (!smallDone) t.bucketSmallMs = t.bucketsMs;
    }
    forward(small);
    t.lastForwardMs = clock.lap();
    // The sweep leaves buffers of every size in MLX's cache; serving needs only its own sizes.
    mx::clear_cache();
    t.clearCacheMs = clock.lap();
    const auto kernelsAfter = kernelCacheStats();
    t.kernelsCompiled = static_cast<double>(kernelsAfter.compiled - kernelsBefore.compiled);
    t.kernelsFromDisk = static_cast<double>(kernelsAfter.fromDisk - kernelsBefore.fromDisk);
    t.kernelsFailed = static_cast<double>(kernelsAfter.failed - kernelsBefore.failed);
    t.kernelCompileMs = kernelsAfter.compileMs - kernelsBefore.compileMs;
    warmupTimings_ = t;
    refreshMemory();
  }

  // Construction (weights read and converted: weightsMs), then warmup()'s phases; counts are forwards
  // or kernels. bucketSmallMs: the buckets up to 4096 rows, whose time is mostly fixed cost per forward
  // and per new shape (host work); bucketsMs includes it. The kernel cache figures count this process's
  // custom kernels (mlx_kernel_cache.h).
  std::vector<std::pair<std::string, double>> startupTimings() const override {
    const WarmupTimings& t = warmupTimings_;
    return {{"constructMs", constructMs_},          {"weightsMs", weightsMs_},
            {"firstForwardMs", t.firstForwardMs},   {"groupedMs", t.groupedMs},
            {"groupedForwards", t.groupedForwards}, {"bucketsMs", t.bucketsMs},
            {"bucketForwards", t.bucketForwards},   {"bucketMaxRows", static_cast<double>(t.bucketMaxRows)},
            {"bucketSmallMs", t.bucketSmallMs},     {"warmupDepth", static_cast<double>(warmupDepth_)},
            {"lastForwardMs", t.lastForwardMs},     {"clearCacheMs", t.clearCacheMs},
            {"kernelsCompiled", t.kernelsCompiled}, {"kernelsFromDisk", t.kernelsFromDisk},
            {"kernelsFailed", t.kernelsFailed},     {"kernelCompileMs", t.kernelCompileMs}};
  }

 private:
  static mx::Device pickDevice(const std::string& requested) {
    const bool gpu = mx::is_available(mx::Device(mx::Device::gpu));
    if (requested == "cpu") return mx::Device(mx::Device::cpu);
    if (requested == "gpu") {
      if (!gpu)
        throw EngineError(
            ErrorCode::Unavailable,
            "mlx engine: device \"gpu\" requested but this MLX (" + std::string(mx::version()) +
                ") has no usable GPU (it needs MLX built with Metal on Apple silicon or with CUDA "
                "on an NVIDIA GPU). Use device \"cpu\" or \"auto\".");
      return mx::Device(mx::Device::gpu);
    }
    if (requested == "auto" || requested.empty()) return mx::Device(gpu ? mx::Device::gpu : mx::Device::cpu);
    throw EngineError(ErrorCode::Input,
                      "mlx engine: unknown device \"" + requested + "\" (use auto, gpu or cpu)");
  }

  static mx::Dtype pickDtype(const std::string& requested, mx::Device device) {
    if (requested.empty()) return device == mx::Device::gpu ? mx::float16 : mx::float32;
    if (requested == "float32") return mx::float32;
    if (requested == "float16") return mx::float16;
    if (requested == "bfloat16") return mx::bfloat16;
    throw EngineError(ErrorCode::Input,
                      "mlx engine: unknown dtype \"" + requested + "\" (use float32, float16 or bfloat16)");
  }

  // EngineOptions::fusedKernels: device-resident inputs and weights (mlx_device_upload.h) and the fused
  // row kernels (mlx_fused_kernels.h). CUDA only (mx::fast::cuda_kernel; Apple GPUs and CPUs keep the
  // plain graph whatever is asked); by default with 16-bit dtypes, the ones the kernels were profiled for.
  bool pickFused(int requested) const {
    if (device_ != mx::Device::gpu || !mx::cu::is_available() || requested == 0) return false;
    return requested == 1 || dtype_ == mx::float16 || dtype_ == mx::bfloat16;
  }

  // mx::compile fuses the element-wise chains (bias + GELU, residual adds). On GPUs that saves kernel
  // launches and memory traffic. On CPUs MLX compiles fused kernels with the system C++ compiler at
  // run time; measured on x86-64 (bench/engine-mlx-vs-cpu.ts) it does not pay for BERT shapes, and it
  // needs a compiler on the user's machine, so CPU engines run uncompiled unless
  // EngineOptions::cpuCompile asks for it (for measuring).
  // The attention layout (see Attention): varlen on CUDA GPUs (with the tensor-core kernel, "flash",
  // where it applies), coarse on other GPUs, fine on CPUs.
  // EngineOptions::attention ("varlen" | "coarse" | "fine") overrides it, to compare layouts or to run
  // the GPU layouts on a CPU; varlen exists on CUDA GPUs only and falls back to coarse elsewhere.
  // "flash" is the varlen layout with the tensor-core kernel (16-bit dtypes, sm_80+; else plain varlen);
  // "varlen" asks for the CUDA-core kernel.
  Attention pickAttention(const std::string& wanted) const {
    const bool cuda = device_ == mx::Device::gpu && mx::cu::is_available() &&
                      varlenSupports(static_cast<int>(spec_.hiddenSize / spec_.numHeads));
    if (!wanted.empty() && wanted != "varlen" && wanted != "flash" && wanted != "coarse" && wanted != "fine")
      throw EngineError(ErrorCode::Input,
                        "attention must be 'varlen', 'flash', 'coarse' or 'fine' (got '" + wanted + "')");
    if (wanted == "fine") return Attention::Fine;
    if (wanted == "coarse") return Attention::Coarse;
    if (cuda) return Attention::Varlen;
    return device_ == mx::Device::gpu || wanted == "varlen" || wanted == "flash" ? Attention::Coarse
                                                                                 : Attention::Fine;
  }

  mx::array load(const WeightStore& store, const std::string& name, bool transpose = false) {
    const TensorView& view = store.get(name);
    mx::Shape shape;
    for (int64_t d : view.shape) shape.push_back(static_cast<int>(d));
    // Copy the bytes as they are stored (the store's buffer may not be aligned for their type), then convert.
    // Fused (CUDA): straight into device memory, so that no weight stays in managed memory when no op
    // below copies it (mlx_device_upload.h says why); the store is open until eval() below has read it.
    auto hostCopy = [&] {
      mx::allocator::Buffer buffer = mx::allocator::malloc(std::max<size_t>(view.bytes, 1));
      std::memcpy(buffer.raw_ptr(), view.data, view.bytes);
      return mx::array(buffer, shape, toMx(view.dtype));
    };
    mx::array raw = fused_ ? uploadBytes(std::make_shared<HostBytes>(view.data, view.bytes), shape,
                                         toMx(view.dtype), stream_)
                           : hostCopy();
    mx::array out = transpose ? mx::contiguous(mx::transpose(raw, stream_), false, stream_) : raw;
    out = mx::astype(out, dtype_, stream_);
    mx::eval(out);
    return out;
  }

  // The family's tensors (native/model_spec.cpp names them), as the Arch says which exist.
  void loadWeights(const std::vector<std::string>& files) {
    // Fused: MLX's buffer cache may hold managed buffers (host arrays freed by other engines), which it would
    // hand to the device allocations below.
    if (fused_) mx::clear_cache();
    std::unique_ptr<WeightStore> store = WeightStore::open(files, spec_);
    const WeightStore& w = *store;
    const TensorNames& nm = tensorNames(arch_.family);
    const int hidden = static_cast<int>(spec_.hiddenSize);
    const int inter = static_cast<int>(spec_.intermediateSize);
    auto weight = [&](const std::string& name, bool transpose = false) {
      return load(w, name + ".weight", transpose);
    };
    auto bias = [&](const std::string& name, bool present, int size) {
      if (present) return load(w, name + ".bias");
      mx::array zeros = mx::zeros({size}, dtype_, stream_);
      mx::eval(zeros);
      return zeros;
    };
    // Columns [from, from + n) of a transposed weight [K, N] (or elements of a bias), made contiguous.
    auto columns = [&](const mx::array& m, int from, int n) {
      mx::array part = m.ndim() == 2 ? mx::slice(m, {0, from}, {m.shape(0), from + n}, stream_)
                                     : mx::slice(m, {from}, {from + n}, stream_);
      part = mx::contiguous(part, false, stream_);
      mx::eval(part);
      return part;
    };
    try {
      const int emb = static_cast<int>(arch_.embeddingSize);
      wordEmb_ = weight(nm.wordEmb);
      if (!arch_.rotary) posEmb_ = weight(nm.posEmb);
      if (spec_.typeEmbeddings) typeEmb_ = weight(nm.typeEmb);
      embLnG_ = weight(nm.embNorm);
      embLnB_ = bias(nm.embNorm, spec_.normBias, emb);
      if (emb != hidden) {
        embProjW_ = weight(nm.embProject, true);
        embProjB_ = bias(nm.embProject, true, hidden);
      }
      for (int64_t i = 0; i < spec_.numLayers; ++i) {
        const std::string p = nm.layerPrefix(i);
        Layer layer{mx::array(0.0f), mx::array(0.0f), mx::array(0.0f), mx::array(0.0f), mx::array(0.0f),
                    mx::array(0.0f), mx::array(0.0f), mx::array(0.0f), mx::array(0.0f), mx::array(0.0f),
                    mx::array(0.0f), mx::array(0.0f), mx::array(0.0f), mx::array(0.0f)};
        if (nm.fusedQkv) {  // [3H, H]: query, key, value rows, so x @ W^T is Q | K | V as below
          layer.qkvW = weight(p + nm.qkv, true);
          layer.qkvB = bias(p + nm.qkv, spec_.attentionBias, 3 * hidden);
        } else {
          auto qW = weight(p + nm.q, true);
          auto kW = weight(p + nm.k, true);
          auto vW = weight(p + nm.v, true);
          auto qB = bias(p + nm.q, spec_.attentionBias, hidden);
          auto kB = bias(p + nm.k, spec_.attentionBias, hidden);
          auto vB = bias(p + nm.v, spec_.attentionBias, hidden);
          layer.qkvW = mx::concatenate({qW, kW, vW}, 1, stream_);
          layer.qkvB = mx::concatenate({qB, kB, vB}, 0, stream_);
        }
        layer.outW = weight(p + nm.attnOut, true);
        layer.outB = bias(p + nm.attnOut, spec_.attentionBias, hidden);
        if (!arch_.preNorm || i > 0) {
          layer.ln1G = weight(p + nm.attnNorm);
          layer.ln1B = bias(p + nm.attnNorm, spec_.normBias, hidden);
        }
        if (arch_.glu) {  // Wi [2I, H]: the activated half's rows, then the gate's (transformers' chunk(2))
          const auto inW = weight(p + nm.mlpIn, true);
          const auto inB = bias(p + nm.mlpIn, spec_.mlpBias, 2 * inter);
          layer.ffnInW = columns(inW, 0, inter);
          layer.ffnGateW = columns(inW, inter, inter);
          layer.ffnInB = columns(inB, 0, inter);
          layer.ffnGateB = columns(inB, inter, inter);
        } else {
          layer.ffnInW = weight(p + nm.mlpIn, true);
          layer.ffnInB = bias(p + nm.mlpIn, spec_.mlpBias, inter);
        }
        layer.ffnOutW = weight(p + nm.mlpOut, true);
        layer.ffnOutB = bias(p + nm.mlpOut, spec_.mlpBias, hidden);
        layer.ln2G = weight(p + nm.mlpNorm);
        layer.ln2B = bias(p + nm.mlpNorm, spec_.normBias, hidden);
        mx::eval({layer.qkvW, layer.qkvB});
        layers_.push_back(std::move(layer));
      }
      if (arch_.preNorm) {
        finalG_ = weight(nm.finalNorm);
        finalB_ = bias(nm.finalNorm, spec_.normBias, hidden);
      }
      poolW_ = weight(nm.headDense, true);
      poolB_ = bias(nm.headDense, spec_.headBias, hidden);
      if (spec_.headNorm) {
        headG_ = weight(nm.headNorm);
        headB_ = bias(nm.headNorm, spec_.normBias, hidden);
      }
      clsW_ = weight(nm.out, true);
      clsB_ = bias(nm.out, true, static_cast<int>(spec_.numLabels));
      if (arch_.rotary) {
        invFreqGlobal_ = inverseFrequencies(spec_.ropeTheta);
        invFreqLocal_ = inverseFrequencies(spec_.ropeLocalTheta);
      }
    } catch (const EngineError&) {
      throw;
    } catch (const std::exception& err) {
      throw EngineError(ErrorCode::Engine,
                        std::string("mlx engine: converting the weights failed: ") + err.what());
    }
    // The store's copies are released and the file closed here (store goes out of scope): from now on the
    // weights live in MLX.
    auto info = mx::device_info(device_);
    auto it = info.find("device_name");
    deviceName_ = it != info.end() && std::holds_alternative<std::string>(it->second)
                      ? std::get<std::string>(it->second)
                      : (device_ == mx::Device::gpu ? "gpu" : "cpu");
  }

  // The dense blocks after attention, as functions of (input, weights...) so that one compiled graph
  // (shapeless: any token count) serves every layer and every batch.
  void buildBlocks() {
    const float eps = static_cast<float>(spec_.layerNormEps);
    const mx::Stream s = stream_;
    const int item = static_cast<int>(mx::size_of(dtype_));
    fusedEmbeddings_ = fused_ && fusedSupportsWidth(static_cast<int>(arch_.embeddingSize), item);
    if (fused_ && !arch_.preNorm && !arch_.glu &&
        fusedSupportsWidth(static_cast<int>(spec_.hiddenSize), item)) {
      buildFusedBlocks();
      return;
    }
    // inputs: ctx [T,H], residual [T,H], W [H,H], b, gamma, beta
    // Under compile, bias adds are written as matmul + add: they fuse with the residual add, and
    // mx::compile(shapeless) miscomputes addmm once the token count changes (MLX 0.32: its broadcast
    // bias keeps the traced shape).
    const bool fuse = compile_;
    attnOut_ = [eps, s, fuse](const std::vector<mx::array>& in) {
      auto y = fuse ? mx::add(mx::add(mx::matmul(in[0], in[2], s), in[3], s), in[1], s)
                    : mx::add(mx::addmm(in[3], in[0], in[2], 1.0f, 1.0f, s), in[1], s);
      return std::vector<mx::array>{mx::fast::layer_norm(y, in[4], in[5], eps, s)};
    };
    // inputs: x [T,H], W1 [H,I], b1, W2 [I,H], b2, gamma, beta
    Activation act = activation_;
    ffn_ = [eps, s, act, fuse](const std::vector<mx::array>& in) {
      auto h = act(fuse ? mx::add(mx::matmul(in[0], in[1], s), in[2], s)
                        : mx::addmm(in[2], in[0], in[1], 1.0f, 1.0f, s),
                   s);
      auto y = fuse ? mx::add(mx::add(mx::matmul(h, in[3], s), in[4], s), in[0], s)
                    : mx::add(mx::addmm(in[4], h, in[3], 1.0f, 1.0f, s), in[0], s);
      return std::vector<mx::array>{mx::fast::layer_norm(y, in[5], in[6], eps, s)};
    };
    // The GLU MLP (ModernBERT's GeGLU): (act(x Wa + ba) * (x Wg + bg)) W2 + b2. The two halves of Wi
    // are separate weights, so that no slice of a row count enters a shapeless compiled graph.
    // weights: Wa, ba, Wg, bg, W2, b2 from in[w]
    auto linear = [s, fuse](const mx::array& x, const mx::array& w, const mx::array& b) {
      return fuse ? mx::add(mx::matmul(x, w, s), b, s) : mx::addmm(b, x, w, 1.0f, 1.0f, s);
    };
    auto gluOut = [s, act, linear](const mx::array& x, const std::vector<mx::array>& in, size_t w) {
      auto h = mx::multiply(act(linear(x, in[w], in[w + 1]), s), linear(x, in[w + 2], in[w + 3]), s);
      return linear(h, in[w + 4], in[w + 5]);
    };
    if (arch_.glu && !arch_.preNorm) {
      // inputs: x, Wa, ba, Wg, bg, W2, b2, gamma, beta
      ffn_ = [eps, s, gluOut](const std::vector<mx::array>& in) {
        return std::vector<mx::array>{
            mx::fast::layer_norm(mx::add(gluOut(in[0], in, 1), in[0], s), in[7], in[8], eps, s)};
      };
    }
    if (arch_.preNorm) {
      // inputs: ctx, residual, W, b, gamma, beta -> {x1 = residual + ctx W + b, LN(x1)}
      attnOut_ = [eps, s, linear](const std::vector<mx::array>& in) {
        auto x1 = mx::add(linear(in[0], in[2], in[3]), in[1], s);
        return std::vector<mx::array>{x1, mx::fast::layer_norm(x1, in[4], in[5], eps, s)};
      };
      // inputs: LN(x1), x1, then the MLP's weights (dense: W1, b1, W2, b2; GLU: as gluOut) -> x1 + MLP
      const bool glu = arch_.glu;
      ffn_ = [s, act, linear, gluOut, glu](const std::vector<mx::array>& in) {
        auto y = glu ? gluOut(in[0], in, 2) : linear(act(linear(in[0], in[2], in[3]), s), in[4], in[5]);
        return std::vector<mx::array>{mx::add(y, in[1], s)};
      };
    }
    if (compile_) {
      attnOut_ = mx::compile(attnOut_, /*shapeless=*/true);
      ffn_ = mx::compile(ffn_, /*shapeless=*/true);
    }
  }

  // Post-norm blocks with the fused tail (mlx_fused_kernels.h): matmul without bias, then one kernel for
  // LN(mm + bias + residual), instead of a compiled add(add(mm, bias), residual) and a layer_norm (two
  // kernels, three passes over the rows). The FFN's bias + activation stays a compiled element-wise graph
  // between its matmuls. Not compiled as a whole: a custom kernel's output shape is fixed when traced, and
  // the graphs are shapeless (any token count). Same inputs as the unfused attnOut_ / ffn_.
  void buildFusedBlocks() {
    const float eps = static_cast<float>(spec_.layerNormEps);
    const mx::Stream s = stream_;
    Activation act = activation_;
    std::function<std::vector<mx::array>(const std::vector<mx::array>&)> biasAct =
        [s, act](const std::vector<mx::array>& in) {
          return std::vector<mx::array>{act(mx::add(in[0], in[1], s), s)};
        };
    if (compile_) biasAct = mx::compile(biasAct, /*shapeless=*/true);
    // inputs: ctx [T,H], residual [T,H], W [H,H], b, gamma, beta
    attnOut_ = [eps, s](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{
          residualLayerNorm(mx::matmul(in[0], in[2], s), in[3], in[1], in[4], in[5], eps, s)};
    };
    // inputs: x [T,H], W1 [H,I], b1, W2 [I,H], b2, gamma, beta
    ffn_ = [eps, s, biasAct](const std::vector<mx::array>& in) {
      auto h = biasAct({mx::matmul(in[0], in[1], s), in[2]})[0];
      return std::vector<mx::array>{
          residualLayerNorm(mx::matmul(h, in[3], s), in[4], in[0], in[5], in[6], eps, s)};
    };
  }

  // Grouped attention (fine / coarse): layout = {scatter, one gather per group}.
  mx::array attention(const mx::array& qkv, const AttentionPlan& plan, const std::vector<mx::array>& layout,
                      const std::vector<std::optional<mx::array>>& masks) {
    const int heads = static_cast<int>(spec_.numHeads);
    const int headDim = static_cast<int>(spec_.hiddenSize / spec_.numHeads);
    const int hidden = static_cast<int>(spec_.hiddenSize);
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    const mx::Stream s = stream_;
    std::vector<mx::array> outs;
    outs.reserve(plan.groups.size());
    for (size_t g = 0; g < plan.groups.size(); ++g) {
      const auto& group = plan.groups[g];
      // [pairs * L, 3H] -> [pairs, L, 3, heads, headDim]
      auto t =
          mx::reshape(mx::take(qkv, layout[g + 1], 0, s), {group.pairs, group.length, 3, heads, headDim}, s);
      auto part = [&](int i) { return mx::transpose(mx::take(t, i, 2, s), {0, 2, 1, 3}, s); };
      auto o = masks[g] ? mx::fast::scaled_dot_product_attention(part(0), part(1), part(2), scale, "array",
                                                                 masks[g], {}, false, s)
                        : mx::fast::scaled_dot_product_attention(part(0), part(1), part(2), scale, "", {}, {},
                                                                 false, s);
      outs.push_back(mx::reshape(mx::transpose(o, {0, 2, 1, 3}, s), {group.pairs * group.length, hidden}, s));
    }
    auto all = outs.size() == 1 ? outs[0] : mx::concatenate(outs, 0, s);
    return mx::take(all, layout[0], 0, s);
  }

  // Rotary positions (ModernBERT): inv_freq = 1 / theta^(2i / d) in float32, as transformers computes
  // it (its rotary module works in float32 even in a float64 model). [1, headDim / 2].
  mx::array inverseFrequencies(double theta) const {
    const int hd = static_cast<int>(spec_.hiddenSize / spec_.numHeads);
    std::vector<float> inv(static_cast<size_t>(hd / 2));
    for (int i = 0; i < hd / 2; ++i)
      inv[i] = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / static_cast<float>(hd));
    mx::array out = fused_ ? uploadBytes(HostBytes::owning(inv), mx::Shape{1, hd / 2}, mx::float32, stream_)
                           : mx::array(inv.data(), mx::Shape{1, hd / 2}, mx::float32);
    mx::eval(out);
    return out;
  }

  // cos and sin of position * inv_freq for every token row, in the compute dtype, shaped to broadcast
  // over [rows, {q, k}, heads, headDim / 2]. Made once per forward (O(rows x headDim)), from the rows'
  // positions inside their pairs, so packed pairs each start at position 0.
  std::pair<mx::array, mx::array> rotaryAngles(const mx::array& positions, const mx::array& invFreq) const {
    const mx::Stream s = stream_;
    const int rows = positions.shape(0);
    const int half = invFreq.shape(1);
    auto angle = mx::multiply(mx::reshape(positions, {rows, 1}, s), invFreq, s);  // float32, as transformers
    auto shape = [&](const mx::array& a) {
      return mx::reshape(mx::astype(a, dtype_, s), {rows, 1, 1, half}, s);
    };
    return {shape(mx::cos(angle, s)), shape(mx::sin(angle, s))};
  }

  // Rotates Q and K of the packed QKV rows [rows, 3H]: per head (x1, x2) -> (x1 cos - x2 sin, x2 cos +
  // x1 sin) on its two halves (transformers' rotate_half); V passes through.
  mx::array rotate(const mx::array& qkv, const std::pair<mx::array, mx::array>& cs) const {
    const mx::Stream s = stream_;
    const int rows = qkv.shape(0);
    const int heads = static_cast<int>(spec_.numHeads);
    const int hd = static_cast<int>(spec_.hiddenSize / spec_.numHeads);
    const int half = hd / 2;
    auto t = mx::reshape(qkv, {rows, 3, heads, hd}, s);
    auto x1 = mx::slice(t, {0, 0, 0, 0}, {rows, 2, heads, half}, s);
    auto x2 = mx::slice(t, {0, 0, 0, half}, {rows, 2, heads, hd}, s);
    const auto& [c, sn] = cs;
    auto r1 = mx::subtract(mx::multiply(x1, c, s), mx::multiply(x2, sn, s), s);
    auto r2 = mx::add(mx::multiply(x2, c, s), mx::multiply(x1, sn, s), s);
    auto v = mx::slice(t, {0, 2, 0, 0}, {rows, 3, heads, hd}, s);
    auto qk = mx::concatenate({r1, r2}, 3, s);
    return mx::reshape(mx::concatenate({qk, v}, 1, s), {rows, 3 * heads * hd}, s);
  }

  // The grouped layouts' masks of the sliding-window layers: slot i sees slot j when |i - j| <= half and
  // j holds a real token. A padding slot (no token: its output is never read) sees every real key, so
  // that no row of the softmax is empty. Where the window covers the whole group length the global mask
  // serves. Per group [pairs or 1, 1, L, L] booleans: the grouped layouts materialise L x L per head in
  // attention anyway (they serve Apple GPUs and CPUs; CUDA's varlen path needs no mask).
  std::vector<std::optional<mx::array>> windowMasks(
      const AttentionPlan& plan, const std::vector<std::optional<mx::array>>& masks) const {
    const mx::Stream s = stream_;
    const int half = static_cast<int>(spec_.localWindow / 2);
    std::vector<std::optional<mx::array>> out;
    for (size_t g = 0; g < plan.groups.size(); ++g) {
      const int L = plan.groups[g].length;
      if (half >= L - 1) {
        out.push_back(masks[g]);
        continue;
      }
      auto idx = mx::arange(L, mx::int32, s);
      auto dist = mx::abs(mx::subtract(mx::reshape(idx, {L, 1}, s), mx::reshape(idx, {1, L}, s), s), s);
      auto band = mx::reshape(mx::less_equal(dist, mx::array(half, mx::int32), s), {1, 1, L, L}, s);
      if (masks[g]) {
        const mx::array& keyValid = *masks[g];  // [pairs, 1, 1, L]
        auto queryPad = mx::logical_not(mx::reshape(keyValid, {plan.groups[g].pairs, 1, L, 1}, s), s);
        out.emplace_back(mx::logical_and(keyValid, mx::logical_or(band, queryPad, s), s));
      } else {
        out.emplace_back(band);
      }
    }
    return out;
  }

  // One forward from begin() to finish(): its inputs, the graph built so far and what the rest of it
  // needs. Built in order: prepare() (inputs, embeddings), build() (the layers), head() (pooling, head,
  // logits, queued with async_eval).
  struct Forward final : StartedForward {
    CancelToken* cancel =
        nullptr;         // set: a layer at a time, stoppable (batches of cancelRows_ tokens or more)
    double beginMs = 0;  // host time of begin(), counted into the batch's inferenceMs
    double begunAt = 0;  // steadyMs() when begin() returned
    int64_t computedSlots = 0;
    int layersRun = 0;
    bool stopped = false;  // the cancel token stopped it before layer layersRun
    size_t layer = 0;      // the next layer to build
    std::vector<mx::array> inputs, layout;
    size_t poolIn = 0, lengthsIn = 0;
    bool varlen = false;
    AttentionPlan plan;
    std::vector<std::optional<mx::array>> masks, localMasks;
    std::vector<float> inverseLengths;  // mean pooling, unfused: pool()'s host array
    std::optional<std::pair<mx::array, mx::array>> ropeGlobal, ropeLocal;
    std::optional<mx::array> x, behind, last, logits;  // behind, last: layers l-2 and l-1 (cancellable)
  };

  // Builds a forward and queues its work on the device with async_eval: all of it, or with a cancel
  // token (a batch of cancelRows_ tokens or more) the first two layers, the ones build() queues without
  // waiting. finish() does the rest.
  std::unique_ptr<Forward> begin(const PackedBatch& batch, CancelToken* cancel) {
    Stopwatch clock;
    auto f = std::make_unique<Forward>();
    guarded([&] {
      f->cancel = static_cast<int64_t>(batch.tokens.size()) >= cancelRows_ ? cancel : nullptr;
      prepare(batch, *f);
      build(*f, f->cancel ? 2 : layers_.size());
      if (!f->cancel) head(*f);
    });
    f->beginMs = clock.lap();
    f->begunAt = steadyMs();
    return f;
  }

  // Queues what begin() left, calls `whileWaiting` until it has started the next batch or the device is
  // done (polling, yielding the core: a batch posted while this one computes starts at once), then waits
  // for the logits and reads them. With a cancel token each layer's output is queued with
  // async_eval, and before building layer l the host waits for layer l-2: the device always has the next
  // layer queued, and a cancel leaves at most one layer of queued work behind it.
  ForwardResult finish(Forward& f, const std::function<bool()>& whileWaiting) {
    Stopwatch clock;
    ForwardResult result;
    guarded([&] {
      build(f, layers_.size());
      if (!f.stopped && !f.logits) head(f);
      result.queuedAt = steadyMs();
      // A large batch polls (the queue and the device, yielding the core) so that a batch posted while it
      // computes starts at once; a small one only starts what is queued: polling cost its latency more
      // than it gained (batch 32, one client on an H200: p50 +0.12 ms).
      const bool poll = f.computedSlots >= cancelRows_;
      if (whileWaiting && !whileWaiting() && poll)
        while (!whileWaiting() && !(f.stopped || f.logits->is_available())) std::this_thread::yield();
      if (f.stopped) {
        result.cancelled = true;
      } else {
        mx::eval(*f.logits);
        result.deviceDoneAt = steadyMs();
        const float* data = f.logits->data<float>();
        result.logits.assign(data, data + f.logits->size());
      }
    });
    result.computedSlots = f.computedSlots;
    result.layersRun = f.layersRun;
    result.begunAt = f.begunAt;
    result.inferenceMs = f.beginMs + clock.lap();
    refreshMemory();
    return result;
  }

  // Runs `work`, turning what MLX throws into an EngineError (after refreshing the memory figures).
  template <typename Work>
  void guarded(Work&& work) {
    try {
      work();
    } catch (const EngineError&) {
      throw;
    } catch (const std::exception& err) {
      refreshMemory();
      throw EngineError(ErrorCode::Engine, std::string("mlx engine: forward failed: ") + err.what());
    }
  }

  // The forward's inputs as arrays (one upload where fused), the attention layout and the embeddings.
  void prepare(const PackedBatch& batch, Forward& f) const {
    const mx::Stream s = stream_;
    const size_t pairs = batch.pairs();
    const int64_t tokens = static_cast<int64_t>(batch.tokens.size());
    const int64_t rows = bucketRows_ ? rowBucket(tokens) : tokens;

    // Padding rows (GPU row buckets) hold token 0 at position 0; nothing reads their outputs.
    // Positions count inside each pair; RoBERTa's padding id takes position offset - 1 and is not counted
    // (transformers' create_position_ids_from_input_ids); a learned table is indexed from the offset.
    std::vector<int32_t> ids(rows, 0), types(rows, 0), positions(rows, 0);
    std::copy(batch.tokens.begin(), batch.tokens.end(), ids.begin());
    std::copy(batch.typeIds.begin(), batch.typeIds.end(), types.begin());
    const int32_t offset = arch_.rotary ? 0 : static_cast<int32_t>(spec_.positionOffset);
    const int64_t padId = spec_.positionPadId;
    for (size_t p = 0; p < pairs; ++p) {
      int32_t next = 0;
      for (int32_t t = batch.offsets[p]; t < batch.offsets[p + 1]; ++t)
        positions[t] = offset + (batch.tokens[t] == padId ? -1 : next++);
    }

    // Every int32 input of the forward, made into arrays at once below (fused: one upload to device memory).
    Int32Inputs host;
    const size_t idsIn = host.add(ids), typesIn = host.add(types);
    const size_t positionsIn = host.add(positions);
    // The attention layout's inputs: offsets and block table (varlen), or the padded groups.
    f.varlen = attention_ == Attention::Varlen;
    std::vector<size_t> layoutIn;  // varlen: {offsets, blocks}; grouped: {scatter, gathers...}
    if (f.varlen) {
      layoutIn = {host.add(batch.offsets), host.add(varlenBlocks(batch.offsets, rows))};
      f.computedSlots = rows;
    } else {
      f.plan = planAttention(batch, attention_);
      f.plan.scatter.resize(rows, 0);
      layoutIn.push_back(host.add(f.plan.scatter));
      for (const auto& group : f.plan.groups) {
        layoutIn.push_back(host.add(group.gather));
        if (group.padded) {
          mx::array valid(group.keyValid.data(), mx::Shape{group.pairs, 1, 1, group.length}, mx::bool_);
          f.masks.emplace_back(valid);
        } else {
          f.masks.emplace_back(std::nullopt);
        }
      }
      f.computedSlots = std::max<int64_t>(f.plan.slots, rows);
    }
    PoolIndices pool = poolIndicesOf(batch, rows);
    f.poolIn = host.add(pool.rows);
    f.lengthsIn = arch_.meanPool ? host.add(pool.lengths) : f.poolIn;  // cls: not read
    f.inverseLengths = std::move(pool.inverseLengths);
    f.inputs = std::move(host).arrays(fused_, s);
    for (size_t i : layoutIn) f.layout.push_back(f.inputs[i]);
    if (!f.varlen && spec_.localWindow > 0) f.localMasks = windowMasks(f.plan, f.masks);

    const mx::array& positionIds = f.inputs[positionsIn];
    mx::array x = embeddings(f.inputs[idsIn], positionIds, f.inputs[typesIn]);
    if (arch_.embeddingSize != spec_.hiddenSize) x = mx::addmm(embProjB_, x, embProjW_, 1.0f, 1.0f, s);
    f.x = x;
    if (arch_.rotary) {
      auto where = mx::astype(positionIds, mx::float32, s);
      f.ropeGlobal = rotaryAngles(where, invFreqGlobal_);
      if (spec_.localWindow > 0) f.ropeLocal = rotaryAngles(where, invFreqLocal_);
    }
  }

  // Builds layers [f.layer, until) of the forward (a layer at a time and stoppable with a cancel token;
  // see finish()).
  void build(Forward& f, size_t until) {
    until = std::min(until, layers_.size());
    for (; f.layer < until && !f.stopped; ++f.layer) {
      const size_t l = f.layer;
      if (f.cancel) {
        if (f.behind) f.behind->wait();
        if (f.cancel->stopAt(static_cast<int>(l))) {
          f.stopped = true;
          f.layersRun = static_cast<int>(l);
          return;
        }
      }
      f.x = encoderLayer(l, *f.x, f);
      if (f.cancel) {
        mx::async_eval(*f.x);
        f.behind = f.last;
        f.last = f.x;
      }
    }
    if (f.layer == layers_.size()) f.layersRun = static_cast<int>(layers_.size());
  }

  // Encoder layer l on x.
  mx::array encoderLayer(size_t l, const mx::array& x, const Forward& f) {
    const mx::Stream s = stream_;
    const float eps = static_cast<float>(spec_.layerNormEps);
    const int heads = static_cast<int>(spec_.numHeads);
    const int headDim = static_cast<int>(spec_.hiddenSize / spec_.numHeads);
    const Layer& L = layers_[l];
    const bool local = arch_.localLayer(spec_, static_cast<int64_t>(l));
    const mx::array in = arch_.preNorm && l > 0 ? mx::fast::layer_norm(x, L.ln1G, L.ln1B, eps, s) : x;
    auto qkv = mx::addmm(L.qkvB, in, L.qkvW, 1.0f, 1.0f, s);
    if (arch_.rotary) qkv = rotate(qkv, local ? *f.ropeLocal : *f.ropeGlobal);
    const int window = local ? static_cast<int>(spec_.localWindow) : 0;
    auto ctx = !f.varlen ? attention(qkv, f.plan, f.layout, local ? f.localMasks : f.masks)
               : flash_  ? flashVarlenAttention(qkv, f.layout[0], f.layout[1], heads, headDim, window, s)
                         : varlenAttention(qkv, f.layout[0], f.layout[1], heads, headDim, window, s);
    if (arch_.preNorm) {
      auto res = attnOut_({ctx, x, L.outW, L.outB, L.ln2G, L.ln2B});
      return arch_.glu
                 ? ffn_({res[1], res[0], L.ffnInW, L.ffnInB, L.ffnGateW, L.ffnGateB, L.ffnOutW, L.ffnOutB})[0]
                 : ffn_({res[1], res[0], L.ffnInW, L.ffnInB, L.ffnOutW, L.ffnOutB})[0];
    }
    auto y = attnOut_({ctx, x, L.outW, L.outB, L.ln1G, L.ln1B})[0];
    return arch_.glu ? ffn_({y, L.ffnInW, L.ffnInB, L.ffnGateW, L.ffnGateB, L.ffnOutW, L.ffnOutB, L.ln2G,
                             L.ln2B})[0]
                     : ffn_({y, L.ffnInW, L.ffnInB, L.ffnOutW, L.ffnOutB, L.ln2G, L.ln2B})[0];
  }

  // Pooling, the head and the logits (float32), queued with async_eval.
  void head(Forward& f) const {
    const mx::Stream s = stream_;
    const float eps = static_cast<float>(spec_.layerNormEps);
    auto pooled = pool(*f.x, f.inputs[f.poolIn], f.inputs[f.lengthsIn], f.inverseLengths);
    auto h = headActivation_(mx::addmm(poolB_, pooled, poolW_, 1.0f, 1.0f, s), s);
    if (spec_.headNorm) h = mx::fast::layer_norm(h, headG_, headB_, eps, s);
    f.logits = mx::astype(mx::addmm(clsB_, h, clsW_, 1.0f, 1.0f, s), mx::float32, s);
    mx::async_eval(*f.logits);
  }

  // The word (+ position) (+ type) embeddings of the token rows, layer-normed [rows, embeddingSize]: one
  // kernel where fused (mlx_fused_kernels.h), else gathers, adds and a layer_norm.
  mx::array embeddings(const mx::array& ids, const mx::array& positions, const mx::array& types) const {
    const mx::Stream s = stream_;
    const float eps = static_cast<float>(spec_.layerNormEps);
    const bool learned = !arch_.rotary;
    if (fusedEmbeddings_)
      return fusedEmbeddings(wordEmb_, learned ? posEmb_ : wordEmb_,
                             spec_.typeEmbeddings ? typeEmb_ : wordEmb_, embLnG_, embLnB_, ids, positions,
                             types, learned, spec_.typeEmbeddings, eps, s);
    auto x = mx::take(wordEmb_, ids, 0, s);
    if (learned) x = mx::add(x, mx::take(posEmb_, positions, 0, s), s);
    if (spec_.typeEmbeddings) x = mx::add(x, mx::take(typeEmb_, types, 0, s), s);
    return mx::fast::layer_norm(x, embLnG_, embLnB_, eps, s);
  }

  // What pool() reads: cls pooling each pair's first row (rows: [pairs]); mean pooling each row's pair,
  // bucket padding rows a spare one (rows: [rows]) and the pairs' lengths.
  struct PoolIndices {
    std::vector<int32_t> rows, lengths;
    std::vector<float> inverseLengths;  // 1 / length, for the host-array (unfused) graph
  };
  PoolIndices poolIndicesOf(const PackedBatch& batch, int64_t rows) const {
    const int pairs = static_cast<int>(batch.pairs());
    PoolIndices out;
    if (!arch_.meanPool) {
      out.rows.assign(batch.offsets.begin(), batch.offsets.end() - 1);
      return out;
    }
    out.rows.assign(static_cast<size_t>(rows), pairs);
    out.lengths.resize(static_cast<size_t>(pairs));
    for (int p = 0; p < pairs; ++p) {
      std::fill(out.rows.begin() + batch.offsets[p], out.rows.begin() + batch.offsets[p + 1], p);
      out.lengths[p] = batch.offsets[p + 1] - batch.offsets[p];
    }
    if (!fused_)
      for (int32_t length : out.lengths) out.inverseLengths.push_back(1.0f / static_cast<float>(length));
    return out;
  }

  // Each pair's row for the head [pairs, H]: its first row, or the mean of its rows (summed in float32
  // by scatter-add, so no [pairs, rows] matrix is formed; bucket padding rows add into a spare row),
  // after a pre-norm model's final norm. `index` and `lengths`: PoolIndices' rows and lengths as arrays;
  // `inverseLengths`: its inverseLengths (unfused).
  mx::array pool(const mx::array& x, const mx::array& index, const mx::array& lengths,
                 const std::vector<float>& inverseLengths) const {
    const mx::Stream s = stream_;
    const int hidden = static_cast<int>(spec_.hiddenSize);
    const float eps = static_cast<float>(spec_.layerNormEps);
    if (!arch_.meanPool) {
      auto first = mx::take(x, index, 0, s);
      return arch_.preNorm ? mx::fast::layer_norm(first, finalG_, finalB_, eps, s) : first;
    }
    const int pairs = lengths.shape(0);
    const int rows = x.shape(0);
    auto normed = arch_.preNorm ? mx::fast::layer_norm(x, finalG_, finalB_, eps, s) : x;
    auto sums = mx::scatter_add(mx::zeros({pairs + 1, hidden}, mx::float32, s), index,
                                mx::reshape(mx::astype(normed, mx::float32, s), {rows, 1, hidden}, s), 0, s);
    // 1 / length in float32; fused, on the device from the uploaded lengths (IEEE division on CUDA, the
    // host's value), else a host array as before.
    auto inverseLength =
        fused_
            ? mx::reshape(mx::divide(mx::array(1.0f), mx::astype(lengths, mx::float32, s), s), {pairs, 1}, s)
            : mx::array(inverseLengths.data(), mx::Shape{pairs, 1}, mx::float32);
    auto mean = mx::multiply(mx::slice(sums, {0, 0}, {pairs, hidden}, s), inverseLength, s);
    return mx::astype(mean, dtype_, s);
  }

  // MLX's counters are process-wide (all engines and MLX users in the process together).
  void refreshMemory() {
    active_ = static_cast<int64_t>(mx::get_active_memory());
    peak_ = static_cast<int64_t>(mx::get_peak_memory());
    cache_ = static_cast<int64_t>(mx::get_cache_memory());
  }

  ModelSpec spec_;
  mx::Device device_;
  mx::Dtype dtype_;
  Arch arch_;  // the model's choices, decided once: the graph branches on them when it is built
  Activation activation_, headActivation_;
  mx::Stream stream_;  // after everything that can throw in the initializer list
  bool compile_ = false;
  Attention attention_ = Attention::Fine;
  bool flash_ = false;  // varlen layout, tensor-core kernel (attention 'flash'; mlx_flash_attention.h)
  // fusedKernels (pickFused): device-resident inputs and weights; the fused embedding kernel where its
  // width fits (the post-norm blocks' fused tails: buildFusedBlocks).
  bool fused_ = false;
  bool fusedEmbeddings_ = false;
  bool bucketRows_ = false;
  int64_t warmupRows_ = kGpuWarmupRows;
  int64_t warmupDepth_ = kWarmupDepth;  // row-bucket warm-up forwards in flight at once
  // Batches of at least this many tokens are evaluated a layer at a time when they can be cancelled.
  // Below it a forward is one graph: a per-layer wait would cost small batches host/device overlap,
  // and they are done within a few ms anyway.
  int64_t cancelRows_ = kCancelRows;
  // startForward() begins forwards (EngineOptions::startAhead; on GPUs by default): while the device
  // computes batch k the host builds batch k + 1, which a GPU engine otherwise waits for (~1-2 ms a forward).
  bool startAhead_ = false;
  std::string deviceName_;
  double constructMs_ = 0, weightsMs_ = 0;  // startupTimings()
  WarmupTimings warmupTimings_;

  mx::array wordEmb_{0.0f}, posEmb_{0.0f}, typeEmb_{0.0f}, embLnG_{0.0f}, embLnB_{0.0f};
  mx::array embProjW_{0.0f}, embProjB_{0.0f};  // embedding_size != hidden_size (ELECTRA)
  std::vector<Layer> layers_;
  mx::array finalG_{0.0f}, finalB_{0.0f};               // pre-norm: the final norm
  mx::array invFreqGlobal_{0.0f}, invFreqLocal_{0.0f};  // rotary: [1, headDim / 2] per theta
  // The head: dense (BERT's pooler, XLM-R's / ELECTRA's classifier.dense, ModernBERT's head.dense),
  // its activation, its norm (headNorm), the output projection.
  mx::array poolW_{0.0f}, poolB_{0.0f}, headG_{0.0f}, headB_{0.0f}, clsW_{0.0f}, clsB_{0.0f};

  std::function<std::vector<mx::array>(const std::vector<mx::array>&)> attnOut_, ffn_;

  std::atomic<int64_t> active_{0}, peak_{0}, cache_{0};
};

}  // namespace

std::unique_ptr<Engine> makeMlxEngine(const ModelSpec& spec, const std::vector<std::string>& weightFiles,
                                      const EngineOptions& options) {
  try {
    configureKernelCache(options);
    return std::make_unique<MlxEngine>(spec, weightFiles, options);
  } catch (const EngineError&) {
    throw;
  } catch (const std::exception& err) {
    throw EngineError(ErrorCode::Engine, std::string("mlx engine: ") + err.what());
  }
}

std::string mlxVersion() { return mx::version(); }

// MLX's CUDA backend records a forward's kernels into CUDA graphs (MLX_USE_CUDA_GRAPHS, on by default),
// up to MLX_MAX_OPS_PER_BUFFER ops each (100 on an H100/H200), before it launches any, and then updates
// or instantiates a cached executable graph: with ~55 kernels a forward the GPU waits for nearly all of
// the host's work, and every forward pays the recording and the update. Our shapes change with every
// batch (row buckets), so the graphs never replay as they are. Launched directly instead (graphs off),
// a forward on an H200 (MiniLM-L6, float16, docs/latency-gpu.md, third run) took 1.11 ms against 1.23 at
// batch 32 and 4.80 against 5.38 at batch 512; two in flight did 40,616 pairs/s against 30,247 at batch
// 32 and 119,090 against 112,089 at batch 512; end to end, one client, batch 512: 70,642 against 67,122.
// With graphs on (MLX_USE_CUDA_GRAPHS=1), 20 ops a graph lets the GPU start after the first layers
// (batch 32: 1.94-2.05 ms against 2.39-2.51 with 100, H200). Both are read once, at the first CUDA
// stream, so they are set at module load (the JS thread, before any engine thread), and only where the
// caller has not set them.
void configureMlxProcess() {
  if (!mx::cu::is_available()) return;
  setenv("MLX_USE_CUDA_GRAPHS", "0", /*overwrite=*/0);
  setenv("MLX_MAX_OPS_PER_BUFFER", "20", /*overwrite=*/0);
}

bool mlxGpuAvailable() {
  try {
    return mx::is_available(mx::Device(mx::Device::gpu));
  } catch (...) {
    return false;
  }
}

}  // namespace mlxrerank
