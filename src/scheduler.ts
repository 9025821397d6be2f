/**
 * The batching scheduler (docs/architecture.md, "schedule"): every pair of every call joins ONE queue; a dispatcher
 * forms engine batches from the queue front so that concurrent callers share batches.
 *
 * - Pairs are tokenized lazily by the dispatcher, a window at a time (never a whole huge call at once),
 *   so the event loop stays free and tokenizing batch N+1 overlaps the engine computing batch N.
 * - The window (the first `max(sortWindow, maxBatchSize)` sequences of the queue) is sorted by length
 *   and cut into as few contiguous runs as `maxBatchTokens` (real tokens) and `maxBatchSize` (sequences)
 *   allow, with about equal tokens each (balancedCuts); the next batch is the run holding the OLDEST
 *   waiting sequence, so nothing starves and each batch holds pairs of similar length (what padding
 *   engines pad to stays close to what they hold). `sortWindow: 0` forms batches in arrival order.
 * - While batches are in the engine the window keeps filling (in slices of FILL_BUDGET_MS); an idle
 *   engine gets a batch as soon as the window holds one.
 * - At most `pipelineDepth` batches are in the engine at once (default 2: one computing, one queued on
 *   the engine thread), so latency stays low and memory bounded.
 * - Backpressure: more than `maxQueuePairs` pairs waiting -> QueueFullError at once.
 * - Abort: the call leaves the queue at once; its sequences already in the engine finish, results
 *   dropped. Dispose: queued calls reject DisposedError, in-flight batches settle, then engine.dispose().
 */
import {
  AbortedError,
  DisposedError,
  fromNativeError,
  InputError,
  MlxRerankError,
  QueueFullError,
} from './errors';
import { type BatchMetrics, type CallMetrics, MetricsRecorder, paddingPct, type Stats } from './metrics';
import type { EngineMemory, ForwardResult } from './native';

/** One sequence for the engine: `[CLS] q [SEP] d [SEP]` ids and their type ids. */
export interface Segment {
  ids: Int32Array;
  typeIds: Int32Array;
  truncated: boolean;
}

/**
 * Turns a pair into one sequence (truncation) or several (overlapping windows of a long document).
 * May throw (e.g. InputError); only the call holding that pair fails.
 */
export type PairEncoder = (query: string, document: string) => Segment[];

/** The part of NativeEngine the scheduler uses. */
export interface SchedulerEngine {
  forward(tokens: Int32Array, typeIds: Int32Array, offsets: Int32Array): Promise<ForwardResult>;
  memory(): EngineMemory;
  dispose(): Promise<void>;
}

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

export const DEFAULT_LIMITS: SchedulerLimits = {
  maxBatchTokens: 16384,
  maxBatchSize: 256,
  maxQueuePairs: 100_000,
  maxWaitMs: 0,
  sortWindow: 1024,
  pipelineDepth: 2,
};

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
  for (const k of Object.keys(DEFAULT_LIMITS) as Array<keyof SchedulerLimits>) {
    if (opts[k] !== undefined) l[k] = opts[k] as number;
  }
  check('maxBatchTokens', l.maxBatchTokens, 1);
  check('maxBatchSize', l.maxBatchSize, 1);
  check('maxQueuePairs', l.maxQueuePairs, 1);
  check('sortWindow', l.sortWindow, 0);
  check('pipelineDepth', l.pipelineDepth, 1);
  if (typeof l.maxWaitMs !== 'number' || !(l.maxWaitMs >= 0) || !Number.isFinite(l.maxWaitMs)) {
    throw new InputError(`maxWaitMs must be a finite number >= 0 (got ${String(l.maxWaitMs)}).`);
  }
  return l;
}

export interface SchedulerOptions extends Partial<SchedulerLimits> {
  engine: SchedulerEngine;
  encode: PairEncoder;
  numLabels: number;
  onBatch?: (batch: BatchMetrics) => void;
  onCall?: (call: CallMetrics) => void;
}

/** What a call resolves with: for each pair the logits row of its best window (row-major). */
export interface CallResult {
  logits: Float32Array;
  metrics: CallMetrics;
}

type Pair = readonly [string, string];

