/**
 * The batch size from the engine's own cost curve (issue 15; docs/latency.md, "Batch size"). A batch
 * costs a fixed part (the round trip, the engine's per-layer synchronisation, the scheduler's work
 * between batches) plus a per-token part, so throughput rises with the batch size until the fixed part
 * no longer shows, and then only latency grows: every request in a batch, and every call arriving
 * behind it, waits for the whole batch. How soon that happens depends on the model (FLOPs per token),
 * the machine and its threads, so load's warm-up measures it on the real model: synthetic batches of
 * doubling size, each timed through the engine's `forward`, the best of a few runs (more for cheap
 * sizes, whose noise would otherwise decide). It stops once two doublings in a row buy less than the
 * tolerance, or before a size that would overrun the time budget.
 *
 * The choice is the smallest candidate within `tolerance` of the peak throughput among the candidates.
 * A size is a candidate when it is at least `minTokens` (the engine's own figure) or when its batch
 * takes at least `minBatchMs`: these runs time bare forwards, which miss the scheduler's work between
 * batches (settling, forming, packing: ~2-3.5 ms a batch measured on a loaded 2-core machine, during
 * which a one-batch-at-a-time engine waits), and a batch of 50 ms keeps that within 5%. So a fast
 * model keeps at least the engine's figure, and a slow one may go below it, for lower latency, when
 * the next doubling was measured too and bought less than the tolerance.
 */
import type { EngineInfo, NativeEngine } from '../native';
import type { ModelSpec } from '../types';

/**
 * One measured point: the `size` (a maxBatchTokens) was tried as a batch of `pairs` whole pairs, `tokens`
 * real tokens (at most `size`), which took `ms` (best of the runs); `candidate`: it could be chosen.
 */
export interface CurvePoint {
  size: number;
  tokens: number;
  pairs: number;
  ms: number;
  candidate: boolean;
}

