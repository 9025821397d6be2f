/**
 * The hand-written ONNX export must compute BertForSequenceClassification: its logits, run by ONNX
 * Runtime directly and through transformers.js, are checked against a float64 BERT written out below
 * with plain loops (and against the Python golden fixtures when they are present).
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import {
  AddedToken,
  bertNormalizer,
  bertPreTokenizer,
  bertProcessing,
  Tokenizer as RustTokenizer,
  WordPiece,
} from 'tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import { exportBertOnnx, writeBertOnnx } from '../src/bench/onnx-export';
import { runTransformersJs } from '../src/bench/transformersjs';
import { synthesizeModel } from '../src/synth';
import { msMarcoPairs } from '../src/workload';

// ---------------------------------------------------------------------------------------------------
// A tiny random BERT written as safetensors.

type DT = 'F32' | 'F16' | 'BF16';
interface Tensor {
  shape: number[];
  data: Float64Array; // the values the file holds, after rounding to its dtype
}
type Weights = Map<string, Tensor>;

interface Config {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  max_position_embeddings: number;
  type_vocab_size: number;
  layer_norm_eps: number;
  hidden_act: 'gelu';
  id2label: Record<string, string>;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toBf16(v: number): number {
  f32[0] = v;
  const u = u32[0] as number;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff; // round to nearest even
}
function fromBf16(h: number): number {
  u32[0] = h << 16;
  return f32[0] as number;
}
function toF16(v: number): number {
  // Round to nearest through float32's bits; the weights here are normal and small.
  f32[0] = v;
  const u = u32[0] as number;
  const sign = (u >>> 16) & 0x8000;
  const exp = ((u >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign; // flush tiny values; none of ours are this small in practice
  const mant = u & 0x7fffff;
  let h = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return h;
}
function fromF16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  return exp === 0 ? sign * 2 ** -14 * (frac / 1024) : sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

function randomBert(cfg: Config, dtype: DT, seed: number): { weights: Weights; file: Buffer } {
  const randn = rng(seed);
  const H = cfg.hidden_size;
  const I = cfg.intermediate_size;
  const L = Object.keys(cfg.id2label).length;
  const specs: Array<[string, number[]]> = [
    ['bert.embeddings.word_embeddings.weight', [cfg.vocab_size, H]],
    ['bert.embeddings.position_embeddings.weight', [cfg.max_position_embeddings, H]],
    ['bert.embeddings.token_type_embeddings.weight', [cfg.type_vocab_size, H]],
    ['bert.embeddings.LayerNorm.weight', [H]],
    ['bert.embeddings.LayerNorm.bias', [H]],
  ];
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `bert.encoder.layer.${l}`;
    for (const n of ['query', 'key', 'value'])
      specs.push([`${p}.attention.self.${n}.weight`, [H, H]], [`${p}.attention.self.${n}.bias`, [H]]);
    specs.push(
      [`${p}.attention.output.dense.weight`, [H, H]],
      [`${p}.attention.output.dense.bias`, [H]],
      [`${p}.attention.output.LayerNorm.weight`, [H]],
      [`${p}.attention.output.LayerNorm.bias`, [H]],
      [`${p}.intermediate.dense.weight`, [I, H]],
      [`${p}.intermediate.dense.bias`, [I]],
      [`${p}.output.dense.weight`, [H, I]],
      [`${p}.output.dense.bias`, [H]],
      [`${p}.output.LayerNorm.weight`, [H]],
      [`${p}.output.LayerNorm.bias`, [H]],
    );
  }
  specs.push(
    ['bert.pooler.dense.weight', [H, H]],
    ['bert.pooler.dense.bias', [H]],
    ['classifier.weight', [L, H]],
    ['classifier.bias', [L]],
  );

  // Scales as in scripts/golden/make_models.py: logits that vary across pairs, LayerNorms not the identity.
  const width = dtype === 'F32' ? 4 : 2;
  const weights: Weights = new Map();
  const header: Record<string, unknown> = {};
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, shape] of specs) {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.at(-1) as number;
    const draw = name.includes('LayerNorm.weight')
      ? () => 1 + 0.2 * randn()
      : name.endsWith('.bias')
        ? () => 0.1 * randn()
        : name.includes('embeddings')
          ? () => 0.5 * randn()
          : () => (randn() * 1.2) / Math.sqrt(fanIn);
    const data = new Float64Array(n);
    const bytes = Buffer.alloc(n * width);
    for (let i = 0; i < n; i++) {
      const v = draw();
      if (dtype === 'F32') {
        bytes.writeFloatLE(v, 4 * i);
        data[i] = bytes.readFloatLE(4 * i);
      } else {
        const h = dtype === 'F16' ? toF16(v) : toBf16(v);
        bytes.writeUInt16LE(h, 2 * i);
        data[i] = dtype === 'F16' ? fromF16(h) : fromBf16(h);
      }
    }
    weights.set(name, { shape, data });
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify({ __metadata__: { format: 'pt' }, ...header });
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return { weights, file: Buffer.concat([len, Buffer.from(json), ...chunks]) };
}

// ---------------------------------------------------------------------------------------------------
// float64 BertForSequenceClassification, one pair at a time (no padding).

function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    // Maclaurin series: terms peak near e^(x^2) < 520, so float64 keeps ~1e-13.
    let term = ax;
    let sum = ax;
    for (let n = 1; n < 80; n++) {
      term *= (-ax * ax) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc continued fraction (Laplace), evaluated backwards.
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / (Math.sqrt(Math.PI) * f));
}

function reference(cfg: Config, w: Weights, ids: number[], types: number[]): number[] {
  const get = (n: string) => (w.get(n) as Tensor).data;
  const H = cfg.hidden_size;
  const NH = cfg.num_attention_heads;
  const DH = H / NH;
  const S = ids.length;
  const linear = (x: Float64Array[], p: string, inDim: number, outDim: number): Float64Array[] => {
    const W = get(`${p}.weight`);
    const b = get(`${p}.bias`);
    return x.map((row) => {
      const out = new Float64Array(outDim);
      for (let o = 0; o < outDim; o++) {
        let s = b[o] as number;
        for (let i = 0; i < inDim; i++) s += (W[o * inDim + i] as number) * (row[i] as number);
        out[o] = s;
      }
      return out;
    });
  };
  const layerNorm = (x: Float64Array[], p: string): Float64Array[] => {
    const g = get(`${p}.weight`);
    const b = get(`${p}.bias`);
    return x.map((row) => {
      const mean = row.reduce((a, v) => a + v, 0) / H;
      const variance = row.reduce((a, v) => a + (v - mean) ** 2, 0) / H;
      const inv = 1 / Math.sqrt(variance + cfg.layer_norm_eps);
      return row.map((v, i) => (v - mean) * inv * (g[i] as number) + (b[i] as number));
    });
  };
  const add = (a: Float64Array[], b: Float64Array[]) =>
    a.map((row, t) => row.map((v, i) => v + ((b[t] as Float64Array)[i] as number)));

  const word = get('bert.embeddings.word_embeddings.weight');
  const pos = get('bert.embeddings.position_embeddings.weight');
  const typ = get('bert.embeddings.token_type_embeddings.weight');
  let x: Float64Array[] = ids.map((id, t) => {
    const row = new Float64Array(H);
    for (let i = 0; i < H; i++)
      row[i] =
        (word[id * H + i] as number) +
        (pos[t * H + i] as number) +
        (typ[(types[t] as number) * H + i] as number);
    return row;
  });
  x = layerNorm(x, 'bert.embeddings.LayerNorm');
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `bert.encoder.layer.${l}`;
    const q = linear(x, `${p}.attention.self.query`, H, H);
    const k = linear(x, `${p}.attention.self.key`, H, H);
    const v = linear(x, `${p}.attention.self.value`, H, H);
    const ctx = x.map(() => new Float64Array(H));
    for (let h = 0; h < NH; h++) {
      for (let i = 0; i < S; i++) {
        const scores = new Float64Array(S);
        for (let j = 0; j < S; j++) {
          let s = 0;
          for (let d = 0; d < DH; d++)
            s +=
              ((q[i] as Float64Array)[h * DH + d] as number) * ((k[j] as Float64Array)[h * DH + d] as number);
          scores[j] = s / Math.sqrt(DH);
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j < S; j++) {
          for (let d = 0; d < DH; d++) {
            const c = ctx[i] as Float64Array;
            c[h * DH + d] =
              (c[h * DH + d] as number) +
              ((e[j] as number) / z) * ((v[j] as Float64Array)[h * DH + d] as number);
          }
        }
      }
    }
    const x1 = layerNorm(
      add(linear(ctx, `${p}.attention.output.dense`, H, H), x),
      `${p}.attention.output.LayerNorm`,
    );
    const inter = linear(x1, `${p}.intermediate.dense`, H, cfg.intermediate_size).map((row) =>
      row.map((u) => 0.5 * u * (1 + erf(u / Math.SQRT2))),
    );
    x = layerNorm(
      add(linear(inter, `${p}.output.dense`, cfg.intermediate_size, H), x1),
      `${p}.output.LayerNorm`,
    );
  }
  const pooled = linear([x[0] as Float64Array], 'bert.pooler.dense', H, H).map((row) => row.map(Math.tanh));
  return Array.from(linear(pooled, 'classifier', H, Object.keys(cfg.id2label).length)[0] as Float64Array);
}

// ---------------------------------------------------------------------------------------------------

const VOCAB = [
  '[PAD]',
  '[UNK]',
  '[CLS]',
  '[SEP]',
  '[MASK]',
  'what',
  'is',
  'a',
  'cat',
  'the',
  'dog',
  'un',
  '##aff',
  '##able',
  ',',
  '!',
  '?',
  '.',
  'how',
  'many',
  'legs',
  'does',
  'have',
  'four',
  'and',
  'tail',
  'cafe',
  'paris',
  'in',
  'open',
  '##s',
  'at',
  'late',
  'night',
  'are',
  'there',
  'it',
  'has',
  'no',
  'answer',
  '##ed',
  'walk',
];
const CFG: Config = {
  vocab_size: VOCAB.length,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  max_position_embeddings: 64,
  type_vocab_size: 2,
  layer_norm_eps: 1e-12,
  hidden_act: 'gelu',
  id2label: { 0: 'LABEL_0', 1: 'LABEL_1' },
};

const work = mkdtempSync(join(tmpdir(), 'onnx-export-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function writeModelDir(dtype: DT, seed: number): { dir: string; weights: Weights } {
  const dir = join(work, `model-${dtype}-${seed}`);
  const { weights, file } = randomBert(CFG, dtype, seed);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.safetensors'), file);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ ...CFG, model_type: 'bert', architectures: ['BertForSequenceClassification'] }),
  );
  writeFileSync(join(dir, 'vocab.txt'), `${VOCAB.join('\n')}\n`);
  return { dir, weights };
}

/** Pads pairs to the longest, as transformers.js does, and runs the session. */
async function runOrt(
  session: ort.InferenceSession,
  pairs: Array<{ ids: number[]; typeIds: number[] }>,
): Promise<number[][]> {
  const S = Math.max(...pairs.map((p) => p.ids.length));
  const B = pairs.length;
  const ids = new BigInt64Array(B * S);
  const mask = new BigInt64Array(B * S);
  const types = new BigInt64Array(B * S);
  pairs.forEach((p, b) => {
    p.ids.forEach((id, t) => {
      ids[b * S + t] = BigInt(id);
      mask[b * S + t] = 1n;
      types[b * S + t] = BigInt(p.typeIds[t] as number);
    });
  });
  const out = await session.run({
    input_ids: new ort.Tensor('int64', ids, [B, S]),
    attention_mask: new ort.Tensor('int64', mask, [B, S]),
    token_type_ids: new ort.Tensor('int64', types, [B, S]),
  });
  const logits = out.logits as ort.Tensor;
  const L = logits.dims[1] as number;
  const data = logits.data as Float32Array;
  return pairs.map((_, b) => Array.from(data.subarray(b * L, (b + 1) * L)));
}

