/**
 * The batching scheduler (docs/architecture.md, "schedule"): every pair of every call joins ONE queue; a dispatcher
 * forms engine batches from the queue front so that concurrent callers share batches. This file is the
 * dispatcher, its one concern (admission, the pump, the engine round trip, settling calls); batch formation is in
 * scheduler/queue.ts, per-call bookkeeping in scheduler/calls.ts, chunk mode's best-window policy in
 * scheduler/best-window.ts, the limits and their ranges in scheduler/limits.ts.
 *
 * - While batches are in the engine the window keeps filling (in slices of FILL_BUDGET_MS); an idle
 *   engine gets a batch as soon as the window holds one.
 * - At most `pipelineDepth` batches are in the engine at once (default 2: one computing, one queued on
 *   the engine thread), so latency stays low and memory bounded.
 * - Backpressure: more than `maxQueuePairs` pairs waiting -> QueueFullError at once.
 * - Abort: the call leaves the queue at once; its sequences not yet handed to the engine never are.
 *   A batch in the engine whose calls have all settled (aborted, expired, failed, disposed) is
 *   cancelled: the engine stops it at its next layer boundary (engines with `cancel`); a batch holding
 *   any live call's pair runs to the end. Dispose: every unsettled call rejects DisposedError at once,
 *   in-flight batches are cancelled and settle, then engine.dispose().
 * - Priorities and deadlines: a call waits in its priority's lane ('high' before 'normal' before 'low',
 *   arrival order within each); a call still holding pairs in the queue when its deadline passes fails
 *   with DeadlineError, and those pairs never reach the engine.
 * - A batch the engine refuses with E_INPUT (one call's bad sequence) is retried a call at a time, so
 *   only that call fails.
 * - With tokenizer workers (`tokenizer`, src/tokenizer-pool.ts) pairs are tokenized in parallel off the
 *   JS thread, and a full batch goes to the engine as soon as its pairs are tokenized, while the
 *   workers go on with the next chunks: for a call larger than a batch, and across calls, tokenizing
 *   batch k+1, computing k and reading back k-1 overlap (pumpParallel).
 */
import {
  AbortedError,
  DeadlineError,
  DisposedError,
  EngineError,
  fromNativeError,
  QueueFullError,
} from './errors';
import { callSafely } from './listeners';
import { type BatchMetrics, type CallMetrics, MetricsRecorder, paddingPct, type Stats } from './metrics';
import type { EngineMemory, ForwardResult, NativeEngine } from './native';
import {
  type Call,
  type CallResult,
  callMetrics,
  detach,
  newCall,
  type Pair,
  type PairEncoder,
  type SubmitOptions,
  windowScored,
} from './scheduler/calls';
import { resolveLimits, type SchedulerLimits } from './scheduler/limits';
import { type Batch, BatchQueue, type ChunkEncoder, type Seq } from './scheduler/queue';

export type { CallResult, PairEncoder, Priority, Segment, SubmitOptions } from './scheduler/calls';
export { PRIORITIES } from './scheduler/calls';
export {
  DEFAULT_LIMITS,
  engineDefaults,
  GPU_BATCH_LIMITS,
  LIMITS,
  resolveLimits,
  type SchedulerLimits,
} from './scheduler/limits';
export { balancedCuts, type ChunkEncoder, type EncodedChunk } from './scheduler/queue';

/** The part of NativeEngine the scheduler uses. */
export interface SchedulerEngine
  extends Pick<NativeEngine, 'forward'>,
    Partial<Pick<NativeEngine, 'cancel'>> {
  memory(): EngineMemory;
  dispose(): Promise<void>;
}

export interface SchedulerOptions extends Partial<SchedulerLimits> {
  engine: SchedulerEngine;
  encode: PairEncoder;
  /** Engines behind `engine` that compute side by side (src/engine-replicas.ts; default 1). */
  replicas?: number;
  /** Tokenizer workers, the scheduler's from now on (disposed with it); without them `encode` runs here. */
  tokenizer?: ChunkEncoder | undefined;
  numLabels: number;
  onBatch?: (batch: BatchMetrics) => void;
  onCall?: (call: CallMetrics) => void;
}

