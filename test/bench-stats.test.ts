import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { analyzeRun, paddingOf } from '../src/bench/results';
import { mergeTicks, type RawRun, type Tick, timeSeries } from '../src/bench/runner';
import { latencyBuckets, pearson, percentile, requestThroughput, summarize } from '../src/bench/stats';
import { type BenchGolden, benchGolden } from './helpers/bench-golden';

const golden = benchGolden('stats-golden.json');
const tp = golden.latencyMs.map((l, i) => requestThroughput(golden.pairs[i] as number, l));
/** A seeded sample (make-stats-golden.py) and a real run's request log (make-recorded-golden.py). */
const samples: Array<[string, BenchGolden]> = [
  ['seeded sample', golden],
  ['recorded run', benchGolden('recorded-golden.json')],
];

/** numpy's "linear" percentile as the weighted mean of the two neighbouring order statistics. */
function bruteQuantile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = (p / 100) * (s.length - 1);
  const below = s[Math.floor(pos)] as number;
  const above = s[Math.ceil(pos)] as number;
  const w = pos - Math.floor(pos);
  return below * (1 - w) + above * w;
}

/** Pearson's r through the raw-sums formula (n*Sxy - Sx*Sy) / sqrt(...). */
function brutePearson(x: number[], y: number[]): number {
  const n = x.length;
  let sx = 0;
  let sy = 0;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  x.forEach((xi, i) => {
    const yi = y[i] as number;
    sx += xi;
    sy += yi;
    sxy += xi * yi;
    sxx += xi * xi;
    syy += yi * yi;
  });
  return (n * sxy - sx * sy) / Math.sqrt((n * sxx - sx * sx) * (n * syy - sy * sy));
}

describe('percentiles (linear interpolation, numpy default)', () => {
  it('matches hand-computed values', () => {
    // [1,2,3,4]: rank (n-1)p/100 -> p50 at 1.5 = 2.5; p90 at 2.7 = 3.7; p95 at 2.85 = 3.85.
    expect(percentile([4, 1, 3, 2], 50)).toBeCloseTo(2.5, 12);
    expect(percentile([4, 1, 3, 2], 90)).toBeCloseTo(3.7, 12);
    expect(percentile([4, 1, 3, 2], 95)).toBeCloseTo(3.85, 12);
    expect(percentile([4, 1, 3, 2], 0)).toBe(1);
    expect(percentile([4, 1, 3, 2], 100)).toBe(4);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
    expect(() => percentile([1], 101)).toThrow(RangeError);
  });

  it.each(samples)('matches numpy on the %s', (_name, g) => {
    const s = summarize(g.latencyMs);
    for (const k of ['avg', 'min', 'max', 'std', 'p50', 'p75', 'p90', 'p95', 'p99'] as const) {
      expect(s[k]).toBeCloseTo(g.latency[k] as number, 8);
    }
    const thr = g.latencyMs.map((l, i) => requestThroughput(g.pairs[i] as number, l));
    const t = summarize(thr);
    for (const k of ['avg', 'min', 'max', 'std', 'p50', 'p90', 'p95', 'p99'] as const) {
      expect(t[k]).toBeCloseTo(g.throughput[k] as number, 8);
    }
    expect(pearson(g.latencyMs, thr)).toBeCloseTo(g.correlation, 10);
    const b = latencyBuckets(g.latencyMs, thr);
    expect(b.map((x) => x.count)).toEqual(g.buckets.map((x) => x.count));
    b.forEach((x, i) => {
      expect(x.avgThroughput).toBeCloseTo(g.buckets[i]?.avg as number, 8);
      expect(x.minThroughput).toBeCloseTo(g.buckets[i]?.min as number, 8);
      expect(x.maxThroughput).toBeCloseTo(g.buckets[i]?.max as number, 8);
    });
  });

  it('agrees with a brute-force quantile and stays ordered, for any sample', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 60 }),
        fc.integer({ min: 0, max: 100 }),
        (xs, p) => {
          const v = percentile(xs, p);
          expect(v).toBeCloseTo(bruteQuantile(xs, p), 6);
          expect(v).toBeGreaterThanOrEqual(Math.min(...xs));
          expect(v).toBeLessThanOrEqual(Math.max(...xs));
          if (p < 100) expect(percentile(xs, p + 1)).toBeGreaterThanOrEqual(v - 1e-9);
        },
      ),
    );
  });

  it('skips NaN (no data) and uses the population standard deviation', () => {
    const s = summarize([2, Number.NaN, 4, 4, 4, 5, 5, 7, 9]);
    expect(s.count).toBe(8);
    expect(s.avg).toBe(5);
    expect(s.std).toBe(2); // the textbook example: population sd of 2,4,4,4,5,5,7,9 is exactly 2
    expect(summarize([]).avg).toBeNaN();
  });
});

