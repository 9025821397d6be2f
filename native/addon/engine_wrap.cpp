// NativeEngine (forward, cancel, warmup, startup, info, memory, dispose) and loadEngine(options), which makes
// one. Every method that touches the engine posts a job to the engine's Worker and returns its promise.
#include <cmath>
#include <functional>
#include <map>
#include <memory>

#include "addon/addon.h"
#include "addon/worker.h"

namespace mlxrerank::addon {
namespace {

constexpr const char* kDisposed = "This engine was disposed; load the model again to keep scoring.";

// The cancel tokens of an engine's batches in flight, by the id forward() was given (several may share
// one). JS thread only.
class CancelRegistry {
 public:
  std::shared_ptr<CancelToken> track(double id) {
    auto token = std::make_shared<CancelToken>();
    byId_.emplace(id, token);
    return token;
  }
  void forget(const CancelToken* token) {
    for (auto it = byId_.begin(); it != byId_.end(); ++it)
      if (it->second.get() == token) {
        byId_.erase(it);
        return;
      }
  }
  bool cancel(double id) {
    bool found = false;
    for (auto [it, end] = byId_.equal_range(id); it != end; ++it) {
      it->second->cancel();
      found = true;
    }
    return found;
  }

 private:
  std::multimap<double, std::shared_ptr<CancelToken>> byId_;
};

// One forward() call on the engine thread: start() validates the batch and lets the engine begin it (a
// GPU engine queues its work: Engine::startForward), early while the batch before it waits for the
// device, or right before finish(); finish() completes it, starting the next queued batch while this one's
// work runs on the device.
class ForwardJob {
 public:
  ForwardJob(std::shared_ptr<const PackedBatch> batch, const ModelSpec& spec,
             std::shared_ptr<CancelToken> token)
      : batch_(std::move(batch)), spec_(spec), token_(std::move(token)) {}

  void start(Worker& w, bool ahead) {
    if (begun_) return;
    begun_ = true;
    beganAt_ = steadyMs();
    try {
      if (!w.engine()) throw EngineError(ErrorCode::Engine, "engine not loaded");
      validateBatch(*batch_, spec_);
      if (!cancelled()) started_ = w.engine()->startForward(*batch_, token_.get());
      startedAhead_ = ahead && started_;
    } catch (...) {
      error_ = std::current_exception();
    }
  }

  ForwardResult finish(Worker& w) {
    start(w, false);
    if (error_) std::rethrow_exception(error_);
    ForwardResult result;
    if (started_) {
      result = w.engine()->finishForward(std::move(started_), [&w] { return w.startNext(); });
      result.startedAhead = startedAhead_;
    } else {
      result.cancelled = cancelled();  // cancelled while it waited behind another batch: not run at all
      if (!result.cancelled) result = w.engine()->forward(*batch_, token_.get());
    }
    result.beganAt = beganAt_;
    result.endedAt = steadyMs();
    return result;
  }

 private:
  bool cancelled() const { return token_ && token_->cancelled(); }

  std::shared_ptr<const PackedBatch> batch_;
  ModelSpec spec_;
  std::shared_ptr<CancelToken> token_;
  bool begun_ = false;  // engine thread only, as everything below
  bool startedAhead_ = false;
  double beganAt_ = 0;
  std::exception_ptr error_;
  std::unique_ptr<StartedForward> started_;
};

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(
        env, "NativeEngine",
        {InstanceMethod<&EngineWrap::forward>("forward"), InstanceMethod<&EngineWrap::warmup>("warmup"),
         InstanceMethod<&EngineWrap::info>("info"), InstanceMethod<&EngineWrap::memory>("memory"),
         InstanceMethod<&EngineWrap::dispose>("dispose"), InstanceMethod<&EngineWrap::cancel>("cancel"),
         InstanceMethod<&EngineWrap::startup>("startup")});
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
    if (disposed_ || !worker_) return rejected(env, "E_DISPOSED", kDisposed);
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
    std::shared_ptr<CancelToken> token;  // with a batch id: cancel(id) can stop it
    if (info.Length() > 3 && !info[3].IsUndefined()) {
      const double id = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : NAN;
      if (!std::isfinite(id))  // NaN would break the registry's ordering
        return rejected(env, "E_INPUT",
                        "forward()'s fourth argument, the batch id, must be a finite number.");
      token = cancels_->track(id);
    }
    auto deferred = Napi::Promise::Deferred::New(env);
    auto job = std::make_shared<ForwardJob>(batch, spec_, token);
    worker_->post(
        [job, deferred, token, cancels = cancels_](Worker& w) -> Completion* {
          Settle* s = settle(&deferred, [&]() -> Settle::Value {
            auto result = std::make_shared<ForwardResult>(job->finish(w));
            return [result](Napi::Env env) -> Napi::Value {
              auto logits = Napi::Float32Array::New(env, result->logits.size());
              std::copy(result->logits.begin(), result->logits.end(), logits.Data());
              auto o = Napi::Object::New(env);
              o.Set("logits", logits);
              o.Set("inferenceMs", Napi::Number::New(env, result->inferenceMs));
              o.Set("computedSlots", Napi::Number::New(env, static_cast<double>(result->computedSlots)));
              o.Set("cancelled", Napi::Boolean::New(env, result->cancelled));
              o.Set("layersRun", Napi::Number::New(env, result->layersRun));
              o.Set("startedAhead", Napi::Boolean::New(env, result->startedAhead));
              auto times = Napi::Float64Array::New(env, 5);
              times[0] = result->beganAt;
              times[1] = result->begunAt;
              times[2] = result->queuedAt;
              times[3] = result->deviceDoneAt;
              times[4] = result->endedAt;
              o.Set("engineTimes", times);
              return o;
            };
          });
          // The JS thread forgets the token once the batch settled (the registry, not this object, which
          // the GC may have collected by then).
          if (token) s->after = [cancels, token](Napi::Env) { cancels->forget(token.get()); };
          return s;
        },
        [job](Worker& w, bool ahead) { job->start(w, ahead); });
    return deferred.Promise();
  }