/** A call larger than the whole queue: it could never be taken. */
export function tooManyPairs(n: number, maxQueuePairs: number): QueueFullError {
  return new QueueFullError(
    `This call has ${n} pairs, more than maxQueuePairs (${maxQueuePairs}): split it into smaller calls or raise maxQueuePairs.`,
  );
}

function deadlineError(call: Call): DeadlineError {
  const left = call.queuedPairs;
  return new DeadlineError(
    `The call's deadline (${Math.round(call.deadline - call.enqueuedAt)} ms) passed with ${left} of its ${call.count} pairs not yet handed to the engine; they were not scored. Give it more time, a higher priority, or reduce the load.`,
  );
}

/** Longest slice of tokenizing per macrotask; the window fills over several when it takes longer. */
const FILL_BUDGET_MS = 2;

/** Ids for engine.forward/cancel, unique in the process: schedulers may share an engine (the bench). */
let lastEngineBatchId = 0;

/** A batch in the engine: its id there and the live calls with pairs in it. */
interface Running {
  engineId: number;
  live: Set<Call>;
}

export class Scheduler {
  readonly limits: SchedulerLimits;
  readonly recorder = new MetricsRecorder();
  private readonly engine: SchedulerEngine;
  private readonly tokenizer: ChunkEncoder | undefined;
  private readonly numLabels: number;
  private readonly replicas: number;
  private readonly onBatch: ((b: BatchMetrics) => void) | undefined;
  private readonly onCall: ((c: CallMetrics) => void) | undefined;
  private readonly queue: BatchQueue;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly running = new Map<Batch, Running>();
  /** Every call not yet settled, wherever its pairs are (queued, in the engine): dispose settles them all. */
  private readonly calls = new Set<Call>();
  private pumpScheduled = false;
  private waitTimer: NodeJS.Timeout | undefined;
  private disposed = false;
  private disposing: Promise<void> | undefined;

  constructor(opts: SchedulerOptions) {
    this.limits = resolveLimits(opts);
    this.engine = opts.engine;
    this.numLabels = opts.numLabels;
    this.replicas = opts.replicas ?? 1;
    this.onBatch = opts.onBatch;
    this.onCall = opts.onCall;
    this.tokenizer = opts.tokenizer;
    this.queue = new BatchQueue(
      this.limits,
      opts.encode,
      {
        tokenizeFailed: (call, err) => this.fail(call, err),
        truncated: () => this.recorder.truncatedPairs++,
        expired: (call) => this.fail(call, deadlineError(call)),
        // At once: the engine may be idle, waiting for these sequences.
        chunkDone: () => this.pump(),
      },
      opts.tokenizer,
    );
    if (opts.tokenizer) opts.tokenizer.onIdle = () => this.schedulePump();
  }

  /** Pairs waiting (not yet wholly handed to the engine). */
  get queueDepth(): number {
    return this.queue.depth;
  }

