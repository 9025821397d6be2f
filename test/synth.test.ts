import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlxRerankError } from '../src/errors';
import { loadModelSpec } from '../src/model';
import { type NativeAddon, native } from '../src/native';
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  safetensorsBytes,
  writeSafetensors,
} from '../src/safetensors';
import { synthCli, synthesizeModel } from '../src/synth';
import type { ModelSpec } from '../src/types';
import { seededRandom } from '../src/workload';
import { referenceLogits as reference } from './helpers/cpu-model';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mlx-rerank-synth-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Tensor {
  dtype: string;
  shape: number[];
  values: Float64Array;
}

/** An independent safetensors reader: header checks plus decoding of F32/F16/BF16. */
async function readSafetensors(
  path: string,
  decode: (name: string) => boolean = () => true,
): Promise<Map<string, Tensor>> {
  const buf = await readFile(path);
  const n = Number(buf.readBigUInt64LE(0));
  expect((8 + n) % 8).toBe(0); // data area 8-byte aligned, as the reference writer pads
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const base = 8 + n;
  const out = new Map<string, Tensor>();
  let expectedOffset = 0;
  for (const [name, meta] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = meta as {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    };
    const count = shape.reduce((a, b) => a * b, 1);
    const width = dtype === 'F32' ? 4 : 2;
    expect(data_offsets[0]).toBe(expectedOffset);
    expect(data_offsets[1] - data_offsets[0]).toBe(count * width);
    expectedOffset = data_offsets[1];
    const values = new Float64Array(decode(name) ? count : 0);
    for (let i = 0; i < values.length; i++) {
      const at = base + data_offsets[0] + i * width;
      if (dtype === 'F32') values[i] = buf.readFloatLE(at);
      else if (dtype === 'F16') values[i] = f16ToF32(buf.readUInt16LE(at));
      else values[i] = bf16ToF32(buf.readUInt16LE(at));
    }
    out.set(name, { dtype, shape, values });
  }
  expect(base + expectedOffset).toBe(buf.byteLength);
  return out;
}

/** Hugging Face BertForSequenceClassification parameter names and shapes for a spec. */
function hfBertTensors(s: ModelSpec): Record<string, number[]> {
  const H = s.hiddenSize;
  const t: Record<string, number[]> = {
    'bert.embeddings.word_embeddings.weight': [s.vocabSize, H],
    'bert.embeddings.position_embeddings.weight': [s.maxPositions, H],
    'bert.embeddings.token_type_embeddings.weight': [s.typeVocabSize, H],
    'bert.embeddings.LayerNorm.weight': [H],
    'bert.embeddings.LayerNorm.bias': [H],
    'bert.pooler.dense.weight': [H, H],
    'bert.pooler.dense.bias': [H],
    'classifier.weight': [s.numLabels, H],
    'classifier.bias': [s.numLabels],
  };
  for (let l = 0; l < s.numLayers; l++) {
    const p = `bert.encoder.layer.${l}`;
    for (const m of [
      'attention.self.query',
      'attention.self.key',
      'attention.self.value',
      'attention.output.dense',
    ]) {
      t[`${p}.${m}.weight`] = [H, H];
      t[`${p}.${m}.bias`] = [H];
    }
    for (const ln of ['attention.output.LayerNorm', 'output.LayerNorm']) {
      t[`${p}.${ln}.weight`] = [H];
      t[`${p}.${ln}.bias`] = [H];
    }
    t[`${p}.intermediate.dense.weight`] = [s.intermediateSize, H];
    t[`${p}.intermediate.dense.bias`] = [s.intermediateSize];
    t[`${p}.output.dense.weight`] = [H, s.intermediateSize];
    t[`${p}.output.dense.bias`] = [H];
  }
  return t;
}

