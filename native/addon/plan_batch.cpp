// _planBatch(offsets, layout): the mlx engine's batch layout (batch_plan.h) for a batch with these pair
// offsets, for tests (test/batch-plan.test.ts). Compiled in every build, with or without MLX.
#include <string>

#include "addon/addon.h"
#include "addon/worker.h"
#include "batch_plan.h"

namespace mlxrerank::addon {

Napi::Value planBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool typed = info.Length() > 1 && info[0].IsTypedArray() &&
                     info[0].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array &&
                     info[1].IsString();
  const std::string layout = typed ? info[1].As<Napi::String>().Utf8Value() : "";
  if (layout != "fine" && layout != "coarse")
    throw makeError(env, "E_INPUT", "_planBatch(offsets: Int32Array, layout: 'fine' | 'coarse')");
  auto offsets = info[0].As<Napi::Int32Array>();
  PackedBatch batch;
  batch.offsets.assign(offsets.Data(), offsets.Data() + offsets.ElementLength());
  // The plan's precondition (validateBatch's, without a model): pairs of 1 to 4096 tokens from 0.
  bool ok = !batch.offsets.empty() && batch.offsets[0] == 0 && batch.offsets.size() <= 65537;
  for (size_t i = 1; ok && i < batch.offsets.size(); ++i) {
    const int64_t len = int64_t{batch.offsets[i]} - batch.offsets[i - 1];
    ok = len >= 1 && len <= 4096;
  }
  if (!ok) throw makeError(env, "E_INPUT", "offsets must start at 0 and grow by 1 to 4096 per pair");
  batch.tokens.assign(static_cast<size_t>(batch.offsets.back()), 0);

  const AttentionPlan plan = planAttention(batch, layout == "fine" ? Attention::Fine : Attention::Coarse);
  auto groups = Napi::Array::New(env, plan.groups.size());
  for (size_t i = 0; i < plan.groups.size(); ++i) {
    const auto& g = plan.groups[i];
    auto gather = Napi::Int32Array::New(env, g.gather.size());
    std::copy(g.gather.begin(), g.gather.end(), gather.Data());
    auto keyValid = Napi::Uint8Array::New(env, g.keyValid.size());
    std::copy(g.keyValid.begin(), g.keyValid.end(), keyValid.Data());
    auto o = Napi::Object::New(env);
    o.Set("pairs", g.pairs);
    o.Set("length", g.length);
    o.Set("gather", gather);
    o.Set("keyValid", keyValid);
    o.Set("padded", g.padded);
    groups.Set(static_cast<uint32_t>(i), o);
  }
  auto scatter = Napi::Int32Array::New(env, plan.scatter.size());
  std::copy(plan.scatter.begin(), plan.scatter.end(), scatter.Data());
  auto result = Napi::Object::New(env);
  result.Set("groups", groups);
  result.Set("scatter", scatter);
  result.Set("slots", Napi::Number::New(env, static_cast<double>(plan.slots)));
  result.Set("rows", Napi::Number::New(
                         env, static_cast<double>(rowBucket(static_cast<int64_t>(batch.tokens.size())))));
  return result;
}

}  // namespace mlxrerank::addon
