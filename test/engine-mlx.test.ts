/**
 * The mlx engine through the real addon: golden numerics against Python transformers (float64 on the
 * rounded weights of each storage dtype), agreement with the cpu engine on random batches, batching
 * invariants (bucket padding is masked), bounded memory, errors and lifecycle.
 *
 * Runs only when the addon was built with MLX; otherwise every engine test is skipped and one warning
 * says why (what the build tried). The GPU branch (float16) runs only where MLX has a GPU.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, explainMlx, type MlxBuildStatus, mlxBuildStatus } from '../src/backends';
import { pearson } from '../src/bench/stats';
import { type NativeEngine, type NativeEngineOptions, native, packageRoot } from '../src/native';
import {
  type CpuSpec,
  FIXTURE_DTYPES,
  FIXTURE_MODELS_DIR,
  type FixturePair,
  fixtureExpected,
  fixtureModels,
  fixtureSpec,
  pack,
  randomBert,
  referenceLogits,
  rng,
  writeModel,
} from './helpers/cpu-model';
import { LAYERED_SPEC } from './helpers/mlx-layered';

const mlx = backends().mlx;
const hasGpu = mlx.available && (mlx.devices ?? []).includes('gpu');
// Each skip says why once, here, not in every test's name.
if (!mlx.available) console.warn(`[engine-mlx] skipping the mlx engine tests: ${mlx.reason}`);
else if (!hasGpu) console.warn('[engine-mlx] skipping the GPU tests: MLX has no GPU here');

function load(
  weights: string[],
  spec: CpuSpec,
  extra: Partial<NativeEngineOptions> = {},
): Promise<NativeEngine> {
  return native().loadEngine({ backend: 'mlx', device: 'cpu', weights, spec, ...extra });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

function ranks(xs: number[]): number[] {
  const order = xs.map((v, i) => [v, i] as const).sort((x, y) => x[0] - y[0]);
  const r = new Array<number>(xs.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (
      j + 1 < order.length &&
      (order[j + 1] as readonly [number, number])[0] === (order[i] as readonly [number, number])[0]
    )
      j++;
    for (let k = i; k <= j; k++) r[(order[k] as readonly [number, number])[1]] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}

// Spearman's rho: Pearson's r (the bench's) of the ranks.
const spearman = (a: number[], b: number[]): number => pearson(ranks(a), ranks(b));

/** Random pairs whose lengths hit bucket edges (8, 16, ..., 512) and the spaces between them. */
function randomPairs(seed: number, count: number, spec: CpuSpec, maxLen = spec.maxPositions): FixturePair[] {
  const r = rng(seed);
  const edges = [1, 2, 7, 8, 9, 15, 16, 17, 33, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512].filter(
    (n) => n <= maxLen,
  );
  return Array.from({ length: count }, (_, i) => {
    const n = i < edges.length ? (edges[i] as number) : 1 + Math.floor(r() ** 2 * maxLen);
    const q = Math.floor(r() * Math.min(n, 24));
    return {
      ids: Array.from({ length: n }, () => Math.floor(r() * spec.vocabSize)),
      typeIds: Array.from({ length: n }, (_, t) => (t < q ? 0 : Math.min(1, spec.typeVocabSize - 1))),
    };
  });
}

const models = fixtureModels();

