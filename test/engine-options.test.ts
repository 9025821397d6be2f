/**
 * Engine tuning as declared, typed options (issue 14): the engines read no environment variable, the
 * options reach them through loadEngine / CrossEncoder.load (checked at both boundaries), the one
 * environment table still sets what a caller leaves unset, and each engine reports what it is built
 * for (info(): batch limits, pipeline depth, whether it pads), from which the scheduler takes its
 * defaults.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENGINE_ENV, ENGINE_OPTIONS, engineTuningFromEnv } from '../src/engine-options';
import { CrossEncoder, InputError, type ModelFiles } from '../src/index';
import { type NativeEngine, type NativeEngineOptions, native, packageRoot } from '../src/native';
import { cleanupModels, syntheticModel } from './helpers/api-model';
import {
  FIXTURE_MODELS_DIR,
  type FixtureExpected,
  fixtureExpected,
  fixtureSpec,
  pack,
} from './helpers/cpu-model';

const dir = join(FIXTURE_MODELS_DIR, 'tiny-l2-h64');
const spec = fixtureSpec(dir);
const weights = [join(dir, 'float32', 'model.safetensors')];
const expected: FixtureExpected = fixtureExpected(dir);

function load(extra: Partial<NativeEngineOptions> = {}): Promise<NativeEngine> {
  return native().loadEngine({ backend: 'cpu', device: 'cpu', weights, spec, ...extra });
}

/** Runs `fn` with the environment variable set, restoring it after. */
async function withEnv<T>(name: string, value: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

async function kernelsOf(
  extra: Partial<NativeEngineOptions> = {},
): Promise<{ name: string; logits: Float32Array }> {
  const e = await load(extra);
  try {
    const { logits } = await e.forward(...pack(expected.pairs));
    return { name: e.info().deviceName, logits };
  } finally {
    await e.dispose();
  }
}

describe('engine tuning options', () => {
  it('native code reads no environment variable (the test driver aside)', () => {
    const root = join(packageRoot(), 'native');
    const files = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter(
      (f) => /\.(cpp|h)$/.test(f) && !f.startsWith('test'),
    );
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) expect(readFileSync(join(root, f), 'utf8'), f).not.toMatch(/\bgetenv\s*\(/);
  });

  it('cpuIsa reaches the cpu engine as an option: scalar kernels, the same logits', async () => {
    const best = await kernelsOf();
    const scalar = await kernelsOf({ cpuIsa: 'scalar' });
    expect(scalar.name).toMatch(/^scalar x /);
    expect(native().backends({ cpuIsa: 'scalar' }).cpu.isa).toBe('scalar');
    expect(native().backends().cpu.isa).toBe(best.name.split(' ')[0]);
    for (let i = 0; i < best.logits.length; i++) {
      expect(Math.abs((scalar.logits[i] as number) - (best.logits[i] as number))).toBeLessThan(1e-4);
    }
  });

  it('an environment variable sets what the caller leaves unset; the caller wins', async () => {
    const best = native().backends().cpu.isa as string;
    await withEnv('MLX_RERANK_CPU_ISA', 'scalar', async () => {
      expect((await kernelsOf()).name).toMatch(/^scalar x /);
      expect(native().backends().cpu.isa).toBe('scalar');
      if (best !== 'scalar')
        expect((await kernelsOf({ cpuIsa: 'avx512' })).name).toMatch(
          new RegExp(`^${best.replace('+', '\\+')} x `),
        );
    });
    // A value the option would refuse is refused, naming the variable (not ignored as before).
    await withEnv('MLX_RERANK_CPU_ISA', 'sse9', async () => {
      const p = load();
      await expect(p).rejects.toBeInstanceOf(InputError);
      await expect(p).rejects.toThrow(/MLX_RERANK_CPU_ISA/);
    });
  });

  it('the environment table covers every option, once, and reads each type', () => {
    expect(Object.values(ENGINE_ENV).sort()).toEqual(Object.keys(ENGINE_OPTIONS).sort());
    expect(
      engineTuningFromEnv({
        MLX_RERANK_CPU_ISA: 'avx2',
        MLX_RERANK_ATTENTION: 'fine',
        MLX_RERANK_ROW_BUCKETS: '0',
        MLX_RERANK_WARMUP_ROWS: '4096',
        MLX_RERANK_CPU_COMPILE: '1',
        MLX_RERANK_CANCEL_ROWS: '16384',
        MLX_RERANK_FUSED_KERNELS: '0',
        MLX_RERANK_START_AHEAD: '1',
      }),
    ).toEqual({
      cpuIsa: 'avx2',
      attention: 'fine',
      rowBuckets: false,
      warmupRows: 4096,
      cpuCompile: true,
      cancelRows: 16384,
      fusedKernels: false,
      startAhead: true,
    });
    expect(engineTuningFromEnv({ MLX_RERANK_ATTENTION: '' })).toEqual({});
    expect(() => engineTuningFromEnv({ MLX_RERANK_ROW_BUCKETS: 'yes' })).toThrow(
      /MLX_RERANK_ROW_BUCKETS.*0 or 1/,
    );
    expect(() => engineTuningFromEnv({ MLX_RERANK_WARMUP_ROWS: '-1' })).toThrow(/MLX_RERANK_WARMUP_ROWS/);
  });

  it('docs/engine-options.md lists every option with its variable', () => {
    const doc = readFileSync(join(packageRoot(), 'docs', 'engine-options.md'), 'utf8');
    for (const [name, d] of Object.entries(ENGINE_OPTIONS)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${name}\``));
      expect(row, name).toContain(`\`${d.env}\``);
      expect(row, name).toContain(`| ${d.engine} |`);
    }
  });

  it('the addon checks the options at its boundary (typed E_INPUT, naming the option)', async () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ cpuIsa: 'sse9' }, /cpuIsa/],
      [{ attention: 'dense' }, /attention/],
      [{ rowBuckets: 'yes' }, /rowBuckets/],
      [{ warmupRows: -5 }, /warmupRows/],
      [{ warmupRows: 1.5 }, /warmupRows/],
      [{ warmupDepth: 0 }, /warmupDepth/],
      [{ warmupDepth: 9 }, /warmupDepth/],
      [{ cpuCompile: 1 }, /cpuCompile/],
      [{ fusedKernels: 'yes' }, /fusedKernels/],
      [{ startAhead: 2 }, /startAhead/],
    ];
    for (const [o, msg] of bad) {
      const p = load(o as Partial<NativeEngineOptions>);
      await expect(p, JSON.stringify(o)).rejects.toMatchObject({ code: 'E_INPUT' });
      await expect(p).rejects.toThrow(msg);
    }
    // The mlx engine's options are accepted by the cpu engine, which has no use for them.
    const e = await load({
      attention: 'fine',
      rowBuckets: false,
      warmupRows: 0,
      cpuCompile: false,
      fusedKernels: true,
      startAhead: true,
    });
    await e.dispose();
  });
});

