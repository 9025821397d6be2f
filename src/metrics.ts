/**
 * Metrics of the scheduler: one record per engine batch, one per call, and running totals with
 * percentiles. The bench module builds its report on these names; they are part of the public API.
 *
 * Times are milliseconds from `performance.now()` (monotonic); `startedAt` / `endedAt` are on the same
 * clock (add `performance.timeOrigin` for epoch milliseconds).
 */
import type { EngineMemory, EngineTimes } from './native';

/** What one engine batch did. Emitted as the `batch` event and passed to the `onBatch` option. */
export interface BatchMetrics {
  /** Sequence number of the batch, from 1. */
  id: number;
  /** Sequences in the batch (pairs, or windows of pairs in `longDocuments: 'chunk'` mode). */
  pairs: number;
  /** Real tokens in the batch (the packed length, no padding). */
  tokens: number;
  /** Token slots the engine really computed (tokens + the padding it needed inside attention). */
  computedSlots: number;
  /** Padding the engine computed: `100 * (1 - tokens / computedSlots)`. */
  paddingPct: number;
  /**
   * Padding this batch WOULD have if it were padded to its longest sequence, as frameworks that pad
   * every batch do: `100 * (1 - tokens / (pairs * longest))`. Shows what length-aware batch formation
   * saves (compare with `sortWindow: 0`, plain arrival-order batches).
   */
  paddingIfPaddedPct: number;
  /** Length of the longest sequence in the batch. */
  maxLength: number;
  /** JS time spent tokenizing this batch's sequences and packing the batch. */
  tokenizeMs: number;
  /**
   * Average time the batch's sequences waited between joining the queue and the engine starting on
   * this batch, tokenization excluded.
   */
  queueWaitMs: number;
  /** Engine compute time for the batch, as the engine measured it on its own thread. */
  inferenceMs: number;
  /** When the batch was handed to the engine (performance.now()). */
  startedAt: number;
  /** When its results came back to JS (performance.now()). */
  endedAt: number;
  /**
   * Its time on the engine's thread (performance.now()): begun (possibly ahead, while the batch before it
   * computed), queued on the device and found computed (GPU engines), result ready. Between startedAt and
   * beganAt it waited for the engine thread; between endedAt there and endedAt here, for the JS thread.
   * Native engines only.
   */
  engineTimes?: EngineTimes;
  /** Engine memory right after the batch. */
  memory: EngineMemory;
}

/** What one `predict` / `rank` call cost. The four times add up: tokenize + queueWait + inference = total. */
export interface CallMetrics {
  pairs: number;
  /** Sequences scored (more than `pairs` when long documents are split into windows). */
  sequences: number;
  truncatedPairs: number;
  /** JS time spent tokenizing this call's pairs. */
  tokenizeMs: number;
  /** The rest of the wall time: waiting for other batches, for `maxWaitMs`, and JS bookkeeping. */
  queueWaitMs: number;
  /** Engine time of the batches that carried this call's sequences (shared batches count whole). */
  inferenceMs: number;
  /** From the call to its result. */
  totalMs: number;
}

/** p50/p90/p95/p99 of a series, plus its mean and count (over the most recent samples kept). */
export interface Percentiles {
  count: number;
  mean: number;
  min: number;
  max: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
}

/** `CrossEncoder.stats()`. Totals are since load; percentiles over the last `SAMPLE_LIMIT` samples. */
export interface Stats {
  /** Calls that resolved with results. */
  calls: number;
  /** Calls that rejected (aborted, queue full, disposed, engine or input errors). */
  failedCalls: number;
  /** Pairs scored (in resolved and dropped calls alike: the engine did the work). */
  pairs: number;
  /** Sequences the engine scored (pairs, or windows in chunk mode). */
  sequences: number;
  batches: number;
  tokens: number;
  computedSlots: number;
  truncatedPairs: number;
  /** Engine padding over all batches: `100 * (1 - tokens / computedSlots)`. */
  paddingPct: number;
  /** Padding if every batch were padded to its longest sequence (see BatchMetrics). */
  paddingIfPaddedPct: number;
  /** Engine compute ms per batch. */
  batchInferenceMs: Percentiles;
  /** Wall ms per resolved call (CallMetrics.totalMs). */
  callLatencyMs: Percentiles;
  /** Sequences per batch. */
  batchSize: Percentiles;
  /** Pairs waiting in the queue now (not yet handed to the engine). */
  queueDepth: number;
  /** Batches handed to the engine and not yet back. */
  inFlightBatches: number;
  /** Engine memory now (zeros once disposed). */
  memory: EngineMemory;
  /** `100 * engine compute time / wall time since the first batch started`. */
  busyPct: number;
  totalTokenizeMs: number;
  totalInferenceMs: number;
}

