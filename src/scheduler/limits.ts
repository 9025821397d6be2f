/** The scheduler's limits: each one's default and accepted range, declared once (docs/limits.md). */
import { checkNumber, int, MAX_TIMER_MS, type Range, real } from '../validate';

export interface SchedulerLimits {
  /** Real tokens per batch (default CPU_BATCH_TOKENS). A single sequence longer than this goes alone. */
  maxBatchTokens: number;
  /** Sequences per batch (default 256). */
  maxBatchSize: number;
  /** Pairs waiting at most; more -> QueueFullError (default 100000). */
  maxQueuePairs: number;
  /** How long the oldest pair may wait for a fuller batch (default 0: dispatch at once). */
  maxWaitMs: number;
  /**
   * 0 (default): batches are cut from the queue in arrival order, so the oldest calls complete first
   * (request-fair; the engines are padding-free). N > 0: the previous policy, the first N sequences
   * sorted by length and cut into balanced runs (pads less where an engine pads; every call in the
   * window waits for the whole window).
   */
  sortWindow: number;
  /** Batches in the engine at once (default 2; the cpu engine gets 1, see engineDefaults). */
  pipelineDepth: number;
}

/**
 * The cpu engine's batch size: the smallest batch within ~5% of its peak pairs/s. Measured with
 * `npm run bench:service -- --curve` (bench/service.ts: MiniLM-L6 shape, synthetic weights, MS MARCO-like
 * pairs of ~90 tokens, 2 threads on a shared 2-core x86-64 machine; docs/latency.md has the table):
 * PLACEHOLDER
 * Past that, throughput is flat while every batch (and so every request in it, and the wait of a call
 * arriving behind it) takes linearly longer: 16384 tokens took ~3 s there.
 */
export const CPU_BATCH_TOKENS = 4096;

/** Each limit's default and accepted range. */
export const LIMITS: { readonly [K in keyof SchedulerLimits]: Range & { default: number } } = {
  maxBatchTokens: { default: CPU_BATCH_TOKENS, ...int(1, 2 ** 24) },
  maxBatchSize: { default: 256, ...int(1, 65536) },
  maxQueuePairs: { default: 100_000, ...int(1, 100_000_000) },
  // A longer wait than a minute would hold a batch back for nothing; Node's timers stop at 2^31 - 1 ms.
  maxWaitMs: { default: 0, ...real(0, Math.min(60_000, MAX_TIMER_MS)) },
  sortWindow: { default: 0, ...int(0, 1 << 20) },
  pipelineDepth: { default: 2, ...int(1, 64) },
};

export const DEFAULT_LIMITS: SchedulerLimits = Object.fromEntries(
  Object.entries(LIMITS).map(([k, v]) => [k, v.default]),
) as unknown as SchedulerLimits;

/**
 * Batch limits for engines on a GPU, where a forward has a fixed cost of ~2 ms (launching some 70
 * kernels) whatever its size: larger batches amortise it. 65536 rows is also how far the mlx engine's
 * warm-up visits its shapes.
 */
export const GPU_BATCH_LIMITS: Pick<SchedulerLimits, 'maxBatchTokens' | 'maxBatchSize'> = {
  maxBatchTokens: 65536,
  maxBatchSize: 1024,
};

/**
 * The defaults that depend on where the engine runs, for the limits the caller left unset. On a GPU:
 * GPU_BATCH_LIMITS. On the CPU: one batch in the engine at a time (pipelineDepth 1), so a batch stays
 * in the queue, where an aborted or expired call's pairs can still be dropped, until the engine is free;
 * the engine thread computes one batch at a time anyway, and forming and packing the next one takes
 * well under a millisecond against batches of tens to hundreds.
 */
export function engineDefaults(device: 'cpu' | 'gpu', o: Partial<SchedulerLimits>): Partial<SchedulerLimits> {
  if (device === 'cpu') return { pipelineDepth: 1 };
  return {
    ...(o.maxBatchTokens === undefined && { maxBatchTokens: GPU_BATCH_LIMITS.maxBatchTokens }),
    ...(o.maxBatchSize === undefined && { maxBatchSize: GPU_BATCH_LIMITS.maxBatchSize }),
  };
}

/** DEFAULT_LIMITS overridden by the defined fields of `opts`; InputError naming a bad one. */
export function resolveLimits(opts: Partial<SchedulerLimits>): SchedulerLimits {
  const l = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(LIMITS) as Array<keyof SchedulerLimits>) {
    if (opts[k] !== undefined) l[k] = checkNumber(k, opts[k], LIMITS[k]);
  }
  return l;
}