describe('CrossEncoder.load({ engine })', () => {
  let files: ModelFiles;
  beforeAll(async () => {
    files = await syntheticModel('tiny', 3);
  });
  afterAll(() => cleanupModels());

  it('passes the tuning to the engine', async () => {
    const ce = await CrossEncoder.load(files, {
      backend: 'cpu',
      warmup: false,
      engine: { cpuIsa: 'scalar' },
    });
    try {
      expect(ce.info.deviceName).toMatch(/^scalar x /);
    } finally {
      await ce.dispose();
    }
  });

  it('refuses bad tuning before any work, naming it', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ cpuIsa: 'sse9' }, /engine\.cpuIsa must be 'avx512', 'avxvnni', 'avx2', 'scalar'/],
      [{ attentoin: 'fine' }, /Unknown engine option 'attentoin': did you mean 'attention'\?/],
      [{ warmupRows: 2 ** 30 }, /engine\.warmupRows must be an integer in \[0, 16777216\]/],
      [{ warmupDepth: 0 }, /engine\.warmupDepth must be an integer in \[1, 8\]/],
      [{ rowBuckets: 1 }, /engine\.rowBuckets must be true or false/],
      [5, /engine options must be an object/],
    ];
    for (const [engine, msg] of cases) {
      const p = CrossEncoder.load(files, { backend: 'cpu', warmup: false, engine } as never);
      await expect(p).rejects.toBeInstanceOf(InputError);
      await expect(p).rejects.toThrow(msg);
    }
  });
});

describe('engine-reported limits', () => {
  it('the cpu engine: no padding (computes exactly the real tokens), one batch at a time', async () => {
    const e = await load();
    try {
      const info = e.info();
      expect(info.pads).toBe(false);
      const batch = pack(expected.pairs);
      expect((await e.forward(...batch)).computedSlots).toBe(batch[0].length);
      expect(info.pipelineDepth).toBe(1);
      expect(info.earlyBatchTokens).toBe(0); // the engine shares the cores with the tokenizer workers
      for (const k of ['maxBatchTokens', 'maxBatchSize'] as const) {
        expect(Number.isInteger(info[k]) && info[k] > 0, k).toBe(true);
      }
      expect(info.maxBatchTokens).toBeGreaterThanOrEqual(spec.maxPositions); // a longest pair fits
    } finally {
      await e.dispose();
    }
  });

  it('the scheduler takes the limits the caller leaves unset from the engine, and the caller wins', async () => {
    const files = await syntheticModel('tiny', 4);
    const ce = await CrossEncoder.load(files, { backend: 'cpu', warmup: false });
    const capped = await CrossEncoder.load(files, { backend: 'cpu', warmup: false, maxBatchSize: 7 });
    try {
      const e = ce.info.engineLimits;
      expect(ce.limits).toMatchObject({
        maxBatchTokens: e.maxBatchTokens,
        maxBatchSize: e.maxBatchSize,
        pipelineDepth: e.pipelineDepth,
      });
      expect(ce.info.batchTokens).toEqual({ value: e.maxBatchTokens, source: 'engine' });
      expect(capped.limits.maxBatchSize).toBe(7);
      expect(capped.limits.maxBatchTokens).toBe(e.maxBatchTokens);
    } finally {
      await Promise.all([ce.dispose(), capped.dispose()]);
      cleanupModels();
    }
  });
});
