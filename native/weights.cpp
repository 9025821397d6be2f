// One concern, safetensors loading: pread into owned memory (no mapping), strict header validation, name
// canonicalisation, f16/bf16 -> f32.
#include "weights.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "json.h"
#include "model_spec.h"

namespace mlxrerank {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // safetensors' own limit is 100 MB
// Each file stays open while the engine reads it; BERT checkpoints come in one file, the largest
// published models in a few hundred shards.
constexpr size_t kMaxFiles = 256;

[[noreturn]] void badWeights(const std::string& file, const std::string& what) {
  throw EngineError(ErrorCode::BadWeights, "Invalid safetensors file " + file + ": " + what +
                                               ". Re-download the model or re-export the weights.");
}

[[noreturn]] void badConfig(const std::string& what) { throw EngineError(ErrorCode::BadConfig, what); }

// A weights file read with pread() into memory we own. Nothing is mapped: a file that another process
// truncates while we read it gives a short read and E_BAD_WEIGHTS, where a mapping would fault
// (SIGBUS kills the process). The descriptor pins the inode we validated, so a file renamed over the
// path is not seen at all; a file changed in place (size or modification time differs from the one
// we opened) is refused after any read that may have seen the change, so a load is of one consistent
// file or fails.
class WeightFile {
 public:
  explicit WeightFile(const std::string& path) : path_(path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) badWeights(path, std::string("cannot open it (") + std::strerror(errno) + ")");
    if (::fstat(fd_, &opened_) != 0 || !S_ISREG(opened_.st_mode)) {
      ::close(fd_);
      badWeights(path, "not a regular file");
    }
    size_ = static_cast<uint64_t>(opened_.st_size);
  }
  ~WeightFile() { ::close(fd_); }
  WeightFile(const WeightFile&) = delete;
  WeightFile& operator=(const WeightFile&) = delete;

  // Reads exactly `bytes` at `offset` (the caller checked the range against size()), then checks the
  // file is still the one opened.
  void read(uint64_t offset, void* dst, size_t bytes) const {
    auto* out = static_cast<uint8_t*>(dst);
    size_t done = 0;
    while (done < bytes) {
      const size_t want = std::min<size_t>(bytes - done, size_t(1) << 30);
      const ssize_t got = ::pread(fd_, out + done, want, static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) badWeights(path_, std::string("reading it failed (") + std::strerror(errno) + ")");
      if (got == 0) break;  // end of file: it shrank since it was opened
      done += static_cast<size_t>(got);
    }
    checkUnchanged(done < bytes);
  }

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void checkUnchanged(bool shortRead) const {
    struct stat now;
    if (::fstat(fd_, &now) != 0)
      badWeights(path_, std::string("cannot stat it (") + std::strerror(errno) + ")");
    if (!shortRead && now.st_size == opened_.st_size && sameTime(mtimeOf(now), mtimeOf(opened_))) return;
    throw EngineError(ErrorCode::BadWeights, "Weights file " + path_ + " changed while it was loading (" +
                                                 std::to_string(size_) + " bytes when opened, " +
                                                 std::to_string(now.st_size) +
                                                 " now). Load again once whatever writes it has finished.");
  }
#ifdef __APPLE__
  static const struct timespec& mtimeOf(const struct stat& st) { return st.st_mtimespec; }
#else
  static const struct timespec& mtimeOf(const struct stat& st) { return st.st_mtim; }
#endif
  static bool sameTime(const struct timespec& a, const struct timespec& b) {
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
  }