/** The shared float64 reference forward (test/helpers/cpu-model.ts) on the weights as read back above. */
function referenceLogits(w: Map<string, Tensor>, s: ModelSpec, ids: number[], types: number[]): number[] {
  const tensors = Object.fromEntries(
    [...w].map(([name, t]) => [name, { shape: t.shape, data: Float32Array.from(t.values) }]),
  );
  return reference(s, tensors, 'F32', ids, types);
}

/** Seeded random pairs: [CLS] q [SEP] d [SEP] with word ids from the ordinary vocabulary range. */
function randomPairs(count: number, seed: number): { ids: number[]; types: number[] }[] {
  const r = seededRandom(seed);
  const int = (n: number) => Math.floor(r() * n);
  return Array.from({ length: count }, () => {
    const n = 12 + int(40);
    const q = 4 + int(6);
    const ids: number[] = [];
    const types: number[] = [];
    for (let i = 0; i < n; i++) {
      ids.push(i === 0 ? 101 : i === q - 1 || i === n - 1 ? 102 : 1000 + int(29000));
      types.push(i < q ? 0 : 1);
    }
    return { ids, types };
  });
}

const std = (v: number[]) => {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length);
};
const sha = async (p: string) =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

function tryAddon(): NativeAddon | undefined {
  try {
    return native();
  } catch {
    return undefined;
  }
}

