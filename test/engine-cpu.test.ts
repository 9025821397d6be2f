/**
 * The cpu engine through the real addon: golden numerics against Python transformers (float64 on the
 * rounded weights of each storage dtype), batching invariants, the engine thread, errors and lifecycle.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NativeEngine, type NativeEngineOptions, native, packageRoot } from '../src/native';
import {
  type CpuSpec,
  FIXTURE_DTYPES,
  FIXTURE_MODELS_DIR,
  type FixtureExpected,
  fixtureExpected,
  fixtureModels,
  fixtureSpec,
  pack,
  randomBert,
  referenceLogits,
  rng,
  writeModel,
} from './helpers/cpu-model';

function load(
  weights: string[],
  spec: CpuSpec,
  extra: Partial<NativeEngineOptions> = {},
): Promise<NativeEngine> {
  return native().loadEngine({ backend: 'cpu', device: 'auto', weights, spec, ...extra });
}

// How a child process loads the same addon the tests use.
const requireAddon = `require(${JSON.stringify(join(packageRoot(), 'node_modules', 'node-gyp-build'))})(${JSON.stringify(packageRoot())})`;

const models = fixtureModels();

describe('golden numerics (Python transformers, float64 reference)', () => {
  it('has the three fixture models', () => {
    expect(models).toEqual(expect.arrayContaining(['tiny-l2-h64', 'small-l3-h96', 'cased-l2-h32']));
  });

  for (const name of models) {
    for (const dtype of FIXTURE_DTYPES) {
      it(`${name} ${dtype}: max abs error <= 1e-4 over all pairs, batched`, async () => {
        const dir = join(FIXTURE_MODELS_DIR, name);
        const spec = fixtureSpec(dir);
        const expected = fixtureExpected(dir);
        const engine = await load([join(dir, dtype, 'model.safetensors')], spec);
        try {
          const res = await engine.forward(...pack(expected.pairs));
          expect(res.computedSlots).toBe(expected.pairs.reduce((a, p) => a + p.ids.length, 0));
          expect(res.logits.length).toBe(expected.pairs.length * spec.numLabels);
          let maxErr = 0;
          expected.logits[dtype].forEach((row, i) => {
            row.forEach((v, j) => {
              maxErr = Math.max(maxErr, Math.abs(v - (res.logits[i * spec.numLabels + j] as number)));
            });
          });
          expect(maxErr).toBeLessThanOrEqual(1e-4);
        } finally {
          await engine.dispose();
        }
      });
    }
  }
});

describe('batching invariants', () => {
  it('a pair scores bit-identically alone, inside a batch, and in any order of the batch', async () => {
    const dir = join(FIXTURE_MODELS_DIR, 'small-l3-h96');
    const spec = fixtureSpec(dir);
    const expected = fixtureExpected(dir);
    const pairs = expected.pairs.slice(0, 24);
    const engine = await load([join(dir, 'float32', 'model.safetensors')], spec);
    try {
      const L = spec.numLabels;
      const batch = (await engine.forward(...pack(pairs))).logits;
      const order = pairs.map((_, i) => i).reverse();
      const reversed = (
        await engine.forward(...pack(order.map((i) => pairs[i] as FixtureExpected['pairs'][0])))
      ).logits;
      for (let i = 0; i < pairs.length; i++) {
        const alone = (await engine.forward(...pack([pairs[i] as FixtureExpected['pairs'][0]]))).logits;
        expect(Array.from(alone)).toEqual(Array.from(batch.subarray(i * L, i * L + L)));
        const r = order.indexOf(i);
        expect(Array.from(reversed.subarray(r * L, r * L + L))).toEqual(Array.from(alone));
      }
    } finally {
      await engine.dispose();
    }
  });
});

describe('engine thread and lifecycle', () => {
  let dir: string;
  let file: string;
  // Big enough that one forward takes tens of milliseconds on any machine.
  const spec: CpuSpec = {
    vocabSize: 1000,
    hiddenSize: 128,
    numLayers: 4,
    numHeads: 4,
    intermediateSize: 512,
    maxPositions: 512,
    typeVocabSize: 2,
    numLabels: 1,
    layerNormEps: 1e-12,
    hiddenAct: 'gelu',
  };
  const tensors = randomBert(spec, 3);
  const r = rng(11);
  const pairs = Array.from({ length: 16 }, () => {
    const n = 200 + Math.floor(r() * 56);
    return {
      ids: Array.from({ length: n }, () => Math.floor(r() * spec.vocabSize)),
      typeIds: Array.from({ length: n }, (_, i) => (i < n / 4 ? 0 : 1)),
    };
  });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mlx-rerank-cpu-'));
    file = writeModel(dir, spec, tensors, 'F32');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('matches an independent float64 forward for gelu_new and relu too', async () => {
    for (const hiddenAct of ['gelu_new', 'relu'] as const) {
      const s = {
        ...spec,
        hiddenAct,
        numLayers: 2,
        numLabels: 3,
        vocabSize: 200,
        maxPositions: 64,
        intermediateSize: 256,
      };
      const t = randomBert(s, 5);
      const d = join(dir, hiddenAct);
      const f = writeModel(d, s, t, 'BF16');
      const engine = await load([f], s);
      const few = pairs
        .slice(0, 3)
        .map((p) => ({ ids: p.ids.slice(0, 40).map((id) => id % 200), typeIds: p.typeIds.slice(0, 40) }));
      const got = (await engine.forward(...pack(few))).logits;
      await engine.dispose();
      few.forEach((p, i) => {
        referenceLogits(s, t, 'BF16', p.ids, p.typeIds).forEach((v, j) => {
          expect(Math.abs(v - (got[i * 3 + j] as number))).toBeLessThanOrEqual(1e-4);
        });
      });
    }
  });

  it('does not block the event loop while a forward runs', async () => {
    const engine = await load([file], spec);
    try {
      await engine.warmup();
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const t0 = performance.now();
      let ticksAtResolve = -1;
      const res = await engine.forward(...pack(pairs)).then((x) => {
        ticksAtResolve = ticks;
        return x;
      });
      const elapsed = performance.now() - t0;
      clearInterval(timer);
      expect(res.inferenceMs).toBeGreaterThan(0);
      // The JS thread kept running timers during the forward (a blocked loop would show 0 or 1 tick).
      expect(elapsed).toBeGreaterThan(10);
      expect(ticksAtResolve).toBeGreaterThanOrEqual(3);
    } finally {
      await engine.dispose();
    }
  });

  it('dispose waits for the forward in flight, then later calls reject E_DISPOSED', async () => {
    const engine = await load([file], spec);
    expect(engine.memory().activeBytes).toBeGreaterThan(
      (tensors['bert.encoder.layer.0.intermediate.dense.weight']?.data.byteLength ?? 0) * 4,
    );
    const running = engine.forward(...pack(pairs));
    const disposed = engine.dispose();
    const res = await running;
    expect(res.logits.length).toBe(pairs.length);
    expect(Number.isFinite(res.logits[0])).toBe(true);
    await disposed;
    await engine.dispose(); // idempotent
    await expect(engine.forward(...pack(pairs.slice(0, 1)))).rejects.toMatchObject({ code: 'E_DISPOSED' });
    await expect(engine.warmup()).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expect(engine.memory().activeBytes).toBe(0);
  });

  it('reports its identity and memory', async () => {
    const engine = await load([file], spec, { threads: 1 });
    try {
      expect(engine.info()).toMatchObject({ backend: 'cpu', device: 'cpu', dtype: 'float32' });
      expect(engine.info().deviceName).toMatch(/x 1 threads$/);
      const b = native().backends();
      expect(b.cpu.available).toBe(true);
      expect(b.cpu.isa).toMatch(/avx512|avx2|scalar/);
      // Memory: the weights, then the activations of the largest batch seen, kept for reuse.
      const loaded = engine.memory();
      const weightBytes = Object.values(tensors).reduce((n, t) => n + t.data.byteLength, 0);
      expect(loaded.activeBytes).toBeGreaterThanOrEqual(weightBytes);
      const two = pack(pairs.slice(0, 2));
      await engine.forward(...two);
      const m = engine.memory();
      // At least x, x1, q, ctx (T x hidden each) and k, v (T x 2 hidden), float32, for the T tokens.
      expect(m.activeBytes - loaded.activeBytes).toBeGreaterThanOrEqual(
        6 * two[0].length * spec.hiddenSize * 4,
      );
      expect(m.peakBytes).toBe(m.activeBytes);
      // A smaller batch reuses those buffers: nothing grows.
      await engine.forward(...pack(pairs.slice(0, 1)));
      expect(engine.memory()).toEqual(m);
    } finally {
      await engine.dispose();
    }
  });

  it('rejects malformed batches and options with typed errors', async () => {
    const engine = await load([file], spec);
    try {
      const [t, ty, o] = pack(pairs.slice(0, 2));
      const bad = Int32Array.from(t);
      bad[3] = spec.vocabSize;
      await expect(engine.forward(bad, ty, o)).rejects.toMatchObject({ code: 'E_INPUT' });
      await expect(engine.forward(t, ty, Int32Array.from([0, 5, 3, t.length]))).rejects.toMatchObject({
        code: 'E_INPUT',
      });
      await expect(engine.forward(t, ty.subarray(1), o)).rejects.toMatchObject({ code: 'E_INPUT' });
      const long = pack([{ ids: Array(513).fill(1), typeIds: Array(513).fill(0) }]);
      await expect(engine.forward(...long)).rejects.toMatchObject({ code: 'E_INPUT', message: /513 tokens/ });
      // biome-ignore lint/suspicious/noExplicitAny: deliberately wrong argument types
      await expect((engine.forward as any)([1, 2], ty, o)).rejects.toMatchObject({ code: 'E_INPUT' });
      // The engine still works after bad input.
      expect((await engine.forward(t, ty, o)).logits.length).toBe(2);
    } finally {
      await engine.dispose();
    }
    if (!native().backends().mlx.available)
      await expect(load([file], spec, { backend: 'mlx' })).rejects.toMatchObject({
        code: 'E_BACKEND_UNAVAILABLE',
      });
    await expect(load([file], spec, { device: 'gpu' })).rejects.toMatchObject({
      code: 'E_BACKEND_UNAVAILABLE',
    });
    await expect(load([file], spec, { dtype: 'float16' })).rejects.toMatchObject({ code: 'E_INPUT' });
    await expect(load([file], { ...spec, numHeads: 3 })).rejects.toMatchObject({ code: 'E_BAD_CONFIG' });
  });

  it('lets the process exit with a live engine and a forward in flight', () => {
    const script = `
      const a = ${requireAddon};
      a.loadEngine({ backend: 'cpu', device: 'auto', weights: [${JSON.stringify(file)}], spec: ${JSON.stringify(spec)} })
        .then((e) => {
          const n = 4000;
          e.forward(new Int32Array(n).fill(1), new Int32Array(n), Int32Array.from([0, 500, 1000, 1500, 2000, 2500, 3000, 3500, n]));
          setTimeout(() => process.exit(0), 5);
        });
      a.loadEngine({ backend: 'cpu', device: 'auto', weights: [${JSON.stringify(file)}], spec: ${JSON.stringify(spec)} });
    `;
    const r = spawnSync(process.execPath, ['-e', script], { timeout: 30_000, encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(r.signal).toBeNull();
    expect(r.status).toBe(0);
    // An idle engine does not keep the event loop alive.
    const idle = spawnSync(
      process.execPath,
      [
        '-e',
        `${requireAddon}.loadEngine({ backend: 'cpu', device: 'auto', weights: [${JSON.stringify(file)}], spec: ${JSON.stringify(spec)} }).then(() => console.log('loaded'))`,
      ],
      { timeout: 30_000, encoding: 'utf8' },
    );
    expect(idle.status).toBe(0);
    expect(idle.stdout).toContain('loaded');
  });
});
