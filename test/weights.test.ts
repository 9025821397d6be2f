/**
 * safetensors validation through the real addon: every kind of bad file gives a typed error naming the
 * problem (never a crash), and a seeded randomised header mutation run finds no crash either.
 * MLX_RERANK_FUZZ_CASES raises the mutation count (e.g. 1e6 under AddressSanitizer, see
 * scripts/test-native.mjs).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type NativeEngine, native } from '../src/native';
import { type CpuSpec, randomBert, rng, safetensorsBytes, type Tensor } from './helpers/cpu-model';

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
    const extra = Buffer.alloc(16 * 8);
    const withIds = {
      ...header,
      'bert.embeddings.position_ids': {
        dtype: 'I64',
        shape: [1, 16],
        data_offsets: [data.length, data.length + 128],
      },
    };
    await expect(logitsOf([write(assemble(withIds, Buffer.concat([data, extra])))])).resolves.toHaveLength(1);
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
});

describe('bad files give typed errors naming the problem', () => {
  it('missing file, empty file, shorter than the length prefix', async () => {
    await expectRejects([join(dir, 'nope.safetensors')], 'E_BAD_WEIGHTS', /cannot open/);
    await expectRejects([write(Buffer.alloc(0))], 'E_BAD_WEIGHTS', /shorter than the 8-byte/);
    await expectRejects([write(Buffer.from([1, 2, 3]))], 'E_BAD_WEIGHTS', /shorter than the 8-byte/);
  });

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
  it(`${cases} seeded mutants: each loads or gives E_BAD_WEIGHTS / E_BAD_CONFIG, none crashes`, async () => {
    const original = safetensorsBytes(tensors, 'F32');
    const headerEnd = 8 + Number(original.readBigUInt64LE(0));
    const r = rng(20261127);
    const pick = (n: number) => Math.floor(r() * n);
    const CHARS = Buffer.from('0123456789[]{}",:-.eEFI');
    const mutate = (): Buffer => {
      let m = Buffer.from(original);
      const edits = 1 + pick(4);
      for (let e = 0; e < edits && m.length > 0; e++) {
        const pos = pick(Math.min(headerEnd, m.length));
        const op = pick(6);
        if (op === 0) m[pos] = pick(256);
        else if (op === 1) m[pos] = CHARS[pick(CHARS.length)] as number;
        else if (op === 2) m = Buffer.concat([m.subarray(0, pos), m.subarray(pos + 1 + pick(8))]);
        else if (op === 3)
          m = Buffer.concat([m.subarray(0, pos), Buffer.from([CHARS[pick(11)] as number]), m.subarray(pos)]);
        else if (op === 4 && pos < 8)
          m[pos] = pick(256); // the length prefix
        else m = m.subarray(0, pick(m.length));
      }
      return m;
    };
    const counts = { loaded: 0, E_BAD_WEIGHTS: 0, E_BAD_CONFIG: 0 };
    const lanes = 8;
    const files = Array.from({ length: lanes }, (_, i) => join(dir, `fuzz${i}.safetensors`));
    let next = 0;
    await Promise.all(
      files.map(async (file) => {
        while (next < cases) {
          next++;
          writeFileSync(file, mutate());
          try {
            const e = await loadFiles([file]);
            counts.loaded++;
            await e.dispose();
          } catch (err) {
            const code = (err as { code?: string }).code;
            if (code !== 'E_BAD_WEIGHTS' && code !== 'E_BAD_CONFIG') throw err;
            counts[code]++;
          }
        }
      }),
    );
    expect(counts.loaded + counts.E_BAD_WEIGHTS + counts.E_BAD_CONFIG).toBe(cases);
    expect(counts.E_BAD_WEIGHTS).toBeGreaterThan(cases / 2);
  }, 120_000);
});