describe('synthesizeModel', () => {
  it('the seeded generator is mulberry32, checked against a BigInt implementation of its 32-bit arithmetic', () => {
    const M = 2n ** 32n;
    const imul = (a: bigint, b: bigint) => (a * b) % M;
    const reference = (seed: number) => {
      let a = BigInt(seed >>> 0);
      return () => {
        a = (a + 0x6d2b79f5n) % M;
        let t = a;
        t = imul(t ^ (t >> 15n), t | 1n);
        t = (t ^ ((t + imul(t ^ (t >> 7n), t | 61n)) % M)) % M;
        return Number(t ^ (t >> 14n)) / 2 ** 32;
      };
    };
    for (const seed of [0, 1, 42, 2 ** 31, 2 ** 32 - 1]) {
      const ours = seededRandom(seed);
      const want = reference(seed);
      const got = Array.from({ length: 1000 }, () => ours());
      expect(got).toEqual(Array.from({ length: 1000 }, () => want()));
      expect(Math.min(...got)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...got)).toBeLessThan(1);
    }
  });

  it('writes the MiniLM-L6 shape in the Hugging Face BERT layout, marked synthetic', async () => {
    const files = await synthesizeModel({
      shape: 'minilm-l6',
      dtype: 'float16',
      seed: 1,
      outDir: join(work, 'minilm'),
    });
    const spec = await loadModelSpec(files);
    expect(spec).toMatchObject({
      hiddenSize: 384,
      numLayers: 6,
      numHeads: 12,
      intermediateSize: 1536,
      vocabSize: 30522,
      maxPositions: 512,
      typeVocabSize: 2,
      numLabels: 1,
      hiddenAct: 'gelu',
      layerNormEps: 1e-12,
      activation: 'sigmoid',
      synthetic: true,
    });
    const tensors = await readSafetensors(files.weights[0] as string, (name) =>
      /^bert\.encoder\.layer\.(0\.attention\.self\.query\.weight|3\.output\.LayerNorm\.(weight|bias))$/.test(
        name,
      ),
    );
    const expected = hfBertTensors(spec);
    expect([...tensors.keys()].sort()).toEqual(Object.keys(expected).sort());
    for (const [name, t] of tensors) {
      expect(t.shape, name).toEqual(expected[name]);
      expect(t.dtype).toBe('F16');
    }
    const gamma = tensors.get('bert.encoder.layer.3.output.LayerNorm.weight') as Tensor;
    const beta = tensors.get('bert.encoder.layer.3.output.LayerNorm.bias') as Tensor;
    expect(gamma.values.every((v) => v === 1) && beta.values.every((v) => v === 0)).toBe(true);
    const q = Array.from((tensors.get('bert.encoder.layer.0.attention.self.query.weight') as Tensor).values);
    expect(Math.abs(q.reduce((a, b) => a + b, 0) / q.length)).toBeLessThan(0.002);
    expect(std(q)).toBeGreaterThan(0.09);
    expect(std(q)).toBeLessThan(0.11);
  });

  it('ships the real uncased BERT vocabulary and a matching tokenizer.json', async () => {
    const files = await synthesizeModel({ shape: 'tiny', seed: 1, outDir: join(work, 'tok') });
    const vocab = (await readFile(files.vocabTxt as string, 'utf8')).split('\n');
    expect(vocab.pop()).toBe('');
    expect(vocab.length).toBe(30522);
    // Well-known ids of bert-base-uncased's vocab.txt.
    expect([vocab[0], vocab[1], vocab[100], vocab[101], vocab[102], vocab[103], vocab[999]]).toEqual([
      '[PAD]',
      '[unused0]',
      '[UNK]',
      '[CLS]',
      '[SEP]',
      '[MASK]',
      '!',
    ]);
    expect([vocab[1996], vocab[2015], vocab[7592], vocab[2088]]).toEqual(['the', '##s', 'hello', 'world']);
    expect(vocab.filter((t) => t.startsWith('##')).length).toBe(5828);
    const cfg = JSON.parse(await readFile(files.tokenizerConfig as string, 'utf8'));
    expect(cfg).toMatchObject({ do_lower_case: true, model_max_length: 512 });

    // Hugging Face's own (Rust) tokenizers library reads the file and tokenizes a pair as BERT does.
    const tok = Tokenizer.fromFile(files.tokenizerJson as string);
    const enc = await tok.encode('Hello World', 'the UNAFFABLE cats');
    // Greedy longest-match-first WordPiece over the vocab, the textbook algorithm.
    const index = new Map(vocab.map((t, i) => [t, i]));
    const wordpiece = (word: string) => {
      const ids: number[] = [];
      for (let start = 0; start < word.length; ) {
        let end = word.length;
        while (end > start && !index.has((start ? '##' : '') + word.slice(start, end))) end--;
        ids.push(index.get((start ? '##' : '') + word.slice(start, end)) as number);
        start = end;
      }
      return ids;
    };
    const words = (text: string) => text.toLowerCase().split(' ').flatMap(wordpiece);
    expect(wordpiece('unaffable').length).toBeGreaterThan(1);
    expect(enc.getIds()).toEqual([101, ...words('Hello World'), 102, ...words('the UNAFFABLE cats'), 102]);
    expect(enc.getTypeIds()).toEqual([0, 0, 0, 0, ...words('the UNAFFABLE cats').map(() => 1), 1]);
  });

  it('is deterministic: same shape and seed give the same bytes; dtypes round the same float32 values', async () => {
    const a = await synthesizeModel({ shape: 'tiny', seed: 7, outDir: join(work, 'a') });
    const b = await synthesizeModel({ shape: 'tiny', seed: 7, outDir: join(work, 'b') });
    const c = await synthesizeModel({ shape: 'tiny', seed: 8, outDir: join(work, 'c') });
    expect(await sha(a.weights[0] as string)).toBe(await sha(b.weights[0] as string));
    expect(await sha(a.weights[0] as string)).not.toBe(await sha(c.weights[0] as string));
    const f32 = await readSafetensors(a.weights[0] as string);
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const half = await synthesizeModel({ shape: 'tiny', seed: 7, dtype, outDir: join(work, dtype) });
      const h = await readSafetensors(half.weights[0] as string);
      const rel = dtype === 'float16' ? 2 ** -11 : 2 ** -8;
      for (const [name, t] of f32) {
        const hv = (h.get(name) as Tensor).values;
        for (let i = 0; i < t.values.length; i += 97) {
          const v = t.values[i] as number;
          const tol = dtype === 'float16' ? Math.max(rel * Math.abs(v), 2 ** -25) : rel * Math.abs(v);
          expect(Math.abs((hv[i] as number) - v), name).toBeLessThanOrEqual(tol);
        }
      }
    }
  });

  it('makes logits that vary across pairs (std >= 0.5), by a float64 reference forward', async () => {
    const files = await synthesizeModel({ shape: 'tiny', seed: 1, outDir: join(work, 'vary') });
    const spec = await loadModelSpec(files);
    const w = await readSafetensors(files.weights[0] as string);
    const logits = randomPairs(24, 5).map((p) => referenceLogits(w, spec, p.ids, p.types)[0] as number);
    expect(std(logits)).toBeGreaterThanOrEqual(0.5);
  });

  const addon = existsSync(join(__dirname, '..', 'build', 'Release')) ? tryAddon() : undefined;
  it.skipIf(!addon)(
    'the cpu engine agrees with the reference and sees varied logits (tiny and MiniLM-L6)',
    async () => {
      for (const shape of ['tiny', 'minilm-l6'] as const) {
        const files = await synthesizeModel({
          shape,
          seed: 1,
          dtype: 'float16',
          outDir: join(work, `engine-${shape}`),
        });
        const spec = await loadModelSpec(files);
        const engine = await (addon as NativeAddon).loadEngine({
          backend: 'cpu',
          device: 'cpu',
          weights: files.weights,
          spec,
        });
        try {
          const pairs = randomPairs(32, 9);
          const offsets = [0];
          for (const p of pairs) offsets.push((offsets.at(-1) as number) + p.ids.length);
          const out = await engine.forward(
            Int32Array.from(pairs.flatMap((p) => p.ids)),
            Int32Array.from(pairs.flatMap((p) => p.types)),
            Int32Array.from(offsets),
          );
          const logits = Array.from(out.logits);
          expect(std(logits), shape).toBeGreaterThanOrEqual(0.5);
          if (shape === 'tiny') {
            const w = await readSafetensors(files.weights[0] as string);
            pairs.slice(0, 4).forEach((p, i) => {
              expect(logits[i]).toBeCloseTo(referenceLogits(w, spec, p.ids, p.types)[0] as number, 3);
            });
          }
        } finally {
          await engine.dispose();
        }
      }
    },
  );
});

