/**
 * The report's arithmetic, kept free of I/O so that tests can check it against independent
 * calculations. Percentiles use linear interpolation between closest ranks (numpy's default,
 * `method="linear"`): the p-th percentile of n sorted values sits at rank h = (n - 1) * p / 100, and
 * is x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]). Standard deviations are the
 * population form (divide by n, numpy's default ddof=0), as the seed report was.
 */

import { percentile as interpolate, summarize as packageSummary } from '../metrics';

export const PERCENTILE_METHOD =
  'linear interpolation between closest ranks (numpy default): rank = (n - 1) * p / 100';
export const STD_METHOD = 'population standard deviation (divide by n, numpy default ddof=0)';

export interface Summary {
  count: number;
  avg: number;
  min: number;
  max: number;
  std: number;
  p50: number;
  p75: number;
  p90: number;
  p95: number;
  p99: number;
}

/**
 * Percentile p (0..100) of values already sorted ascending; NaN for an empty list. The interpolation is
 * the package's one (src/metrics.ts, which CrossEncoder.stats() reports with, on a 0..1 scale).
 */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  return interpolate(sorted, p / 100);
}

export function percentile(values: readonly number[], p: number): number {
  return percentileSorted(sortedFinite(values), p);
}

/** The median of the finite values (the 50th percentile, so the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

function sortedFinite(values: readonly number[]): number[] {
  return values.filter((v) => Number.isFinite(v)).sort((x, y) => x - y);
}

/**
 * Summary of the finite values (NaN marks "no data" in a sample and is skipped): the package's summary
 * (src/metrics.ts, what `stats()` reports) plus the report's standard deviation and p75; all NaN when
 * there is no value (the package's summary says 0 there, a report shows "-").
 */
export function summarize(values: readonly number[]): Summary {
  const s = sortedFinite(values);
  if (s.length === 0) {
    const nan = Number.NaN;
    return {
      count: 0,
      avg: nan,
      min: nan,
      max: nan,
      std: nan,
      p50: nan,
      p75: nan,
      p90: nan,
      p95: nan,
      p99: nan,
    };
  }
  const { count, mean: avg, min, max, p50, p90, p95, p99 } = packageSummary(s);
  let sq = 0;
  for (const v of s) sq += (v - avg) * (v - avg);
  return {
    count,
    avg,
    min,
    max,
    std: Math.sqrt(sq / count),
    p50,
    p75: percentileSorted(s, 75),
    p90,
    p95,
    p99,
  };
}

/** Throughput of one request: its pairs over its latency, in pairs per second. */
export function requestThroughput(pairs: number, latencyMs: number): number {
  return latencyMs > 0 ? (pairs * 1000) / latencyMs : Number.NaN;
}

/** Pearson's r of two equally long series; NaN when either has no variance or fewer than 2 points. */
export function pearson(x: readonly number[], y: readonly number[]): number {
  if (x.length !== y.length) throw new RangeError('pearson: series differ in length');
  const n = x.length;
  if (n < 2) return Number.NaN;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i] as number;
    my += y[i] as number;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = (x[i] as number) - mx;
    const dy = (y[i] as number) - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (sxx === 0 || syy === 0) return Number.NaN;
  return sxy / Math.sqrt(sxx * syy);
}

export interface Bucket {
  label: 'P0-P50' | 'P50-P75' | 'P75-P90' | 'P90+';
  /** Latency bounds in ms: lo inclusive, hi exclusive (hi is Infinity for the last bucket). */
  lo: number;
  hi: number;
  count: number;
  avgThroughput: number;
  minThroughput: number;
  maxThroughput: number;
}

/**
 * The seed's "Latency vs Throughput Analysis": requests split by their latency at the latency
 * P50, P75 and P90 (< P50, [P50, P75), [P75, P90), >= P90), with the throughput of each group.
 */
export function latencyBuckets(latencyMs: readonly number[], throughput: readonly number[]): Bucket[] {
  if (latencyMs.length !== throughput.length) throw new RangeError('latencyBuckets: series differ in length');
  const sorted = sortedFinite(latencyMs);
  const p50 = percentileSorted(sorted, 50);
  const p75 = percentileSorted(sorted, 75);
  const p90 = percentileSorted(sorted, 90);
  const edges: Array<[Bucket['label'], number, number]> = [
    ['P0-P50', Number.NEGATIVE_INFINITY, p50],
    ['P50-P75', p50, p75],
    ['P75-P90', p75, p90],
    ['P90+', p90, Number.POSITIVE_INFINITY],
  ];
  return edges.map(([label, lo, hi]) => {
    const tps: number[] = [];
    for (let i = 0; i < latencyMs.length; i++) {
      const l = latencyMs[i] as number;
      if (l >= lo && l < hi) tps.push(throughput[i] as number);
    }
    const s = summarize(tps);
    return {
      label,
      lo: Number.isFinite(lo) ? lo : (sorted[0] ?? Number.NaN),
      hi,
      count: tps.length,
      avgThroughput: s.avg,
      minThroughput: s.min,
      maxThroughput: s.max,
    };
  });
}

/** Length of the overlap of [a0, a1) and [b0, b1). */
export function overlap(a0: number, a1: number, b0: number, b1: number): number {
  return Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
}