  std::string path_;
  int fd_ = -1;
  struct stat opened_ {};
  uint64_t size_ = 0;
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

// Hugging Face names, with or without the base model's prefix ("bert.", "roberta." for XLM-R and
// CamemBERT, "electra.", "model." for ModernBERT); old checkpoints say gamma/beta.
std::string canonicalName(const std::string& name) {
  std::string n = name;
  for (const char* prefix : {"bert.", "roberta.", "electra.", "model."}) {
    const size_t lp = std::strlen(prefix);
    if (n.compare(0, lp, prefix) == 0) {
      n = n.substr(lp);
      break;
    }
  }
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

std::vector<Entry> parseHeader(const WeightFile& file, uint64_t& dataStart) {
  const std::string& path = file.path();
  if (file.size() < 8)
    badWeights(path,
               "file is " + std::to_string(file.size()) + " bytes, shorter than the 8-byte header length");
  uint8_t prefix[8];
  file.read(0, prefix, 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
  if (n > kMaxHeaderBytes)
    badWeights(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > file.size() - 8)
    badWeights(path, "header length " + std::to_string(n) + " is larger than the file (" +
                         std::to_string(file.size()) + " bytes); the file is truncated or not safetensors");
  if (n < 2) badWeights(path, "header is empty");
  dataStart = 8 + n;
  const uint64_t dataSize = file.size() - dataStart;
  // Parsed from our own copy: bytes that change on disk meanwhile cannot change under the parser.
  std::string header(static_cast<size_t>(n), '\0');
  file.read(8, &header[0], header.size());

  json::Value root;
  try {
    root = json::parse(header.data(), header.size());
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

// Stored values -> float32 (the bytes may come from any offset in the file: copied, never cast).
void toFloat(DType dtype, const uint8_t* src, size_t n, float* out) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, src, n * 4);
      break;
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = f16ToF32(h);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        const uint32_t bits = uint32_t(h) << 16;
        std::memcpy(&out[i], &bits, 4);
      }
      break;
  }
}

class SafetensorsStore final : public WeightStore {
 public:
  SafetensorsStore(const std::vector<std::string>& files, const ModelSpec& spec) {
    archOf(spec);  // throws EngineError(BadConfig) on a spec the engines cannot run
    if (files.empty()) badConfig("no weight files given");
    if (files.size() > kMaxFiles)
      badWeights(files.front(), "the model names " + std::to_string(files.size()) +
                                    " weight files, more than " + std::to_string(kMaxFiles));
    for (const auto& path : files) {
      files_.push_back(std::make_unique<WeightFile>(path));
      const WeightFile& f = *files_.back();
      uint64_t dataStart = 0;
      for (auto& e : parseHeader(f, dataStart)) {
        const std::string canon = canonicalName(e.name);
        if (tensors_.count(canon))
          badWeights(path, "tensor \"" + e.name +
                               "\" appears twice (with and without the bert. prefix, or in two shards)");
        Located t;
        t.file = &f;
        t.offset = dataStart + e.begin;
        t.dtypeName = e.dtype;
        t.view.shape = e.shape;
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
        badWeights(t.file->path(), "tensor \"" + want.first + "\" has dtype " + t.dtypeName +
                                       "; only F32, F16 and BF16 are supported");
      if (t.view.shape != want.second)
        badConfig("config.json does not match the weights: tensor \"" + want.first + "\" in " +
                  t.file->path() + " has shape " + shapeString(t.view.shape) + " but the config implies " +
                  shapeString(want.second) + ". Use the config.json that came with these weights.");
      t.checked = true;
    }
    if (missingCount)
      badWeights(files.front(), std::to_string(missingCount) + " tensor(s) the config needs are missing (" +
                                    missing + (missingCount > 3 ? ", ..." : "") + ")");
  }

  const TensorView& get(const std::string& canonicalName) const override {
    const Located& t = find(canonicalName);
    if (!t.view.data) {  // first use: read it (at least one byte, so data is never null)
      t.owned.resize(std::max<size_t>(t.view.bytes, 1));
      t.file->read(t.offset, t.owned.data(), t.view.bytes);
      t.view.data = t.owned.data();
    }
    return t.view;
  }

  std::vector<float> toFloat32(const std::string& canonicalName) const override {
    const Located& t = find(canonicalName);
    const size_t n = static_cast<size_t>(t.view.numel());
    std::vector<float> out(n);
    if (t.view.data) {
      toFloat(t.view.dtype, t.view.data, n, out.data());
    } else if (t.view.dtype == DType::F32) {
      t.file->read(t.offset, out.data(), n * 4);  // straight into place: no second copy
    } else {
      // 16-bit: read through a bounded staging buffer and converted as it goes.
      constexpr size_t kChunk = size_t(1) << 16;
      std::vector<uint8_t> staging(std::min(n, kChunk) * 2);
      for (size_t i = 0; i < n; i += kChunk) {
        const size_t m = std::min(kChunk, n - i);
        t.file->read(t.offset + 2 * i, staging.data(), 2 * m);
        toFloat(t.view.dtype, staging.data(), m, out.data() + i);
      }
    }
    return out;
  }

 private:
  struct Located {
    const WeightFile* file = nullptr;
    uint64_t offset = 0;  // of the first byte, from the start of the file
    std::string dtypeName;
    bool checked = false;
    // Filled by get() on first use; the engines load on one thread, so no lock.
    mutable TensorView view;
    mutable std::vector<uint8_t> owned;
  };

  const Located& find(const std::string& canonicalName) const {
    auto it = tensors_.find(canonicalName);
    if (it == tensors_.end() || !it->second.checked)
      throw EngineError(ErrorCode::Engine, "internal: tensor " + canonicalName + " was not validated");
    return it->second;
  }

  std::vector<std::unique_ptr<WeightFile>> files_;
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

std::map<std::string, std::vector<int64_t>> expectedTensors(const ModelSpec& s) {
  const Arch a = archOf(s);
  const TensorNames& n = tensorNames(a.family);
  const int64_t H = s.hiddenSize, I = s.intermediateSize, E = a.embeddingSize;
  std::map<std::string, std::vector<int64_t>> m;
  auto linear = [&m](const std::string& name, int64_t out, int64_t in, bool bias) {
    m[name + ".weight"] = {out, in};
    if (bias) m[name + ".bias"] = {out};
  };
  auto norm = [&m, &s](const std::string& name, int64_t width) {
    m[name + ".weight"] = {width};
    if (s.normBias) m[name + ".bias"] = {width};
  };
  m[n.wordEmb + ".weight"] = {s.vocabSize, E};
  if (!a.rotary) m[n.posEmb + ".weight"] = {s.maxPositions + s.positionOffset, E};
  if (s.typeEmbeddings) m[n.typeEmb + ".weight"] = {s.typeVocabSize, E};
  norm(n.embNorm, E);
  if (E != H) linear(n.embProject, H, E, true);
  for (int64_t l = 0; l < s.numLayers; ++l) {
    const std::string p = n.layerPrefix(l);
    if (n.fusedQkv) {
      linear(p + n.qkv, 3 * H, H, s.attentionBias);
    } else {
      for (const std::string* qkv : {&n.q, &n.k, &n.v}) linear(p + *qkv, H, H, s.attentionBias);
    }
    linear(p + n.attnOut, H, H, s.attentionBias);
    if (!a.preNorm || l > 0) norm(p + n.attnNorm, H);  // pre-norm: layer 0 reads the embeddings' norm
    linear(p + n.mlpIn, a.glu ? 2 * I : I, H, s.mlpBias);
    linear(p + n.mlpOut, H, I, s.mlpBias);
    norm(p + n.mlpNorm, H);
  }
  if (a.preNorm) norm(n.finalNorm, H);
  linear(n.headDense, H, H, s.headBias);
  if (s.headNorm) norm(n.headNorm, H);
  linear(n.out, s.numLabels, H, true);
  return m;
}

}  // namespace mlxrerank