describe('16-bit rounding', () => {
  it('rounds to nearest even with subnormals, overflow and NaN', () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // halfway to the next binade rounds up to infinity
    expect(f32ToF16(2 ** -24)).toBe(0x0001);
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // tie, rounds to even (zero)
    expect(f32ToF16(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 ulps: even
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie: even
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(f32ToF16(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(Number.NaN) & 0x3ff).not.toBe(0);
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie: even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(f32ToBf16(-0)).toBe(0x8000);
    expect(f32ToBf16(Number.NaN) & 0x7f80).toBe(0x7f80);
    for (const v of [0.1, -Math.PI, 1e-6, 1234.5]) {
      // half an ulp: 2^-11 relative for normals, 2^-25 absolute below 2^-14 (subnormals)
      expect(Math.abs(f16ToF32(f32ToF16(v)) - v)).toBeLessThanOrEqual(
        Math.max(Math.abs(v) * 2 ** -11, 2 ** -25),
      );
    }
  });
});

describe('writeSafetensors and the synth command', () => {
  it('refuses inconsistent tensors with E_INPUT', async () => {
    const bad = { x: { dtype: 'F32' as const, shape: [2, 3], data: new Float32Array(5) } };
    const err = await writeSafetensors(join(work, 'bad.safetensors'), bad).catch((e) => e);
    expect(err).toBeInstanceOf(MlxRerankError);
    expect(err.code).toBe('E_INPUT');
    expect(err.message).toMatch(/x: data holds 5 values, its shape needs 6/);
    expect(existsSync(join(work, 'bad.safetensors'))).toBe(false);
  });

  it('mlx-rerank synth writes a model and rejects bad arguments', async () => {
    const out: string[] = [];
    const sink = { write: (s: string) => out.push(s) } as unknown as NodeJS.WritableStream;
    const dir = join(work, 'cli');
    expect(
      await synthCli(['--shape', 'tiny', '--out', dir, '--dtype', 'bfloat16', '--seed', '5'], sink),
    ).toBe(0);
    expect(out.join('')).toContain(dir);
    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      mlx_rerank_synthetic: true,
      mlx_rerank_seed: 5,
      torch_dtype: 'bfloat16',
      hidden_size: 32,
    });
    expect(await synthCli(['--help'], sink)).toBe(0);
    for (const argv of [
      [],
      ['--out'],
      ['--out', dir, '--shape', 'huge'],
      ['--out', dir, '--dtype', 'int8'],
      ['--out', dir, '--seed', '-1'],
      ['--bogus'],
    ]) {
      const err = await synthCli(argv, sink).catch((e) => e);
      expect(err, argv.join(' ')).toBeInstanceOf(MlxRerankError);
      expect(err.code).toBe('E_INPUT');
    }
    // The library call refuses a shape name it does not know, as the command does.
    await expect(
      synthesizeModel({ shape: 'huge' as 'tiny', outDir: join(work, 'huge') }),
    ).rejects.toMatchObject({ code: 'E_INPUT', message: expect.stringContaining('"minilm-l6", "tiny"') });
  });
});