function maxAbsErr(a: number[][], b: number[][]): number {
  let m = 0;
  for (const [i, row] of a.entries()) {
    for (const [j, v] of row.entries()) m = Math.max(m, Math.abs(v - ((b[i] as number[])[j] as number)));
  }
  return m;
}

function randomPairs(
  count: number,
  seed: number,
  maxLen: number,
): Array<{ ids: number[]; typeIds: number[] }> {
  let s = seed;
  const next = (n: number) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
  return Array.from({ length: count }, () => {
    const len = 3 + next(maxLen - 2);
    const q = next(Math.min(len - 3, 12) + 1);
    const ids = [2];
    for (let i = 0; i < len - 3; i++) ids.push(5 + next(CFG.vocab_size - 5));
    ids.splice(q + 1, 0, 3);
    ids.push(3);
    return { ids, typeIds: ids.map((_, t) => (t <= q + 1 ? 0 : 1)) };
  });
}

describe('exportBertOnnx', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`matches a float64 BERT through onnxruntime-node (${dtype} weights, padded batch)`, async () => {
      const { dir, weights } = writeModelDir(dtype, 7);
      const out = await exportBertOnnx(dir, join(work, `onnx-${dtype}`));
      const session = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
      expect([...session.inputNames].sort()).toEqual(['attention_mask', 'input_ids', 'token_type_ids']);
      const pairs = randomPairs(12, 3, CFG.max_position_embeddings);
      const got = await runOrt(session, pairs);
      const want = pairs.map((p) => reference(CFG, weights, p.ids, p.typeIds));
      const col = want.map((r) => r[0] as number);
      const mean = col.reduce((a, b) => a + b, 0) / col.length;
      expect(Math.sqrt(col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length)).toBeGreaterThan(0.3);
      expect(maxAbsErr(got, want)).toBeLessThanOrEqual(1e-4);
      await session.release();
    });
  }
});

