/**
 * The mlx engine's store of compiled CUDA kernels (native/cuda_kernel_store.h), without a GPU or MLX:
 * native/test/kernel_store_check.cpp compiles the attention and fused row kernels that ship (the same
 * source strings) with NVRTC inside the store's self-contained wrapper, for a real architecture, checks that each cubin
 * defines its extern "C" symbol, and round-trips a stored module in a private folder while refusing a
 * tampered name list, an image that is no cubin, and a symbolic link. Skipped without g++ or NVRTC.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'mlx-rerank-kstore-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const hasGxx = spawnSync('g++', ['--version']).status === 0;

describe('cuda kernel store', () => {
  it.skipIf(!hasGxx)('compiles the shipped kernels with NVRTC and stores them safely', (ctx) => {
    const exe = join(work, 'kernel_store_check');
    const build = spawnSync(
      'g++',
      ['-std=c++20', '-O0', join(root, 'native/test/kernel_store_check.cpp'), '-o', exe, '-ldl'],
      { encoding: 'utf8' },
    );
    expect(build.stderr).toBe('');
    expect(build.status).toBe(0);
    const cache = join(work, 'cache');
    mkdirSync(cache, { mode: 0o700 });
    const run = spawnSync(exe, [cache], { encoding: 'utf8', timeout: 120_000 });
    if (run.stdout.trim() === 'no nvrtc') ctx.skip();
    const lines = run.stdout.trim().split('\n');
    expect(lines.filter((l) => !l.startsWith('ok ')).join('\n')).toBe('');
    expect(run.status).toBe(0);
    // Eight kernel instances compiled (attention, fused row kernels), then the store's checks, then the summary.
    expect(lines.filter((l) => l.includes(' compiles for sm_90'))).toHaveLength(8);
    expect(lines.at(-1)).toBe('ok all');
    // Every file was written whole: no temporary file is left behind.
    expect(readdirSync(cache).filter((f) => f.startsWith('.'))).toEqual([]);
  });
});
