/**
 * Every numeric option has a range and a typed error outside it; unknown option names are refused with
 * the closest valid one (issue 13, item 9). Bad options are refused before any work, so each load
 * here costs nothing.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { LOAD_KEYS, OPTION_RANGES, RANK_KEYS } from '../src/api-input';
import {
  CrossEncoder,
  DEFAULT_LIMITS,
  DisposedError,
  DownloadError,
  InputError,
  type LoadOptions,
  MlxRerankError,
  type ModelFiles,
  QueueFullError,
} from '../src/index';
import { engineDefaults, LIMITS } from '../src/scheduler';
import { closest, editDistance } from '../src/validate';
import { cleanupModels, syntheticModel } from './helpers/api-model';

let files: ModelFiles;
let ce: CrossEncoder;

beforeAll(async () => {
  files = await syntheticModel('tiny', 2);
  ce = await CrossEncoder.load(files, { backend: 'cpu', maxLength: 64, warmup: false });
});

afterAll(async () => {
  await ce?.dispose();
  cleanupModels();
});

/** [option, bad values]: each must be refused with an InputError naming the option. */
const BAD_LOAD: Array<[keyof LoadOptions, unknown[]]> = [
  ['maxWaitMs', [1e12, 99_999_999_999, -1, Number.NaN, Number.POSITIVE_INFINITY, '5']],
  ['maxBatchTokens', [0, -5, 1.5, Number.NaN, 1e12]],
  ['maxBatchSize', [0, 2.5, 1e9, null]],
  ['maxQueuePairs', [0, -1, 1e12, Number.NaN]],
  ['sortWindow', [-1, 0.5, 1e12]],
  ['earlyBatchTokens', [-1, 0.5, 2 ** 25]],
  ['threads', [Number.NaN, -3, 0, 1e9, 1e12, 2.5, '4']],
  ['maxLength', [0, 3, 64.5, Number.NaN, 1e12]],
  ['chunkStride', [-1, 1.5, Number.NaN]],
  ['cacheLimitBytes', [-1, 1.5, 2 ** 60]],
  ['engineReplicas', [0, 9, 1.5, '2']],
  ['retries', [-1, 1e9, 0.5]],
  ['warmup', ['yes', 1]],
  ['compile', ['no']],
  ['backend', ['gpu', 1]],
  ['device', ['tpu']],
  ['activation', ['relu']],
  ['longDocuments', ['split']],
  ['truncation', ['only_first']],
  ['dtype', [16]],
  ['onBatch', ['not a function']],
  ['signal', [{ aborted: false }]],
];

describe('load options', () => {
  it.each(BAD_LOAD)('%s out of range or of the wrong type: InputError naming it', async (name, values) => {
    for (const v of values) {
      const p = CrossEncoder.load(files, { backend: 'cpu', warmup: false, [name]: v });
      await expect(p, `${name}: ${String(v)}`).rejects.toBeInstanceOf(InputError);
      await expect(p).rejects.toThrow(new RegExp(`\\b${name}\\b`));
    }
  });

  it('every scheduler limit accepts its whole declared range, ends included, and its default lies in it', async () => {
    for (const [name, r] of Object.entries(LIMITS)) {
      expect(DEFAULT_LIMITS[name as keyof typeof DEFAULT_LIMITS]).toBe(r.default);
      expect(r.default).toBeGreaterThanOrEqual(r.min);
      expect(r.default).toBeLessThanOrEqual(r.max);
    }
    const edges = await CrossEncoder.load(files, {
      backend: 'cpu',
      warmup: false,
      maxLength: 64,
      maxWaitMs: LIMITS.maxWaitMs.max,
      maxBatchTokens: LIMITS.maxBatchTokens.max,
      maxBatchSize: LIMITS.maxBatchSize.min,
      sortWindow: LIMITS.sortWindow.min,
      maxQueuePairs: LIMITS.maxQueuePairs.max,
      threads: 1,
    });
    expect(edges.limits).toMatchObject({ maxWaitMs: 60_000, maxBatchSize: 1, sortWindow: 0 });
    await edges.dispose();
  });

  it("batches leave early (earlyBatchTokens) as the engine reports unless the caller says; the cpu engine's wait", async () => {
    // As the mlx engine reports itself on a GPU (native/engine_mlx.cpp, limits()).
    const gpu = { maxBatchTokens: 65536, maxBatchSize: 1024, pipelineDepth: 2, earlyBatchTokens: 16384 };
    expect(engineDefaults(gpu, {}).earlyBatchTokens).toBe(16384);
    expect(engineDefaults(gpu, { earlyBatchTokens: 0 }).earlyBatchTokens).toBeUndefined();
    const { earlyBatchTokens: _, ...silent } = gpu; // an engine (addon) that reports none: wait
    expect(engineDefaults(silent, {}).earlyBatchTokens).toBeUndefined();
    const cpu = await CrossEncoder.load(files, { backend: 'cpu', warmup: false, maxLength: 64, threads: 1 });
    expect(cpu.info.engineLimits.earlyBatchTokens).toBe(0);
    expect(cpu.limits.earlyBatchTokens).toBe(0);
    await cpu.dispose();
  });

  it('unknown option names are refused, naming the closest valid option', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ maxWaitMS: 5 }, /Unknown CrossEncoder.load option 'maxWaitMS': did you mean 'maxWaitMs'\?/],
      [{ max_batch_size: 5 }, /did you mean 'maxBatchSize'/],
      [{ thread: 2 }, /did you mean 'threads'/],
      [{ wibble: 1 }, /Unknown CrossEncoder.load option 'wibble'\. Valid options: .*maxWaitMs/],
    ];
    for (const [o, msg] of cases) {
      const p = CrossEncoder.load(files, o as LoadOptions);
      await expect(p).rejects.toBeInstanceOf(InputError);
      await expect(p).rejects.toThrow(msg);
    }
    await expect(CrossEncoder.load(files, 'fast' as never)).rejects.toThrow(/options must be an object/);
  });
});

