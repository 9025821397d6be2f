/**
 * The batch size from the engine's own cost curve (issue 15; docs/latency.md, "Batch size"). A batch
 * costs a fixed part (the round trip, the engine's per-layer synchronisation) plus a per-token part, so
 * throughput rises with the batch size until the fixed part no longer shows, and then only latency
 * grows: every request in a batch, and every call arriving behind it, waits for the whole batch. How
 * soon the curve flattens depends on the model (FLOPs per token), the machine and its threads, so
 * load's warm-up measures it on the real model: a few synthetic batches of doubling size, each timed
 * through the same `forward` the scheduler uses, the best of a few runs (more for cheap sizes, where a
 * fixed cost shows and one run's noise would decide); it stops once two doublings in a row buy less
 * than the tolerance, or when the next size would overrun the time budget. The choice is the smallest
 * measured size within `tolerance` of the peak throughput. Sizes below `minTokens` are not candidates
 * (see CurveOptions): on the CPU the measurement raises the engine's figure where the model is so
 * fast that per-batch costs show, and leaves it where the curve is flat.
 */

/**
 * One measured point: the candidate `size` (a maxBatchTokens) was tried as a batch of `pairs` whole pairs,
 * `tokens` real tokens (at most `size`), which took `ms` (best of the runs).
 */
export interface CurvePoint {
  size: number;
  tokens: number;
  pairs: number;
  ms: number;
}

export interface CurveResult {
  /** The measured points, in the order measured (ascending sizes). */
  curve: CurvePoint[];
  /** The smallest measured size within the tolerance of the peak throughput; undefined if none ran. */
  chosen: number | undefined;
  /** Why measuring stopped: the curve went flat, the next size would overrun the budget, or no sizes left. */
  stopped: 'flat' | 'budget' | 'end';
  /** Wall ms the measurement took. */
  ms: number;
}

/** Batch sizes tried, in tokens: the curve's knee on the engines measured lies well inside this range. */
export const CURVE_TOKENS: readonly number[] = [256, 512, 1024, 2048, 4096, 8192, 16384];
/** "Within ~5% of the peak". */
export const CURVE_TOLERANCE = 0.05;
/** The whole measurement stays within this (it runs once, at load's warm-up). */
export const CURVE_BUDGET_MS = 1500;

export interface CurveOptions {
  /** Candidate sizes in real tokens, ascending (default CURVE_TOKENS). */
  sizes?: readonly number[];
  /** Tokens per synthetic pair (each batch holds floor(size / pairLength) pairs of this length). */
  pairLength: number;
  /** Pairs per batch at most (the maxBatchSize in force): larger sizes are not tried. */
  maxPairs: number;
  /**
   * Sizes below this are not candidates (default 0). CrossEncoder passes the engine's own figure: it was
   * measured through the whole scheduler, while these runs time bare forwards, which miss the per-batch
   * JavaScript work (tokenizing, packing, scattering) that a one-batch-at-a-time engine waits for.
   */
  minTokens?: number;
  vocabSize: number;
  typeVocabSize: number;
  budgetMs?: number;
  tolerance?: number;
  /** Runs per size at least (default 2); the fastest counts (a size's first run may grow buffers). */
  reps?: number;
  /** Runs per size at most (default 5), made while the size has cost less than 5% of the budget. */
  maxReps?: number;
  /** The clock (tests inject one); default performance.now. */
  now?: () => number;
  /** Checked between runs: aborting stops the measurement with the signal's reason. */
  signal?: AbortSignal;
}

export type Forward = (tokens: Int32Array, typeIds: Int32Array, offsets: Int32Array) => Promise<unknown>;

/** Throughput of a point in real tokens per ms (pairs/s at a fixed pair length, scaled). */
const rate = (p: CurvePoint): number => p.tokens / Math.max(p.ms, 1e-9);

/**
 * The smallest size whose throughput is within `tolerance` of the peak of `curve` (undefined for an
 * empty curve).
 */