// Pairs whose BERT tokenization is known by hand: lower-casing, punctuation split off, WordPiece
// (un ##aff ##able, open ##s), an unknown word -> [UNK].
const QUERIES = ['What is a cat?', 'how many legs does the dog have', 'Unaffable zebra'];
const DOCS = [
  'The cat is unaffable!',
  'A dog has four legs, and a tail.',
  'is the cafe in paris opens at late night?',
];
const id = (t: string) => VOCAB.indexOf(t);
const words = (s: string) => s.split(' ').map(id);
const EXPECTED = [
  [...words('[CLS] what is a cat ? [SEP] the cat is un ##aff ##able ! [SEP]')],
  [...words('[CLS] how many legs does the dog have [SEP] a dog has four legs , and a tail . [SEP]')],
  [...words('[CLS] un ##aff ##able [UNK] [SEP] is the cafe in paris open ##s at late night ? [SEP]')],
];
const SEP_ID = id('[SEP]');
const EXPECTED_TYPES = EXPECTED.map((e) => e.map((_, t) => (t > e.indexOf(SEP_ID) ? 1 : 0)));

describe('exportBertOnnx through transformers.js', () => {
  it('tokenizes pairs as BERT does and pads batches without changing the logits', async () => {
    const { AutoModelForSequenceClassification, AutoTokenizer, env } = await import(
      '@huggingface/transformers'
    );
    const { dir, weights } = writeModelDir('F32', 11);
    const out = await exportBertOnnx(dir, join(work, 'tjs', 'tiny'));
    env.allowRemoteModels = false;
    env.localModelPath = dirname(out);
    const tokenizer = await AutoTokenizer.from_pretrained(basename(out));
    const model = await AutoModelForSequenceClassification.from_pretrained(basename(out), { dtype: 'fp32' });
    const inputs = tokenizer(QUERIES, {
      text_pair: DOCS,
      padding: true,
      truncation: true,
    }) as unknown as Record<
      'input_ids' | 'token_type_ids' | 'attention_mask',
      { dims: number[]; data: BigInt64Array }
    >;
    const S = Math.max(...EXPECTED.map((e) => e.length));
    expect(inputs.input_ids.dims).toEqual([3, S]);
    const rows = (t: { data: BigInt64Array }) =>
      EXPECTED.map((_, b) => Array.from(t.data.subarray(b * S, (b + 1) * S), Number));
    expect(rows(inputs.input_ids)).toEqual(EXPECTED.map((e) => [...e, ...Array(S - e.length).fill(0)]));
    expect(rows(inputs.token_type_ids)).toEqual(
      EXPECTED_TYPES.map((e) => [...e, ...Array(S - e.length).fill(0)]),
    );
    expect(rows(inputs.attention_mask)).toEqual(
      EXPECTED.map((e) => [...e.map(() => 1), ...Array(S - e.length).fill(0)]),
    );

    const { logits } = await model(inputs);
    const L = logits.dims[1] as number;
    const got = EXPECTED.map((_, b) =>
      Array.from((logits.data as Float32Array).subarray(b * L, (b + 1) * L)),
    );
    const want = EXPECTED.map((e, b) => reference(CFG, weights, e, EXPECTED_TYPES[b] as number[]));
    expect(maxAbsErr(got, want)).toBeLessThanOrEqual(1e-4);
    await model.dispose();
  });
});

