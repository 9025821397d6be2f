/**
 * The hand-written ONNX export must compute BertForSequenceClassification: its logits, run by ONNX
 * Runtime directly and through transformers.js, are checked against the float64 BERT of
 * test/helpers/cpu-model.ts (plain loops) and against the Python golden fixtures.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
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
import { exportOnnx, quantizeQInt8, writeOnnx } from '../bench/lib/onnx-export';
import { runTransformersJs } from '../bench/lib/transformersjs';
import { loadModelSpec } from '../src/model';
import { type NativeAddon, native } from '../src/native';
import { synthesizeModel } from '../src/synth';
import { Tokenizer } from '../src/tokenizer';
import { msMarcoPairs } from '../src/workload';
import {
  type CpuSpec,
  FIXTURE_DTYPES,
  FIXTURE_MODELS_DIR,
  type FixturePair,
  fixtureExpected,
  fixtureModels,
  type ReferenceQuantization,
  randomBert,
  referenceLogits,
  type StDType,
  type Tensor,
  writeModel,
} from './helpers/cpu-model';

// ---------------------------------------------------------------------------------------------------
// A tiny random BERT (test/helpers/cpu-model.ts: weights, safetensors, the float64 reference forward).

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
const SPEC: CpuSpec = {
  vocabSize: VOCAB.length,
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 4,
  intermediateSize: 64,
  maxPositions: 64,
  typeVocabSize: 2,
  numLabels: 2,
  layerNormEps: 1e-12,
  hiddenAct: 'gelu',
};

const work = mkdtempSync(join(tmpdir(), 'onnx-export-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface TestModel {
  dir: string;
  dtype: StDType;
  tensors: Record<string, Tensor>;
}

function writeModelDir(dtype: StDType, seed: number): TestModel {
  const dir = join(work, `model-${dtype}-${seed}`);
  const tensors = randomBert(SPEC, seed, 2); // logits spread enough to tell pairs apart
  rmSync(dir, { recursive: true, force: true });
  writeModel(dir, SPEC, tensors, dtype);
  writeFileSync(join(dir, 'vocab.txt'), `${VOCAB.join('\n')}\n`);
  return { dir, dtype, tensors };
}

/** float64 logits of one pair from the model's weights as stored (rounded to its dtype). */
const reference = (m: TestModel, ids: number[], typeIds: number[]): number[] =>
  referenceLogits(SPEC, m.tensors, m.dtype, ids, typeIds);

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
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', ids, [B, S]),
    attention_mask: new ort.Tensor('int64', mask, [B, S]),
    token_type_ids: new ort.Tensor('int64', types, [B, S]),
  };
  // XLM-R's and ModernBERT's graphs take no type ids (as their torch exports).
  const out = await session.run(
    Object.fromEntries(session.inputNames.map((n) => [n, feeds[n] as ort.Tensor])),
  );
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
    for (let i = 0; i < len - 3; i++) ids.push(5 + next(SPEC.vocabSize - 5));
    ids.splice(q + 1, 0, 3);
    ids.push(3);
    return { ids, typeIds: ids.map((_, t) => (t <= q + 1 ? 0 : 1)) };
  });
}

describe('exportOnnx', () => {
  for (const dtype of ['F32', 'F16', 'BF16'] as const) {
    it(`matches a float64 BERT through onnxruntime-node (${dtype} weights, padded batch)`, async () => {
      const model = writeModelDir(dtype, 7);
      const { dir } = model;
      const out = await exportOnnx(dir, join(work, `onnx-${dtype}`));
      const session = await ort.InferenceSession.create(join(out, 'onnx', 'model.onnx'));
      expect([...session.inputNames].sort()).toEqual(['attention_mask', 'input_ids', 'token_type_ids']);
      const pairs = randomPairs(12, 3, SPEC.maxPositions);
      const got = await runOrt(session, pairs);
      const want = pairs.map((p) => reference(model, p.ids, p.typeIds));
      const col = want.map((r) => r[0] as number);
      const mean = col.reduce((a, b) => a + b, 0) / col.length;
      expect(Math.sqrt(col.reduce((a, b) => a + (b - mean) ** 2, 0) / col.length)).toBeGreaterThan(0.3);
      expect(maxAbsErr(got, want)).toBeLessThanOrEqual(1e-4);
      await session.release();
    });
  }
});

