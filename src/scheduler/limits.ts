/** The scheduler's limits: each one's default and accepted range, declared once (docs/limits.md). */
import type { EngineLimits } from '../native';
import { checkNumber, int, MAX_TIMER_MS, type Range, real } from '../validate';

export interface SchedulerLimits {
  /**
   * Real tokens per batch. A single sequence longer than this goes alone. Default: what the engine
   * reports (engineDefaults), on the CPU measured at load's warm-up (scheduler/batch-curve.ts).
   */
  maxBatchTokens: number;
  /** Sequences per batch (default: what the engine reports; 256 without an engine). */
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
  /** Batches in the engine at once (default: what the engine reports; 2 without an engine). */
  pipelineDepth: number;
  /**
   * With tokenizer workers: while the engine is idle and a call is still being tokenized, a batch of at
   * least this many tokens leaves at once instead of waiting for a full batch or the rest of the call,
   * so that tokenizing the rest overlaps the engine's work on the first part (pipelining inside a
   * request). Default: what the engine reports (16384 on a GPU, 0 = wait on a CPU; engineDefaults), 0
   * without an engine. Only with sortWindow 0.
   */
  earlyBatchTokens: number;
}

/**
 * Each limit's default and accepted range. The defaults are a Scheduler's without an engine's figures
 * (tests, benchmarks); CrossEncoder.load takes the batch limits and the pipeline depth from the engine
 * (engineDefaults), whose numbers come from its own constants (native/engine_cpu.cpp, engine_mlx.cpp).
 */
export const LIMITS: { readonly [K in keyof SchedulerLimits]: Range & { default: number } } = {
  maxBatchTokens: { default: 2048, ...int(1, 2 ** 24) },
  maxBatchSize: { default: 256, ...int(1, 65536) },
  maxQueuePairs: { default: 100_000, ...int(1, 100_000_000) },
  // A longer wait than a minute would hold a batch back for nothing; Node's timers stop at 2^31 - 1 ms.
  maxWaitMs: { default: 0, ...real(0, Math.min(60_000, MAX_TIMER_MS)) },
  sortWindow: { default: 0, ...int(0, 1 << 20) },
  pipelineDepth: { default: 2, ...int(1, 64) },
  earlyBatchTokens: { default: 0, ...int(0, 2 ** 24) },
};

export const DEFAULT_LIMITS: SchedulerLimits = Object.fromEntries(
  Object.entries(LIMITS).map(([k, v]) => [k, v.default]),
) as unknown as SchedulerLimits;

/**
 * @deprecated The engine reports its batch limits (`NativeEngine.info()`, `CrossEncoder.info.engineLimits`),
 * and CrossEncoder uses those; this copy of the mlx engine's GPU figures is no longer read and will be
 * removed in the next major version.
 */
export const GPU_BATCH_LIMITS: Pick<SchedulerLimits, 'maxBatchTokens' | 'maxBatchSize'> = {
  maxBatchTokens: 65536,
  maxBatchSize: 1024,
};

/**
 * The limits the caller left unset in `o`, from what the engine reports it is built for: its batch
 * limits, how many batches it takes at once (on the CPU one: a batch stays in the queue, where an
 * aborted or expired call's pairs can still be dropped, until the engine is free) and when a batch may
 * leave before its call is tokenized (earlyBatchTokens; an engine that reports none waits).
 */
export function engineDefaults(
  engine: Pick<EngineLimits, 'maxBatchTokens' | 'maxBatchSize' | 'pipelineDepth'> &
    Partial<Pick<EngineLimits, 'earlyBatchTokens'>>,
  o: Partial<SchedulerLimits>,
): Partial<SchedulerLimits> {
  return {
    ...(o.maxBatchTokens === undefined && { maxBatchTokens: engine.maxBatchTokens }),
    ...(o.maxBatchSize === undefined && { maxBatchSize: engine.maxBatchSize }),
    ...(o.pipelineDepth === undefined && { pipelineDepth: engine.pipelineDepth }),
    ...(o.earlyBatchTokens === undefined &&
      engine.earlyBatchTokens !== undefined && { earlyBatchTokens: engine.earlyBatchTokens }),
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
