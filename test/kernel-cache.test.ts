/**
 * MLX's compiled-kernel cache folder (src/kernel-cache.ts, native/mlx_kernel_cache.h) and the engine
 * options of issue 18 (kernelCacheDir, attention 'flash'): the option's checks at both boundaries, the
 * default per-user folder and how it is created (0700, no symlink followed, nobody else's), and, where
 * MLX has a CUDA GPU, that the first mlx engine points MLX_PTX_CACHE_DIR at it and MLX fills it. Real
 * folders under a temporary root; no MLX needed except for the last part, which says why it skips.
 */
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends } from '../src/backends';
import { checkEngineTuning, engineTuningFromEnv } from '../src/engine-options';
import { InputError } from '../src/errors';
import {
  defaultKernelCacheRoot,
  ensurePrivateDir,
  prepareKernelCache,
  withKernelCache,
} from '../src/kernel-cache';
import { type NativeEngineOptions, native } from '../src/native';
import { FIXTURE_MODELS_DIR, fixtureExpected, fixtureSpec, pack } from './helpers/cpu-model';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'mlx-rerank-kcache-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

describe('engine.kernelCacheDir and engine.attention: the checks', () => {
  it('takes an absolute folder, none or empty; refuses relative paths and non-strings, naming the option', () => {
    expect(checkEngineTuning({ kernelCacheDir: '/var/cache/k' })).toEqual({ kernelCacheDir: '/var/cache/k' });
    expect(checkEngineTuning({ kernelCacheDir: 'none' })).toEqual({ kernelCacheDir: 'none' });
    for (const bad of ['relative/dir', './k', 42, '/a\0b']) {
      expect(() => checkEngineTuning({ kernelCacheDir: bad }), String(bad)).toThrow(
        /engine\.kernelCacheDir must be an absolute folder path or 'none'/,
      );
    }
    expect(engineTuningFromEnv({ MLX_RERANK_KERNEL_CACHE_DIR: '/k' })).toEqual({ kernelCacheDir: '/k' });
    expect(() => engineTuningFromEnv({ MLX_RERANK_KERNEL_CACHE_DIR: 'k' })).toThrow(
      /MLX_RERANK_KERNEL_CACHE_DIR/,
    );
  });

  it("attention 'flash' is an attention layout", () => {
    expect(checkEngineTuning({ attention: 'flash' })).toEqual({ attention: 'flash' });
    expect(engineTuningFromEnv({ MLX_RERANK_ATTENTION: 'flash' })).toEqual({ attention: 'flash' });
  });

  it('the addon checks both at its boundary too (typed E_INPUT)', async () => {
    const dir = join(FIXTURE_MODELS_DIR, 'tiny-l2-h64');
    const base = {
      backend: 'cpu',
      device: 'cpu',
      weights: [join(dir, 'float32', 'model.safetensors')],
      spec: fixtureSpec(dir),
    };
    const p = native().loadEngine({ ...base, kernelCacheDir: 'relative' } as NativeEngineOptions);
    await expect(p).rejects.toMatchObject({ code: 'E_INPUT' });
    await expect(p).rejects.toThrow(/kernelCacheDir/);
    // Accepted by the cpu engine, which has no use for them.
    const e = await native().loadEngine({
      ...base,
      attention: 'flash',
      kernelCacheDir: '/nonexistent/k',
    } as NativeEngineOptions);
    await e.dispose();
  });
});