describe('per-request throughput and correlation', () => {
  it('is pairs / latency in pairs per second', () => {
    expect(requestThroughput(32, 61.5)).toBeCloseTo(520.325, 3);
    expect(requestThroughput(32, 1000)).toBe(32);
    expect(requestThroughput(32, 0)).toBeNaN();
  });

  it('matches numpy corrcoef and the raw-sums formula', () => {
    expect(pearson(golden.latencyMs, tp)).toBeCloseTo(golden.correlation, 10);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: -1000, max: 1000 }), fc.integer({ min: -1000, max: 1000 })), {
          minLength: 3,
          maxLength: 40,
        }),
        (pts) => {
          const x = pts.map((p) => p[0]);
          const y = pts.map((p) => p[1]);
          const r = pearson(x, y);
          const b = brutePearson(x, y);
          if (Number.isNaN(b) || !Number.isFinite(b)) expect(r).toBeNaN();
          else expect(r).toBeCloseTo(b, 9);
        },
      ),
    );
  });

  it('is exactly +1 / -1 on lines and NaN without variance', () => {
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3], [3, 2, 1])).toBeCloseTo(-1, 12);
    expect(pearson([1, 1, 1], [3, 2, 1])).toBeNaN();
    expect(() => pearson([1], [1, 2])).toThrow(RangeError);
  });
});

describe('latency vs throughput buckets', () => {
  it('matches numpy on the recorded sample (50/25/15/10 of 100, as in the seed)', () => {
    const b = latencyBuckets(golden.latencyMs, tp);
    expect(b.map((x) => x.count)).toEqual(golden.buckets.map((x) => x.count));
    b.forEach((x, i) => {
      const g = golden.buckets[i] as BenchGolden['buckets'][number];
      expect(x.avgThroughput).toBeCloseTo(g.avg, 8);
      expect(x.minThroughput).toBeCloseTo(g.min, 8);
      expect(x.maxThroughput).toBeCloseTo(g.max, 8);
    });
    expect(b[0]?.hi).toBeCloseTo(golden.latency.p50 as number, 9);
    expect(b[3]?.lo).toBeCloseTo(golden.latency.p90 as number, 9);
  });

  it('splits a hand-made set at P50, P75, P90 with lower bounds inclusive', () => {
    // latencies 10..100 step 10: P50 = 55, P75 = 77.5, P90 = 91.
    const lat = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    const thr = lat.map((l) => 1000 / l);
    const b = latencyBuckets(lat, thr);
    expect(b.map((x) => x.count)).toEqual([5, 2, 2, 1]);
    expect(b[1]?.minThroughput).toBeCloseTo(1000 / 70, 12);
    expect(b[1]?.maxThroughput).toBeCloseTo(1000 / 60, 12);
    expect(b[3]?.avgThroughput).toBeCloseTo(10, 12);
    // Every request lands in exactly one bucket, whatever the sample.
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 80 }), (xs) => {
        const counts = latencyBuckets(xs, xs).reduce((s, x) => s + x.count, 0);
        expect(counts).toBe(xs.length);
      }),
    );
  });
});