describe('per-call options', () => {
  const docs = ['a cat', 'a dog', 'a river'];

  it('rank and predict refuse bad values and unknown names with InputError', async () => {
    const bad: Array<[Promise<unknown>, RegExp]> = [
      [ce.rank('q', docs, { topk: 1 } as never), /Unknown rank option 'topk': did you mean 'topK'\?/],
      [ce.rank('q', docs, { topK: -1 }), /topK must be an integer in \[0, /],
      [ce.rank('q', docs, { topK: 1.5 }), /topK/],
      [ce.rank('q', docs, { topK: Number.NaN }), /topK/],
      [ce.rank('q', docs, { topK: 1e12 }), /topK/],
      [ce.rank('q', docs, { label: 1 }), /label must be an integer in \[0, 0\]/],
      [ce.rank('q', docs, { returnDocuments: 'yes' as never }), /returnDocuments/],
      [ce.predict([['q', 'd']], { activation: 'relu' as never }), /activation/],
      [ce.predict([['q', 'd']], { signal: {} as never }), /signal must be an AbortSignal/],
      [ce.predict([['q', 'd']], { onMetrics: 5 as never }), /onMetrics must be a function/],
      [ce.predict([['q', 'd']], { singal: AbortSignal.abort() } as never), /did you mean 'signal'/],
      [ce.predict([['q', 'd']], 7 as never), /predict options must be an object/],
    ];
    for (const [p, msg] of bad) {
      await expect(p).rejects.toBeInstanceOf(InputError);
      await expect(p).rejects.toThrow(msg);
    }
    // The good path still works (topK past the end returns everything).
    expect((await ce.rank('q', docs, { topK: 10 })).length).toBe(3);
  });

  it('on() refuses a listener that is not a function and an unknown event, synchronously', () => {
    expect(() => ce.on('batch', 5 as never)).toThrow(InputError);
    expect(() => ce.on('batches' as never, () => undefined)).toThrow(InputError);
  });
});

describe('docs/limits.md', () => {
  it('lists every option, and every declared range as the code enforces it', () => {
    const doc = readFileSync(new URL('../docs/limits.md', import.meta.url), 'utf8');
    for (const name of [...Object.keys(LOAD_KEYS), ...Object.keys(RANK_KEYS), 'pipelineDepth']) {
      expect(doc, name).toContain(`\`${name}\``);
    }
    const ranges = { ...LIMITS, ...OPTION_RANGES };
    for (const [name, r] of Object.entries(ranges)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${name}\``) || l.includes(`\`${name}\` (`));
      const stated = `${r.integer ? 'integer' : 'number'} in [${r.min}, ${r.max}]`;
      expect(row ?? doc.match(new RegExp(`\`${name}\`[^\\n]*`))?.[0], name).toContain(stated);
    }
  });
});

describe('validation helpers', () => {
  it('edit distance is Levenshtein (symmetric, 0 only for equal strings, the textbook cases)', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('flaw', 'lawn')).toBe(2);
    expect(editDistance('topk', 'topK')).toBe(1);
    expect(editDistance('abc', 'abc')).toBe(0);
    expect(editDistance('maxWait', 'sortWindow')).toBe(editDistance('sortWindow', 'maxWait'));
    expect(closest('colour', ['color', 'label'])).toBe('color');
    expect(closest('zzzzzz', ['color', 'label'])).toBeUndefined();
  });

  it("each error class's code is a literal type", () => {
    const c: 'E_INPUT' = new InputError('x').code;
    expect(c).toBe('E_INPUT');
    expectTypeOf(new QueueFullError('x').code).toEqualTypeOf<'E_QUEUE_FULL'>();
    expectTypeOf(new DisposedError().code).toEqualTypeOf<'E_DISPOSED'>();
    expectTypeOf(new DownloadError('x', 401).code).toEqualTypeOf<'E_DOWNLOAD' | 'E_AUTH'>();
    expect(new DownloadError('x', 401).code).toBe('E_AUTH');
    const e: MlxRerankError = new InputError('x');
    expect(e).toBeInstanceOf(MlxRerankError);
  });
});
