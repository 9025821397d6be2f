// safetensors loading: mmap (RAII), strict header validation, name canonicalisation, f16/bf16 -> f32.
#include "weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "json.h"

namespace mlxrerank {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // safetensors' own limit is 100 MB

[[noreturn]] void badWeights(const std::string& file, const std::string& what) {
  throw EngineError(ErrorCode::BadWeights, "Invalid safetensors file " + file + ": " + what +
                                               ". Re-download the model or re-export the weights.");
}

[[noreturn]] void badConfig(const std::string& what) { throw EngineError(ErrorCode::BadConfig, what); }

// A read-only mapping of a whole file, unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) badWeights(path, std::string("cannot open it (") + std::strerror(errno) + ")");
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      badWeights(path, "not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ < 8) {
      ::close(fd);
      badWeights(path, "file is " + std::to_string(size_) + " bytes, shorter than the 8-byte header length");
    }
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) badWeights(path, std::string("cannot map it (") + std::strerror(errno) + ")");
    data_ = static_cast<const uint8_t*>(p);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Element size of every dtype the safetensors format defines; 0 = unknown.
size_t dtypeSize(const std::string& name) {
  static const std::unordered_map<std::string, size_t> sizes = {
      {"F32", 4}, {"F16", 2},  {"BF16", 2}, {"F64", 8}, {"I64", 8}, {"I32", 4},     {"I16", 2},    {"I8", 1},
      {"U8", 1},  {"BOOL", 1}, {"U16", 2},  {"U32", 4}, {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(name);
  return it == sizes.end() ? 0 : it->second;
}

std::string shapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Hugging Face names, with or without the "bert." prefix; old checkpoints say gamma/beta.
std::string canonicalName(const std::string& name) {
  std::string n = name.rfind("bert.", 0) == 0 ? name.substr(5) : name;
  auto replaceSuffix = [&](const char* from, const char* to) {
    const size_t lf = std::strlen(from);
    if (n.size() >= lf && n.compare(n.size() - lf, lf, from) == 0) n = n.substr(0, n.size() - lf) + to;
  };
  replaceSuffix("LayerNorm.gamma", "LayerNorm.weight");
  replaceSuffix("LayerNorm.beta", "LayerNorm.bias");
  return n;
}

struct Entry {
  std::string name;  // as written in the file
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

std::vector<Entry> parseHeader(const MappedFile& file, uint64_t& dataStart) {
  const std::string& path = file.path();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file.data()[i];
  if (n > kMaxHeaderBytes)
    badWeights(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > file.size() - 8)
    badWeights(path, "header length " + std::to_string(n) + " is larger than the file (" +
                         std::to_string(file.size()) + " bytes); the file is truncated or not safetensors");
  if (n < 2) badWeights(path, "header is empty");
  dataStart = 8 + n;
  const uint64_t dataSize = file.size() - dataStart;

  json::Value root;
  try {
    root = json::parse(reinterpret_cast<const char*>(file.data()) + 8, n);
  } catch (const json::JsonError& e) {
    badWeights(path, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (root.kind != json::Value::Kind::Object) badWeights(path, "header is not a JSON object");

  std::vector<Entry> entries;
  for (const auto& kv : root.object) {
    const std::string& name = kv.first;
    const json::Value& v = kv.second;
    if (name == "__metadata__") {
      if (v.kind != json::Value::Kind::Object) badWeights(path, "__metadata__ is not an object");
      for (const auto& m : v.object)
        if (m.second.kind != json::Value::Kind::String)
          badWeights(path, "__metadata__ value \"" + m.first + "\" is not a string");
      continue;
    }
    if (v.kind != json::Value::Kind::Object) badWeights(path, "tensor \"" + name + "\" is not an object");
    Entry e;
    e.name = name;
    const json::Value* dtype = v.find("dtype");
    const json::Value* shape = v.find("shape");
    const json::Value* offsets = v.find("data_offsets");
    if (!dtype || !shape || !offsets || v.object.size() != 3)
      badWeights(path, "tensor \"" + name + "\" must have exactly dtype, shape and data_offsets");
    if (dtype->kind != json::Value::Kind::String)
      badWeights(path, "tensor \"" + name + "\": dtype not a string");
    e.dtype = dtype->string;
    const size_t elem = dtypeSize(e.dtype);
    if (elem == 0) badWeights(path, "tensor \"" + name + "\" has unknown dtype \"" + e.dtype + "\"");
    if (shape->kind != json::Value::Kind::Array || shape->array.size() > 8)
      badWeights(path, "tensor \"" + name + "\": shape is not an array of at most 8 dimensions");
    uint64_t numel = 1;
    for (const auto& d : shape->array) {
      if (!d.isInteger || d.integer < 0)
        badWeights(path, "tensor \"" + name + "\": shape holds a value that is not a non-negative integer");
      e.shape.push_back(d.integer);
      if (d.integer != 0 && numel > (uint64_t(1) << 62) / static_cast<uint64_t>(d.integer))
        badWeights(path, "tensor \"" + name + "\": shape " + shapeString(e.shape) + " is absurdly large");
      numel *= static_cast<uint64_t>(d.integer);
    }
    if (offsets->kind != json::Value::Kind::Array || offsets->array.size() != 2 ||
        !offsets->array[0].isInteger || !offsets->array[1].isInteger || offsets->array[0].integer < 0 ||
        offsets->array[1].integer < offsets->array[0].integer)
      badWeights(path, "tensor \"" + name + "\": data_offsets must be [begin, end] with 0 <= begin <= end");
    e.begin = static_cast<uint64_t>(offsets->array[0].integer);
    e.end = static_cast<uint64_t>(offsets->array[1].integer);
    if (e.end > dataSize)
      badWeights(path, "tensor \"" + name + "\": data_offsets [" + std::to_string(e.begin) + ", " +
                           std::to_string(e.end) + "] run past the end of the data (" +
                           std::to_string(dataSize) + " bytes); the file is truncated or its header lies");
    if (numel > (uint64_t(1) << 62) / elem || e.end - e.begin != numel * elem)
      badWeights(path, "tensor \"" + name + "\": " + e.dtype + " " + shapeString(e.shape) + " needs " +
                           std::to_string(numel * elem) + " bytes but data_offsets span " +
                           std::to_string(e.end - e.begin));
    entries.push_back(std::move(e));
  }
  std::vector<const Entry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i]->begin < sorted[i - 1]->end)
      badWeights(path, "tensors \"" + sorted[i - 1]->name + "\" and \"" + sorted[i]->name + "\" overlap");
  return entries;
}

void checkSpec(const ModelSpec& s) {
  auto range = [](const char* what, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
      badConfig(std::string("config: ") + what + " = " + std::to_string(v) + " is out of range [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  };
  range("vocab_size", s.vocabSize, 1, 1 << 24);
  range("hidden_size", s.hiddenSize, 1, 1 << 16);
  range("num_hidden_layers", s.numLayers, 1, 1024);
  range("num_attention_heads", s.numHeads, 1, s.hiddenSize);
  range("intermediate_size", s.intermediateSize, 1, 1 << 18);
  range("max_position_embeddings", s.maxPositions, 1, 1 << 20);
  range("type_vocab_size", s.typeVocabSize, 1, 1 << 16);
  range("num_labels", s.numLabels, 1, 1 << 16);
  if (s.hiddenSize % s.numHeads != 0)
    badConfig("config: hidden_size " + std::to_string(s.hiddenSize) +
              " is not a multiple of num_attention_heads " + std::to_string(s.numHeads));
  if (!(s.layerNormEps > 0) || !std::isfinite(s.layerNormEps))
    badConfig("config: layer_norm_eps must be a positive finite number");
  if (s.hiddenAct != "gelu" && s.hiddenAct != "gelu_new" && s.hiddenAct != "gelu_pytorch_tanh" &&
      s.hiddenAct != "relu")
    badConfig("config: hidden_act \"" + s.hiddenAct +
              "\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)");
}

inline float f16ToF32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while (!(mant & 0x400)) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

class SafetensorsStore final : public WeightStore {
 public:
  SafetensorsStore(const std::vector<std::string>& files, const ModelSpec& spec) {
    checkSpec(spec);
    if (files.empty()) badConfig("no weight files given");
    for (const auto& path : files) {
      files_.push_back(std::make_unique<MappedFile>(path));
      const MappedFile& f = *files_.back();
      uint64_t dataStart = 0;
      for (auto& e : parseHeader(f, dataStart)) {
        const std::string canon = canonicalName(e.name);
        if (tensors_.count(canon))
          badWeights(path, "tensor \"" + e.name +
                               "\" appears twice (with and without the bert. prefix, or in two shards)");
        Located t;
        t.file = path;
        t.dtypeName = e.dtype;
        t.view.shape = e.shape;
        t.view.data = f.data() + dataStart + e.begin;
        t.view.bytes = e.end - e.begin;
        tensors_.emplace(canon, std::move(t));
      }
    }
    std::string missing;
    int missingCount = 0;
    for (const auto& want : expectedTensors(spec)) {
      auto it = tensors_.find(want.first);
      if (it == tensors_.end()) {
        if (missingCount++ < 3) missing += (missing.empty() ? "" : ", ") + want.first;
        continue;
      }
      Located& t = it->second;
      if (t.dtypeName == "F32")
        t.view.dtype = DType::F32;
      else if (t.dtypeName == "F16")
        t.view.dtype = DType::F16;
      else if (t.dtypeName == "BF16")
        t.view.dtype = DType::BF16;
      else
        badWeights(t.file, "tensor \"" + want.first + "\" has dtype " + t.dtypeName +
                               "; only F32, F16 and BF16 are supported");
      if (t.view.shape != want.second)
        badConfig("config.json does not match the weights: tensor \"" + want.first + "\" in " + t.file +
                  " has shape " + shapeString(t.view.shape) + " but the config implies " +
                  shapeString(want.second) + ". Use the config.json that came with these weights.");
      t.checked = true;
    }
    if (missingCount)
      badWeights(files.front(), std::to_string(missingCount) + " tensor(s) the config needs are missing (" +
                                    missing + (missingCount > 3 ? ", ..." : "") + ")");
  }

  const TensorView& get(const std::string& canonicalName) const override {
    auto it = tensors_.find(canonicalName);
    if (it == tensors_.end() || !it->second.checked)
      throw EngineError(ErrorCode::Engine, "internal: tensor " + canonicalName + " was not validated");
    return it->second.view;
  }

  int64_t mappedBytes() const override {
    int64_t total = 0;
    for (const auto& f : files_) total += static_cast<int64_t>(f->size());
    return total;
  }

 private:
  struct Located {
    std::string file;
    std::string dtypeName;
    TensorView view;
    bool checked = false;
  };
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::unordered_map<std::string, Located> tensors_;
};

}  // namespace

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "float32";
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
  }
  return "unknown";
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<WeightStore> WeightStore::open(const std::vector<std::string>& files, const ModelSpec& spec) {
  return std::make_unique<SafetensorsStore>(files, spec);
}

std::vector<float> WeightStore::toFloat32(const std::string& canonicalName) const {
  const TensorView& t = get(canonicalName);
  const size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::F32:
      std::memcpy(out.data(), t.data, n * 4);  // the mapping may be unaligned: copy bytes
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = f16ToF32(h);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        const uint32_t bits = uint32_t(h) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
      break;
  }
  return out;
}

std::map<std::string, std::vector<int64_t>> expectedTensors(const ModelSpec& s) {
  const int64_t H = s.hiddenSize, I = s.intermediateSize;
  std::map<std::string, std::vector<int64_t>> m;
  m["embeddings.word_embeddings.weight"] = {s.vocabSize, H};
  m["embeddings.position_embeddings.weight"] = {s.maxPositions, H};
  m["embeddings.token_type_embeddings.weight"] = {s.typeVocabSize, H};
  m["embeddings.LayerNorm.weight"] = {H};
  m["embeddings.LayerNorm.bias"] = {H};
  for (int64_t l = 0; l < s.numLayers; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    for (const char* qkv : {"query", "key", "value"}) {
      m[p + "attention.self." + qkv + ".weight"] = {H, H};
      m[p + "attention.self." + qkv + ".bias"] = {H};
    }
    m[p + "attention.output.dense.weight"] = {H, H};
    m[p + "attention.output.dense.bias"] = {H};
    m[p + "attention.output.LayerNorm.weight"] = {H};
    m[p + "attention.output.LayerNorm.bias"] = {H};
    m[p + "intermediate.dense.weight"] = {I, H};
    m[p + "intermediate.dense.bias"] = {I};
    m[p + "output.dense.weight"] = {H, I};
    m[p + "output.dense.bias"] = {H};
    m[p + "output.LayerNorm.weight"] = {H};
    m[p + "output.LayerNorm.bias"] = {H};
  }
  m["pooler.dense.weight"] = {H, H};
  m["pooler.dense.bias"] = {H};
  m["classifier.weight"] = {s.numLabels, H};
  m["classifier.bias"] = {s.numLabels};
  return m;
}

}  // namespace mlxrerank
