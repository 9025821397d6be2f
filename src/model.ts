/**
 * One concern: config.json (+ the sentence-transformers settings) -> ModelSpec, for the sequence classifiers of the
 * families in FAMILIES (BERT and its kin MiniLM, TinyBERT; XLM-RoBERTa / CamemBERT; ELECTRA;
 * ModernBERT): the one description of each architecture the engines read (ModelArch, docs/models.md).
 * Everything else is refused by name, and every number is checked before an engine sizes buffers from it.
 */
import { ConfigError, UnsupportedModelError } from './errors';
import type { Activation, HiddenAct, ModelArch, ModelFamily, ModelFiles, ModelSpec } from './types';
import { isObject, readJsonFile } from './validate';

export async function loadModelSpec(files: ModelFiles): Promise<ModelSpec> {
  const config = await readJson(files.config);
  const st = files.sentenceTransformersConfig ? await readJson(files.sentenceTransformersConfig) : undefined;
  try {
    return specFromConfig(config, st);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${files.config}: ${err.message}`, { cause: err });
    throw err;
  }
}

// A config.json is a few KiB; 4 MiB leaves room for any id2label and still refuses a runaway file.
const MAX_CONFIG_BYTES = 4 << 20;
const readJson = (path: string) => readJsonFile(path, 'model config', MAX_CONFIG_BYTES, ConfigError);

const HIDDEN_ACTS = new Set<string>(['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu']);

/**
 * Upper bounds, the one declaration of them (the engines check only what their own arithmetic needs,
 * native/model_spec.cpp): generous for real rerankers, small enough that a corrupt config can't ask
 * for terabytes.
 */
const LIMITS = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 14,
  embedding_size: 1 << 14,
  num_hidden_layers: 256,
  num_attention_heads: 1024,
  intermediate_size: 1 << 16,
  max_position_embeddings: 1 << 16,
  type_vocab_size: 1024,
  num_labels: 1 << 16,
  local_attention: 1 << 16,
  global_attn_every_n_layers: 256,
} as const;

type Json = Record<string, unknown>;

/**
 * The families, one description each: the model_type values and classifier class that name it, and how
 * its config.json becomes the architecture the engines read (ModelArch). Adding a BERT-like family is
 * an entry here, its tensor names in native/model_spec.cpp, and whatever new kernel it needs.
 */
interface Family {
  modelTypes: string[];
  classifier: string;
  /** The family's part of the spec; the sizes common to all families are read by specFromConfig. */
  describe(c: Json, common: Common): FamilyParts;
}
interface Common {
  hiddenSize: number;
  vocabSize: number;
}
interface FamilyParts {
  arch: ModelArch;
  hiddenAct: HiddenAct;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  padTokenId: number;
}

/** BERT's own architecture: learned absolute positions, post-norm, GELU MLP, pooler on [CLS]. */
function bertArch(hiddenSize: number): ModelArch {
  return {
    family: 'bert',
    embeddingSize: hiddenSize,
    positions: 'absolute',
    positionOffset: 0,
    positionPadId: -1,
    typeEmbeddings: true,
    ropeTheta: 10000,
    ropeLocalTheta: 10000,
    localWindow: 0,
    globalEvery: 1,
    mlp: 'dense',
    norm: 'post',
    attentionBias: true,
    mlpBias: true,
    normBias: true,
    headBias: true,
    pooling: 'cls',
    headAct: 'tanh',
    headNorm: false,
  };
}

/** BERT, XLM-RoBERTa and ELECTRA share the encoder and its config keys. */
function bertLikeParts(
  c: Json,
  common: Common,
  arch: ModelArch,
  offset: number,
  padFallback: number,
): FamilyParts {
  const posType = c.position_embedding_type ?? 'absolute';
  if (posType !== 'absolute') {
    throw new UnsupportedModelError(
      `position_embedding_type "${String(posType)}" is not supported (only "absolute").`,
    );
  }
  const maxPositionEmbeddings = int(c, 'max_position_embeddings');
  if (maxPositionEmbeddings <= offset) {
    throw new ConfigError(
      `max_position_embeddings ${maxPositionEmbeddings} leaves no position: positions start at pad_token_id + 1 = ${offset}.`,
    );
  }
  return {
    arch,
    hiddenAct: act(c, 'hidden_act', 'gelu'),
    maxPositions: maxPositionEmbeddings - offset,
    typeVocabSize: int(c, 'type_vocab_size', 2),
    layerNormEps: eps(c, 'layer_norm_eps', 1e-12),
    padTokenId: padOf(c, common, padFallback),
  };
}

const FAMILIES: Record<ModelFamily, Family> = {
  bert: {
    modelTypes: ['bert'],
    classifier: 'BertForSequenceClassification',
    describe: (c, common) => bertLikeParts(c, common, bertArch(common.hiddenSize), 0, 0),
  },
  // Positions count from pad_token_id + 1 (RoBERTa's create_position_ids_from_input_ids: a padding id
  // inside a pair takes position pad_token_id and does not advance the count); the head is
  // classifier.dense -> tanh -> classifier.out_proj on <s>; no pooler.
  'xlm-roberta': {
    modelTypes: ['xlm-roberta', 'camembert'],
    classifier: 'XLMRobertaForSequenceClassification',
    describe: (c, common) => {
      const pad = padOf(c, common, 1);
      const arch = {
        ...bertArch(common.hiddenSize),
        family: 'xlm-roberta' as const,
        positionOffset: pad + 1,
        positionPadId: pad,
      };
      return bertLikeParts(c, common, arch, pad + 1, 1);
    },
  },
  // embedding_size may differ from hidden_size (embeddings_project maps it); the head is
  // classifier.dense -> GELU -> classifier.out_proj on [CLS].
  electra: {
    modelTypes: ['electra'],
    classifier: 'ElectraForSequenceClassification',
    describe: (c, common) => {
      const arch = {
        ...bertArch(common.hiddenSize),
        family: 'electra' as const,
        embeddingSize: int(c, 'embedding_size', 128),
        headAct: 'gelu' as const,
      };
      return bertLikeParts(c, common, arch, 0, 0);
    },
  },
  // No position table: rotary positions, global_rope_theta on the global layers and local_rope_theta on
  // the sliding-window ones (every layer but each global_attn_every_n_layers-th); GeGLU MLP; pre-norm
  // without biases and a final norm; the head is dense -> act -> norm on [CLS] or the mean of the rows.
  modernbert: {
    modelTypes: ['modernbert'],
    classifier: 'ModernBertForSequenceClassification',
    describe: (c, common) => {
      const every = int(c, 'global_attn_every_n_layers', 3);
      checkLayerTypes(c, every);
      const pooling = c.classifier_pooling ?? 'cls';
      if (pooling !== 'cls' && pooling !== 'mean') {
        throw new UnsupportedModelError(
          `classifier_pooling ${JSON.stringify(pooling)} is not supported (supported: cls, mean).`,
        );
      }
      const arch: ModelArch = {
        ...bertArch(common.hiddenSize),
        family: 'modernbert',
        positions: 'rotary',
        typeEmbeddings: false,
        ropeTheta: ropeTheta(c, 'full_attention', 'global_rope_theta', 160000),
        ropeLocalTheta: ropeTheta(c, 'sliding_attention', 'local_rope_theta', 10000),
        localWindow: int(c, 'local_attention', 128),
        globalEvery: every,
        mlp: 'glu',
        norm: 'pre',
        attentionBias: bool(c, 'attention_bias', false),
        mlpBias: bool(c, 'mlp_bias', false),
        normBias: bool(c, 'norm_bias', false),
        headBias: bool(c, 'classifier_bias', false),
        pooling,
        headAct: act(c, 'classifier_activation', 'gelu'),
        headNorm: true,
      };
      if ((common.hiddenSize / int(c, 'num_attention_heads')) % 2 !== 0) {
        throw new ConfigError('hidden_size / num_attention_heads must be even for rotary positions.');
      }
      return {
        arch,
        hiddenAct: act(c, 'hidden_activation', 'gelu'),
        maxPositions: int(c, 'max_position_embeddings', 8192),
        // No token type table: transformers' ModernBERT takes no type ids, so the 0 / 1 a pair template
        // gives are accepted and ignored.
        typeVocabSize: 2,
        layerNormEps: eps(c, 'norm_eps', 1e-5),
        padTokenId: padOf(c, common, 50283),
      };
    },
  },
};

const CLASSIFIERS: Record<string, ModelFamily> = {
  ...Object.fromEntries(Object.entries(FAMILIES).map(([f, d]) => [d.classifier, f as ModelFamily])),
  CamembertForSequenceClassification: 'xlm-roberta',
};

function familyOf(c: Json): ModelFamily {
  const modelType = typeof c.model_type === 'string' ? c.model_type : undefined;
  const archs = Array.isArray(c.architectures) ? c.architectures.filter((a) => typeof a === 'string') : [];
  const supported = Object.values(FAMILIES)
    .flatMap((f) => f.modelTypes)
    .map((t) => `"${t}"`)
    .join(', ');
  const byType = (Object.keys(FAMILIES) as ModelFamily[]).find((f) =>
    FAMILIES[f].modelTypes.includes(modelType ?? ''),
  );
  const byClass = archs.map((a) => CLASSIFIERS[a]).find((f) => f !== undefined);
  const family = modelType === undefined ? byClass : byType;
  if (family === undefined) {
    throw new UnsupportedModelError(
      `model_type "${modelType ?? '(missing)'}" is not supported: mlx-rerank runs the cross-encoders of model_type ` +
        `${supported} (BERT, MiniLM, TinyBERT, XLM-RoBERTa / CamemBERT e.g. BAAI/bge-reranker-v2-m3, ELECTRA, ModernBERT).`,
    );
  }
  if (archs.length > 0 && !archs.some((a) => CLASSIFIERS[a] === family)) {
    throw new UnsupportedModelError(
      `architectures ${JSON.stringify(archs)} is not a sequence classifier of model_type "${modelType ?? family}": ` +
        `a cross-encoder needs ${FAMILIES[family].classifier} (a classifier head on top of the encoder).`,
    );
  }
  return family;
}

export function specFromConfig(config: unknown, stConfig?: unknown): ModelSpec {
  if (!isObject(config)) throw new ConfigError('config.json must hold a JSON object.');
  const c = config;
  const family = familyOf(c);
  const vocabSize = int(c, 'vocab_size');
  const hiddenSize = int(c, 'hidden_size');
  const numLayers = int(c, 'num_hidden_layers');
  const numHeads = int(c, 'num_attention_heads');
  const intermediateSize = int(c, 'intermediate_size');
  if (hiddenSize % numHeads !== 0) {
    throw new ConfigError(
      `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}; the file is inconsistent.`,
    );
  }
  const parts = FAMILIES[family].describe(c, { hiddenSize, vocabSize });
  const labels = labelsOf(c);
  const numLabels = labels.length;
  return {
    architecture: family,
    modelType: typeof c.model_type === 'string' ? c.model_type : family,
    vocabSize,
    hiddenSize,
    numLayers,
    numHeads,
    intermediateSize,
    maxPositions: parts.maxPositions,
    typeVocabSize: parts.typeVocabSize,
    numLabels,
    layerNormEps: parts.layerNormEps,
    hiddenAct: parts.hiddenAct,
    padTokenId: parts.padTokenId,
    arch: parts.arch,
    labels,
    activation: activationOf(c, stConfig, numLabels),
    synthetic: c.mlx_rerank_synthetic === true,
  };
}

function act(c: Json, key: string, fallback: HiddenAct): HiddenAct {
  const v = c[key] ?? fallback;
  if (typeof v !== 'string' || !HIDDEN_ACTS.has(v)) {
    throw new UnsupportedModelError(
      `${key} ${JSON.stringify(v)} is not supported (supported: ${[...HIDDEN_ACTS].join(', ')}).`,
    );
  }
  return v as HiddenAct;
}

function eps(c: Json, key: string, fallback: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 0.1) {
    throw new ConfigError(`${key} ${JSON.stringify(v)} must be a number in (0, 0.1].`);
  }
  return v;
}

function bool(c: Json, key: string, fallback: boolean): boolean {
  const v = c[key] ?? fallback;
  if (typeof v !== 'boolean')
    throw new ConfigError(`"${key}" is ${JSON.stringify(v)}; it must be true or false.`);
  return v;
}

function padOf(c: Json, common: Common, fallback: number): number {
  const v = c.pad_token_id ?? fallback;
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) >= common.vocabSize) {
    throw new ConfigError(
      `pad_token_id ${JSON.stringify(v)} must be an integer in [0, vocab_size ${common.vocabSize}).`,
    );
  }
  return v as number;
}

/** transformers 5 writes rope_parameters per layer type; 4.x global_rope_theta / local_rope_theta. */
function ropeTheta(c: Json, layerType: string, legacyKey: string, fallback: number): number {
  const params = isObject(c.rope_parameters) ? c.rope_parameters[layerType] : undefined;
  if (params !== undefined) {
    if (!isObject(params) || (params.rope_type ?? 'default') !== 'default') {
      throw new UnsupportedModelError(
        `rope_parameters.${layerType} ${JSON.stringify(params)} is not supported (only rope_type "default").`,
      );
    }
  }
  const v = (isObject(params) ? params.rope_theta : undefined) ?? c[legacyKey] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 1 || v > 1e12) {
    throw new ConfigError(
      `rope theta of the ${layerType} layers ${JSON.stringify(v)} must be a number in (1, 1e12].`,
    );
  }
  return v;
}

/** transformers 5's layer_types must be the pattern global_attn_every_n_layers describes. */
function checkLayerTypes(c: Json, every: number): void {
  if (c.layer_types === undefined || c.layer_types === null) return;
  const types = c.layer_types;
  const layers = c.num_hidden_layers as number;
  const expected = Array.from({ length: layers }, (_, l) =>
    l % every === 0 ? 'full_attention' : 'sliding_attention',
  );
  if (!Array.isArray(types) || JSON.stringify(types) !== JSON.stringify(expected)) {
    throw new UnsupportedModelError(
      `layer_types ${JSON.stringify(types)} is not supported: the engines run a global layer every ` +
        `global_attn_every_n_layers (${every}) layers and sliding-window ones between (${JSON.stringify(expected)}).`,
    );
  }
}

function int(c: Json, key: keyof typeof LIMITS, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (v === undefined) throw new ConfigError(`"${key}" is missing; this config.json must set it.`);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > LIMITS[key]) {
    throw new ConfigError(
      `"${key}" is ${JSON.stringify(v)}; it must be a positive integer <= ${LIMITS[key]}.`,
    );
  }
  return v;
}

/** As transformers: id2label decides num_labels when present, else num_labels, else 2 labels. */
function labelsOf(c: Json): string[] {
  const id2label = c.id2label;
  if (id2label !== undefined) {
    if (!isObject(id2label) || Object.keys(id2label).length === 0) {
      throw new ConfigError('"id2label" must be a non-empty object {"0": "LABEL_0", ...}.');
    }
    const n = Object.keys(id2label).length;
    if (n > LIMITS.num_labels)
      throw new ConfigError(`"id2label" has ${n} labels; at most ${LIMITS.num_labels}.`);
    const labels: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = id2label[String(i)];
      if (typeof name !== 'string') {
        throw new ConfigError(
          `"id2label" must map every id 0..${n - 1} to a string; id ${i} is ${JSON.stringify(name)}.`,
        );
      }
      labels.push(name);
    }
    if (c.num_labels !== undefined && c.num_labels !== n) {
      throw new ConfigError(
        `"num_labels" ${JSON.stringify(c.num_labels)} disagrees with id2label's ${n} labels.`,
      );
    }
    return labels;
  }
  const n = int(c, 'num_labels', 2);
  return Array.from({ length: n }, (_, i) => `LABEL_${i}`);
}