interface Call {
  pairs: readonly Pair[];
  enqueuedAt: number;
  live: boolean;
  /** Next pair to tokenize. */
  cursor: number;
  /** Pairs not yet wholly handed to the engine. */
  queuedPairs: number;
  /** Pairs not yet wholly scored. */
  outstanding: number;
  logits: Float32Array;
  /** Per pair: windows not yet handed to the engine / not yet scored; the best window so far. */
  undispatched: Int32Array;
  unscored: Int32Array;
  bestWindow: Int32Array;
  sequences: number;
  truncated: number;
  tokenizeMs: number;
  inferenceMs: number;
  lastBatch: number;
  resolve: (r: CallResult) => void;
  reject: (e: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface Seq {
  call: Call;
  pair: number;
  window: number;
  order: number;
  ids: Int32Array;
  typeIds: Int32Array;
  tokenizeMs: number;
}

interface Batch {
  id: number;
  seqs: Seq[];
  tokens: number;
  maxLength: number;
  tokenizeMs: number;
  startedAt: number;
}

/** Longest slice of tokenizing per macrotask; the window fills over several when it takes longer. */
const FILL_BUDGET_MS = 2;

function check(name: string, v: number, min: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || !Number.isInteger(v)) {
    throw new InputError(`${name} must be an integer >= ${min} (got ${String(v)}).`);
  }
  return v;
}

export class Scheduler {
  readonly limits: SchedulerLimits;
  readonly recorder = new MetricsRecorder();
  private readonly engine: SchedulerEngine;
  private readonly encode: PairEncoder;
  private readonly numLabels: number;
  private readonly onBatch: ((b: BatchMetrics) => void) | undefined;
  private readonly onCall: ((c: CallMetrics) => void) | undefined;
  /**
   * Calls with pairs still to tokenize, in arrival order (dead ones skipped lazily), from pendingHead on.
   * Slots before the head are cleared as it passes them (advancePending): a finished call must not stay
   * reachable from here, or every call outlives a few scavenges, is promoted, and the old generation
   * fills with them (a mark-compact pause every few hundred calls).
   */
  private pending: (Call | undefined)[] = [];
  private pendingHead = 0;
  /** Tokenized sequences waiting for a batch, in arrival order. */
  private ready: Seq[] = [];
  private readyDirty = false;
  private queued = 0;
  private order = 0;
  private batchSeq = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private pumpScheduled = false;
  private waitTimer: NodeJS.Timeout | undefined;
  private disposed = false;
  private disposing: Promise<void> | undefined;

  constructor(opts: SchedulerOptions) {
    const l = resolveLimits(opts);
    this.limits = l;
    this.engine = opts.engine;
    this.encode = opts.encode;
    this.numLabels = opts.numLabels;
    this.onBatch = opts.onBatch;
    this.onCall = opts.onCall;
  }

  /** Pairs waiting (not yet wholly handed to the engine). */
  get queueDepth(): number {
    return this.queued;
  }

