/**
 * safetensors validation through the real addon: every kind of bad file gives a typed error naming the
 * problem (never a crash), and a seeded randomised header mutation run finds no crash either.
 * MLX_RERANK_FUZZ_CASES raises the mutation count (e.g. 1e6 under AddressSanitizer, see
 * scripts/test-native.mjs).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type NativeEngine, native } from '../src/native';
import { bf16ToF32, f16ToF32 } from '../src/safetensors';
import {
  type CpuSpec,
  randomBert,
  referenceLogits,
  rng,
  safetensorsBytes,
  type Tensor,
} from './helpers/cpu-model';

const spec: CpuSpec = {
  vocabSize: 16,
  hiddenSize: 8,
  numLayers: 1,
  numHeads: 2,
  intermediateSize: 16,
  maxPositions: 16,
  typeVocabSize: 2,
  numLabels: 1,
  layerNormEps: 1e-12,
  hiddenAct: 'gelu',
};
const tensors = randomBert(spec, 9);
const dir = mkdtempSync(join(tmpdir(), 'mlx-rerank-weights-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function write(bytes: Buffer): string {
  const f = join(dir, `w${fileCount++}.safetensors`);
  writeFileSync(f, bytes);
  return f;
}

/** A valid file split into its parsed header and data area, to lie about. */
function parts(t: Record<string, Tensor> = tensors) {
  const bytes = safetensorsBytes(t, 'F32');
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  return { header, data: bytes.subarray(8 + n) };
}

function assemble(header: Buffer | string | object, data: Buffer, lengthOverride?: bigint): Buffer {
  const h = Buffer.isBuffer(header)
    ? header
    : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

async function loadFiles(files: string[], s: CpuSpec = spec): Promise<NativeEngine> {
  return native().loadEngine({ backend: 'cpu', device: 'auto', weights: files, spec: s });
}

async function expectRejects(files: string[], code: string, message: RegExp, s: CpuSpec = spec) {
  await expect(loadFiles(files, s)).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
}

const PAIR = [
  Int32Array.from([2, 5, 7, 3, 9, 3]),
  Int32Array.from([0, 0, 0, 0, 1, 1]),
  Int32Array.from([0, 6]),
] as const;

async function logitsOf(files: string[]): Promise<number[]> {
  const e = await loadFiles(files);
  try {
    return Array.from((await e.forward(...PAIR)).logits);
  } finally {
    await e.dispose();
  }
}

const L0 = 'bert.encoder.layer.0.';

/**
 * The tensors a safetensors file describes, decoded here independently of the addon: canonical names
 * (no "bert." prefix, LayerNorm gamma/beta as weight/bias) -> float32 values. Tensors of dtypes the
 * engine never reads are left out.
 */
function describedTensors(bytes: Buffer): Record<string, Tensor> {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const data = bytes.subarray(8 + n);
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const raw = data.subarray(t.data_offsets[0], t.data_offsets[1]);
    const read: ((i: number) => number) | undefined = {
      F32: (i: number) => raw.readFloatLE(4 * i),
      F16: (i: number) => f16ToF32(raw.readUInt16LE(2 * i)),
      BF16: (i: number) => bf16ToF32(raw.readUInt16LE(2 * i)),
    }[t.dtype];
    if (!read) continue;
    const values = new Float32Array(raw.length / (t.dtype === 'F32' ? 4 : 2));
    for (let i = 0; i < values.length; i++) values[i] = read(i);
    const canon = name
      .replace(/^bert\./, '')
      .replace(/LayerNorm\.gamma$/, 'LayerNorm.weight')
      .replace(/LayerNorm\.beta$/, 'LayerNorm.bias');
    out[canon] = { shape: t.shape, data: values };
  }
  return out;
}

/** Whether `described` holds every tensor of `original` with the same shape and the same bits. */
function sameTensors(described: Record<string, Tensor>, original: Record<string, Tensor>): boolean {
  return Object.entries(original).every(([name, t]) => {
    const d = described[name];
    return (
      d !== undefined &&
      d.shape.join() === t.shape.join() &&
      Buffer.from(d.data.buffer).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))
    );
  });
}

