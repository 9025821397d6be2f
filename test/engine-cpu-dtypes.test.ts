/**
 * The cpu engine's reduced-precision dtypes through the real addon: 'bfloat16' and 'int8' against a
 * float64 BERT that applies the same rounding / quantisation at each encoder GEMM input (written here,
 * from the definitions in docs/cpu-dtypes.md, not from the kernels), every instruction set this CPU
 * has against the scalar fallback, and the load-time check that refuses a model int8 cannot carry.
 * (native/test/engine_check.cpp checks the kernels bit for bit, under valgrind and ASan too.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../src/native';
import { bf16ToF32, f32ToBf16 } from '../src/safetensors';
import {
  type CpuSpec,
  type ReferenceQuantization,
  randomBert,
  referenceLogits,
  rng,
  type Tensor,
  writeModel,
} from './helpers/cpu-model';

const SPEC: CpuSpec = {
  vocabSize: 64,
  hiddenSize: 48,
  numLayers: 2,
  numHeads: 4,
  intermediateSize: 96,
  maxPositions: 64,
  typeVocabSize: 2,
  numLabels: 2,
  layerNormEps: 1e-12,
  hiddenAct: 'gelu',
};

const work = mkdtempSync(join(tmpdir(), 'cpu-dtypes-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function modelFile(name: string, tensors: Record<string, Tensor>): string {
  return writeModel(join(work, name), SPEC, tensors, 'F32');
}

function pairs(count: number, seed: number) {
  const r = rng(seed);
  return Array.from({ length: count }, () => {
    const len = 4 + Math.floor(r() * 40);
    const ids = Array.from({ length: len }, () => Math.floor(r() * SPEC.vocabSize));
    return { ids, typeIds: ids.map((_, t) => (t > len / 2 ? 1 : 0)) };
  });
}

async function score(
  file: string,
  dtype: string,
  ps: Array<{ ids: number[]; typeIds: number[] }>,
  cpuIsa?: string,
) {
  const engine = await native().loadEngine({
    backend: 'cpu',
    device: 'cpu',
    weights: [file],
    spec: SPEC,
    dtype,
    ...(cpuIsa !== undefined && { cpuIsa }),
  } as never);
  try {
    const offsets = [0];
    for (const p of ps) offsets.push((offsets.at(-1) as number) + p.ids.length);
    const res = await engine.forward(
      Int32Array.from(ps.flatMap((p) => p.ids)),
      Int32Array.from(ps.flatMap((p) => p.typeIds)),
      Int32Array.from(offsets),
    );
    return { logits: Array.from(res.logits), info: engine.info() };
  } finally {
    await engine.dispose();
  }
}

// ----- the arithmetic, in float64 -------------------------------------------------------------------

const rint = (x: number): number => {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r; // half to even
};
const encoderWeight = (name: string) => /^encoder\..*(query|key|value|dense)\.weight$/.test(name);
const bf16 = (v: number) => bf16ToF32(f32ToBf16(v));

/** bfloat16: encoder GEMM weights and inputs rounded to bf16 (nearest even), sums exact. */
const BF16: ReferenceQuantization = {
  weight: (name, data) => (encoderWeight(name) ? data.map(bf16) : data),
  input: (layer, rows) => (layer.startsWith('encoder.') ? rows.map((r) => r.map(bf16)) : rows),
};

/**
 * int8: weights per output row, symmetric (scale max|w| / 127, q in [-127, 127]); inputs per row
 * (token), asymmetric uint8 (scale (max(a, 0) - min(a, 0)) / 255, zero point round(-min / scale)).
 */
const INT8: ReferenceQuantization = {
  weight(name, data, rows) {
    if (!encoderWeight(name)) return data;
    const cols = data.length / rows;
    const out = new Float64Array(data.length);
    for (let r = 0; r < rows; r++) {
      const row = data.subarray(r * cols, (r + 1) * cols);
      const s = Math.fround(row.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 127);
      row.forEach((v, k) => {
        out[r * cols + k] = Math.max(-127, Math.min(127, rint(v / s))) * s;
      });
    }
    return out;
  },
  input(layer, rows) {
    if (!layer.startsWith('encoder.')) return rows;
    return rows.map((row) => {
      const lo = Math.min(0, ...row);
      const hi = Math.max(0, ...row);
      const s = Math.fround((hi - lo) / 255);
      const z = rint(-lo / s);
      return row.map((v) => (Math.max(0, Math.min(255, rint(v / s) + z)) - z) * s);
    });
  },
};

