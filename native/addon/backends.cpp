// backends(): which engines this build offers, for src/backends.ts (which adds the build's MLX report).
#include "addon/addon.h"
#include "addon/worker.h"

namespace mlxrerank::addon {

Napi::Value backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // backends({ cpuIsa }): what the cpu engine would pick under that ISA cap (src/engine-options.ts).
  std::string isaCap;
  if (info.Length() > 0 && info[0].IsObject()) {
    Napi::Value cap = info[0].As<Napi::Object>().Get("cpuIsa");
    if (cap.IsString()) isaCap = cap.As<Napi::String>().Utf8Value();
  }
  std::string isa;
  try {
    isa = cpuIsaName(isaCap);
  } catch (const EngineError& e) {
    throw makeError(env, errorCodeName(e.code()), e.what());
  }
  auto result = Napi::Object::New(env);
  auto cpu = Napi::Object::New(env);
  cpu.Set("available", true);
  cpu.Set("version", "mlx-rerank cpu 0.1.0");
  auto devices = Napi::Array::New(env, 1);
  devices.Set(uint32_t(0), "cpu");
  cpu.Set("devices", devices);
  cpu.Set("isa", isa);
  // Which kernels each reduced-precision dtype would run here (docs/cpu-dtypes.md).
  auto lowp = Napi::Object::New(env);
  lowp.Set("bfloat16", cpuLowpIsaName("bfloat16", isaCap));
  lowp.Set("int8", cpuLowpIsaName("int8", isaCap));
  cpu.Set("dtypeIsa", lowp);
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

}  // namespace mlxrerank::addon