describe.skipIf(!mlx.available)('mlx engine', () => {
  describe('golden numerics on the CPU, float32 (Python transformers, float64 reference)', () => {
    for (const name of models) {
      for (const storage of FIXTURE_DTYPES) {
        it(`${name} from ${storage} weights: max abs error <= 1e-4 over all pairs, batched`, async () => {
          const dir = join(FIXTURE_MODELS_DIR, name);
          const spec = fixtureSpec(dir);
          const expected = fixtureExpected(dir);
          const engine = await load([join(dir, storage, 'model.safetensors')], spec, { dtype: 'float32' });
          try {
            const info = engine.info();
            expect(info).toMatchObject({
              backend: 'mlx',
              device: 'cpu',
              dtype: 'float32',
              version: mlx.version,
            });
            const [tokens, typeIds, offsets] = pack(expected.pairs);
            const res = await engine.forward(tokens, typeIds, offsets);
            // Attention pads each pair to its length bucket: more slots than tokens, but not many more.
            expect(res.computedSlots).toBeGreaterThanOrEqual(tokens.length);
            expect(res.computedSlots).toBeLessThanOrEqual(tokens.length * 1.3 + 8 * expected.pairs.length);
            expect(res.inferenceMs).toBeGreaterThan(0);
            expect(maxAbsDiff(res.logits, expected.logits[storage].flat())).toBeLessThanOrEqual(1e-4);
          } finally {
            await engine.dispose();
          }
        });
      }
    }
  });

  describe('against the cpu engine and an independent float64 forward', () => {
    let dir: string;
    // MiniLM's proportions (head dim 32, FFN 4x), narrower so the test stays quick.
    const spec: CpuSpec = { ...LAYERED_SPEC, numLayers: 3 };
    const tensors = randomBert(spec, 21);
    let file: string;

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'mlx-rerank-mlx-'));
      file = writeModel(dir, spec, tensors, 'F32');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('matches the cpu engine on random batches (float32, max abs <= 1e-4)', async () => {
      const [m, c] = await Promise.all([
        load([file], spec),
        native().loadEngine({ backend: 'cpu', device: 'auto', weights: [file], spec }),
      ]);
      try {
        for (let seed = 1; seed <= 6; seed++) {
          const pairs = randomPairs(seed, seed === 1 ? 40 : 4 + seed * 5, spec, seed % 2 ? 512 : 96);
          const batch = pack(pairs);
          const [a, b] = await Promise.all([m.forward(...batch), c.forward(...batch)]);
          expect(maxAbsDiff(a.logits, b.logits)).toBeLessThanOrEqual(1e-4);
        }
      } finally {
        await Promise.all([m.dispose(), c.dispose()]);
      }
    });

    it('runs the GPU layout (coarse attention groups, bucketed token rows) on the CPU to the same logits', async () => {
      const m = await load([file], spec, { attention: 'coarse', rowBuckets: true });
      const c = await native().loadEngine({ backend: 'cpu', device: 'auto', weights: [file], spec });
      try {
        for (const [seed, count] of [
          [3, 1],
          [4, 9],
          [5, 37],
        ] as const) {
          const pairs = randomPairs(seed, count, spec, 300);
          const batch = pack(pairs);
          const [a, b] = await Promise.all([m.forward(...batch), c.forward(...batch)]);
          expect(maxAbsDiff(a.logits, b.logits)).toBeLessThanOrEqual(1e-4);
          // Padding rows and padded attention slots count as computed, never fewer than the tokens.
          const tokens = batch[0].length;
          expect(a.computedSlots).toBeGreaterThanOrEqual(tokens);
        }
      } finally {
        await Promise.all([m.dispose(), c.dispose()]);
      }
    });

    it('handles models with more than 512 positions (buckets in steps of 128 past 512)', async () => {
      const s = { ...spec, maxPositions: 1024, numLayers: 2 };
      const f = writeModel(join(dir, 'long'), s, randomBert(s, 8), 'F32');
      const r = rng(12);
      const long = [40, 200, 513, 700, 1024, 9].map((n) => ({
        ids: Array.from({ length: n }, () => Math.floor(r() * s.vocabSize)),
        typeIds: Array.from({ length: n }, (_, t) => (t < 10 ? 0 : 1)),
      }));
      const [m, c] = await Promise.all([
        load([f], s),
        native().loadEngine({ backend: 'cpu', device: 'auto', weights: [f], spec: s }),
      ]);
      try {
        const batch = pack(long);
        const [a, b] = await Promise.all([m.forward(...batch), c.forward(...batch)]);
        expect(maxAbsDiff(a.logits, b.logits)).toBeLessThanOrEqual(1e-4);
        expect(a.computedSlots).toBe(40 + 224 + 640 + 768 + 1024 + 16); // bucket lengths
      } finally {
        await Promise.all([m.dispose(), c.dispose()]);
      }
    });

    it('scores a pair the same alone and anywhere in a batch (bucket padding is masked)', async () => {
      const engine = await load([file], spec);
      try {
        const pairs = randomPairs(7, 30, spec, 200);
        const L = spec.numLabels;
        const batch = (await engine.forward(...pack(pairs))).logits;
        const reversed = (await engine.forward(...pack([...pairs].reverse()))).logits;
        for (let i = 0; i < pairs.length; i++) {
          const alone = (await engine.forward(...pack([pairs[i] as FixturePair]))).logits;
          const r = pairs.length - 1 - i;
          expect(maxAbsDiff(alone, batch.subarray(i * L, i * L + L))).toBeLessThanOrEqual(1e-5);
          expect(maxAbsDiff(alone, reversed.subarray(r * L, r * L + L))).toBeLessThanOrEqual(1e-5);
        }
        for (const [i, p] of pairs.slice(0, 4).entries()) {
          const want = referenceLogits(spec, tensors, 'F32', p.ids, p.typeIds);
          expect(maxAbsDiff(batch.subarray(i * L, i * L + L), want)).toBeLessThanOrEqual(1e-4);
        }
      } finally {
        await engine.dispose();
      }
    });

    it('matches the float64 forward for gelu_new and relu, and in 16-bit on the CPU loosely', async () => {
      for (const hiddenAct of ['gelu_new', 'relu'] as const) {
        const s = { ...spec, hiddenAct, numLayers: 2, maxPositions: 64 };
        const t = randomBert(s, 5);
        const f = writeModel(join(dir, hiddenAct), s, t, 'BF16');
        const pairs = randomPairs(3, 5, s, 64);
        for (const dtype of ['float32', 'bfloat16'] as const) {
          const engine = await load([f], s, { dtype });
          expect(engine.info().dtype).toBe(dtype);
          const got = (await engine.forward(...pack(pairs))).logits;
          await engine.dispose();
          const want = pairs.flatMap((p) => referenceLogits(s, t, 'BF16', p.ids, p.typeIds));
          expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(dtype === 'float32' ? 1e-4 : 0.15);
        }
      }
    });

    it('warms up, reports MLX memory, and live memory does not grow over many batches', async () => {
      const limit = 4 << 20;
      const engine = await load([file], spec, { cacheLimitBytes: limit });
      try {
        const weightBytes = Object.values(tensors).reduce((a, t) => a + t.data.length * 4, 0);
        expect(engine.memory().activeBytes).toBeGreaterThanOrEqual(weightBytes);
        expect(await engine.warmup()).toBeGreaterThan(0);
        const after = engine.memory();
        for (let i = 0; i < 60; i++)
          await engine.forward(...pack(randomPairs(100 + i, 1 + (i % 9), spec, 300)));
        const end = engine.memory();
        // Nothing of a finished batch stays alive; freed buffers stay under the cache limit.
        expect(end.activeBytes).toBe(after.activeBytes);
        expect(end.cacheBytes).toBeLessThanOrEqual(limit);
        expect(end.peakBytes).toBeGreaterThanOrEqual(end.activeBytes);
      } finally {
        await engine.dispose();
      }
    });

    it('runs several engines on their own threads at once, and loads and disposes many in turn', async () => {
      const pairs = randomPairs(9, 12, spec, 128);
      const solo = await load([file], spec);
      const want = (await solo.forward(...pack(pairs))).logits;
      await solo.dispose();
      const engines = await Promise.all(Array.from({ length: 3 }, () => load([file], spec)));
      const got = await Promise.all(
        engines.flatMap((e) => [e.forward(...pack(pairs)), e.forward(...pack(pairs))]),
      );
      for (const r of got) expect(Array.from(r.logits)).toEqual(Array.from(want));
      await Promise.all(engines.map((e) => e.dispose()));
      // (The same batch gives the same bits; another batch composition may differ in the last bits,
      // as BLAS blocks its GEMMs by row count.)
      for (let i = 0; i < 12; i++) {
        const e = await load([file], spec);
        expect(Array.from((await e.forward(...pack(pairs))).logits)).toEqual(Array.from(want));
        await e.dispose();
      }
    });

    it('rejects what it cannot do with typed errors', async () => {
      await expect(load([file], spec, { dtype: 'float64' as never })).rejects.toMatchObject({
        code: 'E_INPUT',
      });
      if (!hasGpu) {
        await expect(load([file], spec, { device: 'gpu' })).rejects.toMatchObject({
          code: 'E_BACKEND_UNAVAILABLE',
          message: expect.stringMatching(/no usable GPU/),
        });
      }
      await expect(load([file], { ...spec, hiddenAct: 'swish' as never })).rejects.toMatchObject({
        code: 'E_BAD_CONFIG',
      });
      const truncated = join(dir, 'truncated.safetensors');
      writeFileSync(truncated, readFileSync(file).subarray(0, 4096));
      await expect(load([truncated], spec)).rejects.toMatchObject({ code: 'E_BAD_WEIGHTS' });
      await expect(load([file], { ...spec, hiddenSize: 95 })).rejects.toMatchObject({
        code: expect.stringMatching(/E_BAD_CONFIG|E_BAD_WEIGHTS/),
      });
      const engine = await load([file], spec);
      try {
        await expect(
          engine.forward(
            Int32Array.from([1, spec.vocabSize]),
            Int32Array.from([0, 0]),
            Int32Array.from([0, 2]),
          ),
        ).rejects.toMatchObject({ code: 'E_INPUT' });
        // Still usable after a rejected batch.
        const ok = await engine.forward(...pack(randomPairs(4, 2, spec, 20)));
        expect(ok.logits.length).toBe(2 * spec.numLabels);
      } finally {
        await engine.dispose();
      }
    });
  });
});

