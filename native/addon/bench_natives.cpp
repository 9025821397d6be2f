// Natives for the bench, outside the engine API: the float32 GEMM ceiling and NVML's GPU counters.
#include "addon/addon.h"
#include "addon/worker.h"
#include "nvml.h"

namespace mlxrerank::addon {
namespace {

Napi::Object gpuUnavailable(Napi::Env env, const std::string& reason) {
  auto o = Napi::Object::New(env);
  o.Set("available", false);
  o.Set("reason", reason);
  return o;
}

}  // namespace

// _gemmGflops(n = 1536, threads = 0, seconds = 1, isaCap = ""): the float32 GEMM ceiling, GFLOP/s (not
// part of the typed surface; src/native.ts passes the cpuIsa cap). Blocks the calling thread for about
// `seconds`.
Napi::Value gemmGflops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1536;
  const int threads = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  const double seconds =
      info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : 1.0;
  const std::string isaCap =
      info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : std::string();
  if (n < 16 || n > 8192) return rejected(env, "E_INPUT", "gemm size must be in [16, 8192]");
  try {
    return Napi::Number::New(env, cpuGemmGflops(n, threads, seconds, isaCap));
  } catch (...) {
    const Failure f = describe(std::current_exception());
    return rejected(env, f.code, f.message);
  }
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

}  // namespace mlxrerank::addon