/**
 * As sentence-transformers' CrossEncoder: an activation saved with the model wins (its own
 * config_sentence_transformers.json, then config.json's "sentence_transformers": {"activation_fn"}
 * (v4+), then the older "sbert_ce_default_activation_function"); else sigmoid for one label, identity for
 * several. Like ST, only torch.* class paths are trusted; others fall back to the default.
 */
function activationOf(c: Json, st: unknown, numLabels: number): Activation {
  const candidates: unknown[] = [];
  if (isObject(st)) {
    candidates.push(st.activation_fn);
    if (isObject(st.sentence_transformers)) candidates.push(st.sentence_transformers.activation_fn);
  }
  if (isObject(c.sentence_transformers)) candidates.push(c.sentence_transformers.activation_fn);
  candidates.push(c.sbert_ce_default_activation_function);
  for (const path of candidates) {
    if (typeof path !== 'string' || !path.startsWith('torch.')) continue;
    const name = path.split('.').pop() ?? '';
    if (name === 'Sigmoid') return 'sigmoid';
    if (name === 'Identity') return 'none';
    if (name === 'Softmax') return 'softmax';
    throw new UnsupportedModelError(
      `The model's saved activation ${path} is not supported (supported: torch.nn Sigmoid, Identity, Softmax). ` +
        'Change "activation_fn" in its config (config.json "sentence_transformers", or config_sentence_transformers.json) to one of those.',
    );
  }
  return numLabels === 1 ? 'sigmoid' : 'none';
}
