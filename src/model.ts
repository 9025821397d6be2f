/**
 * config.json (+ the sentence-transformers settings) -> ModelSpec, for BERT-architecture sequence
 * classifiers (BERT, MiniLM, TinyBERT, ... all share model_type "bert"). Everything else is refused by
 * name, and every number is checked before an engine sizes buffers from it.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, UnsupportedModelError } from './errors';
import type { Activation, ModelFiles, ModelSpec } from './types';

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

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`Cannot read ${path} (${(err as Error).message}).`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      `${path} is not valid JSON (${(err as Error).message}); re-download or fix the file.`,
      {
        cause: err,
      },
    );
  }
}

const HIDDEN_ACTS = new Set(['gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu']);

/** Upper bounds: generous for real BERTs, small enough that a corrupt config can't ask for terabytes. */
const LIMITS = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 14,
  num_hidden_layers: 256,
  num_attention_heads: 1024,
  intermediate_size: 1 << 16,
  max_position_embeddings: 1 << 16,
  type_vocab_size: 1024,
  num_labels: 1 << 16,
} as const;

type Json = Record<string, unknown>;

export function specFromConfig(config: unknown, stConfig?: unknown): ModelSpec {
  if (!isObject(config)) throw new ConfigError('config.json must hold a JSON object.');
  const c = config;
  const modelType = typeof c.model_type === 'string' ? c.model_type : undefined;
  const archs = Array.isArray(c.architectures) ? c.architectures.filter((a) => typeof a === 'string') : [];
  if (modelType !== 'bert' && !(modelType === undefined && archs.includes('BertForSequenceClassification'))) {
    throw new UnsupportedModelError(
      `model_type "${modelType ?? '(missing)'}" is not supported: mlx-rerank runs BERT-architecture cross-encoders ` +
        '(model_type "bert": BERT, MiniLM, TinyBERT, e.g. cross-encoder/ms-marco-MiniLM-L-6-v2).',
    );
  }
  if (archs.length > 0 && !archs.includes('BertForSequenceClassification')) {
    throw new UnsupportedModelError(
      `architectures ${JSON.stringify(archs)} is not a sequence classifier: a cross-encoder needs BertForSequenceClassification ` +
        '(a classifier head on top of the encoder).',
    );
  }
  const posType = c.position_embedding_type ?? 'absolute';
  if (posType !== 'absolute') {
    throw new UnsupportedModelError(
      `position_embedding_type "${String(posType)}" is not supported (only "absolute").`,
    );
  }
  const hiddenAct = c.hidden_act ?? 'gelu';
  if (typeof hiddenAct !== 'string' || !HIDDEN_ACTS.has(hiddenAct)) {
    throw new UnsupportedModelError(
      `hidden_act ${JSON.stringify(hiddenAct)} is not supported (supported: ${[...HIDDEN_ACTS].join(', ')}).`,
    );
  }

  const vocabSize = int(c, 'vocab_size');
  const hiddenSize = int(c, 'hidden_size');
  const numLayers = int(c, 'num_hidden_layers');
  const numHeads = int(c, 'num_attention_heads');
  const intermediateSize = int(c, 'intermediate_size');
  const maxPositions = int(c, 'max_position_embeddings');
  const typeVocabSize = int(c, 'type_vocab_size', 2);
  if (hiddenSize % numHeads !== 0) {
    throw new ConfigError(
      `hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}; the file is inconsistent.`,
    );
  }
  const labels = labelsOf(c);
  const numLabels = labels.length;
  const layerNormEps = c.layer_norm_eps ?? 1e-12;
  if (
    typeof layerNormEps !== 'number' ||
    !Number.isFinite(layerNormEps) ||
    layerNormEps <= 0 ||
    layerNormEps > 0.1
  ) {
    throw new ConfigError(`layer_norm_eps ${JSON.stringify(layerNormEps)} must be a number in (0, 0.1].`);
  }
  const padTokenId = c.pad_token_id ?? 0;
  if (!Number.isInteger(padTokenId) || (padTokenId as number) < 0 || (padTokenId as number) >= vocabSize) {
    throw new ConfigError(
      `pad_token_id ${JSON.stringify(padTokenId)} must be an integer in [0, vocab_size ${vocabSize}).`,
    );
  }
  return {
    architecture: 'bert',
    modelType: 'bert',
    vocabSize,
    hiddenSize,
    numLayers,
    numHeads,
    intermediateSize,
    maxPositions,
    typeVocabSize,
    numLabels,
    layerNormEps,
    hiddenAct: hiddenAct as ModelSpec['hiddenAct'],
    padTokenId: padTokenId as number,
    labels,
    activation: activationOf(c, stConfig, numLabels),
    synthetic: c.mlx_rerank_synthetic === true,
  };
}

function int(c: Json, key: keyof typeof LIMITS, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (v === undefined) throw new ConfigError(`"${key}" is missing; a BERT config.json must set it.`);
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

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