describe("the safetensors header reader (the bench tools' one)", () => {
  it('reads back what the writer wrote, from memory and from disk, without __metadata__', async () => {
    const tensors = {
      a: { dtype: 'F32' as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) },
      b: { dtype: 'BF16' as const, shape: [4], data: Float32Array.from([1, 2, 3, 4]) },
    };
    const bytes = safetensorsBytes(tensors);
    const path = join(work, 'header.safetensors');
    await writeSafetensors(path, tensors);
    for (const h of [parseSafetensorsHeader(bytes, 'memory'), readSafetensorsHeader(path)]) {
      expect([...h.entries.keys()].sort()).toEqual(['a', 'b']);
      expect(h.entries.get('a')).toMatchObject({ dtype: 'F32', shape: [2, 3] });
      expect(h.entries.get('b')).toMatchObject({ dtype: 'BF16', shape: [4] });
      // The offsets are relative to dataStart: the writer's bytes are there.
      const [begin, end] = h.entries.get('a')?.data_offsets ?? [0, 0];
      const a = new Float32Array(
        bytes.buffer.slice(bytes.byteOffset + h.dataStart + begin, bytes.byteOffset + h.dataStart + end),
      );
      expect([...a]).toEqual([1, 2, 3, 4, 5, 6]);
    }
  });

  it('refuses a header longer than the file, one that is not a JSON object, and bad UTF-8 (E_BAD_WEIGHTS)', async () => {
    const withHeader = (json: Uint8Array, declared = json.length) => {
      const b = Buffer.alloc(8 + json.length);
      b.writeBigUInt64LE(BigInt(declared), 0);
      b.set(json, 8);
      return b;
    };
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.alloc(5), /has no header/],
      [withHeader(Buffer.from('{}'), 1000), /header length 1000 exceeds the file/],
      [withHeader(Buffer.from('[1, 2]')), /not a JSON object/],
      [withHeader(Buffer.from([0x7b, 0xff, 0x7d])), /not valid UTF-8 JSON/],
    ];
    for (const [file, msg] of cases) {
      expect(() => parseSafetensorsHeader(file, 'f')).toThrow(msg);
      const path = join(work, 'bad-header.safetensors');
      await writeFile(path, file);
      const err = (() => {
        try {
          readSafetensorsHeader(path);
        } catch (e) {
          return e;
        }
      })();
      expect(err).toMatchObject({ code: 'E_BAD_WEIGHTS' });
    }
  });
});