  // cancel(batchId): stops every batch in flight that forward() was given this id for, at its next
  // layer boundary (a batch not started yet never starts); it then resolves with `cancelled: true` and
  // no logits. Returns whether there was one. The ids are the caller's; the scheduler never reuses one.
  Napi::Value cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const double id =
        info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : NAN;
    if (!std::isfinite(id)) {
      makeError(env, "E_INPUT", "cancel(batchId) takes the finite number given to forward().")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Boolean::New(env, cancels_->cancel(id));
  }

  // warmup(): the engine's warm-up; resolves with the milliseconds it took.
  Napi::Value warmup(const Napi::CallbackInfo& info) {
    return onEngine(info.Env(), [](Engine& e) -> Settle::Value {
      const double t0 = steadyMs();
      e.warmup();
      const double ms = steadyMs() - t0;
      return [ms](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, ms); };
    });
  }

  // startup(): the engine's load and warm-up breakdown (Engine::startupTimings), read on its thread.
  Napi::Value startup(const Napi::CallbackInfo& info) {
    return onEngine(info.Env(), [](Engine& e) -> Settle::Value {
      auto timings = e.startupTimings();
      return [timings](Napi::Env env) -> Napi::Value {
        auto o = Napi::Object::New(env);
        for (const auto& [name, value] : timings) o.Set(name, Napi::Number::New(env, value));
        return o;
      };
    });
  }

  // A promise of what `work` makes of the engine on its thread (rejected E_DISPOSED once disposed).
  Napi::Value onEngine(Napi::Env env, std::function<Settle::Value(Engine&)> work) {
    if (disposed_ || !worker_) return rejected(env, "E_DISPOSED", kDisposed);
    auto deferred = Napi::Promise::Deferred::New(env);
    worker_->post([deferred, work = std::move(work)](Worker& w) -> Completion* {
      return settle(&deferred, [&]() -> Settle::Value {
        if (!w.engine()) throw EngineError(ErrorCode::Engine, "engine not loaded");
        return work(*w.engine());
      });
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
    // What the engine is built for (engine.h, EngineLimits): the scheduler's defaults.
    o.Set("maxBatchTokens", Napi::Number::New(env, static_cast<double>(c.limits.maxBatchTokens)));
    o.Set("maxBatchSize", Napi::Number::New(env, static_cast<double>(c.limits.maxBatchSize)));
    o.Set("pipelineDepth", Napi::Number::New(env, c.limits.pipelineDepth));
    o.Set("pads", Napi::Boolean::New(env, c.limits.pads));
    o.Set("earlyBatchTokens", Napi::Number::New(env, static_cast<double>(c.limits.earlyBatchTokens)));
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
      Settle* s = settle(d.get(), [&]() -> Settle::Value {
        w.destroyEngine();
        return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
      });
      s->after = [worker](Napi::Env) { worker->finish(); };
      w.exitAfterThisJob();
      return s;
    });
  }

  std::shared_ptr<Worker> worker_;
  std::shared_ptr<CancelRegistry> cancels_ = std::make_shared<CancelRegistry>();
  ModelSpec spec_;
  bool disposed_ = false;
  Napi::Reference<Napi::Promise> disposePromise_;
};

}  // namespace

Napi::Function defineEngineClass(Napi::Env env) { return EngineWrap::define(env); }

Napi::Value loadEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LoadRequest req;
  try {
    req = parseLoadRequest(info);
  } catch (const EngineError& e) {
    return rejected(env, errorCodeName(e.code()), e.what());
  } catch (const Napi::Error& e) {
    return rejected(env, "E_INPUT", e.Message());
  }

  auto* data = env.GetInstanceData<AddonData>();
  auto deferred = Napi::Promise::Deferred::New(env);
  std::shared_ptr<Worker> worker = Worker::start(env);
  worker->post([worker, data, deferred, req](Worker& w) -> Completion* {
    Settle* s = settle(&deferred, [&]() -> Settle::Value {
      std::unique_ptr<Engine> engine;
#ifdef MLX_RERANK_WITH_MLX
      if (req.backend == "mlx") engine = makeMlxEngine(req.spec, req.files, req.options);
#endif
      if (!engine) engine = makeCpuEngine(req.spec, req.files, req.options);
      w.setEngine(std::move(engine));
      const ModelSpec spec = req.spec;
      return [worker, data, spec](Napi::Env env) -> Napi::Value {
        Napi::Object obj = data->engineCtor.New({});
        EngineWrap::Unwrap(obj)->attach(worker, spec);
        return obj;
      };
    });
    if (!s->ok) {
      w.exitAfterThisJob();
      s->after = [worker](Napi::Env) { worker->finish(); };
    }
    return s;
  });
  return deferred.Promise();
}

}  // namespace mlxrerank::addon
