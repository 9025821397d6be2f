// One engine's native thread, its job queue, and the way results get back to JavaScript.
//
// Each engine owns one native thread with a job queue (MLX requires every call for an engine on one
// thread; the cpu engine fans out to its own pool from there). Jobs run on that thread and hand a
// Completion back to the JS thread through a thread-safe function; the JS thread only copies typed
// arrays in and out. No C++ exception crosses N-API: jobs catch everything and reject their promise
// with an Error whose `code` is one of src/errors.ts's codes (settle() below does that for a job).
#pragma once

#include <napi.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine.h"

namespace mlxrerank::addon {

// What a finished job delivers on the JS thread.
struct Completion {
  virtual ~Completion() = default;
  virtual void deliver(Napi::Env env) = 0;
};

struct Failure {
  std::string code, message;
};

// The code and message JavaScript sees for a caught exception (EngineError keeps its code).
Failure describe(std::exception_ptr ep);

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);

// A promise already rejected with {code, message}.
Napi::Promise rejected(Napi::Env env, const std::string& code, const std::string& message);

// A completion that settles a promise with whatever the job produced.
struct Settle final : Completion {
  using Value = std::function<Napi::Value(Napi::Env)>;  // builds the result on the JS thread
  std::unique_ptr<Napi::Promise::Deferred> deferred;    // none for a dispose the GC started
  Value value;                                          // set on success
  bool ok = false;
  Failure failure;
  std::function<void(Napi::Env)> after;  // runs on the JS thread after settling
  explicit Settle(const Napi::Promise::Deferred* d)
      : deferred(d ? new Napi::Promise::Deferred(*d) : nullptr) {}
  void deliver(Napi::Env env) override;
};

// Runs `work` (on the engine thread) and returns the completion that settles `deferred`: resolved with
// the value `work` returns, or rejected with what it threw (describe()).
Settle* settle(const Napi::Promise::Deferred* deferred, const std::function<Settle::Value()>& work);

class Worker;
void callJs(Napi::Env env, Napi::Function, Worker* worker, Completion* c);
using Tsfn = Napi::TypedThreadSafeFunction<Worker, Completion, callJs>;

struct EngineInfoCache {
  std::string backend, device, deviceName, dtype, version;
  EngineLimits limits;
};

// One engine's thread, its queue and its link back to the JS thread.
class Worker : public std::enable_shared_from_this<Worker> {
 public:
  using Job = std::function<Completion*(Worker&)>;
  // A job's first part, which may run early: on the engine thread, right before the job, or (`ahead`)
  // while the job before it waits for the device (startNext). A forward starts its batch there.
  using Start = std::function<void(Worker&, bool ahead)>;

  static std::shared_ptr<Worker> start(Napi::Env env);

  // JS thread. The completion the job returns is delivered on the JS thread. `start`, if any, runs
  // before `job`, at the latest right before it.
  void post(Job job, Start start = nullptr);
  // JS thread, from a delivered completion: the last job ran; join and let go.
  void finish();
  void delivered(Napi::Env env);

  // Engine thread only.
  Engine* engine() { return engine_.get(); }
  void setEngine(std::unique_ptr<Engine> e);
  void destroyEngine();
  void exitAfterThisJob() { exit_ = true; }
  // Runs the start part of the next queued job now, if it has one not yet run (Engine::finishForward's
  // whileWaiting: the next batch is built while the device computes this one). True: it ran one.
  bool startNext();
  void refreshMemory();

  // Any thread.
  EngineInfoCache info();
  MemoryInfo memory();

 private:
  Worker() = default;
  void loop();
  // The environment (main thread or a worker_thread) is shutting down with this engine still live.
  static void onEnvCleanup(void* arg);

  Napi::Env env_{nullptr};
  Tsfn tsfn_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  struct Queued {
    Job job;
    Start start;  // emptied once run
  };
  std::deque<Queued> queue_;
  bool abort_ = false;
  bool exit_ = false;      // engine thread only
  bool finished_ = false;  // JS thread only
  int pending_ = 0;        // JS thread only
  std::unique_ptr<Engine> engine_;
  EngineInfoCache info_;
  MemoryInfo memory_;
  std::shared_ptr<Worker> self_;  // alive until finish() or environment cleanup
};

}  // namespace mlxrerank::addon
