// The model contract on the C++ side: ModelSpec (engine.h) as src/model.ts fills it, checked once and
// parsed into enums (Arch), and the tensor names of each family (TensorNames). Both engines and the
// weight loader read the model through this one description; docs/models.md lists the families.
//
// The range policy (how large a vocabulary, how many layers, which activations) is declared once, in
// src/model.ts. What is checked here is what C++ itself relies on: every size positive and small enough
// that index arithmetic cannot overflow, the choices known, and the sizes consistent with each other.
#pragma once

#include <cstdint>
#include <string>

#include "engine.h"

namespace mlxrerank {

enum class ActKind { Gelu, GeluTanh, Relu, Tanh };

// The families differ in tensor names; everything else is a flag of the spec.
enum class Family { Bert, XlmRoberta, Electra, ModernBert };

struct Arch {
  Family family = Family::Bert;
  bool rotary = false;    // positions: rotary (in attention) instead of a learned table
  bool glu = false;       // MLP: act(a) * g with [a, g] = x Wi, instead of act(x W1)
  bool preNorm = false;   // x + f(LN(x)) and a final LN, instead of LN(x + f(x))
  bool meanPool = false;  // mean of the pair's rows, instead of its first row
  ActKind hiddenAct = ActKind::Gelu;
  ActKind headAct = ActKind::Tanh;
  int64_t embeddingSize = 0;  // spec.embeddingSize, or hiddenSize when 0

  // Whether layer l attends within the sliding window (ModernBERT's local layers).
  bool localLayer(const ModelSpec& s, int64_t l) const { return s.localWindow > 0 && l % s.globalEvery != 0; }
};

// Checks the spec (EngineError(BadConfig) naming the field) and parses its choices.
Arch archOf(const ModelSpec& spec);

// Whether the spec describes BERT itself (every choice at BERT's default): what an engine that has
// not been taught the other families can run.
bool isBert(const ModelSpec& spec);

// Canonical tensor names of a family ("bert." / "roberta." / "electra." / "model." prefixes
// stripped); each name lacks its ".weight" / ".bias" suffix.
struct TensorNames {
  std::string wordEmb, posEmb, typeEmb, embNorm, embProject;
  bool fusedQkv = false;              // one [3H, H] projection (qkv) instead of query, key, value
  std::string q, k, v, qkv, attnOut;  // per layer, after layerPrefix(l)
  std::string attnNorm, mlpIn, mlpOut, mlpNorm;
  std::string finalNorm, headDense, headNorm, out;
  std::string layerPrefix(int64_t l) const;
  std::string layerPrefixBase;
};
const TensorNames& tensorNames(Family family);

}  // namespace mlxrerank
