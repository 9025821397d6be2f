// The N-API surface typed in src/native.ts: backends(), loadEngine(opts) -> Promise<NativeEngine>,
// gpuUtilization(index?).
//
// Each engine owns one native thread with a job queue (MLX requires every call for an engine on one
// thread; the cpu engine fans out to its own pool from there). Jobs run on that thread and hand a
// Completion back to the JS thread through a thread-safe function; the JS thread only copies typed
// arrays in and out. No C++ exception crosses N-API: jobs catch everything and reject their promise
// with an Error whose `code` is one of src/errors.ts's codes.
#include <napi.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>

#include "engine.h"
#include "nvml.h"

namespace mlxrerank {
std::string cpuIsaName();
int cpuDefaultThreads();
double cpuGemmGflops(int n, int threads, double seconds);
}  // namespace mlxrerank

namespace {

using namespace mlxrerank;

// What a finished job delivers on the JS thread.
struct Completion {
  virtual ~Completion() = default;
  virtual void deliver(Napi::Env env) = 0;
};

struct Failure {
  std::string code, message;
};

Failure describe(std::exception_ptr ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const EngineError& e) {
    return {errorCodeName(e.code()), e.what()};
  } catch (const std::bad_alloc&) {
    return {"E_ENGINE", "Out of memory while running the engine; use smaller batches (maxBatchTokens)."};
  } catch (const std::exception& e) {
    return {"E_ENGINE", std::string("Engine failure: ") + e.what()};
  } catch (...) {
    return {"E_ENGINE", "Engine failure (unknown native exception)"};
  }
}

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

Napi::Promise rejected(Napi::Env env, const std::string& code, const std::string& message) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(makeError(env, code, message).Value());
  return d.Promise();
}

// A completion that settles a promise with whatever the job produced.
struct Settle final : Completion {
  std::unique_ptr<Napi::Promise::Deferred> deferred;  // none for a dispose the GC started
  std::function<Napi::Value(Napi::Env)> value;        // set on success
  bool ok = false;
  Failure failure;
  std::function<void(Napi::Env)> after;  // runs on the JS thread after settling
  explicit Settle(const Napi::Promise::Deferred* d)
      : deferred(d ? new Napi::Promise::Deferred(*d) : nullptr) {}
  void deliver(Napi::Env env) override {
    Napi::HandleScope scope(env);
    if (ok) {
      Napi::Value v;
      try {
        v = value(env);
      } catch (const Napi::Error& e) {
        ok = false;
        failure = {"E_ENGINE", e.Message()};
      }
      if (ok && deferred) deferred->Resolve(v);
    }
    if (!ok && deferred) deferred->Reject(makeError(env, failure.code, failure.message).Value());
    if (after) after(env);
  }
};

class Worker;
void callJs(Napi::Env env, Napi::Function, Worker* worker, Completion* c);
using Tsfn = Napi::TypedThreadSafeFunction<Worker, Completion, callJs>;

struct EngineInfoCache {
  std::string backend, device, deviceName, dtype, version;
};

// One engine's thread, its queue and its link back to the JS thread.
class Worker : public std::enable_shared_from_this<Worker> {
 public:
  using Job = std::function<Completion*(Worker&)>;

  static std::shared_ptr<Worker> start(Napi::Env env) {
    auto w = std::shared_ptr<Worker>(new Worker());
    w->env_ = env;
    w->tsfn_ = Tsfn::New(env, "mlx-rerank engine", 0, 1, w.get());
    w->tsfn_.Unref(env);  // an idle engine does not keep the process alive
    // Registered after the thread-safe function, so it runs before Node tears that down.
    napi_add_env_cleanup_hook(env, &Worker::onEnvCleanup, w.get());
    w->self_ = w;
    w->thread_ = std::thread([raw = w.get()] { raw->loop(); });
    return w;
  }