describe.skipIf(!hasGpu)('mlx engine on the GPU: golden numerics, float16', () => {
  for (const name of models) {
    it(`${name}: max abs error <= 3e-2 and Spearman >= 0.999 per label`, async () => {
      const dir = join(FIXTURE_MODELS_DIR, name);
      const spec = fixtureSpec(dir);
      const expected = fixtureExpected(dir);
      const engine = await native().loadEngine({
        backend: 'mlx',
        device: 'gpu',
        weights: [join(dir, 'float16', 'model.safetensors')],
        spec,
      });
      try {
        expect(engine.info()).toMatchObject({ backend: 'mlx', device: 'gpu', dtype: 'float16' });
        const res = await engine.forward(...pack(expected.pairs));
        const want = expected.logits.float16;
        expect(maxAbsDiff(res.logits, want.flat())).toBeLessThanOrEqual(3e-2);
        for (let j = 0; j < spec.numLabels; j++) {
          const got = want.map((_, i) => res.logits[i * spec.numLabels + j] as number);
          expect(
            spearman(
              got,
              want.map((row) => row[j] as number),
            ),
          ).toBeGreaterThanOrEqual(0.999);
        }
      } finally {
        await engine.dispose();
      }
    });
  }
});

describe('build-time detection (scripts/find-mlx.mjs)', () => {
  let out: string;
  beforeAll(() => {
    out = mkdtempSync(join(tmpdir(), 'mlx-rerank-findmlx-'));
  });
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  // Each call gets its own report folder, so the real build/mlx-status.json is never touched.
  function findMlx(flag: string, env: Record<string, string>, name: string) {
    const dir = join(out, name);
    const r = spawnSync(process.execPath, [join(packageRoot(), 'scripts', 'find-mlx.mjs'), flag], {
      cwd: packageRoot(),
      encoding: 'utf8',
      env: { ...process.env, MLX_RERANK_NO_MLX: '', MLX_RERANK_FIND_MLX_OUT: dir, ...env },
    });
    expect(r.status, r.stderr).toBe(0);
    return {
      stdout: r.stdout,
      status: JSON.parse(readFileSync(join(dir, 'mlx-status.json'), 'utf8')) as MlxBuildStatus,
    };
  }

  function fakeMlx(name: string, version: string): string {
    const dir = join(out, name);
    mkdirSync(join(dir, 'lib'), { recursive: true });
    writeFileSync(join(dir, 'lib', 'libmlx.so'), '');
    writeFileSync(
      join(dir, 'MLXConfig.cmake'),
      `add_library(mlx SHARED IMPORTED)\nset_target_properties(mlx PROPERTIES IMPORTED_LOCATION "${dir}/lib/libmlx.so" INTERFACE_INCLUDE_DIRECTORIES "${dir}")\n`,
    );
    writeFileSync(
      join(dir, 'MLXConfigVersion.cmake'),
      `set(PACKAGE_VERSION "${version}")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n`,
    );
    return dir;
  }

  it.skipIf(mlx.available)(
    'this addon was built without MLX: backends() says what the build tried, and an mlx load is refused',
    async () => {
      expect(native().backends().mlx).toEqual({ available: false, reason: 'not compiled in' });
      const status = mlxBuildStatus();
      expect(status?.found).toBe(false);
      expect(status?.tried.length).toBeGreaterThan(0);
      for (const t of status?.tried ?? []) expect(mlx.reason).toContain(t);
      expect(mlx.reason).toMatch(/^absent — not found at build time \(tried: /);
      const dir = join(FIXTURE_MODELS_DIR, models[0] as string);
      await expect(load([join(dir, 'float32', 'model.safetensors')], fixtureSpec(dir))).rejects.toMatchObject(
        {
          code: 'E_BACKEND_UNAVAILABLE',
          message: expect.stringMatching(/not compiled into this build/),
        },
      );
    },
  );

  it('MLX_RERANK_NO_MLX=1 leaves MLX out of the build, and backends() says so', () => {
    const { stdout, status } = findMlx('--enabled', { MLX_RERANK_NO_MLX: '1' }, 'off');
    expect(stdout).toBe('0');
    expect(status).toMatchObject({ found: false, tried: ['MLX_RERANK_NO_MLX=1'] });
    expect(findMlx('--sources', { MLX_RERANK_NO_MLX: '1' }, 'off').stdout).toBe('');
    const explained = explainMlx({ available: false, reason: 'not compiled in' }, status);
    expect(explained.reason).toMatch(/^absent — not found at build time \(tried: MLX_RERANK_NO_MLX=1\)/);
  });

  it('reports each place it tried and why it was passed over', () => {
    const empty = join(out, 'empty-prefix');
    mkdirSync(empty, { recursive: true });
    const a = findMlx('--status', { MLX_DIR: empty, CMAKE_PREFIX_PATH: '' }, 'empty').status;
    expect(a.tried).toContain(`MLX_DIR=${empty}: no MLXConfig.cmake`);
    expect(a.tried).toContain('CMAKE_PREFIX_PATH unset');
    expect(a.tried.some((t) => t.startsWith('python3 -m mlx'))).toBe(true);

    const broken = join(out, 'broken');
    mkdirSync(broken, { recursive: true });
    writeFileSync(join(broken, 'MLXConfig.cmake'), 'message(FATAL_ERROR "this MLX install is broken")\n');
    const b = findMlx('--status', { MLX_DIR: broken }, 'broken').status;
    expect(b.tried.find((t) => t.startsWith(`MLX_DIR=${broken}:`))).toMatch(/unusable|older/);
  });

  it.skipIf(spawnSync('cmake', ['--version']).status !== 0)(
    'refuses an MLX older than 0.30 (asks CMake)',
    () => {
      const old = fakeMlx('old', '0.29.1');
      const r = findMlx('--status', { MLX_DIR: old }, 'old').status;
      expect(r.tried).toContain(`MLX_DIR=${old}: MLX 0.29.1 is older than 0.30.0`);
      const ok = fakeMlx('new', '0.31.0');
      const n = findMlx('--status', { MLX_DIR: ok }, 'new').status;
      expect(n).toMatchObject({
        found: true,
        version: '0.31.0',
        from: `MLX_DIR=${ok}`,
        libDir: join(ok, 'lib'),
      });
      expect(findMlx('--libraries', { MLX_DIR: ok }, 'new').stdout).toBe(join(ok, 'lib', 'libmlx.so'));
      expect(findMlx('--ldflags', { MLX_DIR: ok }, 'new').stdout).toBe(`-Wl,-rpath,${join(ok, 'lib')}`);
      expect(findMlx('--cflags', { MLX_DIR: ok }, 'new').stdout).toMatch(/-std=c\+\+20/);
    },
  );

  it.skipIf(!mlx.available)('hands binding.gyp the headers and library of the MLX this addon uses', () => {
    const status = mlxBuildStatus();
    expect(status?.found).toBe(true);
    expect(status?.version).toBe(mlx.version);
    const env: Record<string, string> = status?.from?.startsWith('MLX_DIR=')
      ? { MLX_DIR: status.from.slice(8) }
      : {};
    const inc = findMlx('--include-dirs', env, 'real').stdout.split(' ');
    expect(inc.some((d) => existsSync(join(d, 'mlx', 'mlx.h')))).toBe(true);
    for (const lib of findMlx('--libraries', env, 'real').stdout.split(' '))
      expect(existsSync(lib)).toBe(true);
    expect(findMlx('--sources', env, 'real').stdout).toBe('native/engine_mlx.cpp');
  });
});

describe('backends() explains an absent mlx', () => {
  it('keeps an addon reason that says more than "not compiled in"', () => {
    const info = { available: false, reason: 'MLX failed to initialise: no device' };
    expect(explainMlx(info, undefined)).toEqual(info);
  });

  it('says a prebuild without MLX was loaded when the build found MLX', () => {
    const r = explainMlx(
      { available: false, reason: 'not compiled in' },
      { found: true, version: '0.32.2', from: 'MLX_DIR=/x', tried: [] },
    );
    expect(r.reason).toMatch(/found at build time \(MLX_DIR=\/x\) but the loaded addon was built without it/);
    expect(explainMlx({ available: false, reason: 'not compiled in' }, undefined).reason).toMatch(
      /made without MLX/,
    );
  });

  it('says what the build tried, or that the addon has mlx', () => {
    const b = backends();
    expect(b.cpu.available).toBe(true);
    if (b.mlx.available) {
      expect(b.mlx.version).toMatch(/^\d+\.\d+\.\d+/);
      expect(b.mlx.devices).toContain('cpu');
    } else {
      expect(b.mlx.reason).toMatch(/absent|failed/);
    }
  });
});
