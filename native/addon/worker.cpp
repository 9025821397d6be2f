// One engine's thread and job queue, and promise settlement (see worker.h).
#include "addon/worker.h"

#include <new>

namespace mlxrerank::addon {

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

void Settle::deliver(Napi::Env env) {
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

Settle* settle(const Napi::Promise::Deferred* deferred, const std::function<Settle::Value()>& work) {
  auto* s = new Settle(deferred);
  try {
    s->value = work();
    s->ok = true;
  } catch (...) {
    s->failure = describe(std::current_exception());
  }
  return s;
}

std::shared_ptr<Worker> Worker::start(Napi::Env env) {
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

void Worker::post(Job job, Start start) {
  if (finished_) return;  // the environment is shutting down (or the engine was disposed)
  if (pending_++ == 0) tsfn_.Ref(env_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back({std::move(job), std::move(start)});
  }
  cv_.notify_one();
}

bool Worker::startNext() {
  Start start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (abort_ || queue_.empty()) return false;
    start = std::move(queue_.front().start);
    queue_.front().start = nullptr;
  }
  if (start) start(*this, /*ahead=*/true);
  return static_cast<bool>(start);
}

void Worker::finish() {
  if (finished_) return;
  finished_ = true;
  if (thread_.joinable()) thread_.join();
  napi_remove_env_cleanup_hook(env_, &Worker::onEnvCleanup, this);
  tsfn_.Release();
  auto keep = std::move(self_);  // may destroy *this when keep goes out of scope
}

void Worker::delivered(Napi::Env env) {
  if (--pending_ == 0 && !finished_) tsfn_.Unref(env);
}

void Worker::setEngine(std::unique_ptr<Engine> e) {
  engine_ = std::move(e);
  EngineInfoCache info{engine_->backend(), engine_->device(),  engine_->deviceName(),
                       engine_->dtype(),   engine_->version(), engine_->limits()};
  std::lock_guard<std::mutex> lock(mu_);
  info_ = info;
}

void Worker::destroyEngine() {
  engine_.reset();
  std::lock_guard<std::mutex> lock(mu_);
  memory_ = MemoryInfo{};
}

void Worker::refreshMemory() {
  if (!engine_) return;
  const MemoryInfo m = engine_->memory();
  std::lock_guard<std::mutex> lock(mu_);
  memory_ = m;
}

EngineInfoCache Worker::info() {
  std::lock_guard<std::mutex> lock(mu_);
  return info_;
}

MemoryInfo Worker::memory() {
  std::lock_guard<std::mutex> lock(mu_);
  return memory_;
}

void Worker::loop() {
  for (;;) {
    Queued next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return abort_ || !queue_.empty(); });
      if (abort_) break;
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    Completion* c = nullptr;
    try {
      if (next.start) next.start(*this, /*ahead=*/false);
      c = next.job(*this);
    } catch (...) {
      // Jobs catch their own errors; this is a last line of defence against a throwing allocator.
    }
    refreshMemory();
    if (c && tsfn_.BlockingCall(c) != napi_ok) delete c;
    if (exit_) return;
  }
  engine_.reset();  // the environment is going away: free the engine on its own thread
}

// Stop after the job in progress, free the engine, join. Promises still queued are never settled.
void Worker::onEnvCleanup(void* arg) {
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

}  // namespace mlxrerank::addon
