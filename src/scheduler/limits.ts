/** The scheduler's limits: each one's default and accepted range, declared once (docs/limits.md). */
import { checkNumber, int, MAX_TIMER_MS, type Range, real } from '../validate';

export interface SchedulerLimits {
  /** Real tokens per batch (default 16384). A single sequence longer than this goes alone. */
  maxBatchTokens: number;
  /** Sequences per batch (default 256). */
  maxBatchSize: number;
  /** Pairs waiting at most; more -> QueueFullError (default 100000). */
  maxQueuePairs: number;
  /** How long the oldest pair may wait for a fuller batch (default 0: dispatch at once). */
  maxWaitMs: number;
  /** Sequences from the queue front sorted by length when forming a batch (default 1024; 0 = arrival order). */
  sortWindow: number;
  /** Batches in the engine at once (default 2). */
  pipelineDepth: number;
}

/** Each limit's default and accepted range. */
export const LIMITS: { readonly [K in keyof SchedulerLimits]: Range & { default: number } } = {
  maxBatchTokens: { default: 16384, ...int(1, 2 ** 24) },
  maxBatchSize: { default: 256, ...int(1, 65536) },
  maxQueuePairs: { default: 100_000, ...int(1, 100_000_000) },
  // A longer wait than a minute would hold a batch back for nothing; Node's timers stop at 2^31 - 1 ms.
  maxWaitMs: { default: 0, ...real(0, Math.min(60_000, MAX_TIMER_MS)) },
  sortWindow: { default: 1024, ...int(0, 1 << 20) },
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

/** DEFAULT_LIMITS overridden by the defined fields of `opts`; InputError naming a bad one. */
export function resolveLimits(opts: Partial<SchedulerLimits>): SchedulerLimits {
  const l = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(LIMITS) as Array<keyof SchedulerLimits>) {
    if (opts[k] !== undefined) l[k] = checkNumber(k, opts[k], LIMITS[k]);
  }
  return l;
}