const ORIGINAL = describedTensors(safetensorsBytes(tensors, 'F32'));
const referenceOf = (t: Record<string, Tensor>) =>
  referenceLogits(spec, t, 'F32', Array.from(PAIR[0]), Array.from(PAIR[1]));

describe('valid files', () => {
  it('loads names with and without the bert. prefix, sharded or not, with the same logits', async () => {
    const base = await logitsOf([write(safetensorsBytes(tensors, 'F32'))]);
    expect(base).toHaveLength(1);
    expect(Number.isFinite(base[0])).toBe(true);
    const unprefixed = Object.fromEntries(
      Object.entries(tensors).map(([k, v]) => [k.replace(/^bert\./, ''), v]),
    );
    expect(await logitsOf([write(safetensorsBytes(unprefixed, 'F32'))])).toEqual(base);
    const names = Object.keys(tensors);
    const half = Math.floor(names.length / 2);
    const shard = (ns: string[]) =>
      write(safetensorsBytes(Object.fromEntries(ns.map((n) => [n, tensors[n] as Tensor])), 'F32'));
    expect(await logitsOf([shard(names.slice(0, half)), shard(names.slice(half))])).toEqual(base);
  });

  it('tolerates extra tensors such as an int64 position_ids, but still range-checks them', async () => {
    const { header, data } = parts();
    const base = await logitsOf([write(safetensorsBytes(tensors, 'F32'))]);
    const extra = Buffer.alloc(16 * 8);
    const withIds = {
      ...header,
      'bert.embeddings.position_ids': {
        dtype: 'I64',
        shape: [1, 16],
        data_offsets: [data.length, data.length + 128],
      },
    };
    expect(await logitsOf([write(assemble(withIds, Buffer.concat([data, extra])))])).toEqual(base);
    const lying = {
      ...header,
      'bert.embeddings.position_ids': {
        dtype: 'I64',
        shape: [1, 16],
        data_offsets: [data.length, data.length + 128],
      },
    };
    await expectRejects([write(assemble(lying, data))], 'E_BAD_WEIGHTS', /position_ids.*past the end/);
  });

  it('benign header variants score bit-identically to the original', async () => {
    const base = await logitsOf([write(safetensorsBytes(tensors, 'F32'))]);
    const { header, data } = parts();
    const entries = Object.entries(header);
    const { __metadata__: _, ...noMetadata } = header;
    // The data area written in reverse order with unused bytes between tensors.
    const gap = 24;
    const moved: Record<string, unknown> = {};
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const [name, t] of [...entries].reverse()) {
      if (name === '__metadata__') continue;
      const bytes = data.subarray(t.data_offsets[0], t.data_offsets[1]);
      moved[name] = { ...t, data_offsets: [offset + gap, offset + gap + bytes.length] };
      chunks.push(Buffer.alloc(gap, 0xff), bytes);
      offset += gap + bytes.length;
    }
    const extraF32 = { dtype: 'F32', shape: [3], data_offsets: [data.length, data.length + 12] };
    const variants: Record<string, Buffer> = {
      'pretty-printed JSON': assemble(JSON.stringify(header, null, '\t').replace(/,/g, ',\r\n '), data),
      'keys in reverse order': assemble(Object.fromEntries([...entries].reverse()), data),
      'no __metadata__': assemble(noMetadata, data),
      'other __metadata__': assemble({ ...header, __metadata__: { format: 'np', note: 'é ✓' } }, data),
      'trailing spaces': assemble(`${JSON.stringify(header)}${' '.repeat(1001)}`, data),
      'unused extra tensors': assemble(
        {
          ...header,
          'extra.weight': extraF32,
          'bert.extra.bias': {
            dtype: 'BF16',
            shape: [0, 4],
            data_offsets: [data.length + 12, data.length + 12],
          },
        },
        Buffer.concat([data, Buffer.alloc(12, 0x7f)]),
      ),
      'data reordered, with gaps': assemble(moved, Buffer.concat(chunks)),
      'gamma/beta names': assemble(
        Object.fromEntries(
          entries.map(([k, v]) => [
            k.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta'),
            v,
          ]),
        ),
        data,
      ),
    };
    for (const [what, bytes] of Object.entries(variants)) {
      expect(sameTensors(describedTensors(bytes), ORIGINAL), what).toBe(true);
      expect(await logitsOf([write(bytes)]), what).toEqual(base);
    }
  });
});