  get inFlightBatches(): number {
    return this.inFlight.size;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * Queues the pairs (already validated as [string, string]) and resolves with their logits, or rejects
   * QueueFullError / AbortedError / DisposedError / the engine's or tokenizer's error.
   */
  submit(pairs: readonly Pair[], signal?: AbortSignal): Promise<CallResult> {
    if (this.disposed) {
      this.recorder.failedCalls++;
      return Promise.reject(new DisposedError());
    }
    if (signal?.aborted) {
      this.recorder.failedCalls++;
      return Promise.reject(new AbortedError(undefined, { cause: signal.reason }));
    }
    const n = pairs.length;
    const { maxQueuePairs } = this.limits;
    if (n > maxQueuePairs) {
      this.recorder.failedCalls++;
      return Promise.reject(
        new QueueFullError(
          `This call has ${n} pairs, more than maxQueuePairs (${maxQueuePairs}): split it into smaller calls or raise maxQueuePairs.`,
        ),
      );
    }
    if (this.queued + n > maxQueuePairs) {
      this.recorder.failedCalls++;
      return Promise.reject(
        new QueueFullError(
          `The queue holds ${this.queued} pairs and this call adds ${n}, over maxQueuePairs (${maxQueuePairs}): retry later (back off) or raise maxQueuePairs.`,
        ),
      );
    }
    const now = performance.now();
    return new Promise<CallResult>((resolve, reject) => {
      const L = this.numLabels;
      const call: Call = {
        pairs,
        enqueuedAt: now,
        live: true,
        cursor: 0,
        queuedPairs: n,
        outstanding: n,
        logits: new Float32Array(n * L),
        undispatched: new Int32Array(n),
        unscored: new Int32Array(n),
        bestWindow: new Int32Array(n).fill(-1),
        sequences: 0,
        truncated: 0,
        tokenizeMs: 0,
        inferenceMs: 0,
        lastBatch: 0,
        resolve,
        reject,
        signal,
        onAbort: undefined,
      };
      if (n === 0) {
        this.finish(call);
        return;
      }
      if (signal) {
        call.onAbort = () => this.fail(call, new AbortedError(undefined, { cause: signal.reason }));
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      this.queued += n;
      this.pending.push(call);
      this.schedulePump();
    });
  }

  stats(): Stats {
    let memory: EngineMemory = { activeBytes: 0, peakBytes: 0, cacheBytes: 0 };
    if (!this.disposed) {
      try {
        memory = this.engine.memory();
      } catch {
        // A failing memory() must not break stats(); zeros say "unknown".
      }
    }
    return this.recorder.snapshot(performance.now(), this.queued, this.inFlight.size, memory);
  }

  /**
   * Rejects every waiting call with DisposedError, lets the batches in the engine settle (their results
   * are dropped), then releases the engine. Idempotent; never hangs on a healthy engine.
   */
  dispose(): Promise<void> {
    if (this.disposing) return this.disposing;
    this.disposed = true;
    if (this.waitTimer) clearTimeout(this.waitTimer);
    const live = new Set<Call>();
    for (let i = this.pendingHead; i < this.pending.length; i++) live.add(this.pending[i] as Call);
    for (const s of this.ready) live.add(s.call);
    for (const c of live) this.fail(c, new DisposedError());
    this.pending = [];
    this.pendingHead = 0;
    this.ready = [];
    const inFlight = [...this.inFlight];
    this.disposing = Promise.allSettled(inFlight).then(() => this.engine.dispose());
    return this.disposing;
  }

  private fail(call: Call, err: Error): void {
    if (!call.live) return;
    call.live = false;
    this.queued -= call.queuedPairs;
    call.queuedPairs = 0;
    this.readyDirty = true;
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
    this.recorder.failedCalls++;
    call.reject(err);
    this.compactPending();
    // Room in the queue or a dead call at the front may unblock the dispatcher.
    this.schedulePump();
  }

  private finish(call: Call): void {
    call.live = false;
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
    const totalMs = performance.now() - call.enqueuedAt;
    const metrics: CallMetrics = {
      pairs: call.pairs.length,
      sequences: call.sequences,
      truncatedPairs: call.truncated,
      tokenizeMs: call.tokenizeMs,
      inferenceMs: call.inferenceMs,
      queueWaitMs: Math.max(0, totalMs - call.tokenizeMs - call.inferenceMs),
      totalMs,
    };
    this.recorder.recordCall(metrics);
    if (this.onCall) safely(this.onCall, metrics);
    call.resolve({ logits: call.logits, metrics });
  }

  /** Drops dead calls from the pending list once they dominate it (keeps memory bounded under aborts). */
  private compactPending(): void {
    const size = this.pending.length - this.pendingHead;
    if (size < 64 || this.pendingHead > size) {
      if (this.pendingHead > 1024 && this.pendingHead > size) {
        this.pending = this.pending.slice(this.pendingHead);
        this.pendingHead = 0;
      }
      if (size < 64) return;
    }
    let live = 0;
    for (let i = this.pendingHead; i < this.pending.length; i++) if ((this.pending[i] as Call).live) live++;
    if (live * 2 < size) {
      this.pending = this.pending.slice(this.pendingHead).filter((c) => c?.live === true);
      this.pendingHead = 0;
    }
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
    if (this.disposed || this.queued === 0) return;
    const { maxWaitMs, maxBatchSize, sortWindow, pipelineDepth } = this.limits;
    if (maxWaitMs > 0 && this.queued < maxBatchSize) {
      const due = this.oldestEnqueuedAt() + maxWaitMs;
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
    const target = sortWindow > 0 ? Math.max(sortWindow, maxBatchSize) : maxBatchSize;
    const complete = this.fillWindow(target, performance.now() + FILL_BUDGET_MS);
    const room = this.inFlight.size < pipelineDepth;
    // While the engine works, let the window fill (better length sorting, no cost); an idle engine
    // gets a batch as soon as the window holds one.
    if (room && (complete || (this.inFlight.size === 0 && this.windowHoldsBatch()))) {
      const batch = this.formBatch();
      if (batch) this.dispatch(batch);
    }
    // More to do now: a window still filling, or room for another batch. (When the engine is full and
    // the window complete, the next batch result schedules the pump.)
    if (this.queued > 0 && (!complete || this.inFlight.size < pipelineDepth)) this.schedulePump();
  }

  private windowHoldsBatch(): boolean {
    const { maxBatchSize, maxBatchTokens } = this.limits;
    if (this.ready.length >= maxBatchSize) return true;
    let tokens = 0;
    for (const s of this.ready) tokens += s.ids.length;
    return tokens >= maxBatchTokens;
  }

  private oldestEnqueuedAt(): number {
    for (const s of this.ready) if (s.call.live) return s.call.enqueuedAt;
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      const c = this.pending[i] as Call;
      if (c.live) return c.enqueuedAt;
    }
    return performance.now();
  }

  /**
   * Tokenizes from the queue front until the window holds `target` sequences, the queue is drained, or
   * the deadline passed. Returns true when the window is complete (full or nothing left to tokenize).
   */
  private fillWindow(target: number, deadline: number): boolean {
    if (this.readyDirty) {
      this.ready = this.ready.filter((s) => s.call.live);
      this.readyDirty = false;
    }
    while (this.ready.length < target && this.pendingHead < this.pending.length) {
      const call = this.pending[this.pendingHead] as Call;
      if (!call.live || call.cursor >= call.pairs.length) {
        this.advancePending();
        continue;
      }
      const i = call.cursor++;
      const [q, d] = call.pairs[i] as Pair;
      const t0 = performance.now();
      let segs: Segment[];
      try {
        segs = this.encode(q, d);
        if (segs.length === 0) throw new InputError(`Pair ${i} produced no sequence to score.`);
      } catch (err) {
        this.fail(call, err instanceof MlxRerankError ? err : new InputError(`Pair ${i}: ${String(err)}`));
        if (this.readyDirty) {
          this.ready = this.ready.filter((s) => s.call.live);
          this.readyDirty = false;
        }
        continue;
      }
      const ms = performance.now() - t0;
      call.tokenizeMs += ms;
      call.sequences += segs.length;
      call.undispatched[i] = segs.length;
      call.unscored[i] = segs.length;
      let truncated = false;
      for (let w = 0; w < segs.length; w++) {
        const s = segs[w] as Segment;
        truncated ||= s.truncated;
        this.ready.push({
          call,
          pair: i,
          window: w,
          order: this.order++,
          ids: s.ids,
          typeIds: s.typeIds,
          tokenizeMs: ms / segs.length,
        });
      }
      if (truncated) {
        call.truncated++;
        this.recorder.truncatedPairs++;
      }
      if (call.cursor >= call.pairs.length) this.advancePending();
      if (performance.now() > deadline) break;
    }
    if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    for (let c = this.pending[this.pendingHead]; c && (!c.live || c.cursor >= c.pairs.length); ) {
      this.advancePending();
      c = this.pending[this.pendingHead];
    }
    return this.ready.length >= target || this.pendingHead >= this.pending.length;
  }

  /** Moves past the call at the head, letting go of it; an empty queue starts again at slot 0. */
  private advancePending(): void {
    this.pending[this.pendingHead++] = undefined;
    if (this.pendingHead === this.pending.length) {
      this.pending.length = 0;
      this.pendingHead = 0;
    }
  }

  /** Picks the next batch: the balanced run of the length-sorted window that holds the oldest sequence. */
  private formBatch(): Batch | undefined {
    const { maxBatchTokens, maxBatchSize, sortWindow } = this.limits;
    if (this.readyDirty) {
      this.ready = this.ready.filter((s) => s.call.live);
      this.readyDirty = false;
    }
    const ready = this.ready;
    if (ready.length === 0) return undefined;
    let chosen: Seq[];
    if (sortWindow === 0 || ready.length === 1) {
      chosen = [];
      let tokens = 0;
      for (const s of ready) {
        const len = s.ids.length;
        if (chosen.length > 0 && (chosen.length >= maxBatchSize || tokens + len > maxBatchTokens)) break;
        chosen.push(s);
        tokens += len;
      }
      this.ready = ready.slice(chosen.length);
    } else {
      const sorted = ready.slice(0, Math.max(sortWindow, maxBatchSize));
      const oldest = sorted[0] as Seq;
      sorted.sort((a, b) => a.ids.length - b.ids.length || a.order - b.order);
      const at = sorted.indexOf(oldest);
      const cuts = balancedCuts(
        sorted.map((x) => x.ids.length),
        maxBatchTokens,
        maxBatchSize,
      );
      let g = 0;
      while ((cuts[g + 1] as number) <= at) g++;
      const lo = cuts[g] as number;
      const hi = (cuts[g + 1] as number) - 1;
      chosen = sorted.slice(lo, hi + 1);
      const taken = new Set(chosen);
      // Keep arrival order in the batch (the engine does not care; results are scattered by pair).
      chosen.sort((a, b) => a.order - b.order);
      this.ready = ready.filter((s) => !taken.has(s));
    }
    let tokens = 0;
    let maxLength = 0;
    let tokenizeMs = 0;
    for (const s of chosen) {
      tokens += s.ids.length;
      if (s.ids.length > maxLength) maxLength = s.ids.length;
      tokenizeMs += s.tokenizeMs;
    }
    return {
      id: ++this.batchSeq,
      seqs: chosen,
      tokens,
      maxLength,
      // Tokenizing its sequences; packing is added in dispatch().
      tokenizeMs,
      startedAt: 0,
    };
  }

  private dispatch(batch: Batch): void {
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
      const c = s.call;
      if (decrement(c.undispatched, s.pair) === 0) {
        c.queuedPairs--;
        this.queued--;
      }
    }
    batch.tokenizeMs += performance.now() - t0;
    batch.startedAt = performance.now();
    let p: Promise<ForwardResult>;
    try {
      p = this.engine.forward(tokens, typeIds, offsets);
    } catch (err) {
      p = Promise.reject(err);
    }
    const done: Promise<void> = p.then(
      (r) => this.complete(batch, r),
      (err) => this.failBatch(batch, err),
    );
    this.inFlight.add(done);
    void done.finally(() => {
      this.inFlight.delete(done);
      this.schedulePump();
    });
  }

  private complete(batch: Batch, r: ForwardResult): void {
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
      if (c.lastBatch !== batch.id) {
        c.lastBatch = batch.id;
        c.inferenceMs += r.inferenceMs;
      }
      const best = c.bestWindow[s.pair] as number;
      const first = r.logits[i * L] as number;
      // Chunk mode keeps the window with the highest first logit; ties go to the earlier window, so
      // the choice never depends on which batch a window rode in.
      const better =
        best < 0 ||
        first > (c.logits[s.pair * L] as number) ||
        (first === c.logits[s.pair * L] && s.window < best);
      if (better) {
        for (let k = 0; k < L; k++) c.logits[s.pair * L + k] = r.logits[i * L + k] as number;
        c.bestWindow[s.pair] = s.window;
      }
      if (decrement(c.unscored, s.pair) === 0) {
        c.outstanding--;
        pairsDone.add(c);
      }
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
      memory: this.safeMemory(),
    };
    this.recorder.recordBatch(metrics);
    let pairsInBatch = 0;
    for (const s of batch.seqs) if (s.window === 0) pairsInBatch++;
    this.recorder.pairs += pairsInBatch;
    if (this.onBatch) safely(this.onBatch, metrics);
    for (const c of pairsDone) {
      if (c.live && c.outstanding === 0) {
        this.finish(c);
      }
    }
  }

