// Module init: the N-API surface typed in src/native.ts. One file per concept beside this one:
// worker.{h,cpp} (an engine's thread, job queue and promise settlement), engine_wrap.cpp (NativeEngine
// and loadEngine), options.cpp (load options from JavaScript), backends.cpp, bench_natives.cpp (GEMM
// GFLOP/s and NVML for the bench) and plan_batch.cpp (the mlx batch layout, for tests).
#include "addon/addon.h"

namespace mlxrerank::addon {
namespace {

// The engines' clock (steadyMs(), native/engine.h), for placing their batch timelines on JavaScript's.
Napi::Value steadyNow(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), steadyMs()); }

Napi::Object initModule(Napi::Env env, Napi::Object exports) {
#ifdef MLX_RERANK_WITH_MLX
  configureMlxProcess();
#endif
  auto* data = new AddonData();
  data->engineCtor = Napi::Persistent(defineEngineClass(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("backends", Napi::Function::New(env, backends, "backends"));
  exports.Set("loadEngine", Napi::Function::New(env, loadEngine, "loadEngine"));
  exports.Set("_gemmGflops", Napi::Function::New(env, gemmGflops, "_gemmGflops"));
  exports.Set("gpuUtilization", Napi::Function::New(env, gpuUtilization, "gpuUtilization"));
  exports.Set("_planBatch", Napi::Function::New(env, planBatch, "_planBatch"));
  exports.Set("steadyMs", Napi::Function::New(env, steadyNow, "steadyMs"));
  return exports;
}

}  // namespace
}  // namespace mlxrerank::addon

// NODE_API_MODULE pastes its argument into a name: it needs an unqualified one.
static Napi::Object init(Napi::Env env, Napi::Object exports) {
  return mlxrerank::addon::initModule(env, exports);
}

NODE_API_MODULE(mlx_rerank, init)