/** Round half to even, as numpy (weights) and ONNX's DynamicQuantizeLinear (activations) round. */
function rint(x: number): number {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * onnxruntime quantize_dynamic's arithmetic as transformers.js's q8 uses it, written from the ONNX
 * operator definitions: weights of the encoder's MatMuls and the embedding tables per tensor,
 * symmetric int8 (scale max|w| / qmax); a MatMul's input per tensor (one pair here), asymmetric uint8
 * (DynamicQuantizeLinear); pooler and classifier (Gemm) float.
 */
const ortQ8 = (qmax: number): ReferenceQuantization => ({
  weight(name, data) {
    const table = name.startsWith('embeddings.') && !name.includes('LayerNorm');
    const matmul = /^encoder\..*dense\.weight$|^encoder\..*self\.(query|key|value)\.weight$/.test(name);
    if (!table && !matmul) return data;
    const scale = Math.fround(data.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / qmax);
    return data.map((v) => Math.max(-qmax, Math.min(qmax, rint(v / scale))) * scale);
  },
  input(layer, rows) {
    if (!layer.startsWith('encoder.')) return rows;
    let lo = 0;
    let hi = 0;
    for (const r of rows)
      for (const v of r) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
    const scale = (hi - lo) / 255;
    const zero = Math.max(0, Math.min(255, rint(-lo / scale)));
    return rows.map((r) => r.map((v) => (Math.max(0, Math.min(255, rint(v / scale) + zero)) - zero) * scale));
  },
});

describe('exportOnnx q8 (onnx/model_quantized.onnx)', () => {
  const model = writeModelDir('F32', 11);
  const pairs = randomPairs(10, 5, SPEC.maxPositions);
  const float = pairs.map((p) => reference(model, p.ids, p.typeIds));
  async function scores(reduceRange: boolean) {
    const out = await exportOnnx(model.dir, join(work, `onnx-q8-${reduceRange}`), {
      quantized: true,
      reduceRange,
    });
    const file = join(out, 'onnx', 'model_quantized.onnx');
    const bytes = readFileSync(file);
    for (const op of ['DynamicQuantizeLinear', 'MatMulInteger', 'DequantizeLinear'])
      expect(bytes.includes(op)).toBe(true);
    expect(bytes.length).toBeLessThan(readFileSync(join(out, 'onnx', 'model.onnx')).length / 2);
    const session = await ort.InferenceSession.create(file);
    const got: number[][] = [];
    for (const p of pairs) got.push(...(await runOrt(session, [p]))); // per-tensor scales: one pair a run
    await session.release();
    return got;
  }

  it('computes dynamic int8 quantisation exactly as ONNX defines it (7-bit weights: no int16 saturation)', async () => {
    const got = await scores(true);
    const q8 = pairs.map((p) => referenceLogits(SPEC, model.tensors, 'F32', p.ids, p.typeIds, ortQ8(64)));
    const toFloat = maxAbsErr(got, float);
    expect(toFloat).toBeGreaterThan(1e-3); // quantisation is really there
    expect(maxAbsErr(got, q8)).toBeLessThan(toFloat / 5); // and it is this quantisation
  });

  it("transformers.js's q8 weights use the full int8 range: |w - q * scale| <= scale / 2, max |q| = 127", () => {
    const w = model.tensors['bert.encoder.layer.0.intermediate.dense.weight']?.data as Float32Array;
    const { q, scale } = quantizeQInt8(w);
    expect(scale).toBeCloseTo(w.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 127, 7);
    expect(Math.max(...Array.from(q, Math.abs))).toBe(127);
    for (let i = 0; i < w.length; i++)
      expect(Math.abs((w[i] as number) - (q[i] as number) * scale)).toBeLessThanOrEqual(scale / 2 + 1e-7);
  });
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

describe('exportOnnx through transformers.js', () => {
  it('tokenizes pairs as BERT does and pads batches without changing the logits', async () => {
    const { AutoModelForSequenceClassification, AutoTokenizer, env } = await import(
      '@huggingface/transformers'
    );
    const tiny = writeModelDir('F32', 11);
    const out = await exportOnnx(tiny.dir, join(work, 'tjs', 'tiny'));
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
    const want = EXPECTED.map((e, b) => reference(tiny, e, EXPECTED_TYPES[b] as number[]));
    expect(maxAbsErr(got, want)).toBeLessThanOrEqual(1e-4);
    await model.dispose();
  });
});

describe('runTransformersJs', () => {
  it('scores pairs in input order and measures the padding of each batch', async () => {
    const tiny = writeModelDir('F32', 13);
    const out = await exportOnnx(tiny.dir, join(work, 'tjs-run', 'tiny'));
    const pairs = QUERIES.map((q, i) => [q, DOCS[i]] as [string, string]);
    const res = await runTransformersJs(out, pairs, 2, { keepLogits: true, warmupBatches: 1 });
    const want = EXPECTED.map((e, b) => reference(tiny, e, EXPECTED_TYPES[b] as number[]));
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
    const out = await exportOnnx(src, join(work, 'tok', 'synth-tiny'));
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

describe('exportOnnx errors', () => {
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
    await expect(exportOnnx(dir, join(work, 'bad1'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('classifier.bias'),
    });
  });
  it('rejects a header longer than the file and a truncated data area', async () => {
    const { dir } = writeModelDir('F32', 5);
    const file = readFileSync(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'model.safetensors'), file.subarray(0, file.length - 4));
    await expect(exportOnnx(dir, join(work, 'bad2'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('data_offsets'),
    });
    const big = Buffer.from(file);
    big.writeBigUInt64LE(BigInt(file.length));
    writeFileSync(join(dir, 'model.safetensors'), big);
    await expect(exportOnnx(dir, join(work, 'bad3'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('header length'),
    });
  });
  it('rejects a config that does not match the weights, and a folder without a vocabulary', async () => {
    const { dir } = writeModelDir('F32', 5);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, intermediate_size: 65 }));
    await expect(exportOnnx(dir, join(work, 'bad4'))).rejects.toMatchObject({
      code: 'E_BAD_WEIGHTS',
      message: expect.stringContaining('intermediate.dense.weight'),
    });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, hidden_size: 'wide' }));
    await expect(exportOnnx(dir, join(work, 'bad5'))).rejects.toMatchObject({ code: 'E_BAD_CONFIG' });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    rmSync(join(dir, 'vocab.txt'));
    await expect(exportOnnx(dir, join(work, 'bad6'))).rejects.toMatchObject({ code: 'E_BAD_TOKENIZER' });
  });
});

// Golden fixtures from Python transformers (scripts/golden/make_models.py), when they have landed.
const GOLDEN = FIXTURE_MODELS_DIR;
const goldenModels = fixtureModels();

describe.skipIf(goldenModels.length === 0)('ONNX graph against the golden fixtures', () => {
  for (const name of goldenModels) {
    for (const dtype of FIXTURE_DTYPES) {
      const weights = join(GOLDEN, name, dtype, 'model.safetensors');
      it.skipIf(!existsSync(weights))(`${name}: ${dtype} weights, padded batches of 8`, async () => {
        const golden = fixtureExpected(join(GOLDEN, name));
        const onnxPath = join(work, `golden-${name}-${dtype}.onnx`);
        await writeOnnx(join(GOLDEN, name, 'config.json'), weights, onnxPath);
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

// The other families: transformers' float64 logits of the family fixtures (scripts/golden/make_family_models.py).
const FAMILY_MODELS = join(import.meta.dirname, 'fixtures', 'families', 'models');
const FAMILY_INPUTS: Record<string, string[]> = {
  xlmr: ['attention_mask', 'input_ids'],
  electra: ['attention_mask', 'input_ids', 'token_type_ids'],
  modernbert: ['attention_mask', 'input_ids'],
};

describe('ONNX graphs of XLM-R, ELECTRA and ModernBERT against the family fixtures (transformers, float64)', () => {
  for (const name of readdirSync(FAMILY_MODELS).sort()) {
    const dir = join(FAMILY_MODELS, name);
    const golden = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as {
      family: string;
      pairs: Array<{ ids: number[]; typeIds: number[] }>;
      logits: Record<string, number[][]>;
    };
    // Long fixtures: pairs up to 2,048 tokens one at a time (a padded 8,192 would hold 8,192^2 scores a head).
    const long = name.includes('-long');
    const keep = golden.pairs.flatMap((p, i) => (!long || p.ids.length <= 2048 ? [i] : []));
    for (const dtype of long ? (['float32'] as const) : FIXTURE_DTYPES) {
      it(`${name}: ${dtype} weights, ${long ? 'one pair at a time, up to 2,048 tokens' : 'padded batches of 8'}`, async () => {
        const onnxPath = join(work, `family-${name}-${dtype}.onnx`);
        await writeOnnx(join(dir, 'config.json'), join(dir, dtype, 'model.safetensors'), onnxPath);
        const session = await ort.InferenceSession.create(onnxPath);
        expect([...session.inputNames].sort()).toEqual(FAMILY_INPUTS[golden.family]);
        const step = long ? 1 : 8;
        const got: number[][] = [];
        for (let i = 0; i < keep.length; i += step) {
          got.push(
            ...(await runOrt(
              session,
              keep.slice(i, i + step).map((k) => golden.pairs[k] as FixturePair),
            )),
          );
        }
        const want = keep.map((k) => (golden.logits[dtype] as number[][])[k] as number[]);
        expect(got.length).toBe(want.length);
        expect(keep.length).toBeGreaterThanOrEqual(long ? 8 : 48);
        expect(maxAbsErr(got, want)).toBeLessThanOrEqual(1e-4);
        await session.release();
      });
    }
  }
});

describe('transformers.js on the exported families scores as the cpu engine does', () => {
  const addon = existsSync(join(import.meta.dirname, '..', 'build', 'Release')) ? native() : undefined;
  for (const family of ['xlm-roberta', 'electra', 'modernbert'] as const) {
    it.skipIf(!addon)(
      `${family}: a small synthetic model, MS MARCO-like pairs in padded batches`,
      async () => {
        const files = await synthesizeModel({
          shape: {
            family,
            hiddenSize: 32,
            numLayers: 3,
            numHeads: 4,
            intermediateSize: 48,
            embeddingSize: family === 'electra' ? 24 : undefined,
            localWindow: 16,
            globalEvery: 2,
          },
          seed: 4,
          outDir: join(work, `synth-${family}`),
        });
        const out = await exportOnnx(files.dir, join(work, 'tjs-fam', family));
        const pairs = msMarcoPairs(24, 9);
        const res = await runTransformersJs(out, pairs, 8, { keepLogits: true, warmupBatches: 0 });
        const tok = await Tokenizer.fromFiles(files);
        const spec = await loadModelSpec(files);
        const engine = await (addon as NativeAddon).loadEngine({
          backend: 'cpu',
          device: 'cpu',
          weights: files.weights,
          spec,
        });
        try {
          const b = tok.encodePairs(pairs, { maxLength: spec.maxPositions });
          // transformers.js tokenized the same pairs to the same ids (its padding aside).
          expect(res.realTokens).toBe(b.tokens.length);
          const { logits } = await engine.forward(b.tokens, b.typeIds, b.offsets);
          const want = Array.from(logits, (v) => [v]);
          const got = Array.from(res.logits as Float32Array, (v) => [v]);
          const spread =
            Math.max(...want.map((r) => r[0] as number)) - Math.min(...want.map((r) => r[0] as number));
          expect(spread).toBeGreaterThan(0.1);
          expect(maxAbsErr(got, want)).toBeLessThanOrEqual(1e-4);
        } finally {
          await engine.dispose();
        }
      },
    );
  }
});