describe('runTransformersJs', () => {
  it('scores pairs in input order and measures the padding of each batch', async () => {
    const { dir, weights } = writeModelDir('F32', 13);
    const out = await exportBertOnnx(dir, join(work, 'tjs-run', 'tiny'));
    const pairs = QUERIES.map((q, i) => [q, DOCS[i]] as [string, string]);
    const res = await runTransformersJs(out, pairs, 2, { keepLogits: true, warmupBatches: 1 });
    const want = EXPECTED.map((e, b) => reference(CFG, weights, e, EXPECTED_TYPES[b] as number[]));
    const logits = res.logits as Float32Array;
    expect(
      maxAbsErr(
        [0, 1, 2].map((b) => [logits[2 * b] as number, logits[2 * b + 1] as number]),
        want,
      ),
    ).toBeLessThanOrEqual(1e-4);
    // Batches [0, 1] and [2], each padded to its longest pair.
    const len = EXPECTED.map((e) => e.length);
    const slots = 2 * Math.max(len[0] as number, len[1] as number) + (len[2] as number);
    const real = len.reduce((a, b) => a + b, 0);
    expect(res).toMatchObject({ pairs: 3, batches: 2, numLabels: 2, realTokens: real, computedSlots: slots });
    expect(res.paddingWastePct).toBeCloseTo((1 - real / slots) * 100, 10);
    expect(res.pairsPerSec).toBeGreaterThan(0);
    expect(res.inferencePairsPerSec).toBeGreaterThanOrEqual(res.pairsPerSec);
  });
  it('rejects a batch size that is not a positive integer', async () => {
    await expect(runTransformersJs(work, [['a', 'b']], 0)).rejects.toMatchObject({ code: 'E_INPUT' });
  });
});

