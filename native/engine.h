// The one interface every engine implements (see docs/architecture.md, "Engines" and "The packed batch").
// Engines are plain C++: they may throw EngineError inside native code; the addon layer (addon/)
// catches everything before it reaches N-API and turns it into a rejected promise with a `code`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mlxrerank {

// What config.json says about a BERT-like sequence classifier. Filled by the TypeScript layer
// (src/model.ts, where the families and limits are declared), checked by archOf (model_spec.h) and
// against the weights.
struct ModelSpec {
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  int64_t intermediateSize = 0;
  int64_t maxPositions = 0;
  int64_t typeVocabSize = 0;
  int64_t numLabels = 0;
  double layerNormEps = 1e-12;
  std::string hiddenAct = "gelu";  // "gelu" (erf), "gelu_new" / "gelu_pytorch_tanh" (tanh), "relu"
  // The architecture (the defaults are BERT's); native/model_spec.h parses and checks it.
  std::string family = "bert";         // tensor names: "bert" | "xlm-roberta" | "electra" | "modernbert"
  int64_t embeddingSize = 0;           // 0 = hiddenSize; else embeddings_project maps it to hiddenSize
  std::string positions = "absolute";  // "absolute" (a learned table) | "rotary"
  int64_t positionOffset = 0;          // absolute: the position id of a pair's first token (XLM-R: pad + 1)
  int64_t positionPadId = -1;     // RoBERTa: this token id takes position offset - 1, uncounted; -1: none
  bool typeEmbeddings = true;     // a token type table (typeVocabSize rows)
  double ropeTheta = 10000;       // rotary: theta of the global layers
  double ropeLocalTheta = 10000;  // rotary: theta of the sliding-window layers
  int64_t localWindow = 0;        // sliding-window layers see |i - j| <= localWindow / 2; 0 = none
  int64_t globalEvery = 1;        // with a window, layer l is global when l % globalEvery == 0
  std::string mlp = "dense";      // "dense": act(x W1) W2 | "glu": (act(a) * g) W2, [a, g] = x Wi
  std::string norm = "post";      // "post": LN(x + f(x)) | "pre": x + f(LN(x)), then a final LN
  bool attentionBias = true, mlpBias = true, normBias = true, headBias = true;
  std::string pooling = "cls";   // "cls" (the first row) | "mean"
  std::string headAct = "tanh";  // head: dense -> headAct (-> LN when headNorm) -> out projection
  bool headNorm = false;
};

// A batch without padding: pair i is tokens[offsets[i] .. offsets[i+1]).
struct PackedBatch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> typeIds;
  std::vector<int32_t> offsets;  // size pairs() + 1, offsets[0] == 0, non-decreasing
  size_t pairs() const { return offsets.empty() ? 0 : offsets.size() - 1; }
};

struct ForwardResult {
  std::vector<float> logits;  // pairs * numLabels, row-major
  double inferenceMs = 0;     // time the engine spent on this batch
  int64_t computedSlots = 0;  // token slots really computed (>= tokens.size(); padding = the difference)
  bool cancelled = false;     // stopped by its CancelToken: logits empty, nothing to deliver
  int layersRun = 0;          // encoder layers run (all unless cancelled; the last may be cut short)
  bool startedAhead = false;  // begun while the batch before it waited for the device (startForward)
  // The batch's timeline on the steady clock (steadyMs(); 0: not observed): when the engine thread began
  // it; for a GPU engine, when the first part of its work was queued (startForward returned), when all
  // of it was, and when the engine thread found the device done (after beginning the next batch, when it
  // began one meanwhile); when its result was ready to go back.
  double beganAt = 0, begunAt = 0, queuedAt = 0, deviceDoneAt = 0, endedAt = 0;
};

// Milliseconds on the steady clock. The addon's steadyMs() gives JavaScript the same clock, so that it
// can place an engine's timeline on performance.now()'s (src/native.ts).
inline double steadyMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Stops a running forward (docs/architecture.md, "Cancellation"): cancel() from any thread; the engine
// polls stopAt() at every encoder layer boundary and returns a result with `cancelled` set at the first
// one after the cancel (between boundaries it may skip the rest of the layer's work). A forward given
// no token runs to the end.
class CancelToken {
 public:
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  // Engine thread, before encoder layer `layer`: true = stop now. Each call is counted and shown to
  // onCheck, so that a test can tell how far a forward got after a cancel without timing it.
  bool stopAt(int layer) {
    checks_.fetch_add(1);
    if (onCheck) onCheck(layer);
    return cancelled();
  }
  int checks() const { return checks_.load(); }
  std::function<void(int layer)> onCheck;  // tests: runs on the engine thread at each stopAt

 private:
  // Sequentially consistent on purpose: a check that misses a cancel happens before the cancel's
  // checks() read, so a forward makes at most one check after the one a canceller saw.
  std::atomic<bool> cancelled_{false};
  std::atomic<int> checks_{0};
};

struct MemoryInfo {
  int64_t activeBytes = 0;  // memory held for weights and live buffers
  int64_t peakBytes = 0;
  int64_t cacheBytes = 0;  // freed buffers kept for reuse
};