  // JS thread. The completion the job returns is delivered on the JS thread.
  void post(Job job) {
    if (finished_) return;  // the environment is shutting down (or the engine was disposed)
    if (pending_++ == 0) tsfn_.Ref(env_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

  // JS thread, from a delivered completion: the last job ran; join and let go.
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (thread_.joinable()) thread_.join();
    napi_remove_env_cleanup_hook(env_, &Worker::onEnvCleanup, this);
    tsfn_.Release();
    auto keep = std::move(self_);  // may destroy *this when keep goes out of scope
  }

  void delivered(Napi::Env env) {
    if (--pending_ == 0 && !finished_) tsfn_.Unref(env);
  }

  // Engine thread only.
  Engine* engine() { return engine_.get(); }
  void setEngine(std::unique_ptr<Engine> e) {
    engine_ = std::move(e);
    EngineInfoCache info{engine_->backend(), engine_->device(), engine_->deviceName(), engine_->dtype(),
                         engine_->version()};
    std::lock_guard<std::mutex> lock(mu_);
    info_ = info;
  }
  void destroyEngine() {
    engine_.reset();
    std::lock_guard<std::mutex> lock(mu_);
    memory_ = MemoryInfo{};
  }
  void exitAfterThisJob() { exit_ = true; }
  void refreshMemory() {
    if (!engine_) return;
    const MemoryInfo m = engine_->memory();
    std::lock_guard<std::mutex> lock(mu_);
    memory_ = m;
  }

  // Any thread.
  EngineInfoCache info() {
    std::lock_guard<std::mutex> lock(mu_);
    return info_;
  }
  MemoryInfo memory() {
    std::lock_guard<std::mutex> lock(mu_);
    return memory_;
  }

 private:
  Worker() = default;

  void loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return abort_ || !queue_.empty(); });
        if (abort_) break;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      Completion* c = nullptr;
      try {
        c = job(*this);
      } catch (...) {
        // Jobs catch their own errors; this is a last line of defence against a throwing allocator.
      }
      refreshMemory();
      if (c && tsfn_.BlockingCall(c) != napi_ok) delete c;
      if (exit_) return;
    }
    engine_.reset();  // the environment is going away: free the engine on its own thread
  }

  // The environment (main thread or a worker_thread) is shutting down with this engine still live:
  // stop after the job in progress, free the engine, join. Promises still queued are never settled.
  static void onEnvCleanup(void* arg) {
    auto* w = static_cast<Worker*>(arg);
    {
      std::lock_guard<std::mutex> lock(w->mu_);
      w->abort_ = true;
    }
    w->cv_.notify_one();
    if (w->thread_.joinable()) w->thread_.join();
    w->finished_ = true;
    w->self_.reset();  // Node closes the thread-safe function itself
  }

  Napi::Env env_{nullptr};
  Tsfn tsfn_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool abort_ = false;
  bool exit_ = false;      // engine thread only
  bool finished_ = false;  // JS thread only
  int pending_ = 0;        // JS thread only
  std::unique_ptr<Engine> engine_;
  EngineInfoCache info_;
  MemoryInfo memory_;
  std::shared_ptr<Worker> self_;  // alive until finish() or environment cleanup
};

void callJs(Napi::Env env, Napi::Function, Worker* worker, Completion* c) {
  std::unique_ptr<Completion> own(c);
  if (env == nullptr) return;  // being torn down
  try {
    worker->delivered(env);
    own->deliver(env);
  } catch (...) {
    // Never let an exception unwind into Node.
  }
}