/** Samples kept for percentiles (a ring: memory stays bounded however long the process runs). */
export const SAMPLE_LIMIT = 10_000;

class Ring {
  private readonly data: Float64Array;
  private n = 0;
  private next = 0;
  constructor(limit: number) {
    this.data = new Float64Array(limit);
  }
  push(v: number): void {
    this.data[this.next] = v;
    this.next = (this.next + 1) % this.data.length;
    if (this.n < this.data.length) this.n++;
  }
  values(): Float64Array {
    return this.data.slice(0, this.n);
  }
}

/**
 * Percentile by linear interpolation between closest ranks (numpy's default "linear" method): for
 * sorted x of length n, position (n - 1) * q.
 */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return 0;
  const pos = (n - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, n - 1);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (pos - lo);
}

export function summarize(values: ArrayLike<number>): Percentiles {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: n,
    mean: n ? sum / n : 0,
    min: n ? (sorted[0] as number) : 0,
    max: n ? (sorted[n - 1] as number) : 0,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
  };
}

export function paddingPct(tokens: number, slots: number): number {
  return slots > 0 ? 100 * (1 - tokens / slots) : 0;
}

/** Running totals; the scheduler feeds it, `stats()` reads it. */
export class MetricsRecorder {
  calls = 0;
  failedCalls = 0;
  pairs = 0;
  sequences = 0;
  batches = 0;
  tokens = 0;
  computedSlots = 0;
  paddedSlots = 0;
  truncatedPairs = 0;
  totalTokenizeMs = 0;
  totalInferenceMs = 0;
  firstBatchAt: number | undefined;
  private readonly inference = new Ring(SAMPLE_LIMIT);
  private readonly latency = new Ring(SAMPLE_LIMIT);
  private readonly sizes = new Ring(SAMPLE_LIMIT);

  recordBatch(b: BatchMetrics): void {
    this.batches++;
    this.sequences += b.pairs;
    this.tokens += b.tokens;
    this.computedSlots += b.computedSlots;
    this.paddedSlots += b.pairs * b.maxLength;
    this.totalTokenizeMs += b.tokenizeMs;
    this.totalInferenceMs += b.inferenceMs;
    if (this.firstBatchAt === undefined) this.firstBatchAt = b.startedAt;
    this.inference.push(b.inferenceMs);
    this.sizes.push(b.pairs);
  }

  recordCall(c: CallMetrics): void {
    this.calls++;
    this.latency.push(c.totalMs);
  }

  snapshot(now: number, queueDepth: number, inFlightBatches: number, memory: EngineMemory): Stats {
    const wall = this.firstBatchAt === undefined ? 0 : now - this.firstBatchAt;
    return {
      calls: this.calls,
      failedCalls: this.failedCalls,
      pairs: this.pairs,
      sequences: this.sequences,
      batches: this.batches,
      tokens: this.tokens,
      computedSlots: this.computedSlots,
      truncatedPairs: this.truncatedPairs,
      paddingPct: paddingPct(this.tokens, this.computedSlots),
      paddingIfPaddedPct: paddingPct(this.tokens, this.paddedSlots),
      batchInferenceMs: summarize(this.inference.values()),
      callLatencyMs: summarize(this.latency.values()),
      batchSize: summarize(this.sizes.values()),
      queueDepth,
      inFlightBatches,
      memory,
      busyPct: wall > 0 ? Math.min(100, (100 * this.totalInferenceMs) / wall) : 0,
      totalTokenizeMs: this.totalTokenizeMs,
      totalInferenceMs: this.totalInferenceMs,
    };
  }
}