struct EngineOptions {
  std::string device = "auto";   // "auto" | "gpu" | "cpu"
  std::string dtype;             // "" = the engine's default for its device
  int threads = 0;               // 0 = sized to the machine
  int64_t cacheLimitBytes = -1;  // < 0 = the engine's default
  bool compile = true;           // mlx: use mx::compile where it pays
  // Tuning, for measuring and for tests. src/engine-options.ts declares each one (type, default, range)
  // and the environment variable that may set it; the engines read nothing from the environment.
  std::string cpuIsa;       // cpu: "" = the best, or a cap (engine_cpu.cpp): "amx", "avx512", ...
  std::string attention;    // mlx: "" = by device; "varlen" | "flash" | "coarse" | "fine"
  int rowBuckets = -1;      // mlx: -1 = by device (on for GPUs), 0 = off, 1 = on
  int64_t warmupRows = -1;  // mlx: a GPU's warm-up visits row buckets up to this many rows; -1 = default
  bool cpuCompile = false;  // mlx: mx::compile on a CPU device too
  int64_t cancelRows = -1;  // mlx: from this many tokens a batch runs a layer at a time; -1 = default
  int fusedKernels = -1;    // mlx: -1 = by device (on for CUDA with 16-bit dtypes), 0 = off, 1 = on
  // mlx: row-bucket warm-up forwards in flight at once (1-8); -1 = default (2)
  int64_t warmupDepth = -1;
  // mlx: -1 = by device (on for GPUs), 0 = off, 1 = on: startForward() queues a batch's work on the device
  // ahead of the batch before it finishing (Engine::startForward).
  int startAhead = -1;
  // mlx on CUDA: base folder of MLX's compiled-kernel cache (src/kernel-cache.ts prepares it; "" = MLX's
  // default). Process-wide: the first mlx engine's value holds (mlx_kernel_cache.h).
  std::string kernelCacheDir;
};

// What an engine is built for, reported by info() (as Text Embeddings Inference's backends report
// max_batch_size and is_padded): the scheduler's defaults for the limits a caller leaves unset.
struct EngineLimits {
  int64_t maxBatchTokens = 0;  // real tokens per batch
  int64_t maxBatchSize = 0;    // pairs per batch
  int pipelineDepth = 1;       // batches in the engine at once
  bool pads = false;           // attention pads the pairs of a batch to shared lengths (sorting pays)
  // While a call is still being tokenized, an idle engine takes a batch of at least this many ready tokens
  // (the scheduler's earlyBatchTokens); 0: it waits for a full batch or the whole call.
  int64_t earlyBatchTokens = 0;
};

// Error codes shared with TypeScript (src/errors.ts).
enum class ErrorCode { BadWeights, BadConfig, Input, Engine, Unavailable };
const char* errorCodeName(ErrorCode code);

class EngineError : public std::runtime_error {
 public:
  EngineError(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// A forward an engine started (Engine::startForward) and has not finished; only that engine reads it.
struct StartedForward {
  virtual ~StartedForward() = default;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Runs on the engine's own thread (never the JS thread); the batch was validated by the caller
  // (validateBatch) before it got here. `cancel` (may be null) can stop it at a layer boundary.
  virtual ForwardResult forward(const PackedBatch& batch, CancelToken* cancel = nullptr) = 0;
  // Pipelining across batches (docs/architecture.md, "Pipelining"). startForward() begins a forward whose
  // result is wanted later: a GPU engine builds its graph and queues it on the device. It returns null
  // where starting early gains nothing (the default: the cpu engine computes everything in forward()).
  // finishForward() completes what startForward() returned; once the batch's work is all queued, and
  // until the device is done with it, it calls `whileWaiting` (may be empty) until that returns true:
  // with it the engine thread starts the next queued batch, also one posted while this one computes, so
  // that the host builds batch k + 1 while the device computes batch k. Both run on the engine's thread,
  // in the order the batches were started.
  virtual std::unique_ptr<StartedForward> startForward(const PackedBatch& /*batch*/,
                                                       CancelToken* /*cancel*/) {
    return nullptr;
  }
  virtual ForwardResult finishForward(std::unique_ptr<StartedForward> /*started*/,
                                      const std::function<bool()>& /*whileWaiting*/) {
    throw EngineError(ErrorCode::Engine, "finishForward() without a startForward() of this engine");
  }
  virtual MemoryInfo memory() const = 0;
  virtual std::string backend() const = 0;     // "cpu" | "mlx"
  virtual std::string device() const = 0;      // "cpu" | "gpu"
  virtual std::string deviceName() const = 0;  // e.g. "AVX2 x 2 threads", "NVIDIA H100 80GB HBM3"
  virtual std::string dtype() const = 0;       // "float32" | "float16" | "bfloat16"
  virtual std::string version() const = 0;     // engine / library version (MLX's for mlx)
  virtual EngineLimits limits() const = 0;
  // Called once on the engine thread right after construction, e.g. to compile common shapes.
  virtual void warmup() {}
  // Where construction and warmup() spent their time: (name, milliseconds or count) in a fixed order,
  // for info.startup (the mlx engine's breakdown; docs/latency-gpu.md, "Cold start"). Engine thread.
  virtual std::vector<std::pair<std::string, double>> startupTimings() const { return {}; }
};

// Throws EngineError(Input) when the batch is malformed for this spec: offsets not monotonic, ids out
// of the vocabulary, type ids out of range, a pair longer than maxPositions or empty.
void validateBatch(const PackedBatch& batch, const ModelSpec& spec);

std::unique_ptr<Engine> makeCpuEngine(const ModelSpec& spec, const std::vector<std::string>& weightFiles,
                                      const EngineOptions& options);

#ifdef MLX_RERANK_WITH_MLX
std::unique_ptr<Engine> makeMlxEngine(const ModelSpec& spec, const std::vector<std::string>& weightFiles,
                                      const EngineOptions& options);
// MLX's version string and whether a GPU (Metal or CUDA) is usable, for backends().
std::string mlxVersion();
bool mlxGpuAvailable();
// Process-wide MLX settings that must precede MLX's first GPU use; called once at module load.
void configureMlxProcess();
#endif

}  // namespace mlxrerank