export interface CurveResult {
  /** The measured points, in the order measured (ascending sizes). */
  curve: CurvePoint[];
  /** The smallest candidate within the tolerance of the candidates' peak; undefined if none. */
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
/** A batch this long hides the scheduler's per-batch work (a few ms) within the tolerance. */
export const MIN_BATCH_MS = 50;

export interface CurveOptions {
  /** Sizes to try in real tokens, ascending (default CURVE_TOKENS). */
  sizes?: readonly number[];
  /** Tokens per synthetic pair (each batch holds floor(size / pairLength) pairs of this length). */
  pairLength: number;
  /** Pairs per batch at most (the maxBatchSize in force): larger sizes are not tried. */
  maxPairs: number;
  /** Sizes from this up are candidates whatever their time (default 0: all). */
  minTokens?: number;
  /** Smaller sizes are candidates when their batch takes at least this (default MIN_BATCH_MS). */
  minBatchMs?: number;
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
const rate = (p: Pick<CurvePoint, 'tokens' | 'ms'>): number => p.tokens / Math.max(p.ms, 1e-9);

/**
 * The smallest size whose throughput is within `tolerance` of the peak of `curve` (undefined for an
 * empty curve).
 */
export function pickBatchTokens(
  curve: readonly Pick<CurvePoint, 'size' | 'tokens' | 'ms'>[],
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

/** The best time of `size`'s batch over `reps` to `maxReps` runs (more while they are cheap). */
async function timeSize(forward: Forward, size: number, o: CurveOptions, now: () => number) {
  const pairs = Math.floor(size / o.pairLength);
  const b = syntheticBatch(pairs, o.pairLength, o.vocabSize, o.typeVocabSize);
  const cheap = 0.05 * (o.budgetMs ?? CURVE_BUDGET_MS);
  const reps = Math.max(1, o.reps ?? 2);
  const maxReps = Math.max(reps, o.maxReps ?? 5);
  let best = Number.POSITIVE_INFINITY;
  let spent = 0;
  for (let r = 0; r < maxReps && (r < reps || spent < cheap); r++) {
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
  const sizes = (o.sizes ?? CURVE_TOKENS).filter((s) => {
    const pairs = Math.floor(s / o.pairLength);
    return pairs >= 1 && pairs <= o.maxPairs;
  });
  const t0 = now();
  const curve: CurvePoint[] = [];
  let stopped: CurveResult['stopped'] = 'end';
  let flatRuns = 0; // consecutive candidate doublings that bought less than the tolerance
  for (const size of sizes) {
    // A run costs about its token share of the last size's best run, plus a quarter for noise and a
    // first run that grows buffers; never start what would overrun.
    const last = curve.at(-1);
    const tokens = Math.floor(size / o.pairLength) * o.pairLength;
    if (last && now() - t0 + (1.25 * reps * last.ms * tokens) / last.tokens > budget) {
      stopped = 'budget';
      break;
    }
    const t = await timeSize(forward, size, o, now);
    const point = { ...t, candidate: size >= (o.minTokens ?? 0) || t.ms >= (o.minBatchMs ?? MIN_BATCH_MS) };
    const before = curve.filter((p) => p.candidate);
    if (point.candidate) {
      const peakBefore = Math.max(0, ...before.map(rate));
      flatRuns = before.length > 0 && rate(point) < (1 + tolerance) * peakBefore ? flatRuns + 1 : 0;
    }
    curve.push(point);
    if (flatRuns >= 2) {
      stopped = 'flat';
      break;
    }
  }
  let chosen = pickBatchTokens(
    curve.filter((p) => p.candidate),
    tolerance,
  );
  // Below the engine's figure, only a size whose next doubling was measured too: the budget may have
  // stopped the curve while it still rose (on few threads, a small batch also splits unevenly into
  // the engine's row blocks).
  const last = curve.at(-1);
  if (chosen !== undefined && last && chosen < (o.minTokens ?? 0) && chosen >= last.size) chosen = undefined;
  return { curve, chosen, stopped, ms: now() - t0 };
}

/**
 * `maxBatchTokens`'s origin: the caller's option; the engine's figure (GPU engines, no warm-up, or no
 * candidate measured in time); or measured at load's warm-up on the CPU (measureCurve), with the curve
 * it was picked from and the ms the measuring took.
 */
export type BatchTokensChoice =
  | { value: number; source: 'caller' | 'engine' }
  | { value: number; source: 'measured'; curve: CurvePoint[]; ms: number };

/** Tokens per synthetic pair when measuring the curve: MS MARCO-like pairs are ~96 tokens. */
const CURVE_PAIR_TOKENS = 96;

/**
 * CrossEncoder.load's batch size: the caller's when set, else the engine's figure, which on the CPU the
 * measured curve replaces when load warms up. On a GPU the engine's figure stands: its fixed launch cost
 * favours large batches, and with two batches in flight one timed forward at a time would not show what
 * the pipeline does.
 */
export async function chooseBatchTokens(
  engine: Pick<NativeEngine, 'forward'>,
  e: EngineInfo,
  o: { maxBatchTokens?: number; maxBatchSize: number; warm: boolean; maxLength: number; spec: ModelSpec },
  signal: AbortSignal | undefined,
): Promise<BatchTokensChoice> {
  if (o.maxBatchTokens !== undefined) return { value: o.maxBatchTokens, source: 'caller' };
  if (!o.warm || e.device !== 'cpu') return { value: e.maxBatchTokens, source: 'engine' };
  const r = await measureCurve((t, ty, off) => engine.forward(t, ty, off), {
    pairLength: Math.min(CURVE_PAIR_TOKENS, o.maxLength),
    maxPairs: o.maxBatchSize,
    minTokens: e.maxBatchTokens,
    vocabSize: o.spec.vocabSize,
    typeVocabSize: o.spec.typeVocabSize,
    ...(signal && { signal }),
  });
  if (r.chosen === undefined) return { value: e.maxBatchTokens, source: 'engine' };
  return { value: r.chosen, source: 'measured', curve: r.curve, ms: r.ms };
}