// ---------------------------------------------------------------------------------------------------

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeEngine",
        {InstanceMethod<&EngineWrap::forward>("forward"), InstanceMethod<&EngineWrap::warmup>("warmup"),
         InstanceMethod<&EngineWrap::info>("info"), InstanceMethod<&EngineWrap::memory>("memory"),
         InstanceMethod<&EngineWrap::dispose>("dispose")});
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {}

  ~EngineWrap() override {
    // Collected without dispose(): free the engine on its thread, then let the thread go.
    if (worker_ && !disposed_) postDispose(nullptr);
  }

  void attach(std::shared_ptr<Worker> w, const ModelSpec& spec) {
    worker_ = std::move(w);
    spec_ = spec;
  }

 private:
  Napi::Value forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (disposed_ || !worker_)
      return rejected(env, "E_DISPOSED", "This engine was disposed; load the model again to keep scoring.");
    auto isI32 = [&](size_t i) {
      return info.Length() > i && info[i].IsTypedArray() &&
             info[i].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array;
    };
    if (!isI32(0) || !isI32(1) || !isI32(2))
      return rejected(env, "E_INPUT", "forward(tokens, typeIds, offsets) takes three Int32Arrays.");
    auto batch = std::make_shared<PackedBatch>();
    auto copy = [&](size_t i, std::vector<int32_t>& out) {
      auto a = info[i].As<Napi::Int32Array>();
      out.assign(a.Data(), a.Data() + a.ElementLength());
    };
    copy(0, batch->tokens);
    copy(1, batch->typeIds);
    copy(2, batch->offsets);
    auto deferred = Napi::Promise::Deferred::New(env);
    const ModelSpec spec = spec_;
    worker_->post([batch, spec, deferred](Worker& w) -> Completion* {
      auto* s = new Settle(&deferred);
      try {
        if (!w.engine()) throw EngineError(ErrorCode::Engine, "engine not loaded");
        validateBatch(*batch, spec);
        auto result = std::make_shared<ForwardResult>(w.engine()->forward(*batch));
        s->ok = true;
        s->value = [result](Napi::Env env) -> Napi::Value {
          auto logits = Napi::Float32Array::New(env, result->logits.size());
          std::copy(result->logits.begin(), result->logits.end(), logits.Data());
          auto o = Napi::Object::New(env);
          o.Set("logits", logits);
          o.Set("inferenceMs", Napi::Number::New(env, result->inferenceMs));
          o.Set("computedSlots", Napi::Number::New(env, static_cast<double>(result->computedSlots)));
          return o;
        };
      } catch (...) {
        s->failure = describe(std::current_exception());
      }
      return s;
    });
    return deferred.Promise();
  }

  Napi::Value warmup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (disposed_ || !worker_)
      return rejected(env, "E_DISPOSED", "This engine was disposed; load the model again to keep scoring.");
    auto deferred = Napi::Promise::Deferred::New(env);
    worker_->post([deferred](Worker& w) -> Completion* {
      auto* s = new Settle(&deferred);
      try {
        const auto t0 = std::chrono::steady_clock::now();
        w.engine()->warmup();
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        s->ok = true;
        s->value = [ms](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, ms); };
      } catch (...) {
        s->failure = describe(std::current_exception());
      }
      return s;
    });
    return deferred.Promise();
  }

  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto o = Napi::Object::New(env);
    if (!worker_) return o;
    const EngineInfoCache c = worker_->info();
    o.Set("backend", c.backend);
    o.Set("device", c.device);
    o.Set("deviceName", c.deviceName);
    o.Set("dtype", c.dtype);
    o.Set("version", c.version);
    return o;
  }

  Napi::Value memory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const MemoryInfo m = worker_ && !disposed_ ? worker_->memory() : MemoryInfo{};
    auto o = Napi::Object::New(env);
    o.Set("activeBytes", Napi::Number::New(env, static_cast<double>(m.activeBytes)));
    o.Set("peakBytes", Napi::Number::New(env, static_cast<double>(m.peakBytes)));
    o.Set("cacheBytes", Napi::Number::New(env, static_cast<double>(m.cacheBytes)));
    return o;
  }

  Napi::Value dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (disposed_) {
      if (!disposePromise_.IsEmpty()) return disposePromise_.Value();
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    auto deferred = Napi::Promise::Deferred::New(env);
    disposePromise_ = Napi::Persistent(deferred.Promise());
    postDispose(&deferred);
    return deferred.Promise();
  }

  // Queued behind any forward in flight, so that forward completes first.
  void postDispose(const Napi::Promise::Deferred* deferred) {
    disposed_ = true;
    std::shared_ptr<Worker> worker = worker_;
    std::shared_ptr<Napi::Promise::Deferred> d;
    if (deferred) d = std::make_shared<Napi::Promise::Deferred>(*deferred);
    worker->post([worker, d](Worker& w) -> Completion* {
      auto* s = new Settle(d.get());
      try {
        w.destroyEngine();
        s->ok = true;
      } catch (...) {
        s->failure = describe(std::current_exception());
      }
      s->value = [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
      s->after = [worker](Napi::Env) { worker->finish(); };
      w.exitAfterThisJob();
      return s;
    });
  }

  std::shared_ptr<Worker> worker_;
  ModelSpec spec_;
  bool disposed_ = false;
  Napi::Reference<Napi::Promise> disposePromise_;
};

// ---------------------------------------------------------------------------------------------------

struct AddonData {
  Napi::FunctionReference engineCtor;
};