  get inFlightBatches(): number {
    return this.inFlight.size;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Queues the pairs (already validated as [string, string]; the scheduler reads the first
   * `pairs.length` of them, later, as it tokenizes) and resolves with their logits, or rejects
   * QueueFullError / AbortedError / DeadlineError / DisposedError / the engine's or tokenizer's error.
   * `opts` is the call's AbortSignal, or its signal, priority and deadline (already validated).
   */
  submit(pairs: readonly Pair[], opts?: AbortSignal | SubmitOptions): Promise<CallResult> {
    const o: SubmitOptions = opts instanceof AbortSignal ? { signal: opts } : (opts ?? {});
    const signal = o.signal;
    const refused = this.admit(pairs.length, signal);
    if (refused) {
      this.recorder.failedCalls++;
      return Promise.reject(refused);
    }
    return new Promise<CallResult>((resolve, reject) => {
      const call = newCall(pairs, this.numLabels, resolve, reject, o);
      if (call.count === 0) {
        this.finish(call);
        return;
      }
      if (signal) {
        call.onAbort = () => this.fail(call, new AbortedError(undefined, { cause: signal.reason }));
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      if (o.deadlineMs !== undefined) {
        // Fails the call when its deadline comes while pairs of it still wait (form() checks too, for
        // a timer that fires late behind a busy event loop).
        call.deadlineTimer = setTimeout(() => {
          if (call.live && call.queuedPairs > 0) this.fail(call, deadlineError(call));
        }, o.deadlineMs);
      }
      this.calls.add(call);
      this.queue.add(call);
      this.schedulePump();
    });
  }

  stats(): Stats {
    const memory = this.disposed ? { activeBytes: 0, peakBytes: 0, cacheBytes: 0 } : this.safeMemory();
    return this.recorder.snapshot(performance.now(), this.queue.depth, this.inFlight.size, memory);
  }

  /**
   * Rejects every unsettled call with DisposedError at once (queued or in the engine: no caller waits
   * on the engine), lets the batches in the engine settle (their results are dropped), then releases
   * the engine. Idempotent.
   */
  dispose(): Promise<void> {
    if (this.disposing) return this.disposing;
    this.disposed = true;
    if (this.waitTimer) clearTimeout(this.waitTimer);
    for (const c of [...this.calls]) this.fail(c, new DisposedError());
    this.queue.clear();
    const inFlight = [...this.inFlight];
    const workers = this.tokenizer?.dispose().catch(() => undefined);
    this.disposing = Promise.allSettled(inFlight)
      .then(() => this.engine.dispose())
      .finally(() => workers);
    return this.disposing;
  }

  /** Why a call of `n` pairs cannot join the queue now, if it cannot. */
  private admit(n: number, signal: AbortSignal | undefined): Error | undefined {
    if (this.disposed) return new DisposedError();
    if (signal?.aborted) return new AbortedError(undefined, { cause: signal.reason });
    const { maxQueuePairs } = this.limits;
    if (n > maxQueuePairs) return tooManyPairs(n, maxQueuePairs);
    const depth = this.queue.depth;
    if (depth + n > maxQueuePairs) {
      return new QueueFullError(
        `The queue holds ${depth} pairs and this call adds ${n}, over maxQueuePairs (${maxQueuePairs}): retry later (back off) or raise maxQueuePairs.`,
      );
    }
    return undefined;
  }

  private fail(call: Call, err: Error): void {
    if (!call.live) return;
    detach(call);
    this.calls.delete(call);
    this.queue.drop(call);
    this.cancelRunning(call);
    this.recorder.failedCalls++;
    call.reject(err);
    // Room in the queue or a dead call at the front may unblock the dispatcher.
    this.schedulePump();
  }

  private finish(call: Call): void {
    detach(call);
    this.calls.delete(call);
    const metrics = callMetrics(call, performance.now());
    this.recorder.recordCall(metrics);
    if (this.onCall) callSafely(this.onCall, metrics, 'a call listener');
    call.resolve({ logits: call.logits, metrics });
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.disposed) return;
    this.pumpScheduled = true;
    // setImmediate: calls made in the same tick join the queue before the first batch forms, and
    // each batch formation is its own macrotask, so I/O callbacks run between them.
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /**
   * One step of the dispatcher, run as its own macrotask: tokenize a slice of the window (bounded by
   * FILL_BUDGET_MS so the event loop stays free), then hand a batch to the engine when there is room
   * and either the window is complete or the engine would otherwise sit idle.
   */
  private pump(): void {
    if (this.disposed || this.queue.depth === 0) return;
    const { maxWaitMs, maxBatchSize, sortWindow, pipelineDepth } = this.limits;
    if (maxWaitMs > 0 && this.queue.depth < maxBatchSize) {
      const due = this.queue.oldestEnqueuedAt() + maxWaitMs;
      const now = performance.now();
      if (now < due) {
        if (!this.waitTimer) {
          this.waitTimer = setTimeout(
            () => {
              this.waitTimer = undefined;
              this.pump();
            },
            Math.max(1, Math.ceil(due - now)),
          );
        }
        return;
      }
    }
    if (this.waitTimer) {
      clearTimeout(this.waitTimer);
      this.waitTimer = undefined;
    }
    if (this.queue.parallel) {
      this.pumpParallel();
      return;
    }
    // Arrival-order batches: a full batch already waiting goes to a free engine before any tokenizing,
    // so the engine never waits on the JS thread between batches (with one batch in the engine at a
    // time, that wait would be idle engine time).
    if (sortWindow === 0 && this.inFlight.size < pipelineDepth && this.queue.holdsBatch()) {
      const batch = this.queue.form();
      if (batch) this.dispatch(batch);
    }
    const target = sortWindow > 0 ? Math.max(sortWindow, maxBatchSize) : maxBatchSize;
    const complete = this.queue.fill(target, performance.now() + FILL_BUDGET_MS);
    const room = this.inFlight.size < pipelineDepth;
    // While the engine works, let the window fill (better length sorting, no cost); an idle engine
    // gets a batch as soon as the window holds one.
    if (room && (complete || (this.inFlight.size === 0 && this.queue.holdsBatch()))) {
      const batch = this.queue.form();
      if (batch) this.dispatch(batch);
    }
    // More to do now: a window still filling, or room in the engine for another batch (from the window,
    // or from pairs still to tokenize: with sortWindow 0 the window is one batch, so it is empty now).
    // When the engine is full a batch result or a new call schedules the pump: no rescheduling loop
    // while there is nothing to do (queue.depth counts only pairs not yet wholly in the engine).
    const more = !complete || this.inFlight.size < pipelineDepth;
    if (this.queue.depth > 0 && more) this.schedulePump();
  }

  /**
   * pump() with tokenizer workers: hands chunks to every idle worker, then a batch to the engine when
   * it has room and the window holds a full batch or all there is (nothing left to tokenize and no
   * chunk out), as pump() does on the JS thread. A full batch therefore leaves while the workers go
   * on with the next chunks. Waiting for all of a smaller request rather than sending its first
   * chunk alone: an engine batch has a fixed cost (~1.5 ms on a GPU), more than the workers take to
   * tokenize the rest. Nothing here waits or polls: a chunk that comes back (chunkDone), a batch that
   * completes and a new call run it again.
   */
  private pumpParallel(): void {
    const { maxBatchSize, sortWindow, pipelineDepth, earlyBatchTokens } = this.limits;
    const target = sortWindow > 0 ? Math.max(sortWindow, maxBatchSize) : maxBatchSize;
    for (;;) {
      const complete = this.queue.fill(target, Number.POSITIVE_INFINITY);
      if (this.inFlight.size >= pipelineDepth || this.queue.windowSize === 0) return;
      const full = (sortWindow === 0 || this.inFlight.size === 0) && this.queue.holdsBatch();
      // An idle engine (with replicas, an idle one of them) starts on what is tokenized (earlyBatchTokens)
      // while the workers finish the rest.
      const early =
        earlyBatchTokens > 0 &&
        sortWindow === 0 &&
        this.inFlight.size < this.replicas &&
        this.queue.holdsTokens(earlyBatchTokens);
      if (!complete && !full && !early) return;
      const batch = this.queue.form();
      if (!batch) return;
      this.dispatch(batch);
    }
  }

  /** Hands a batch from the window to the engine: its pairs leave the queue. */
  private dispatch(batch: Batch): void {
    this.queue.dispatched(batch);
    this.send(batch);
  }

  /** Packs the batch and runs it on the engine; its result (or failure) comes back to complete/failBatch. */
  private send(batch: Batch): void {
    const t0 = performance.now();
    const seqs = batch.seqs;
    const tokens = new Int32Array(batch.tokens);
    const typeIds = new Int32Array(batch.tokens);
    const offsets = new Int32Array(seqs.length + 1);
    let off = 0;
    for (let i = 0; i < seqs.length; i++) {
      const s = seqs[i] as Seq;
      tokens.set(s.ids, off);
      typeIds.set(s.typeIds, off);
      off += s.ids.length;
      offsets[i + 1] = off;
    }
    batch.tokenizeMs += performance.now() - t0;
    batch.startedAt = performance.now();
    const live = new Set<Call>();
    for (const s of seqs) if (s.call.live) live.add(s.call);
    const engineId = ++lastEngineBatchId;
    this.running.set(batch, { engineId, live });
    let p: Promise<ForwardResult>;
    try {
      p = this.engine.forward(tokens, typeIds, offsets, engineId);
    } catch (err) {
      p = Promise.reject(err);
    }
    const done: Promise<void> = p.then(
      (r) => {
        this.running.delete(batch);
        this.complete(batch, r);
      },
      (err) => {
        this.running.delete(batch);
        this.failBatch(batch, err);
      },
    );
    this.inFlight.add(done);
    void done.finally(() => {
      this.inFlight.delete(done);
      // At once, not a macrotask later: with one batch in the engine, the engine idles until the next.
      this.pump();
    });
  }

  /**
   * `call` settled: a batch in the engine left with no live call computes nothing anyone waits for, so
   * the engine stops it at its next layer boundary and the engine is free for the calls behind it.
   */
  private cancelRunning(call: Call): void {
    const cancel = this.engine.cancel?.bind(this.engine);
    if (!cancel) return;
    for (const r of this.running.values()) {
      if (!r.live.delete(call) || r.live.size > 0) continue;
      try {
        cancel(r.engineId);
      } catch {
        // Not stopping it only costs time: the batch finishes and its results are dropped.
      }
    }
  }

  private complete(batch: Batch, r: ForwardResult): void {
    if (r.cancelled) {
      // Only a batch of settled calls is cancelled: nothing to deliver. Were a live call in it anyway,
      // it must fail rather than wait forever.
      if (batch.seqs.some((s) => s.call.live))
        this.failBatch(batch, new EngineError('The engine stopped a batch that still had callers waiting.'));
      return;
    }
    const endedAt = performance.now();
    const L = this.numLabels;
    const engineStart = Math.max(batch.startedAt, endedAt - r.inferenceMs);
    let wait = 0;
    const pairsDone = new Set<Call>();
    for (let i = 0; i < batch.seqs.length; i++) {
      const s = batch.seqs[i] as Seq;
      const c = s.call;
      wait += Math.max(0, engineStart - c.enqueuedAt - s.tokenizeMs);
      if (!c.live) continue;
      if (windowScored(c, s.pair, s.window, r.logits, i * L, L, batch.id, r.inferenceMs)) pairsDone.add(c);
    }
    const metrics: BatchMetrics = {
      id: batch.id,
      pairs: batch.seqs.length,
      tokens: batch.tokens,
      computedSlots: r.computedSlots,
      paddingPct: paddingPct(batch.tokens, r.computedSlots),
      paddingIfPaddedPct: paddingPct(batch.tokens, batch.seqs.length * batch.maxLength),
      maxLength: batch.maxLength,
      tokenizeMs: batch.tokenizeMs,
      queueWaitMs: batch.seqs.length ? wait / batch.seqs.length : 0,
      inferenceMs: r.inferenceMs,
      startedAt: batch.startedAt,
      endedAt,
      ...(r.engineTimes && { engineTimes: r.engineTimes }),
      memory: this.safeMemory(),
    };
    this.recorder.recordBatch(metrics);
    let pairsInBatch = 0;
    for (const s of batch.seqs) if (s.window === 0) pairsInBatch++;
    this.recorder.pairs += pairsInBatch;
    if (this.onBatch) callSafely(this.onBatch, metrics, 'a batch listener');
    for (const c of pairsDone) {
      if (c.live && c.outstanding === 0) this.finish(c);
    }
  }

  /**
   * A batch the engine refused. E_INPUT means something in one call's sequences (e.g. a token id the
   * model does not have): the batch's calls are tried again each in a batch of its own, so only the
   * call holding the bad pair fails and the others get the results they would get alone (an engine's
   * result for a sequence does not depend on its batch). Any other failure fails every call in it.
   */
  private failBatch(batch: Batch, err: unknown): void {
    const e = fromNativeError(err);
    const byCall = new Map<Call, Seq[]>();
    for (const s of batch.seqs) {
      if (!s.call.live) continue;
      const list = byCall.get(s.call);
      if (list) list.push(s);
      else byCall.set(s.call, [s]);
    }
    if (e.code !== 'E_INPUT' || byCall.size < 2 || this.disposed) {
      for (const c of byCall.keys()) this.fail(c, e);
      return;
    }
    for (const seqs of byCall.values()) this.send(this.queue.batchOf(seqs));
  }

  private safeMemory(): EngineMemory {
    try {
      return this.engine.memory();
    } catch {
      // A failing memory() must not break stats() or a batch's metrics; zeros say "unknown".
      return { activeBytes: 0, peakBytes: 0, cacheBytes: 0 };
    }
  }
}
