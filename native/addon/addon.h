// What the addon's files share (native/addon/): the per-environment data, the load options parsed from
// JavaScript, and the functions module init (addon.cpp) exports. The typed surface is src/native.ts.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "engine.h"
#include "engine_cpu.h"

namespace mlxrerank::addon {

struct AddonData {
  Napi::FunctionReference engineCtor;  // NativeEngine (engine_wrap.cpp)
};

// loadEngine(options)'s argument, checked (options.cpp). Throws EngineError (Input or BadConfig).
struct LoadRequest {
  std::string backend;  // "cpu" | "mlx" (compiled in)
  EngineOptions options;
  ModelSpec spec;
  std::vector<std::string> files;
};
LoadRequest parseLoadRequest(const Napi::CallbackInfo& info);

// The NativeEngine class (engine_wrap.cpp).
Napi::Function defineEngineClass(Napi::Env env);

// Exports: backends() (backends.cpp); loadEngine(options) (engine_wrap.cpp); for the bench
// _gemmGflops(n, threads, seconds) and gpuUtilization(index) (bench_natives.cpp); for tests
// _planBatch(offsets, layout) (plan_batch.cpp).
Napi::Value backends(const Napi::CallbackInfo& info);
Napi::Value loadEngine(const Napi::CallbackInfo& info);
Napi::Value gemmGflops(const Napi::CallbackInfo& info);
Napi::Value gpuUtilization(const Napi::CallbackInfo& info);
Napi::Value planBatch(const Napi::CallbackInfo& info);

}  // namespace mlxrerank::addon