describe('tokenizer.json built from vocab.txt', () => {
  it('encodes pairs in transformers.js as Hugging Face tokenizers (Rust) BertWordPiece does', async () => {
    const src = join(work, 'synth-tiny');
    await synthesizeModel({ shape: 'tiny', seed: 3, outDir: src });
    rmSync(join(src, 'tokenizer.json')); // the export must build it from vocab.txt
    const out = await exportBertOnnx(src, join(work, 'tok', 'synth-tiny'));
    const vocab = readFileSync(join(src, 'vocab.txt'), 'utf8').split('\n');
    const rust = new RustTokenizer(await WordPiece.fromFile(join(src, 'vocab.txt'), { unkToken: '[UNK]' }));
    rust.setNormalizer(bertNormalizer({ lowercase: true, stripAccents: true }));
    rust.setPreTokenizer(bertPreTokenizer());
    // As BertTokenizerFast: the special tokens are added tokens, matched whole in the text.
    rust.addAddedTokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => new AddedToken(t, true)));
    rust.setPostProcessor(
      bertProcessing(['[SEP]', vocab.indexOf('[SEP]')], ['[CLS]', vocab.indexOf('[CLS]')]),
    );

    const { AutoTokenizer, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = dirname(out);
    const tokenizer = await AutoTokenizer.from_pretrained(basename(out));
    const pairs: Array<[string, string]> = [
      ...msMarcoPairs(150, 5),
      [
        'Café naïve RÉSUMÉ — “quoted” [MASK]',
        '東京タワー and 北京 are big! x² \t tabs\u0000 e\u0301 unbelievably-long-hyphenated',
      ],
      ['what?!...', "Don't stop; it's 3.14159, ok #hashtag @user https://example.com/a?b=c"],
    ];
    const bad: unknown[] = [];
    for (const [q, d] of pairs) {
      const want = await rust.encode(q, d);
      const got = tokenizer(q, { text_pair: d, return_tensor: false }) as unknown as {
        input_ids: number[];
        token_type_ids: number[];
      };
      if (
        got.input_ids.join() !== want.getIds().join() ||
        got.token_type_ids.join() !== want.getTypeIds().join()
      ) {
        bad.push({ q, d: d.slice(0, 60), got: got.input_ids.slice(0, 12), want: want.getIds().slice(0, 12) });
      }
    }
    expect(bad.slice(0, 3)).toEqual([]);
  });
});

