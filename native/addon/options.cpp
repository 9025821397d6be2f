// loadEngine(options): the options object from JavaScript, checked into a LoadRequest. src/native.ts
// types it; this is the check at the boundary (anything may arrive).
#include "addon/addon.h"

namespace mlxrerank::addon {
namespace {

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

// One of `allowed` ("" when absent): the tuning options src/engine-options.ts declares and checks first.
std::string getOneOf(const Napi::Object& o, const char* key, std::initializer_list<const char*> allowed) {
  const std::string v = getString(o, key, "");
  if (v.empty()) return v;
  for (const char* a : allowed)
    if (v == a) return v;
  std::string names;
  for (const char* a : allowed) names += std::string(names.empty() ? "'" : ", '") + a + "'";
  throw EngineError(ErrorCode::Input, std::string("option '") + key + "' must be one of " + names);
}

// -1 when absent, else 0 / 1.
int getTriState(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return -1;
  if (!v.IsBoolean())
    throw EngineError(ErrorCode::Input, std::string("option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value() ? 1 : 0;
}

int64_t getInt(const Napi::Object& o, const char* key) {
  const double d = getNumber(o, key, true, 0, ErrorCode::BadConfig);
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw EngineError(ErrorCode::BadConfig, std::string("spec.") + key + " must be a non-negative integer");
  return static_cast<int64_t>(d);
}

// A token-row count option in [0, 2^24]: -1 when absent.
int64_t getRows(const Napi::Object& o, const char* key) {
  const double rows = getNumber(o, key, false, -1, ErrorCode::Input);
  if (rows != -1 &&
      !(rows >= 0 && rows <= 16777216 && rows == static_cast<double>(static_cast<int64_t>(rows))))
    throw EngineError(ErrorCode::Input,
                      std::string("option '") + key + "' must be an integer in [0, 16777216]");
  return static_cast<int64_t>(rows);
}

bool getBool(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean())
    throw EngineError(ErrorCode::BadConfig, std::string("spec.arch.") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// spec.arch (src/types.ts ModelArch): the architecture; absent = BERT. model_spec.cpp checks it.
void readArch(const Napi::Object& a, ModelSpec& spec) {
  spec.family = getString(a, "family", spec.family);
  spec.embeddingSize = getInt(a, "embeddingSize");
  spec.positions = getString(a, "positions", spec.positions);
  spec.positionOffset = getInt(a, "positionOffset");
  spec.positionPadId = static_cast<int64_t>(getNumber(a, "positionPadId", false, -1, ErrorCode::BadConfig));
  spec.typeEmbeddings = getBool(a, "typeEmbeddings", spec.typeEmbeddings);
  spec.ropeTheta = getNumber(a, "ropeTheta", false, spec.ropeTheta, ErrorCode::BadConfig);
  spec.ropeLocalTheta = getNumber(a, "ropeLocalTheta", false, spec.ropeLocalTheta, ErrorCode::BadConfig);
  spec.localWindow = getInt(a, "localWindow");
  spec.globalEvery = getInt(a, "globalEvery");
  spec.mlp = getString(a, "mlp", spec.mlp);
  spec.norm = getString(a, "norm", spec.norm);
  spec.attentionBias = getBool(a, "attentionBias", true);
  spec.mlpBias = getBool(a, "mlpBias", true);
  spec.normBias = getBool(a, "normBias", true);
  spec.headBias = getBool(a, "headBias", true);
  spec.pooling = getString(a, "pooling", spec.pooling);
  spec.headAct = getString(a, "headAct", spec.headAct);
  spec.headNorm = getBool(a, "headNorm", false);
}

}  // namespace

LoadRequest parseLoadRequest(const Napi::CallbackInfo& info) {
  LoadRequest r;
  if (info.Length() < 1 || !info[0].IsObject())
    throw EngineError(ErrorCode::Input, "loadEngine(options) needs an options object");
  Napi::Object o = info[0].As<Napi::Object>();
  r.backend = getString(o, "backend", "cpu");
  EngineOptions& opts = r.options;
  opts.device = getString(o, "device", "auto");
  opts.dtype = getString(o, "dtype", "");
  opts.threads = static_cast<int>(getNumber(o, "threads", false, 0, ErrorCode::Input));
  opts.cacheLimitBytes = static_cast<int64_t>(getNumber(o, "cacheLimitBytes", false, -1, ErrorCode::Input));
  Napi::Value compile = o.Get("compile");
  if (compile.IsBoolean()) opts.compile = compile.As<Napi::Boolean>().Value();
  opts.cpuIsa = getOneOf(o, "cpuIsa", {"avx512", "avxvnni", "avx2", "scalar", "amx", "avx512f"});
  opts.attention = getOneOf(o, "attention", {"varlen", "flash", "coarse", "fine"});
  opts.rowBuckets = getTriState(o, "rowBuckets");
  opts.cpuCompile = getTriState(o, "cpuCompile") == 1;
  opts.warmupRows = getRows(o, "warmupRows");
  opts.warmupDepth = getRows(o, "warmupDepth");
  if (opts.warmupDepth == 0 || opts.warmupDepth > 8)
    throw EngineError(ErrorCode::Input, "option 'warmupDepth' must be an integer in [1, 8]");
  opts.cancelRows = getRows(o, "cancelRows");
  opts.fusedKernels = getTriState(o, "fusedKernels");
  opts.startAhead = getTriState(o, "startAhead");
  opts.kernelCacheDir = getString(o, "kernelCacheDir", "");
  if (opts.kernelCacheDir == "none") opts.kernelCacheDir.clear();
  if (!opts.kernelCacheDir.empty() &&
      (opts.kernelCacheDir[0] != '/' || opts.kernelCacheDir.find('\0') != std::string::npos))
    throw EngineError(ErrorCode::Input, "option 'kernelCacheDir' must be an absolute path, '' or 'none'");
  if (opts.device != "auto" && opts.device != "cpu" && opts.device != "gpu")
    throw EngineError(ErrorCode::Input, "device must be 'auto', 'cpu' or 'gpu'");
  Napi::Value w = o.Get("weights");
  if (!w.IsArray() || w.As<Napi::Array>().Length() == 0)
    throw EngineError(ErrorCode::Input, "'weights' must be a non-empty array of safetensors paths");
  Napi::Array wa = w.As<Napi::Array>();
  for (uint32_t i = 0; i < wa.Length(); ++i) {
    Napi::Value f = wa.Get(i);
    if (!f.IsString()) throw EngineError(ErrorCode::Input, "'weights' must hold strings");
    r.files.push_back(f.As<Napi::String>().Utf8Value());
  }
  Napi::Value sv = o.Get("spec");
  if (!sv.IsObject()) throw EngineError(ErrorCode::BadConfig, "'spec' must be an object");
  Napi::Object s = sv.As<Napi::Object>();
  ModelSpec& spec = r.spec;
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
  Napi::Value arch = s.Get("arch");
  if (arch.IsObject()) readArch(arch.As<Napi::Object>(), spec);
  if (r.backend != "cpu" && r.backend != "mlx")
    throw EngineError(ErrorCode::Input, "backend must be 'cpu' or 'mlx'");
#ifndef MLX_RERANK_WITH_MLX
  if (r.backend == "mlx")
    throw EngineError(ErrorCode::Unavailable,
                      "The mlx backend is not compiled into this build of mlx-rerank; use backend 'cpu', or "
                      "install MLX and rebuild (see the README).");
#endif
  return r;
}

}  // namespace mlxrerank::addon
