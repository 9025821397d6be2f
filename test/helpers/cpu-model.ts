/**
 * Test and bench helpers for the cpu engine: a safetensors writer (float32 / float16 / bfloat16), a
 * seeded random BERT cross-encoder, and an independent float64 forward pass (the textbook BERT
 * equations, one pair at a time) used where the golden fixtures of Python transformers do not reach.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { specFromConfig } from '../../src/model';
import type { NativeEngineOptions } from '../../src/native';
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  safetensorsBytes as writeBytes,
} from '../../src/safetensors';
import { seededRandom } from '../../src/workload';

export type StDType = 'F32' | 'F16' | 'BF16';
export type CpuSpec = NativeEngineOptions['spec'];

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

/** The value a float32 takes once stored in dtype and read back (the package's conversions, src/synth.ts). */
export function roundTo(dtype: StDType, x: number): number {
  if (dtype === 'F16') return f16ToF32(f32ToF16(x));
  if (dtype === 'BF16') return bf16ToF32(f32ToBf16(x));
  return Math.fround(x);
}

/** Serialises tensors as a safetensors file, all in one dtype (the package's writer, src/synth.ts). */
export function safetensorsBytes(tensors: Record<string, Tensor>, dtype: StDType): Buffer {
  return writeBytes(
    Object.fromEntries(
      Object.entries(tensors).map(([name, t]) => [name, { dtype, shape: t.shape, data: t.data }]),
    ),
  );
}

/** The package's seeded generator (mulberry32, src/workload.ts). */
export const rng = seededRandom;

/**
 * Random BERT weights (names with the "bert." prefix, as Hugging Face writes them). `logitScale`
 * scales the classifier, for tests that want logits spread wider across pairs.
 */
export function randomBert(spec: CpuSpec, seed: number, logitScale = 1): Record<string, Tensor> {
  const r = rng(seed);
  const t = (shape: number[], s: number, mean = 0): Tensor => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = mean + (r() * 2 - 1) * s;
    return { shape, data };
  };
  const H = spec.hiddenSize;
  const I = spec.intermediateSize;
  const out: Record<string, Tensor> = {
    'bert.embeddings.word_embeddings.weight': t([spec.vocabSize, H], 0.5),
    'bert.embeddings.position_embeddings.weight': t([spec.maxPositions, H], 0.2),
    'bert.embeddings.token_type_embeddings.weight': t([spec.typeVocabSize, H], 0.2),
    'bert.embeddings.LayerNorm.weight': t([H], 0.2, 1),
    'bert.embeddings.LayerNorm.bias': t([H], 0.1),
  };
  const ws = 1.7 / Math.sqrt(H);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `bert.encoder.layer.${l}.`;
    for (const n of ['query', 'key', 'value']) {
      out[`${p}attention.self.${n}.weight`] = t([H, H], ws);
      out[`${p}attention.self.${n}.bias`] = t([H], 0.1);
    }
    out[`${p}attention.output.dense.weight`] = t([H, H], ws);
    out[`${p}attention.output.dense.bias`] = t([H], 0.1);
    out[`${p}attention.output.LayerNorm.weight`] = t([H], 0.2, 1);
    out[`${p}attention.output.LayerNorm.bias`] = t([H], 0.1);
    out[`${p}intermediate.dense.weight`] = t([I, H], ws);
    out[`${p}intermediate.dense.bias`] = t([I], 0.1);
    out[`${p}output.dense.weight`] = t([H, I], 1.7 / Math.sqrt(I));
    out[`${p}output.dense.bias`] = t([H], 0.1);
    out[`${p}output.LayerNorm.weight`] = t([H], 0.2, 1);
    out[`${p}output.LayerNorm.bias`] = t([H], 0.1);
  }
  out['bert.pooler.dense.weight'] = t([H, H], ws);
  out['bert.pooler.dense.bias'] = t([H], 0.1);
  out['classifier.weight'] = t([spec.numLabels, H], (logitScale * 1.5) / Math.sqrt(H));
  out['classifier.bias'] = t([spec.numLabels], logitScale * 0.1);
  return out;
}

