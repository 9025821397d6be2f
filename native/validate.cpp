// Shared by every engine: error code names (src/errors.ts) and the packed-batch check.
#include <string>

#include "engine.h"

namespace mlxrerank {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::BadWeights:
      return "E_BAD_WEIGHTS";
    case ErrorCode::BadConfig:
      return "E_BAD_CONFIG";
    case ErrorCode::Input:
      return "E_INPUT";
    case ErrorCode::Engine:
      return "E_ENGINE";
    case ErrorCode::Unavailable:
      return "E_BACKEND_UNAVAILABLE";
  }
  return "E_ENGINE";
}

void validateBatch(const PackedBatch& b, const ModelSpec& spec) {
  auto bad = [](const std::string& what) {
    throw EngineError(ErrorCode::Input, "Invalid packed batch: " + what);
  };
  if (b.offsets.size() < 2) bad("offsets must hold at least 2 entries (one pair)");
  if (b.typeIds.size() != b.tokens.size())
    bad("typeIds has " + std::to_string(b.typeIds.size()) + " entries but tokens has " +
        std::to_string(b.tokens.size()));
  if (b.offsets.front() != 0) bad("offsets[0] must be 0");
  if (static_cast<size_t>(b.offsets.back()) != b.tokens.size())
    bad("the last offset (" + std::to_string(b.offsets.back()) + ") must equal the token count (" +
        std::to_string(b.tokens.size()) + ")");
  for (size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    const int64_t len = int64_t(b.offsets[i + 1]) - b.offsets[i];
    if (len <= 0) bad("pair " + std::to_string(i) + " is empty or offsets decrease");
    if (len > spec.maxPositions)
      bad("pair " + std::to_string(i) + " has " + std::to_string(len) + " tokens, more than the model's " +
          std::to_string(spec.maxPositions) + " positions; truncate it");
  }
  for (size_t i = 0; i < b.tokens.size(); ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= spec.vocabSize)
      bad("token id " + std::to_string(b.tokens[i]) + " at index " + std::to_string(i) +
          " is outside the vocabulary [0, " + std::to_string(spec.vocabSize) + ")");
    if (b.typeIds[i] < 0 || b.typeIds[i] >= spec.typeVocabSize)
      bad("type id " + std::to_string(b.typeIds[i]) + " at index " + std::to_string(i) + " is outside [0, " +
          std::to_string(spec.typeVocabSize) + ")");
  }
}

}  // namespace mlxrerank
