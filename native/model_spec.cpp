// ModelSpec -> Arch (checked), and the tensor names of each family.
#include "model_spec.h"

#include <cmath>

namespace mlxrerank {

namespace {

[[noreturn]] void badConfig(const std::string& what) {
  throw EngineError(ErrorCode::BadConfig, "config: " + what);
}

// The largest size C++ accepts for any one dimension: products of two stay far inside int64 and the
// row-times-width offsets the engines form in int stay inside int32 for any batch they can hold.
constexpr int64_t kMaxDim = int64_t(1) << 24;

void range(const char* what, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    badConfig(std::string(what) + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) +
              ", " + std::to_string(hi) + "]");
}

ActKind actOf(const char* field, const std::string& name, bool tanhAllowed) {
  if (name == "gelu") return ActKind::Gelu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return ActKind::GeluTanh;
  if (name == "relu") return ActKind::Relu;
  if (tanhAllowed && name == "tanh") return ActKind::Tanh;
  badConfig(std::string(field) + " \"" + name +
            "\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu" + (tanhAllowed ? ", tanh)" : ")"));
}

template <typename T>
T choice(const char* field, const std::string& v, const char* a, T ta, const char* b, T tb) {
  if (v == a) return ta;
  if (v == b) return tb;
  badConfig(std::string(field) + " \"" + v + "\" is not one of \"" + a + "\", \"" + b + "\"");
}

Family familyOf(const std::string& name) {
  if (name == "bert") return Family::Bert;
  if (name == "xlm-roberta") return Family::XlmRoberta;
  if (name == "electra") return Family::Electra;
  if (name == "modernbert") return Family::ModernBert;
  badConfig("family \"" + name + "\" is not supported (bert, xlm-roberta, electra, modernbert)");
}

TensorNames bertLike(const std::string& pooler, const std::string& out) {
  TensorNames n;
  n.wordEmb = "embeddings.word_embeddings";
  n.posEmb = "embeddings.position_embeddings";
  n.typeEmb = "embeddings.token_type_embeddings";
  n.embNorm = "embeddings.LayerNorm";
  n.embProject = "embeddings_project";
  n.layerPrefixBase = "encoder.layer.";
  n.q = "attention.self.query";
  n.k = "attention.self.key";
  n.v = "attention.self.value";
  n.attnOut = "attention.output.dense";
  n.attnNorm = "attention.output.LayerNorm";
  n.mlpIn = "intermediate.dense";
  n.mlpOut = "output.dense";
  n.mlpNorm = "output.LayerNorm";
  n.headDense = pooler;
  n.out = out;
  return n;
}

TensorNames modernBert() {
  TensorNames n;
  n.wordEmb = "embeddings.tok_embeddings";
  n.embNorm = "embeddings.norm";
  n.layerPrefixBase = "layers.";
  n.fusedQkv = true;
  n.qkv = "attn.Wqkv";
  n.attnOut = "attn.Wo";
  n.attnNorm = "attn_norm";
  n.mlpIn = "mlp.Wi";
  n.mlpOut = "mlp.Wo";
  n.mlpNorm = "mlp_norm";
  n.finalNorm = "final_norm";
  n.headDense = "head.dense";
  n.headNorm = "head.norm";
  n.out = "classifier";
  return n;
}

}  // namespace

std::string TensorNames::layerPrefix(int64_t l) const { return layerPrefixBase + std::to_string(l) + "."; }

const TensorNames& tensorNames(Family family) {
  static const TensorNames bert = bertLike("pooler.dense", "classifier");
  static const TensorNames head = bertLike("classifier.dense", "classifier.out_proj");
  static const TensorNames modern = modernBert();
  switch (family) {
    case Family::Bert:
      return bert;
    case Family::XlmRoberta:
    case Family::Electra:
      return head;
    case Family::ModernBert:
      return modern;
  }
  return bert;
}

bool isBert(const ModelSpec& s) {
  const ModelSpec d;  // BERT's defaults
  return s.family == d.family && (s.embeddingSize == 0 || s.embeddingSize == s.hiddenSize) &&
         s.positions == d.positions && s.positionOffset == 0 && s.positionPadId < 0 && s.typeEmbeddings &&
         s.localWindow == 0 && s.mlp == d.mlp && s.norm == d.norm && s.attentionBias && s.mlpBias &&
         s.normBias && s.headBias && s.pooling == d.pooling && s.headAct == d.headAct && !s.headNorm;
}

Arch archOf(const ModelSpec& s) {
  Arch a;
  a.family = familyOf(s.family);
  range("vocab_size", s.vocabSize, 1, kMaxDim);
  range("hidden_size", s.hiddenSize, 1, int64_t(1) << 16);
  range("num_hidden_layers", s.numLayers, 1, 4096);
  range("num_attention_heads", s.numHeads, 1, s.hiddenSize);
  range("intermediate_size", s.intermediateSize, 1, int64_t(1) << 18);
  range("max_position_embeddings", s.maxPositions, 1, int64_t(1) << 20);
  range("type_vocab_size", s.typeVocabSize, 1, int64_t(1) << 16);
  range("num_labels", s.numLabels, 1, int64_t(1) << 16);
  range("embedding_size", s.embeddingSize, 0, int64_t(1) << 16);
  range("position offset", s.positionOffset, 0, int64_t(1) << 20);
  range("position pad id", s.positionPadId, -1, s.vocabSize - 1);
  if (s.positionPadId >= 0 && s.positionOffset < 1)
    badConfig("a position pad id needs a position offset >= 1 (its position is offset - 1)");
  range("local_attention", s.localWindow, 0, int64_t(1) << 20);
  range("global_attn_every_n_layers", s.globalEvery, 1, 4096);
  if (s.hiddenSize % s.numHeads != 0)
    badConfig("hidden_size " + std::to_string(s.hiddenSize) + " is not a multiple of num_attention_heads " +
              std::to_string(s.numHeads));
  if (!(s.layerNormEps > 0) || !std::isfinite(s.layerNormEps))
    badConfig("layer_norm_eps must be a positive finite number");
  a.hiddenAct = actOf("hidden_act", s.hiddenAct, false);
  a.headAct = actOf("classifier activation", s.headAct, true);
  a.rotary = choice("positions", s.positions, "absolute", false, "rotary", true);
  a.glu = choice("mlp", s.mlp, "dense", false, "glu", true);
  a.preNorm = choice("norm", s.norm, "post", false, "pre", true);
  a.meanPool = choice("pooling", s.pooling, "cls", false, "mean", true);
  a.embeddingSize = s.embeddingSize > 0 ? s.embeddingSize : s.hiddenSize;
  if (a.rotary) {
    if ((s.hiddenSize / s.numHeads) % 2 != 0)
      badConfig("rotary positions need an even head size; hidden_size / num_attention_heads is " +
                std::to_string(s.hiddenSize / s.numHeads));
    for (double theta : {s.ropeTheta, s.ropeLocalTheta})
      if (!(theta > 1) || !std::isfinite(theta)) badConfig("rope theta must be a finite number > 1");
  }
  return a;
}

}  // namespace mlxrerank
