/**
 * The model families after BERT (XLM-RoBERTa, ELECTRA, ModernBERT) on the mlx engine through the real
 * addon, against Python transformers' float64 logits (test/fixtures/families/models) and the cpu engine:
 * on MLX's CPU device in float32 (the fine layout, and the GPU's coarse layout with bucketed token rows),
 * on a GPU in float16 (the device's own layout: varlen on CUDA; and coarse), pairs of 2..8,192 tokens,
 * a pair scoring the same alone and in any batch, and `backend: 'auto'` choosing the mlx engine on a GPU.
 *
 * Runs only when the addon was built with MLX; otherwise every test here is skipped and one warning says
 * why (what the build tried). The GPU tests run only where MLX has a GPU.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backends } from '../src/backends';
import { pickBackend } from '../src/cross-encoder';
import { type NativeEngine, type NativeEngineOptions, native } from '../src/native';
import type { ModelFamily } from '../src/types';
import { type FixturePair, fixtureExpected, fixtureSpec, pack } from './helpers/cpu-model';

const mlx = backends().mlx;
const hasGpu = mlx.available && (mlx.devices ?? []).includes('gpu');
if (!mlx.available)
  console.warn(`[engine-mlx-families] skipping the mlx engine's family tests: ${mlx.reason}`);
else if (!hasGpu)
  console.warn('[engine-mlx-families] skipping the family tests on the GPU: MLX has no GPU here');

const DIR = join(import.meta.dirname, 'fixtures', 'families', 'models');
const models = readdirSync(DIR).sort();
// On MLX's CPU device the grouped layouts hold L x L scores per head: the 8,192-token fixtures are for GPUs.
const short = models.filter((m) => !m.includes('-long-'));
const BATCH_TOKENS = 16384;

function load(name: string, storage: string, extra: Partial<NativeEngineOptions>): Promise<NativeEngine> {
  const dir = join(DIR, name);
  return native().loadEngine({
    backend: 'mlx',
    device: 'cpu',
    weights: [join(dir, storage, 'model.safetensors')],
    spec: fixtureSpec(dir),
    ...extra,
  });
}

/** Logits of the pairs in this order, in batches of at most BATCH_TOKENS tokens (as the scheduler sends). */
async function forwardAll(engine: NativeEngine, pairs: FixturePair[]): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < pairs.length; ) {
    const batch: FixturePair[] = [];
    let tokens = 0;
    while (
      i < pairs.length &&
      (batch.length === 0 || tokens + (pairs[i] as FixturePair).ids.length <= BATCH_TOKENS)
    ) {
      tokens += (pairs[i] as FixturePair).ids.length;
      batch.push(pairs[i++] as FixturePair);
    }
    out.push(...(await engine.forward(...pack(batch))).logits);
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    m = Math.max(m, Number.isFinite(d) ? d : Number.POSITIVE_INFINITY);
  }
  return m;
}

