/**
 * Errors: every rejection of every public function is an MlxRerankError subclass (issue 13, item 8),
 * callbacks that throw are isolated (item 10), and the load signal is honoured at every step of
 * CrossEncoder.load, releasing the engine once made (item 11). The real addon and real files throughout.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortedError,
  BackendUnavailableError,
  backends,
  ConfigError,
  CrossEncoder,
  DisposedError,
  InputError,
  loadModelSpec,
  MlxRerankError,
  type ModelFiles,
  ModelNotFoundError,
  QueueFullError,
  resolveModel,
  synthesizeModel,
  Tokenizer,
  WeightsError,
} from '../src/index';
import { LISTENER_WARNING_CODE } from '../src/listeners';
import { type NativeAddon, type NativeEngine, native } from '../src/native';
import { cleanupModels, pairPool, syntheticModel } from './helpers/api-model';

type ErrorClass = abstract new (...args: never[]) => MlxRerankError;
const BASE = { backend: 'cpu', maxLength: 64, warmup: false } as const;
const pool = pairPool(3, 8, 20);
let files: ModelFiles;
let truncated: ModelFiles;
let ce: CrossEncoder;
let disposed: CrossEncoder;

beforeAll(async () => {
  files = await syntheticModel('tiny', 8);
  // The same model with its weights cut short: the native loader refuses it (E_BAD_WEIGHTS).
  truncated = await syntheticModel('tiny', 8);
  const w = truncated.weights[0] as string;
  const bytes = readFileSync(w);
  writeFileSync(w, bytes.subarray(0, bytes.length - 1000));
  ce = await CrossEncoder.load(files, BASE);
  disposed = await CrossEncoder.load(files, BASE);
  await disposed.dispose();
});

afterAll(async () => {
  await ce?.dispose();
  cleanupModels();
});

describe('every public function rejects with an MlxRerankError subclass', () => {
  const cases: Array<[string, () => unknown, ErrorClass]> = [
    ['load: weights cut short (native loader)', () => CrossEncoder.load(truncated, BASE), WeightsError],
    ['load: a bad option', () => CrossEncoder.load(files, { ...BASE, threads: -1 }), InputError],
    [
      'load: a signal aborted before',
      () => CrossEncoder.load(files, { signal: AbortSignal.abort() }),
      AbortedError,
    ],
    ['load: not a model', () => CrossEncoder.load(42 as never), InputError],
    [
      'load: cpu engine asked for a GPU',
      () => CrossEncoder.load(files, { backend: 'cpu', device: 'gpu' }),
      BackendUnavailableError,
    ],
    [
      'load: no such model, offline',
      () =>
        CrossEncoder.load('nobody/nothing', {
          offline: true,
          cacheDir: mkdtempSync(join(tmpdir(), 'api-errors-')),
        }),
      ModelNotFoundError,
    ],
    ['predict: pairs not strings', () => ce.predict([['q', 1 as never]]), InputError],
    [
      'predict: more pairs than the queue holds',
      () => ce.predict(Array(200_000).fill(['q', 'd'])),
      QueueFullError,
    ],
    ['predict: aborted', () => ce.predict(pool, { signal: AbortSignal.abort() }), AbortedError],
    ['predict: after dispose', () => disposed.predict(pool), DisposedError],
    ['rank: query not a string', () => ce.rank(5 as never, ['d']), InputError],
    ['rank: after dispose', () => disposed.rank('q', ['d']), DisposedError],
    ['warmup: after dispose', () => disposed.warmup(), DisposedError],
    ['on: unknown event', () => ce.on('nope' as never, () => undefined), InputError],
    [
      'native loadEngine: weights cut short',
      () =>
        native().loadEngine({
          backend: 'cpu',
          device: 'cpu',
          weights: truncated.weights,
          spec: ce.info.spec,
        }),
      WeightsError,
    ],
    [
      'native loadEngine: a spec the loader refuses',
      () =>
        native().loadEngine({
          backend: 'cpu',
          device: 'cpu',
          weights: files.weights,
          spec: { ...ce.info.spec, numLayers: -1 },
        }),
      ConfigError,
    ],
    [
      'resolveModel: no such model, offline',
      () => resolveModel('nobody/nothing', { offline: true, cacheDir: tmpdir() }),
      MlxRerankError,
    ],
    [
      'loadModelSpec: no config file',
      () => loadModelSpec({ ...files, config: join(tmpdir(), 'none', 'config.json') }),
      ConfigError,
    ],
    [
      'synthesizeModel: unknown shape',
      () => synthesizeModel({ shape: 'huge' as never, outDir: tmpdir() }),
      MlxRerankError,
    ],
    ['Tokenizer.fromFiles: no files', () => Tokenizer.fromFiles({}), MlxRerankError],
  ];

  it.each(cases)('%s', async (_name, run, cls) => {
    let err: unknown;
    try {
      await run();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MlxRerankError);
    expect(err).toBeInstanceOf(cls);
    expect((err as MlxRerankError).code).toMatch(/^E_[A-Z_]+$/);
  });

  it('a native engine error keeps its code and message, and the original as its cause', async () => {
    const engine = await native().loadEngine({
      backend: 'cpu',
      device: 'cpu',
      weights: files.weights,
      spec: ce.info.spec,
    });
    const bad = Int32Array.from([101, ce.info.spec.vocabSize, 102]);
    const err = await engine
      .forward(bad, new Int32Array(3), Int32Array.from([0, 3]))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toMatch(/vocabulary/);
    expect((err as InputError).cause).toBeInstanceOf(Error);
    await engine.dispose();
    expect(backends().cpu.available).toBe(true);
  });
});

describe('callbacks that throw are isolated', () => {
  it("a throwing 'batch' or 'call' listener, onBatch or onMetrics silences nothing after it", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const m = await CrossEncoder.load(files, {
      ...BASE,
      onBatch: () => {
        throw new Error('onBatch bug');
      },
    });
    try {
      const seen = { batch: 0, call: 0 };
      m.on('batch', () => {
        throw new Error('batch listener bug');
      });
      m.on('batch', () => seen.batch++);
      m.on('call', () => {
        throw new Error('call listener bug');
      });
      m.on('call', () => seen.call++);
      const scores = await m.predict(pool, {
        activation: 'none',
        onMetrics: () => {
          throw new Error('onMetrics bug');
        },
      });
      expect(scores).toEqual(await ce.predict(pool, { activation: 'none' }));
      expect(seen.call).toBe(1);
      expect(seen.batch).toBeGreaterThan(0);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      const texts = warnings.map((w) => `${(w as { code?: string }).code} ${w.message}`).join('\n');
      for (const bug of ['onBatch bug', 'batch listener bug', 'call listener bug', 'onMetrics bug']) {
        expect(texts).toContain(bug);
      }
      expect(texts).toContain(LISTENER_WARNING_CODE);
      // The scheduler still runs.
      expect(await m.predict(pool.slice(0, 2), { activation: 'none' })).toEqual(
        await ce.predict(pool.slice(0, 2), { activation: 'none' }),
      );
    } finally {
      process.off('warning', onWarning);
      await m.dispose();
    }
  });
});

describe('the load signal', () => {
  /** Counts engines made and released through the real addon while `fn` runs. */
  const count = { loaded: 0, released: 0 };
  async function counting(fn: (hooks: { onWarmup?: () => void }) => Promise<void>) {
    const addon = native() as NativeAddon;
    const real = addon.loadEngine;
    count.loaded = 0;
    count.released = 0;
    const hooks: { onWarmup?: () => void } = {};
    addon.loadEngine = async (o) => {
      const e = await real(o);
      count.loaded++;
      return {
        ...e,
        warmup: () => {
          hooks.onWarmup?.();
          return e.warmup();
        },
        dispose: () => {
          count.released++;
          return e.dispose();
        },
      } satisfies NativeEngine;
    };
    try {
      await fn(hooks);
    } finally {
      addon.loadEngine = real;
    }
    return { ...count };
  }

  it('aborted before: AbortedError before any work (not even reading the files)', async () => {
    const missing: ModelFiles = { ...files, config: join(tmpdir(), 'no-such-model', 'config.json') };
    const made = await counting(async () => {
      await expect(
        CrossEncoder.load(missing, { ...BASE, signal: AbortSignal.abort() }),
      ).rejects.toBeInstanceOf(AbortedError);
    });
    expect(made.loaded).toBe(0);
  });

  /** ModelFiles whose `key` aborts the controller when the load reads it (a step starting). */
  function abortingAt(key: 'config' | 'tokenizerJson' | 'weights', ac: AbortController): ModelFiles {
    const f = { ...files };
    const value = f[key];
    Object.defineProperty(f, key, {
      get() {
        ac.abort(new Error(`aborted at ${key}`));
        return value;
      },
    });
    return f;
  }

  it.each(['config', 'tokenizerJson', 'weights'] as const)(
    'aborted while reading %s: AbortedError, and an engine already made is released',
    async (key) => {
      const ac = new AbortController();
      const made = await counting(async () => {
        const err = await CrossEncoder.load(abortingAt(key, ac), { ...BASE, signal: ac.signal }).catch(
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(AbortedError);
        expect((err as AbortedError).cause).toEqual(new Error(`aborted at ${key}`));
        // The engine load runs to its end in native code (it cannot be interrupted): then it is released.
        const until = performance.now() + 10_000;
        while (key === 'weights' && count.released === 0 && performance.now() < until) {
          await new Promise((r) => setTimeout(r, 10));
        }
      });
      // Reading the weights' paths is the engine load starting: it was made, and let go.
      expect(made).toEqual(key === 'weights' ? { loaded: 1, released: 1 } : { loaded: 0, released: 0 });
    },
  );

  it('aborted during warm-up: AbortedError, the engine released', async () => {
    const ac = new AbortController();
    const made = await counting(async (hooks) => {
      hooks.onWarmup = () => ac.abort();
      await expect(
        CrossEncoder.load(files, { ...BASE, warmup: true, signal: ac.signal }),
      ).rejects.toBeInstanceOf(AbortedError);
    });
    expect(made).toEqual({ loaded: 1, released: 1 });
  });
});