describe('the kernel cache folder', () => {
  it('defaults to $XDG_CACHE_HOME/mlx-rerank/mlx-kernels, created 0700 level by level', () => {
    const xdg = join(root, 'xdg');
    const dir = prepareKernelCache(undefined, { XDG_CACHE_HOME: xdg });
    expect(dir).toBe(join(xdg, 'mlx-rerank', 'mlx-kernels'));
    expect(mode(join(xdg, 'mlx-rerank'))).toBe(0o700);
    expect(mode(dir)).toBe(0o700);
    expect(prepareKernelCache(undefined, { XDG_CACHE_HOME: xdg })).toBe(dir); // found, not re-made
  });

  it('falls back to ~/.cache when XDG_CACHE_HOME is unset or relative (the XDG rule)', () => {
    expect(defaultKernelCacheRoot({})).toBe(join(homedir(), '.cache'));
    expect(defaultKernelCacheRoot({ XDG_CACHE_HOME: 'rel' })).toBe(join(homedir(), '.cache'));
    expect(defaultKernelCacheRoot({ XDG_CACHE_HOME: '/x' })).toBe('/x');
  });

  it('an explicit MLX_PTX_CACHE_DIR wins, and none / empty leave MLX its default', () => {
    const xdg = join(root, 'untouched');
    expect(prepareKernelCache(undefined, { MLX_PTX_CACHE_DIR: '/mine', XDG_CACHE_HOME: xdg })).toBe('');
    expect(prepareKernelCache('/explicit', { MLX_PTX_CACHE_DIR: '/mine' })).toBe('');
    expect(prepareKernelCache('none', { XDG_CACHE_HOME: xdg })).toBe('');
    expect(prepareKernelCache('', { XDG_CACHE_HOME: xdg })).toBe('');
    expect(() => statSync(xdg)).toThrow(); // nothing was created
  });

  it('an explicit folder is created (0700) and used as given', () => {
    const dir = join(root, 'explicit', 'kernels');
    expect(prepareKernelCache(dir, {})).toBe(dir);
    expect(mode(dir)).toBe(0o700);
  });

  it('never follows a symlink planted in the default chain: falls back to MLX default, writes nothing there', () => {
    const xdg = join(root, 'planted');
    const elsewhere = join(root, 'attacker');
    mkdirSync(xdg, { recursive: true });
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(xdg, 'mlx-rerank'));
    expect(prepareKernelCache(undefined, { XDG_CACHE_HOME: xdg })).toBe('');
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(() => ensurePrivateDir(xdg, ['mlx-rerank', 'mlx-kernels'])).toThrow(/symbolic link/);
  });

  it('refuses folders others may write to, and files, with an InputError saying what to do', () => {
    const open = join(root, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    expect(() => prepareKernelCache(open, {})).toThrow(InputError);
    expect(() => prepareKernelCache(open, {})).toThrow(/other users may write to it.*'none'/);
    const file = join(root, 'a-file');
    writeFileSync(file, '');
    expect(() => prepareKernelCache(file, {})).toThrow(InputError);
    // The default chain: a group-writable level is refused too (and the default then falls back).
    const xdg = join(root, 'xdg-open');
    mkdirSync(join(xdg, 'mlx-rerank'), { recursive: true });
    chmodSync(join(xdg, 'mlx-rerank'), 0o770);
    expect(prepareKernelCache(undefined, { XDG_CACHE_HOME: xdg })).toBe('');
  });

  it.skipIf(process.getuid?.() !== 0)(
    "refuses another user's folder (runs as root only: it needs chown)",
    () => {
      const theirs = join(root, 'theirs');
      mkdirSync(theirs, { mode: 0o700 });
      chownSync(theirs, 12345, 12345);
      expect(() => prepareKernelCache(theirs, {})).toThrow(/belongs to user 12345/);
    },
  );

  it.skipIf(process.platform === 'darwin')('is resolved for mlx loads on a CUDA GPU only (Linux)', () => {
    const env = { XDG_CACHE_HOME: join(root, 'by-backend') };
    expect(withKernelCache({ backend: 'cpu' }, env)).toEqual({ backend: 'cpu' });
    expect(withKernelCache({ backend: 'mlx', device: 'cpu' }, env)).toEqual({
      backend: 'mlx',
      device: 'cpu',
    });
    expect(withKernelCache({ backend: 'mlx', device: 'gpu' }, env)).toEqual({
      backend: 'mlx',
      device: 'gpu',
      kernelCacheDir: join(root, 'by-backend', 'mlx-rerank', 'mlx-kernels'),
    });
  });
});

// MLX's GPU on Linux is CUDA (Metal is macOS only), where MLX_PTX_CACHE_DIR applies.
const mlx = backends().mlx;
const cuda = mlx.available && (mlx.devices ?? []).includes('gpu') && process.platform === 'linux';
if (!cuda) {
  console.warn(
    `[kernel-cache] skipping the MLX part: ${mlx.available ? 'MLX has no CUDA GPU here' : `no MLX in this build (${mlx.reason})`}`,
  );
}

describe.skipIf(!cuda)('with MLX on a CUDA GPU', () => {
  const dir = join(FIXTURE_MODELS_DIR, 'tiny-l2-h64');
  const weights = [join(dir, 'float32', 'model.safetensors')];
  const spec = fixtureSpec(dir);
  const expected = fixtureExpected(dir);

  it('the first mlx engine points MLX_PTX_CACHE_DIR at <dir>/<mlx version>-<sm>, and MLX fills it', async () => {
    if (process.env.MLX_PTX_CACHE_DIR) return; // the caller's setting wins (tested above, without MLX)
    const base = join(root, 'mlx');
    const load = (extra: Partial<NativeEngineOptions>) =>
      native().loadEngine({ backend: 'mlx', device: 'gpu', dtype: 'float16', weights, spec, ...extra });
    const e = await load({ kernelCacheDir: base });
    try {
      await e.forward(...pack(expected.pairs));
      const set = process.env.MLX_PTX_CACHE_DIR ?? '';
      expect(set.startsWith(join(base, `${mlx.version}-sm_`))).toBe(true);
      expect(mode(set)).toBe(0o700);
      expect(readdirSync(set, { recursive: true }).some((f) => String(f).endsWith('.ptx'))).toBe(true);
      // Our attention kernel too (cachedCudaKernel, native/cuda_kernel_store.h): a private cubin.
      const ours = readdirSync(set).filter((f) => f.startsWith('mlx_rerank_') && f.endsWith('.ptx'));
      expect(ours.length).toBeGreaterThan(0);
      for (const f of ours) expect(statSync(join(set, f)).mode & 0o777).toBe(0o600);
      // A second engine asking for another folder changes nothing: MLX has read the variable.
      const other = await load({ kernelCacheDir: join(root, 'mlx-other') });
      await other.dispose();
      expect(process.env.MLX_PTX_CACHE_DIR).toBe(set);
    } finally {
      await e.dispose();
    }
  });

  it("attention 'flash' agrees with 'varlen' in float16", async () => {
    const logits = async (attention: 'flash' | 'varlen') => {
      const e = await native().loadEngine({
        backend: 'mlx',
        device: 'gpu',
        dtype: 'float16',
        weights,
        spec,
        attention,
      });
      try {
        return (await e.forward(...pack(expected.pairs))).logits;
      } finally {
        await e.dispose();
      }
    };
    const [a, b] = [await logits('flash'), await logits('varlen')];
    for (let i = 0; i < a.length; i++)
      expect(Math.abs((a[i] as number) - (b[i] as number))).toBeLessThan(2e-2);
  });
});