/** Spearman's rho of two score lists without ties (random logits). */
function spearman(a: number[], b: number[]): number {
  const rank = (v: number[]) => {
    const r = new Array<number>(v.length);
    v.map((x, i) => [x, i] as const)
      .sort((x, y) => x[0] - y[0])
      .forEach(([, i], k) => {
        r[i] = k;
      });
    return r;
  };
  const ra = rank(a);
  const rb = rank(b);
  const n = a.length;
  const d2 = ra.reduce((s, r, i) => s + (r - (rb[i] as number)) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}

/** Each pair alone against its logits in `batched` (the pairs' order) and in the reversed order. */
async function aloneVersusBatched(engine: NativeEngine, pairs: FixturePair[], L: number): Promise<number> {
  const batched = await forwardAll(engine, pairs);
  const reversed = await forwardAll(engine, [...pairs].reverse());
  let diff = 0;
  for (let i = 0; i < pairs.length; i++) {
    const alone = await forwardAll(engine, [pairs[i] as FixturePair]);
    const r = pairs.length - 1 - i;
    diff = Math.max(
      diff,
      maxAbsDiff(alone, batched.slice(i * L, i * L + L)),
      maxAbsDiff(alone, reversed.slice(r * L, r * L + L)),
    );
  }
  return diff;
}

describe.skipIf(!mlx.available)('mlx engine, the model families on the CPU in float32', () => {
  for (const name of short) {
    it(`${name}: max abs error <= 1e-4 against transformers (fine layout), and as the cpu engine scores it in the GPU's coarse layout`, async () => {
      const dir = join(DIR, name);
      const spec = fixtureSpec(dir);
      const expected = fixtureExpected(dir);
      const fine = await load(name, 'float32', { dtype: 'float32' });
      try {
        expect(fine.info()).toMatchObject({ backend: 'mlx', device: 'cpu', dtype: 'float32' });
        const got = await forwardAll(fine, expected.pairs);
        expect(maxAbsDiff(got, expected.logits.float32.flat())).toBeLessThanOrEqual(1e-4);
      } finally {
        await fine.dispose();
      }
      const coarse = await load(name, 'float16', { dtype: 'float32', attention: 'coarse', rowBuckets: true });
      const cpu = await native().loadEngine({
        backend: 'cpu',
        device: 'auto',
        weights: [join(dir, 'float16', 'model.safetensors')],
        spec,
      });
      try {
        const pairs = [...expected.pairs].reverse();
        const [a, b] = await Promise.all([forwardAll(coarse, pairs), forwardAll(cpu, pairs)]);
        expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(1e-4);
        expect(maxAbsDiff(a, [...expected.logits.float16].reverse().flat())).toBeLessThanOrEqual(1e-4);
      } finally {
        await Promise.all([coarse.dispose(), cpu.dispose()]);
      }
    });
  }

  it('scores a pair the same alone and anywhere in a batch (window and mean pooling masked per pair)', async () => {
    for (const name of ['modernbert-l3-h32-mean', 'modernbert-l4-h32-cls', 'xlmr-l2-h32']) {
      const dir = join(DIR, name);
      const pairs = fixtureExpected(dir).pairs.slice(0, 24);
      for (const attention of ['fine', 'coarse'] as const) {
        const engine = await load(name, 'float32', { dtype: 'float32', attention });
        try {
          expect(await aloneVersusBatched(engine, pairs, fixtureSpec(dir).numLabels)).toBeLessThanOrEqual(
            1e-5,
          );
        } finally {
          await engine.dispose();
        }
      }
    }
  });
});

describe.skipIf(!hasGpu)('mlx engine on the GPU: the model families in float16', () => {
  for (const name of models) {
    for (const attention of [undefined, 'coarse'] as const) {
      it(`${name} (${attention ?? 'default'} layout): max abs error <= 3e-2, Spearman >= 0.999, alone = batched`, async () => {
        const dir = join(DIR, name);
        const spec = fixtureSpec(dir);
        const expected = fixtureExpected(dir);
        const engine = await load(name, 'float16', { device: 'gpu', ...(attention && { attention }) });
        try {
          expect(engine.info()).toMatchObject({ backend: 'mlx', device: 'gpu', dtype: 'float16' });
          const got = await forwardAll(engine, expected.pairs);
          const want = expected.logits.float16;
          expect(maxAbsDiff(got, want.flat())).toBeLessThanOrEqual(3e-2);
          for (let j = 0; j < spec.numLabels; j++) {
            const g = want.map((_, i) => got[i * spec.numLabels + j] as number);
            expect(
              spearman(
                g,
                want.map((row) => row[j] as number),
              ),
            ).toBeGreaterThanOrEqual(0.999);
          }
          expect(await aloneVersusBatched(engine, expected.pairs, spec.numLabels)).toBeLessThanOrEqual(3e-2);
        } finally {
          await engine.dispose();
        }
      });
    }
  }

  it("backend 'auto' runs every family on the mlx engine where MLX has a GPU", () => {
    for (const family of ['bert', 'xlm-roberta', 'electra', 'modernbert'] as ModelFamily[])
      expect(pickBackend('auto', 'auto', family)).toBe('mlx');
  });
});