describe('bad files give typed errors naming the problem', () => {
  it('missing file, empty file, shorter than the length prefix', async () => {
    await expectRejects([join(dir, 'nope.safetensors')], 'E_BAD_WEIGHTS', /cannot open/);
    await expectRejects([write(Buffer.alloc(0))], 'E_BAD_WEIGHTS', /shorter than the 8-byte/);
    await expectRejects([write(Buffer.from([1, 2, 3]))], 'E_BAD_WEIGHTS', /shorter than the 8-byte/);
  });

  it.skipIf(spawnSync('mkfifo', ['--version']).status !== 0)(
    'a folder or a FIFO is refused, the FIFO without waiting for a writer',
    async () => {
      await expectRejects([dir], 'E_BAD_WEIGHTS', /not a regular file/);
      const fifo = join(dir, 'fifo.safetensors');
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      await expectRejects([fifo], 'E_BAD_WEIGHTS', /not a regular file/);
    },
    10_000,
  );

  it('truncated data and header length larger than the file', async () => {
    const full = safetensorsBytes(tensors, 'F32');
    await expectRejects(
      [write(full.subarray(0, full.length - 10))],
      'E_BAD_WEIGHTS',
      /past the end of the data/,
    );
    const { header, data } = parts();
    await expectRejects([write(assemble(header, data, 1_000_000n))], 'E_BAD_WEIGHTS', /larger than the file/);
    await expectRejects([write(assemble(header, data, 1n << 40n))], 'E_BAD_WEIGHTS', /100 MB limit/);
    await expectRejects([write(full.subarray(0, 200))], 'E_BAD_WEIGHTS', /larger than the file/);
  });

  it('offsets past the end, overlapping tensors, sizes that do not add up', async () => {
    const { header, data } = parts();
    const past = structuredClone(header);
    const t = past[`${L0}output.dense.bias`] as { data_offsets: [number, number] };
    t.data_offsets = [data.length - 16, data.length + 16];
    await expectRejects([write(assemble(past, data))], 'E_BAD_WEIGHTS', /output\.dense\.bias.*past the end/);

    const overlap = structuredClone(header);
    const a = overlap['bert.pooler.dense.bias'] as { data_offsets: [number, number] };
    const b = overlap['classifier.bias'] as { data_offsets: [number, number] };
    b.data_offsets = [a.data_offsets[0] + 4, a.data_offsets[0] + 8];
    await expectRejects([write(assemble(overlap, data))], 'E_BAD_WEIGHTS', /overlap/);

    const lyingShape = structuredClone(header);
    (lyingShape['bert.pooler.dense.weight'] as { shape: number[] }).shape = [8, 9];
    await expectRejects(
      [write(assemble(lyingShape, data))],
      'E_BAD_WEIGHTS',
      /pooler\.dense\.weight.*needs 288 bytes/,
    );

    const reversed = structuredClone(header);
    const r = reversed['classifier.bias'] as { data_offsets: [number, number] };
    r.data_offsets = [r.data_offsets[1], r.data_offsets[0]];
    await expectRejects([write(assemble(reversed, data))], 'E_BAD_WEIGHTS', /begin <= end/);
  });

  it('wrong and unknown dtypes', async () => {
    const { header, data } = parts();
    const i32 = structuredClone(header);
    (i32['classifier.weight'] as { dtype: string }).dtype = 'I32';
    await expectRejects([write(assemble(i32, data))], 'E_BAD_WEIGHTS', /classifier\.weight" has dtype I32/);
    const unknown = structuredClone(header);
    (unknown['classifier.weight'] as { dtype: string }).dtype = 'F99';
    await expectRejects([write(assemble(unknown, data))], 'E_BAD_WEIGHTS', /unknown dtype "F99"/);
  });

  it('missing tensors are named', async () => {
    const { header, data } = parts();
    const missing = structuredClone(header);
    delete missing['classifier.bias'];
    delete missing[`${L0}attention.self.key.weight`];
    await expectRejects(
      [write(assemble(missing, data))],
      'E_BAD_WEIGHTS',
      /2 tensor\(s\).*missing \((?=.*attention\.self\.key\.weight)(?=.*classifier\.bias)/,
    );
  });

  it('duplicate tensors across shards or prefixes', async () => {
    const f = write(safetensorsBytes(tensors, 'F32'));
    await expectRejects([f, f], 'E_BAD_WEIGHTS', /appears twice/);
  });

  it('limits: JSON values in a header, weight files in a model; keys are checked in linear time', async () => {
    const { header, data } = parts();
    const values = `[${'0,'.repeat(1 << 20)}0]`; // one array of 2^20 + 1 numbers, 2 MB
    const many = `${JSON.stringify(header).slice(0, -1)},"x":{"dtype":"F32","shape":${values},"data_offsets":[0,0]}}`;
    await expectRejects([write(assemble(many, data))], 'E_BAD_WEIGHTS', /more than 1048576 values/);
    const files = Array.from({ length: 257 }, (_, i) => join(dir, `shard-${i}.safetensors`));
    await expectRejects(files, 'E_BAD_WEIGHTS', /257 weight files, more than 256/);
    // 300k distinct metadata keys load: a duplicate check comparing each key with all before it took
    // minutes here (4.5e10 comparisons).
    const keys = Array.from({ length: 300_000 }, (_, i) => `"k${String(i).padStart(6, '0')}":""`);
    const { __metadata__: _, ...rest } = header;
    const wide = `{"__metadata__":{${keys.join(',')}},${JSON.stringify(rest).slice(1)}`;
    const base = await logitsOf([write(safetensorsBytes(tensors, 'F32'))]);
    expect(await logitsOf([write(assemble(wide, data))])).toEqual(base);
  }, 60_000);

  it('header JSON that is malformed, not UTF-8, or the wrong shape', async () => {
    const { header, data } = parts();
    const json = JSON.stringify(header);
    await expectRejects([write(assemble(json.slice(0, -1), data))], 'E_BAD_WEIGHTS', /not valid JSON/);
    await expectRejects([write(assemble(`${json}x`, data))], 'E_BAD_WEIGHTS', /not valid JSON/);
    const latin1 = Buffer.from(json.replace('"format":"pt"', '"format":"p\u00e9"'), 'latin1');
    await expectRejects([write(assemble(latin1, data))], 'E_BAD_WEIGHTS', /UTF-8/);
    const overlong = Buffer.concat([
      Buffer.from(json.slice(0, -1)),
      Buffer.from(',"x\xc0\xaf":1}', 'latin1'),
    ]);
    await expectRejects([write(assemble(overlong, data))], 'E_BAD_WEIGHTS', /UTF-8/);
    await expectRejects([write(assemble('[1,2]', data))], 'E_BAD_WEIGHTS', /not a JSON object/);
    await expectRejects([write(assemble(`{"a":1,"a":2}`, data))], 'E_BAD_WEIGHTS', /duplicate key/);
    await expectRejects([write(assemble('['.repeat(100000), data))], 'E_BAD_WEIGHTS', /nesting/);
    const extraField = structuredClone(header) as Record<string, unknown>;
    extraField['classifier.bias'] = { ...(header['classifier.bias'] as object), extra: 1 };
    await expectRejects(
      [write(assemble(extraField, data))],
      'E_BAD_WEIGHTS',
      /exactly dtype, shape and data_offsets/,
    );
    const negative = structuredClone(header);
    (negative['classifier.bias'] as { shape: number[] }).shape = [-1];
    await expectRejects([write(assemble(negative, data))], 'E_BAD_WEIGHTS', /non-negative integer/);
  });

  it('a config that does not match the weights', async () => {
    const f = write(safetensorsBytes(tensors, 'F32'));
    await expectRejects([f], 'E_BAD_CONFIG', /word_embeddings\.weight.*shape \[16, 8\].*implies \[20, 8\]/, {
      ...spec,
      vocabSize: 20,
    });
    await expectRejects([f], 'E_BAD_CONFIG', /intermediate\.dense\.(weight|bias).*implies \[32/, {
      ...spec,
      intermediateSize: 32,
    });
    await expectRejects([f], 'E_BAD_WEIGHTS', /missing.*encoder\.layer\.1\./, { ...spec, numLayers: 2 });
    await expectRejects([f], 'E_BAD_CONFIG', /hidden_act/, {
      ...spec,
      hiddenAct: 'swish' as CpuSpec['hiddenAct'],
    });
    await expectRejects([f], 'E_BAD_CONFIG', /hidden_size/, { ...spec, hiddenSize: 0 });
  });
});

describe('randomised header mutations', () => {
  const cases = Number(process.env.MLX_RERANK_FUZZ_CASES ?? 20_000);
  it(`${cases} seeded mutants: each is refused with a typed error or scores what its header describes`, async () => {
    const original = safetensorsBytes(tensors, 'F32');
    const headerEnd = 8 + Number(original.readBigUInt64LE(0));
    const base = await logitsOf([write(original)]);
    expect(base[0]).toBeCloseTo(referenceOf(ORIGINAL)[0] as number, 4);
    const r = rng(20261127);
    const pick = (n: number) => Math.floor(r() * n);
    const CHARS = Buffer.from(' \n0123456789[]{}",:-.eEFI');
    // Edits the header text; half the mutants then get a length prefix that matches the edited header
    // (so that edits such as added whitespace can load), the others keep or corrupt the old prefix.
    const mutate = (): Buffer => {
      let h = Buffer.from(original.subarray(8, headerEnd));
      let prefix = Buffer.from(original.subarray(0, 8));
      const data = original.subarray(headerEnd);
      const fixLength = pick(2) === 0;
      let cut = -1;
      const edits = 1 + pick(4);
      for (let e = 0; e < edits && h.length > 0; e++) {
        const pos = pick(h.length);
        const op = pick(6);
        if (op === 0) h[pos] = pick(256);
        else if (op === 1) h[pos] = CHARS[pick(CHARS.length)] as number;
        else if (op === 2) h = Buffer.concat([h.subarray(0, pos), h.subarray(pos + 1 + pick(8))]);
        else if (op === 3) {
          const c = pick(13); // whitespace, a digit or '['
          h = Buffer.concat([h.subarray(0, pos), CHARS.subarray(c, c + 1), h.subarray(pos)]);
        } else if (op === 4) prefix[pick(8)] = pick(256);
        else cut = pick(original.length);
      }
      if (fixLength) {
        prefix = Buffer.alloc(8);
        prefix.writeBigUInt64LE(BigInt(h.length));
      }
      const m = Buffer.concat([prefix, h, data]);
      return cut >= 0 ? m.subarray(0, cut) : m;
    };
    let refused = 0;
    let benign = 0;
    const lanes = 8;
    const files = Array.from({ length: lanes }, (_, i) => join(dir, `fuzz${i}.safetensors`));
    let next = 0;
    await Promise.all(
      files.map(async (file) => {
        while (next < cases) {
          next++;
          const m = mutate();
          writeFileSync(file, m);
          let logits: number[];
          try {
            const e = await loadFiles([file]);
            try {
              logits = Array.from((await e.forward(...PAIR)).logits);
            } finally {
              await e.dispose();
            }
          } catch (err) {
            const code = (err as { code?: string }).code;
            if (code !== 'E_BAD_WEIGHTS' && code !== 'E_BAD_CONFIG') throw err;
            refused++;
            continue;
          }
          // It loaded: it must hold what its header says (decoded here, scored by the float64
          // reference), and a mutant that describes the original tensors must score exactly as it.
          const described = describedTensors(m);
          expect(logits[0]).toBeCloseTo(referenceOf(described)[0] as number, 4);
          if (sameTensors(described, ORIGINAL)) {
            benign++;
            expect(logits).toEqual(base);
          }
        }
      }),
    );
    // The run exercised both outcomes (the mutator is not so gentle, or so harsh, that one never happens).
    expect(refused).toBeGreaterThan(cases / 2);
    expect(benign).toBeGreaterThan(0);
  }, 120_000);
});
