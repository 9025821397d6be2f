/**
 * gpuUtilization() through the real addon: NVML is loaded at run time, so the addon loads and answers
 * everywhere; without an NVIDIA driver (this CI) it says why, with one it reads the GPU. It never
 * throws, whatever it is passed. Also the bench's NVML helpers (src/bench/nvml.ts).
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { nvmlIndex, nvmlSampler, readGpu } from '../src/bench/nvml';
import { type GpuUtilization, native } from '../src/native';

// The kernel driver's folder: present exactly where NVML can have a GPU to report.
const nvidia = existsSync('/proc/driver/nvidia/gpus');

describe('gpuUtilization()', () => {
  it.skipIf(nvidia)('is unavailable with a reason on a machine without an NVIDIA GPU', () => {
    const u = native().gpuUtilization();
    expect(u.available).toBe(false);
    if (u.available) return;
    expect(u.reason.length).toBeGreaterThan(10);
    expect(u.reason).toMatch(/NVML/);
    // Loaded once: the same answer again (and for another index).
    expect(native().gpuUtilization(0)).toEqual(u);
    expect(native().gpuUtilization(3)).toEqual(u);
  });

  it.runIf(nvidia)('reads GPU 0 where there is an NVIDIA GPU', () => {
    const u = native().gpuUtilization(0);
    expect(u, JSON.stringify(u)).toMatchObject({ available: true, index: 0 });
    if (!u.available) return;
    expect(u.name).toMatch(/\S/);
    for (const pct of [u.gpuPct, u.memoryPct]) {
      expect(Number.isInteger(pct)).toBe(true);
      expect(pct).toBeGreaterThanOrEqual(0);
      expect(pct).toBeLessThanOrEqual(100);
    }
    expect(u.memoryTotalBytes).toBeGreaterThan(2 ** 30);
    expect(u.memoryUsedBytes).toBeLessThanOrEqual(u.memoryTotalBytes);
    const far = native().gpuUtilization(4096);
    expect(far).toMatchObject({ available: false, reason: expect.stringMatching(/out of range/) });
  });

  it('never throws: a bad index is a reason too', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 40, '0', null, {}]) {
      const u = (native().gpuUtilization as (i: unknown) => GpuUtilization)(bad);
      expect(u, String(bad)).toEqual({
        available: false,
        reason: 'the GPU index must be a non-negative integer',
      });
    }
  });
});

describe('the bench side', () => {
  it('samples the GPU that CUDA_VISIBLE_DEVICES puts first when it names one by number', () => {
    expect(nvmlIndex({})).toBe(0);
    expect(nvmlIndex({ CUDA_VISIBLE_DEVICES: '3,1' })).toBe(3);
    expect(nvmlIndex({ CUDA_VISIBLE_DEVICES: ' 2 ' })).toBe(2);
    expect(nvmlIndex({ CUDA_VISIBLE_DEVICES: 'GPU-8f3e2c1a' })).toBe(0);
    expect(nvmlIndex({ CUDA_VISIBLE_DEVICES: '' })).toBe(0);
  });

  it('gives the report a status and a sampler only when NVML answers', () => {
    const real = nvmlSampler(0);
    expect(real.status.available).toBe(nvidia);
    expect(real.sample === undefined).toBe(!nvidia);
    if (!real.status.available) expect(real.status.reason).toBe((readGpu(0) as { reason: string }).reason);

    // A GPU that answers once and then fails: the failed reading is NaN, not an error.
    const answers: GpuUtilization[] = [
      {
        available: true,
        index: 1,
        name: 'G',
        gpuPct: 7,
        memoryPct: 1,
        memoryUsedBytes: 1,
        memoryTotalBytes: 2,
      },
      {
        available: true,
        index: 1,
        name: 'G',
        gpuPct: 93,
        memoryPct: 1,
        memoryUsedBytes: 1,
        memoryTotalBytes: 2,
      },
      { available: false, reason: 'GPU is lost' },
    ];
    const seen: number[] = [];
    const s = nvmlSampler(1, (i) => {
      seen.push(i);
      return answers.shift() ?? { available: false, reason: 'none' };
    });
    expect(s.status).toEqual({ available: true, index: 1, name: 'G' });
    expect(s.sample?.()).toBe(93);
    expect(s.sample?.()).toBeNaN();
    expect(seen).toEqual([1, 1, 1]);
  });
});
