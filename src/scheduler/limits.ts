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
 * `npm run bench:service -- --curve-only --curve-tokens 512,1024,2048,4096,8192 --curve-min-tokens 4096`
 * (bench/service.ts: MiniLM-L6 shape, synthetic weights, MS MARCO-like pairs of ~96 tokens, 2 engine
 * threads on a shared 2-core x86-64 machine at load ~18; best of 3 interleaved rounds; pairs/s):
 *
 *   batch tokens   512   1024   2048   4096   8192        (16384: ~3 s a batch on the same machine idle)
 *   pairs/s        5.0    6.1    7.2    5.4    4.8        (length-sorted batches at 4096: 4.0)
 *
 * The curve does not rise past 2048 tokens (the differences are within that machine's noise), while
 * every batch, every request in it and the wait of a call arriving behind it grow linearly with its
 * size. 2048 tokens are also 32+ of the engine's row blocks (<= 64 rows), enough to give each of up to
 * 16 threads several, so a bigger machine is not starved by it. docs/latency.md has the details.
 */
export const CPU_BATCH_TOKENS = 2048;

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