describe('time series and padding', () => {
  const run: Pick<RawRun, 'requests' | 'batches' | 'ticks' | 'baselineBytes'> = {
    baselineBytes: 10 * 2 ** 20,
    ticks: [
      { tMs: 500, cpuMicros: 400_000 },
      { tMs: 1000, cpuMicros: 500_000 },
      { tMs: 1500, cpuMicros: 500_000 },
    ],
    requests: [
      { index: 0, client: 0, pairs: 32, startMs: 0, endMs: 300, latencyMs: 300, throughput: 32000 / 300 },
      { index: 1, client: 0, pairs: 32, startMs: 300, endMs: 700, latencyMs: 400, throughput: 80 },
      { index: 2, client: 0, pairs: 16, startMs: 700, endMs: 900, latencyMs: 200, throughput: 80 },
    ],
    batches: [
      batch(300, 250, 100, 200, 30, 2 * 2 ** 20),
      batch(700, 350, 100, 100, 50, 3 * 2 ** 20),
      batch(900, 150, 50, 100, 10, 4 * 2 ** 20),
    ],
  };

  function batch(
    atMs: number,
    inferenceMs: number,
    tokens: number,
    slots: number,
    ifPadded: number,
    mem: number,
  ) {
    return {
      atMs,
      pairs: 32,
      tokens,
      computedSlots: slots,
      paddingPct: (1 - tokens / slots) * 100,
      paddingIfPaddedPct: ifPadded,
      tokenizeMs: atMs / 100,
      queueWaitMs: 0,
      inferenceMs,
      activeBytes: mem,
      peakBytes: mem,
    };
  }

  it('derives each interval by hand', () => {
    const s = timeSeries(run);
    expect(s).toHaveLength(3);
    // 0-500: batch 1 busy 50..300 (250) + batch 2 busy 350..500 of 350..700 (150) = 400 / 500.
    expect(s[0]?.busyPct).toBeCloseTo(80, 9);
    expect(s[0]?.cpuPct).toBeCloseTo(80, 9); // 400 ms CPU in 500 ms wall
    expect(s[0]?.throughput).toBeCloseTo(64, 9); // 32 pairs in 0.5 s
    expect(s[0]?.latencyMs).toBe(300);
    expect(s[0]?.memoryMB).toBe(2);
    expect(s[0]?.paddingPct).toBeCloseTo(50, 9);
    // 500-1000: batch 2 busy 500..700 (200) + batch 3 750..900 (150) = 350 / 500.
    expect(s[1]?.busyPct).toBeCloseTo(70, 9);
    expect(s[1]?.cpuPct).toBeCloseTo(20, 9);
    expect(s[1]?.throughput).toBeCloseTo(96, 9); // 48 pairs in 0.5 s
    expect(s[1]?.latencyMs).toBe(300); // mean of 400 and 200
    expect(s[1]?.memoryMB).toBe(4);
    expect(s[1]?.tokenizeMs).toBeCloseTo(8, 9); // mean of 7 and 9
    // 1000-1500: nothing finished: no latency, zero throughput, memory carried.
    expect(s[2]?.latencyMs).toBeNaN();
    expect(s[2]?.throughput).toBe(0);
    expect(s[2]?.busyPct).toBe(0);
    expect(s[2]?.memoryMB).toBe(4);
  });

  it('carries NVML readings from the ticks that have them, and adds nothing to those that do not', () => {
    const gpu = [90, Number.NaN, 40];
    const s = timeSeries({ ...run, ticks: run.ticks.map((t, i) => ({ ...t, gpuUtilPct: gpu[i] })) });
    expect(s.map((x) => x.gpuUtilPct)).toEqual([90, Number.NaN, 40]); // a failed read stays NaN
    // The rest of the sample is derived exactly as without NVML.
    const plain = timeSeries(run);
    expect(s.map(({ gpuUtilPct: _, ...rest }) => rest)).toEqual(plain);
    for (const x of plain) expect('gpuUtilPct' in x).toBe(false);
  });

  it('weights padding by tokens over all batches', () => {
    const p = paddingOf(run.batches);
    // tokens 250, slots 400 -> 37.5%; padded slots 100/0.7 + 100/0.5 + 50/0.9.
    expect(p.measuredPct).toBeCloseTo(37.5, 9);
    expect(p.ifPaddedPct).toBeCloseTo((1 - 250 / (100 / 0.7 + 200 + 50 / 0.9)) * 100, 9);
    expect(p.batches).toBe(3);
  });
});

describe('merged ticks and the NVML summary', () => {
  const ticks = (gpu?: Array<number | undefined>): Tick[] =>
    Array.from({ length: 7 }, (_, i) => ({
      tMs: (i + 1) * 100,
      cpuMicros: (i + 1) * 50_000,
      ...(gpu ? { gpuUtilPct: gpu[i] } : {}),
    }));

  it('keeps every stride-th tick and the last, as the table always did', () => {
    const t = ticks();
    expect(mergeTicks(t, 3)).toEqual([t[2], t[5], t[6]]);
    expect(mergeTicks(t, 1)).toEqual(t);
  });

  it("averages a group's finite NVML readings into the tick kept for it", () => {
    const m = mergeTicks(ticks([10, 20, 60, 100, Number.NaN, 50, 70]), 3);
    // Groups [10, 20, 60], [100, NaN, 50] (the failed read skipped), [70].
    expect(m.map((t) => t.gpuUtilPct)).toEqual([30, 75, 70]);
    // CPU time is cumulative: the kept tick's own value already covers its group.
    expect(m.map((t) => [t.tMs, t.cpuMicros])).toEqual([
      [300, 150_000],
      [600, 300_000],
      [700, 350_000],
    ]);
    expect(mergeTicks(ticks([Number.NaN, Number.NaN, Number.NaN, 1, 1, 1, 1]), 3)[0]?.gpuUtilPct).toBeNaN();
  });

  const raw = (t: Tick[]): RawRun => ({
    config: { batch: 1, concurrency: 1, pairs: 1, sampleMs: 100 },
    wallMs: 700,
    requests: [
      { index: 0, client: 0, pairs: 1, startMs: 0, endMs: 650, latencyMs: 650, throughput: 1000 / 650 },
    ],
    batches: [],
    ticks: t,
    baselineBytes: 0,
  });

  it('summarises NVML over the samples only when the run sampled it', () => {
    const gpu = analyzeRun(raw(ticks([10, 20, 60, 100, Number.NaN, 50, 70])));
    expect(gpu.gpuUtil?.count).toBe(6);
    expect(gpu.gpuUtil?.avg).toBeCloseTo(310 / 6, 12);
    expect(gpu.gpuUtil?.max).toBe(100);
    expect(gpu.samples[4]?.gpuUtilPct).toBeNaN();
    const cpu = analyzeRun(raw(ticks()));
    expect(cpu.gpuUtil).toBeUndefined();
    expect('gpuUtil' in cpu).toBe(false);
  });
});