describe('exportBertOnnx errors', () => {
  it('names a missing tensor', async () => {
    const { dir } = writeModelDir('F32', 5);
    const file = readFileSync(join(dir, 'model.safetensors'));
    const len = Number(file.readBigUInt64LE(0));
    // Same-length rename: the header keeps its size, only the tensor's name is wrong.
    const header = file
      .subarray(8, 8 + len)
      .toString()
      .replace('classifier.bias', 'classifier.biaz');
    file.write(header, 8);
    writeFileSync(join(dir, 'model.safetensors'), file);
    await expect(exportBertOnnx(dir, join(work, 'bad1'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('classifier.bias'),
    });
  });
  it('rejects a header longer than the file and a truncated data area', async () => {
    const { dir } = writeModelDir('F32', 5);
    const file = readFileSync(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'model.safetensors'), file.subarray(0, file.length - 4));
    await expect(exportBertOnnx(dir, join(work, 'bad2'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('data_offsets'),
    });
    const big = Buffer.from(file);
    big.writeBigUInt64LE(BigInt(file.length));
    writeFileSync(join(dir, 'model.safetensors'), big);
    await expect(exportBertOnnx(dir, join(work, 'bad3'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('header length'),
    });
  });
  it('rejects a config that does not match the weights, and a folder without a vocabulary', async () => {
    const { dir } = writeModelDir('F32', 5);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...CFG, intermediate_size: 65 }));
    await expect(exportBertOnnx(dir, join(work, 'bad4'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('intermediate.dense.weight'),
    });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...CFG, hidden_size: 'wide' }));
    await expect(exportBertOnnx(dir, join(work, 'bad5'))).rejects.toMatchObject({ code: 'E_BAD_CONFIG' });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(CFG));
    rmSync(join(dir, 'vocab.txt'));
    await expect(exportBertOnnx(dir, join(work, 'bad6'))).rejects.toMatchObject({ code: 'E_BAD_TOKENIZER' });
  });
});

// Golden fixtures from Python transformers (scripts/golden/make_models.py), when they have landed.
const GOLDEN = fileURLToPath(new URL('./fixtures/models', import.meta.url));
const goldenModels = existsSync(GOLDEN)
  ? readdirSync(GOLDEN).filter((n) => existsSync(join(GOLDEN, n, 'expected.json')))
  : [];

describe.skipIf(goldenModels.length === 0)('ONNX graph against the golden fixtures', () => {
  for (const name of goldenModels) {
    for (const dtype of ['float32', 'float16', 'bfloat16']) {
      const weights = join(GOLDEN, name, dtype, 'model.safetensors');
      it.skipIf(!existsSync(weights))(`${name}: ${dtype} weights, padded batches of 8`, async () => {
        const golden = JSON.parse(readFileSync(join(GOLDEN, name, 'expected.json'), 'utf8')) as {
          pairs: Array<{ ids: number[]; typeIds: number[] }>;
          logits: Record<string, number[][]>;
        };
        const onnxPath = join(work, `golden-${name}-${dtype}.onnx`);
        await writeBertOnnx(join(GOLDEN, name, 'config.json'), weights, onnxPath);
        const session = await ort.InferenceSession.create(onnxPath);
        const got: number[][] = [];
        for (let i = 0; i < golden.pairs.length; i += 8) {
          got.push(...(await runOrt(session, golden.pairs.slice(i, i + 8))));
        }
        expect(maxAbsErr(got, golden.logits[dtype] as number[][])).toBeLessThanOrEqual(1e-4);
        await session.release();
      });
    }
  }
});
