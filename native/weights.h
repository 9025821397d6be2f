// Validated safetensors weights (one file, or the shards a model.safetensors.index.json names). Every
// check runs before any tensor byte is read: header length within the file and bounded, JSON
// well-formed UTF-8, offsets inside the data area and non-overlapping, dtype known, and the dtype and
// shape of every tensor the spec needs. Bytes are read with pread() into memory the store owns, never
// through a mapping, so a file truncated, grown or rewritten while it loads gives EngineError(BadWeights)
// instead of a SIGBUS; docs/weights-safety.md lists the checks and limits.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine.h"

namespace mlxrerank {

enum class DType { F32, F16, BF16 };
const char* dtypeName(DType dtype);

struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // owned by the WeightStore; set by get(), valid while the store lives
  size_t bytes = 0;
  int64_t numel() const;
};

class WeightStore {
 public:
  // Opens and validates against the spec; throws EngineError(BadWeights / BadConfig) naming the
  // file, the tensor and what is wrong. Accepts names with or without the "bert." prefix.
  static std::unique_ptr<WeightStore> open(const std::vector<std::string>& files, const ModelSpec& spec);
  virtual ~WeightStore() = default;

  // Canonical names follow Hugging Face's BertForSequenceClassification without the "bert." prefix:
  // "embeddings.word_embeddings.weight", "encoder.layer.3.attention.self.query.bias",
  // "pooler.dense.weight", "classifier.weight", ...
  // The first get() of a tensor reads its bytes, which the store then holds until it is destroyed.
  // Throws EngineError(BadWeights) if the file shrank or changed since it was opened.
  virtual const TensorView& get(const std::string& canonicalName) const = 0;
  // The tensor as float32 (a copy), whatever its storage dtype, read straight from the file: unlike
  // get(), it keeps no copy of the stored bytes. Throws like get().
  virtual std::vector<float> toFloat32(const std::string& canonicalName) const = 0;
};

// The tensor names and shapes a spec requires (canonical names).
std::map<std::string, std::vector<int64_t>> expectedTensors(const ModelSpec& spec);

}  // namespace mlxrerank