std::string getString(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString())
    throw EngineError(ErrorCode::Input, std::string("option '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double getNumber(const Napi::Object& o, const char* key, bool required, double fallback, ErrorCode code) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw EngineError(code, std::string("'") + key + "' is required");
    return fallback;
  }
  if (!v.IsNumber()) throw EngineError(code, std::string("'") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t getInt(const Napi::Object& o, const char* key) {
  const double d = getNumber(o, key, true, 0, ErrorCode::BadConfig);
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw EngineError(ErrorCode::BadConfig, std::string("spec.") + key + " must be a non-negative integer");
  return static_cast<int64_t>(d);
}

Napi::Value backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto result = Napi::Object::New(env);
  auto cpu = Napi::Object::New(env);
  cpu.Set("available", true);
  cpu.Set("version", "mlx-rerank cpu 0.1.0");
  auto devices = Napi::Array::New(env, 1);
  devices.Set(uint32_t(0), "cpu");
  cpu.Set("devices", devices);
  cpu.Set("isa", cpuIsaName());
  cpu.Set("threads", cpuDefaultThreads());
  result.Set("cpu", cpu);
  auto mlx = Napi::Object::New(env);
#ifdef MLX_RERANK_WITH_MLX
  try {
    mlx.Set("available", true);
    mlx.Set("version", mlxVersion());
    auto d = Napi::Array::New(env);
    d.Set(uint32_t(0), "cpu");
    if (mlxGpuAvailable()) d.Set(uint32_t(1), "gpu");
    mlx.Set("devices", d);
  } catch (const std::exception& e) {
    mlx.Set("available", false);
    mlx.Set("reason", std::string("MLX failed to initialise: ") + e.what());
  }
#else
  mlx.Set("available", false);
  mlx.Set("reason", "not compiled in");
#endif
  result.Set("mlx", mlx);
  return result;
}

Napi::Value loadEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ModelSpec spec;
  EngineOptions opts;
  std::string backend;
  std::vector<std::string> files;
  try {
    if (info.Length() < 1 || !info[0].IsObject())
      throw EngineError(ErrorCode::Input, "loadEngine(options) needs an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    backend = getString(o, "backend", "cpu");
    opts.device = getString(o, "device", "auto");
    opts.dtype = getString(o, "dtype", "");
    opts.threads = static_cast<int>(getNumber(o, "threads", false, 0, ErrorCode::Input));
    opts.cacheLimitBytes = static_cast<int64_t>(getNumber(o, "cacheLimitBytes", false, -1, ErrorCode::Input));
    Napi::Value compile = o.Get("compile");
    if (compile.IsBoolean()) opts.compile = compile.As<Napi::Boolean>().Value();
    if (opts.device != "auto" && opts.device != "cpu" && opts.device != "gpu")
      throw EngineError(ErrorCode::Input, "device must be 'auto', 'cpu' or 'gpu'");
    Napi::Value w = o.Get("weights");
    if (!w.IsArray() || w.As<Napi::Array>().Length() == 0)
      throw EngineError(ErrorCode::Input, "'weights' must be a non-empty array of safetensors paths");
    Napi::Array wa = w.As<Napi::Array>();
    for (uint32_t i = 0; i < wa.Length(); ++i) {
      Napi::Value f = wa.Get(i);
      if (!f.IsString()) throw EngineError(ErrorCode::Input, "'weights' must hold strings");
      files.push_back(f.As<Napi::String>().Utf8Value());
    }
    Napi::Value sv = o.Get("spec");
    if (!sv.IsObject()) throw EngineError(ErrorCode::BadConfig, "'spec' must be an object");
    Napi::Object s = sv.As<Napi::Object>();
    spec.vocabSize = getInt(s, "vocabSize");
    spec.hiddenSize = getInt(s, "hiddenSize");
    spec.numLayers = getInt(s, "numLayers");
    spec.numHeads = getInt(s, "numHeads");
    spec.intermediateSize = getInt(s, "intermediateSize");
    spec.maxPositions = getInt(s, "maxPositions");
    spec.typeVocabSize = getInt(s, "typeVocabSize");
    spec.numLabels = getInt(s, "numLabels");
    spec.layerNormEps = getNumber(s, "layerNormEps", false, 1e-12, ErrorCode::BadConfig);
    spec.hiddenAct = getString(s, "hiddenAct", "gelu");
    if (backend != "cpu" && backend != "mlx")
      throw EngineError(ErrorCode::Input, "backend must be 'cpu' or 'mlx'");
#ifndef MLX_RERANK_WITH_MLX
    if (backend == "mlx")
      throw EngineError(
          ErrorCode::Unavailable,
          "The mlx backend is not compiled into this build of mlx-rerank; use backend 'cpu', or "
          "install MLX and rebuild (see the README).");
#endif
  } catch (const EngineError& e) {
    return rejected(env, errorCodeName(e.code()), e.what());
  } catch (const Napi::Error& e) {
    return rejected(env, "E_INPUT", e.Message());
  }

  auto* data = env.GetInstanceData<AddonData>();
  auto deferred = Napi::Promise::Deferred::New(env);
  std::shared_ptr<Worker> worker = Worker::start(env);
  worker->post([worker, data, deferred, spec, files, opts, backend](Worker& w) -> Completion* {
    auto* s = new Settle(&deferred);
    try {
      std::unique_ptr<Engine> engine;
#ifdef MLX_RERANK_WITH_MLX
      if (backend == "mlx") engine = makeMlxEngine(spec, files, opts);
#endif
      if (!engine) engine = makeCpuEngine(spec, files, opts);
      w.setEngine(std::move(engine));
      s->ok = true;
      s->value = [worker, data, spec](Napi::Env env) -> Napi::Value {
        Napi::Object obj = data->engineCtor.New({});
        EngineWrap::Unwrap(obj)->attach(worker, spec);
        return obj;
      };
    } catch (...) {
      s->failure = describe(std::current_exception());
      w.exitAfterThisJob();
      s->after = [worker](Napi::Env) { worker->finish(); };
    }
    return s;
  });
  return deferred.Promise();
}

// Benchmarks only (not part of the typed surface): the float32 GEMM ceiling, GFLOP/s. Blocks the
// calling thread for about `seconds`.
Napi::Value gemmGflops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1536;
  const int threads = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  const double seconds =
      info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 1.0;
  if (n < 16 || n > 8192) return rejected(env, "E_INPUT", "gemm size must be in [16, 8192]");
  try {
    return Napi::Number::New(env, cpuGemmGflops(n, threads, seconds));
  } catch (...) {
    const Failure f = describe(std::current_exception());
    return rejected(env, f.code, f.message);
  }
}