const maxAbs = (a: number[], b: number[]) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);

describe('cpu engine reduced precision against a float64 model of the same arithmetic', () => {
  const tensors = randomBert(SPEC, 21, 2);
  const file = modelFile('plain', tensors);
  const ps = pairs(12, 3);
  const ref = (q?: ReferenceQuantization) =>
    ps.flatMap((p) => referenceLogits(SPEC, tensors, 'F32', p.ids, p.typeIds, q));
  const float = ref();

  for (const [dtype, q] of [
    ['bfloat16', BF16],
    ['int8', INT8],
  ] as const) {
    it(`${dtype}: nearer its quantised float64 model than float32 is, by 10x`, async () => {
      const { logits, info } = await score(file, dtype, ps);
      expect(info.dtype).toBe(dtype);
      const quantised = ref(q);
      const toFloat = maxAbs(logits, float);
      expect(toFloat).toBeGreaterThan(1e-3); // the rounding is really there
      expect(maxAbs(logits, quantised)).toBeLessThan(toFloat / 10); // and it is this rounding
    });
  }

  it('float32 is unchanged: within 1e-4 of float64', async () => {
    const { logits, info } = await score(file, 'float32', ps);
    expect(info.dtype).toBe('float32');
    expect(maxAbs(logits, float)).toBeLessThanOrEqual(1e-4);
  });
});

describe('cpu engine reduced precision on every instruction set', () => {
  const file = modelFile('isa', randomBert(SPEC, 5, 2));
  const ps = pairs(6, 9);
  const isas = ['scalar', 'avx2', 'avxvnni', 'avx512'];

  for (const dtype of ['bfloat16', 'int8']) {
    it(`${dtype}: each ISA's kernels score as the scalar fallback does`, async () => {
      const seen = new Map<string, number[]>();
      for (const isa of isas) {
        const { logits, info } = await score(file, dtype, ps, isa);
        const kernel = /GEMMs on ([^ ]+)/.exec(info.deviceName)?.[1] as string;
        if (isa === 'scalar') expect(kernel).toBe('scalar');
        seen.set(kernel, logits);
      }
      const scalar = seen.get('scalar') as number[];
      // The GEMMs agree bit for bit (engine_check); attention and LayerNorm run on each ISA's float32
      // kernels, whose last bits differ, so the logits agree to float32 noise, not to quantisation steps.
      for (const [kernel, logits] of seen) expect(maxAbs(logits, scalar), kernel).toBeLessThan(1e-4);
    });
  }
});

describe('cpu engine load-time quantisation check', () => {
  it('refuses int8 on a model with an outlier feature, naming the error and what to use', async () => {
    const tensors = randomBert(SPEC, 8, 2);
    expect(await score(modelFile('no-outlier', tensors), 'int8', pairs(2, 1))).toBeDefined();
    // One FFN feature at 1000 for every token, which the down projection does not read (trained BERTs
    // have such outlier features): float32 ignores it, but it sets every token's int8 scale, leaving
    // the features that matter a level or two.
    const I = SPEC.intermediateSize;
    for (const [name, t] of Object.entries(tensors)) {
      if (/intermediate\.dense\.bias$/.test(name)) t.data[0] = 1000;
      if (/\.output\.dense\.weight$/.test(name) && !name.includes('attention'))
        for (let o = 0; o < t.data.length / I; o++) t.data[o * I] = 0;
    }
    const file = modelFile('outlier', tensors);
    await expect(score(file, 'int8', pairs(2, 1))).rejects.toMatchObject({
      code: 'E_INPUT',
      message: expect.stringMatching(/int8.*loses too much.*float32/),
    });
    // bfloat16 keeps 8 significant bits per value, not per row: the same model loads.
    expect((await score(file, 'bfloat16', pairs(2, 1))).info.dtype).toBe('bfloat16');
  });

  it('reports what it measured in deviceName, and rejects an unknown dtype', async () => {
    const file = modelFile('report', randomBert(SPEC, 4, 2));
    const { info } = await score(file, 'int8', pairs(1, 2));
    expect(info.deviceName).toMatch(
      /int8 GEMMs on \S+ \(load check: max \|logit - float32\| [0-9.e-]+ on 8 pairs/,
    );
    await expect(score(file, 'int4', pairs(1, 2))).rejects.toMatchObject({
      code: 'E_INPUT',
      message: expect.stringContaining("'float32' (the default), 'bfloat16' or 'int8'"),
    });
  });
});