export function pickBatchTokens(
  curve: readonly CurvePoint[],
  tolerance = CURVE_TOLERANCE,
): number | undefined {
  if (curve.length === 0) return undefined;
  const peak = Math.max(...curve.map(rate));
  const ok = curve.filter((p) => rate(p) >= (1 - tolerance) * peak);
  return Math.min(...ok.map((p) => p.size));
}

/** `pairs` synthetic pairs of `len` tokens, packed as the engine takes them (ids only need to be valid). */
function syntheticBatch(pairs: number, len: number, vocabSize: number, typeVocabSize: number) {
  const n = pairs * len;
  const tokens = new Int32Array(n);
  const typeIds = new Int32Array(n);
  const offsets = new Int32Array(pairs + 1);
  const second = Math.min(1, typeVocabSize - 1);
  for (let i = 0; i < n; i++) {
    const t = i % len;
    tokens[i] = (t * 7919 + 101) % vocabSize;
    typeIds[i] = t < len / 2 ? 0 : second;
  }
  for (let p = 0; p <= pairs; p++) offsets[p] = p * len;
  return { tokens, typeIds, offsets };
}

/** Times `size`'s batch: the best of `reps` to `maxReps` runs (more while they are cheap). */
async function timeSize(
  forward: Forward,
  size: number,
  o: CurveOptions,
  now: () => number,
  runs: [number, number],
) {
  const pairs = Math.floor(size / o.pairLength);
  const b = syntheticBatch(pairs, o.pairLength, o.vocabSize, o.typeVocabSize);
  const budget = o.budgetMs ?? CURVE_BUDGET_MS;
  let best = Number.POSITIVE_INFINITY;
  let spent = 0;
  for (let r = 0; r < runs[1] && (r < runs[0] || spent < 0.05 * budget); r++) {
    o.signal?.throwIfAborted();
    const s = now();
    await forward(b.tokens, b.typeIds, b.offsets);
    const ms = now() - s;
    best = Math.min(best, ms);
    spent += ms;
  }
  return { size, tokens: pairs * o.pairLength, pairs, ms: best };
}

/** Measures the curve through `forward` and picks the batch size (see the top of this file). */
export async function measureCurve(forward: Forward, o: CurveOptions): Promise<CurveResult> {
  const now = o.now ?? (() => performance.now());
  const budget = o.budgetMs ?? CURVE_BUDGET_MS;
  const tolerance = o.tolerance ?? CURVE_TOLERANCE;
  const reps = Math.max(1, o.reps ?? 2);
  const runs: [number, number] = [reps, Math.max(reps, o.maxReps ?? 5)];
  const fit = (o.sizes ?? CURVE_TOKENS).filter((s) => {
    const pairs = Math.floor(s / o.pairLength);
    return pairs >= 1 && pairs <= o.maxPairs;
  });
  const sizes = fit.filter((s) => s >= (o.minTokens ?? 0));
  const t0 = now();
  // Below the sizes tried, one run of the smallest size, only to predict what the first one costs.
  let ref: CurvePoint | undefined =
    fit[0] !== undefined && sizes[0] !== undefined && fit[0] < sizes[0]
      ? await timeSize(forward, fit[0], o, now, [1, 1])
      : undefined;
  const curve: CurvePoint[] = [];
  let stopped: CurveResult['stopped'] = 'end';
  let flatRuns = 0; // consecutive doublings that bought less than the tolerance
  for (const size of sizes) {
    // A run costs about its token share of the last size's best run, plus a quarter for noise and a
    // first run that grows buffers; never start what would overrun.
    const tokens = Math.floor(size / o.pairLength) * o.pairLength;
    if (ref && now() - t0 + (1.25 * reps * ref.ms * tokens) / ref.tokens > budget) {
      stopped = 'budget';
      break;
    }
    const point = await timeSize(forward, size, o, now, runs);
    const peakBefore = Math.max(0, ...curve.map(rate));
    flatRuns = curve.length > 0 && rate(point) < (1 + tolerance) * peakBefore ? flatRuns + 1 : 0;
    curve.push(point);
    ref = point;
    if (flatRuns >= 2) {
      stopped = 'flat';
      break;
    }
  }
  return { curve, chosen: pickBatchTokens(curve, tolerance), stopped, ms: now() - t0 };
}