/** Writes a model folder: config.json and model.safetensors in the given dtype. */
export function writeModel(
  dir: string,
  spec: CpuSpec,
  tensors: Record<string, Tensor>,
  dtype: StDType,
): string {
  mkdirSync(dir, { recursive: true });
  const config = {
    architectures: ['BertForSequenceClassification'],
    model_type: 'bert',
    vocab_size: spec.vocabSize,
    hidden_size: spec.hiddenSize,
    num_hidden_layers: spec.numLayers,
    num_attention_heads: spec.numHeads,
    intermediate_size: spec.intermediateSize,
    max_position_embeddings: spec.maxPositions,
    type_vocab_size: spec.typeVocabSize,
    num_labels: spec.numLabels,
    layer_norm_eps: spec.layerNormEps,
    hidden_act: spec.hiddenAct,
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const file = join(dir, 'model.safetensors');
  writeFileSync(file, safetensorsBytes(tensors, dtype));
  return file;
}

// ----- float64 reference ------------------------------------------------------------------------

function erf(x: number): number {
  // Abramowitz-Stegun 7.1.26 is too coarse for a reference; use the series / continued fraction.
  const ax = Math.abs(x);
  if (ax < 3) {
    let sum = ax;
    let term = ax;
    for (let n = 1; n < 200; n++) {
      term *= (-ax * ax) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * ((2 / Math.sqrt(Math.PI)) * sum);
  }
  // erfc continued fraction (Lentz), accurate for |x| >= 3
  let f = ax;
  for (let k = 60; k >= 1; k--) f = ax + k / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

function act(kind: CpuSpec['hiddenAct'], x: number): number {
  if (kind === 'relu') return Math.max(0, x);
  if (kind === 'gelu') return 0.5 * x * (1 + erf(x / Math.SQRT2));
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/**
 * Reduced-precision arithmetic to model in the reference: `weight` maps a tensor (by name, without the
 * "bert." prefix; `rows` = its first dimension) to the values the computation uses, `input` maps the
 * input rows of a Linear layer (all rows of one pair) likewise. Everything else stays float64.
 */
export interface ReferenceQuantization {
  weight(name: string, data: Float64Array, rows: number): Float64Array;
  input(layer: string, rows: Float64Array[]): Float64Array[];
}

/** float64 logits of one pair, from the weights as the engine will read them (rounded to dtype). */
export function referenceLogits(
  spec: CpuSpec,
  tensors: Record<string, Tensor>,
  dtype: StDType,
  ids: number[],
  typeIds: number[],
  quant?: ReferenceQuantization,
): number[] {
  const w = (name: string): Float64Array => {
    const t = tensors[`bert.${name}`] ?? tensors[name];
    if (!t) throw new Error(`missing ${name}`);
    const data = Float64Array.from(t.data, (v) => roundTo(dtype, v));
    return quant ? quant.weight(name, data, t.shape[0] as number) : data;
  };
  const H = spec.hiddenSize;
  const L = ids.length;
  const heads = spec.numHeads;
  const hd = H / heads;
  const eps = spec.layerNormEps;
  const ln = (x: Float64Array[], g: Float64Array, b: Float64Array) =>
    x.map((row) => {
      const mean = row.reduce((a, v) => a + v, 0) / row.length;
      const varr = row.reduce((a, v) => a + (v - mean) ** 2, 0) / row.length;
      const r = 1 / Math.sqrt(varr + eps);
      return row.map((v, j) => (v - mean) * r * (g[j] as number) + (b[j] as number));
    });
  const linear = (input: Float64Array[], name: string) => {
    const W = w(`${name}.weight`);
    const B = w(`${name}.bias`);
    const out = B.length;
    const inn = W.length / out;
    const x = quant ? quant.input(name, input) : input;
    return x.map((row) => {
      const y = new Float64Array(out);
      for (let o = 0; o < out; o++) {
        let s = B[o] as number;
        for (let k = 0; k < inn; k++) s += (row[k] as number) * (W[o * inn + k] as number);
        y[o] = s;
      }
      return y;
    });
  };
  const we = w('embeddings.word_embeddings.weight');
  const pe = w('embeddings.position_embeddings.weight');
  const te = w('embeddings.token_type_embeddings.weight');
  let x = ids.map((id, t) => {
    const row = new Float64Array(H);
    for (let j = 0; j < H; j++)
      row[j] =
        (we[id * H + j] as number) +
        (te[(typeIds[t] as number) * H + j] as number) +
        (pe[t * H + j] as number);
    return row;
  });
  x = ln(x, w('embeddings.LayerNorm.weight'), w('embeddings.LayerNorm.bias'));
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `encoder.layer.${l}.`;
    const q = linear(x, `${p}attention.self.query`);
    const k = linear(x, `${p}attention.self.key`);
    const v = linear(x, `${p}attention.self.value`);
    const ctx = x.map(() => new Float64Array(H));
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < L; i++) {
        const s = new Float64Array(L);
        let mx = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < L; j++) {
          let d = 0;
          for (let e = 0; e < hd; e++)
            d +=
              ((q[i] as Float64Array)[h * hd + e] as number) * ((k[j] as Float64Array)[h * hd + e] as number);
          s[j] = d / Math.sqrt(hd);
          mx = Math.max(mx, s[j] as number);
        }
        let sum = 0;
        for (let j = 0; j < L; j++) {
          s[j] = Math.exp((s[j] as number) - mx);
          sum += s[j] as number;
        }
        const c = ctx[i] as Float64Array;
        for (let j = 0; j < L; j++)
          for (let e = 0; e < hd; e++)
            c[h * hd + e] =
              (c[h * hd + e] as number) +
              ((s[j] as number) / sum) * ((v[j] as Float64Array)[h * hd + e] as number);
      }
    }
    const ao = linear(ctx, `${p}attention.output.dense`).map((row, i) =>
      row.map((v2, j) => v2 + (x[i]?.[j] as number)),
    );
    const x1 = ln(ao, w(`${p}attention.output.LayerNorm.weight`), w(`${p}attention.output.LayerNorm.bias`));
    const up = linear(x1, `${p}intermediate.dense`).map((row) => row.map((v2) => act(spec.hiddenAct, v2)));
    const down = linear(up, `${p}output.dense`).map((row, i) =>
      row.map((v2, j) => v2 + (x1[i]?.[j] as number)),
    );
    x = ln(down, w(`${p}output.LayerNorm.weight`), w(`${p}output.LayerNorm.bias`));
  }
  const pooled = linear([x[0] as Float64Array], 'pooler.dense').map((row) => row.map(Math.tanh));
  return Array.from(linear(pooled, 'classifier')[0] as Float64Array);
}