Napi::Object gpuUnavailable(Napi::Env env, const std::string& reason) {
  auto o = Napi::Object::New(env);
  o.Set("available", false);
  o.Set("reason", reason);
  return o;
}

// gpuUtilization(index = 0): NVML's counters for one NVIDIA GPU, read synchronously (microseconds), or
// {available: false, reason}. The bench calls it at every sampler tick, so it never throws: a bad
// index is a reason too.
Napi::Value gpuUtilization(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    double index = 0;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      index = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
      if (!(index >= 0 && index <= 4294967295.0) || index != static_cast<double>(static_cast<int64_t>(index)))
        return gpuUnavailable(env, "the GPU index must be a non-negative integer");
    }
    const GpuUtilization u = readGpuUtilization(static_cast<unsigned>(index));
    if (!u.available) return gpuUnavailable(env, u.reason.empty() ? "NVML gave no reason" : u.reason);
    auto o = Napi::Object::New(env);
    o.Set("available", true);
    o.Set("index", Napi::Number::New(env, u.index));
    o.Set("name", u.name);
    o.Set("gpuPct", Napi::Number::New(env, u.gpuPct));
    o.Set("memoryPct", Napi::Number::New(env, u.memoryPct));
    o.Set("memoryUsedBytes", Napi::Number::New(env, static_cast<double>(u.memoryUsedBytes)));
    o.Set("memoryTotalBytes", Napi::Number::New(env, static_cast<double>(u.memoryTotalBytes)));
    return o;
  } catch (const std::exception& e) {
    // Only N-API itself (out of memory) can fail above; node-addon-api has cleared its exception.
    try {
      return gpuUnavailable(env, std::string("NVML could not be read: ") + e.what());
    } catch (...) {
      return env.Undefined();
    }
  } catch (...) {
    return env.Undefined();
  }
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
#ifdef MLX_RERANK_WITH_MLX
  configureMlxProcess();
#endif
  auto* data = new AddonData();
  data->engineCtor = Napi::Persistent(EngineWrap::define(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("backends", Napi::Function::New(env, backends, "backends"));
  exports.Set("loadEngine", Napi::Function::New(env, loadEngine, "loadEngine"));
  exports.Set("_gemmGflops", Napi::Function::New(env, gemmGflops, "_gemmGflops"));
  exports.Set("gpuUtilization", Napi::Function::New(env, gpuUtilization, "gpuUtilization"));
  return exports;
}

}  // namespace

NODE_API_MODULE(mlx_rerank, init)