  private failBatch(batch: Batch, err: unknown): void {
    const e = fromNativeError(err);
    for (const s of batch.seqs) this.fail(s.call, e);
  }

  private safeMemory(): EngineMemory {
    try {
      return this.engine.memory();
    } catch {
      return { activeBytes: 0, peakBytes: 0, cacheBytes: 0 };
    }
  }
}

/**
 * Splits lengths sorted ascending into as few contiguous batches as the limits allow, with about the
 * same number of tokens in each (rather than full batches and a small remainder): contiguous runs of
 * similar lengths pad least. Returns the cut points: batch g is [cuts[g], cuts[g + 1]).
 */
export function balancedCuts(lengths: readonly number[], maxTokens: number, maxSize: number): number[] {
  let groups = 1;
  let tokens = 0;
  let count = 0;
  let total = 0;
  for (const l of lengths) {
    if (count > 0 && (count >= maxSize || tokens + l > maxTokens)) {
      groups++;
      tokens = 0;
      count = 0;
    }
    tokens += l;
    count++;
    total += l;
  }
  const share = total / groups;
  const cuts = [0];
  tokens = 0;
  count = 0;
  let cum = 0;
  for (let i = 0; i < lengths.length; i++) {
    const l = lengths[i] as number;
    const full = count >= maxSize || tokens + l > maxTokens;
    if (count > 0 && (full || cum >= share * cuts.length)) {
      cuts.push(i);
      tokens = 0;
      count = 0;
    }
    tokens += l;
    count++;
    cum += l;
  }
  cuts.push(lengths.length);
  return cuts;
}

function decrement(a: Int32Array, i: number): number {
  const v = (a[i] as number) - 1;
  a[i] = v;
  return v;
}

/** Runs a user callback; an exception in it becomes a process warning instead of breaking the queue. */
function safely<T>(fn: (v: T) => void, v: T): void {
  try {
    fn(v);
  } catch (err) {
    process.emitWarning(`mlx-rerank: a metrics listener threw: ${String(err)}`);
  }
}