// ----- golden fixtures (test/fixtures/models, from Python transformers) ----------------------------

export const FIXTURE_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export type FixturePair = { ids: number[]; typeIds: number[] };
export interface FixtureExpected {
  pairs: FixturePair[];
  logits: Record<(typeof FIXTURE_DTYPES)[number], number[][]>;
}

/** test/fixtures/models: one folder per model, with config.json, expected.json and a folder per dtype. */
export const FIXTURE_MODELS_DIR = join(import.meta.dirname, '..', 'fixtures', 'models');

/** The fixture models that have their expected outputs (all of them once the fixtures have landed). */
export function fixtureModels(): string[] {
  if (!existsSync(FIXTURE_MODELS_DIR)) return [];
  return readdirSync(FIXTURE_MODELS_DIR).filter((n) =>
    existsSync(join(FIXTURE_MODELS_DIR, n, 'expected.json')),
  );
}

/** A fixture model's inputs and the logits Python transformers computed for each storage dtype. */
export function fixtureExpected(dir: string): FixtureExpected {
  return JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as FixtureExpected;
}

/** The engine reads the fields it needs from the full ModelSpec that src/model.ts makes of config.json. */
export function fixtureSpec(dir: string): CpuSpec {
  return specFromConfig(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
}

/** Pairs as the packed batch the engines take: tokens, type ids, offsets. */
export function pack(pairs: FixturePair[]) {
  const offsets = [0];
  for (const p of pairs) offsets.push((offsets.at(-1) as number) + p.ids.length);
  return [
    Int32Array.from(pairs.flatMap((p) => p.ids)),
    Int32Array.from(pairs.flatMap((p) => p.typeIds)),
    Int32Array.from(offsets),
  ] as const;
}
