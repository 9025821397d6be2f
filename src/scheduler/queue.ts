/**
 * Batch formation (TEI keeps this apart too, in queue.rs): the calls waiting to be tokenized, the window
 * of tokenized sequences, and how the next batch is cut from it.
 *
 * - Pairs are tokenized lazily, a window at a time (never a whole huge call at once), in slices bounded
 *   by a deadline, so the event loop stays free and tokenizing batch N+1 overlaps the engine computing N.
 * - The window (the first `max(sortWindow, maxBatchSize)` sequences) is sorted by length and cut into as
 *   few contiguous runs as `maxBatchTokens` and `maxBatchSize` allow, with about equal tokens each
 *   (balancedCuts); the next batch is the run holding the OLDEST waiting sequence, so nothing starves
 *   and each batch holds pairs of similar length. `sortWindow: 0` forms batches in arrival order.
 */
import { InputError, MlxRerankError } from '../errors';
import { type Call, type Pair, type PairEncoder, type Segment, tokenized, windowDispatched } from './calls';
import type { SchedulerLimits } from './limits';

/** A tokenized window of one pair, waiting for (or riding in) a batch. */
export interface Seq {
  call: Call;
  pair: number;
  window: number;
  /** Arrival order over all sequences: the oldest has the smallest. */
  order: number;
  ids: Int32Array;
  typeIds: Int32Array;
  tokenizeMs: number;
}

export interface Batch {
  id: number;
  seqs: Seq[];
  tokens: number;
  maxLength: number;
  tokenizeMs: number;
  startedAt: number;
}

export interface QueueHooks {
  /** A pair of `call` could not be tokenized: the call must fail (and be dropped from the queue). */
  tokenizeFailed(call: Call, err: MlxRerankError): void;
  /** A pair was truncated to fit maxLength. */
  truncated(): void;
}

export class BatchQueue {
  /** Pairs waiting: not yet wholly handed to the engine. */
  depth = 0;
  /**
   * Calls with pairs still to tokenize, in arrival order (dead ones skipped lazily), from `head` on.
   * Slots before the head are cleared as it passes them (advance): a finished call must not stay
   * reachable from here, or every call outlives a few scavenges, is promoted, and the old generation
   * fills with them (a mark-compact pause every few hundred calls).
   */
  private pending: (Call | undefined)[] = [];
  private head = 0;
  /** Tokenized sequences waiting for a batch, in arrival order; `dirty` once a call in it died. */
  private ready: Seq[] = [];
  private dirty = false;
  private order = 0;
  private batchSeq = 0;

  constructor(
    private readonly limits: SchedulerLimits,
    private readonly encode: PairEncoder,
    private readonly hooks: QueueHooks,
  ) {}

  /** Sequences in the window. */
  get windowSize(): number {
    return this.ready.length;
  }

  add(call: Call): void {
    this.depth += call.count;
    this.pending.push(call);
  }

  /** The call settled early (failed, aborted): its pairs stop counting, its sequences leave lazily. */
  drop(call: Call): void {
    this.depth -= call.queuedPairs;
    call.queuedPairs = 0;
    this.dirty = true;
    this.compact();
  }

  /** The batch went to the engine: pairs whose last window it holds leave the queue. */
  dispatched(batch: Batch): void {
    for (const s of batch.seqs) if (windowDispatched(s.call, s.pair)) this.depth--;
  }

  clear(): void {
    this.pending = [];
    this.head = 0;
    this.ready = [];
  }

  /** True when the window already holds a full batch (by size or by tokens). */
  holdsBatch(): boolean {
    const { maxBatchSize, maxBatchTokens } = this.limits;
    if (this.ready.length >= maxBatchSize) return true;
    let tokens = 0;
    for (const s of this.ready) tokens += s.ids.length;
    return tokens >= maxBatchTokens;
  }

  oldestEnqueuedAt(): number {
    for (const s of this.ready) if (s.call.live) return s.call.enqueuedAt;
    for (let i = this.head; i < this.pending.length; i++) {
      const c = this.pending[i] as Call;
      if (c.live) return c.enqueuedAt;
    }
    return performance.now();
  }

  /**
   * Tokenizes from the queue front until the window holds `target` sequences, the queue is drained, or
   * the deadline passed. Returns true when the window is complete (full or nothing left to tokenize).
   */
  fill(target: number, deadline: number): boolean {
    this.dropDead();
    while (this.ready.length < target && this.head < this.pending.length) {
      const call = this.pending[this.head] as Call;
      if (!call.live || call.cursor >= call.count) {
        this.advance();
        continue;
      }
      const i = call.cursor++;
      const t0 = performance.now();
      let segs: Segment[];
      try {
        const [q, d] = call.pairs[i] as Pair;
        if (typeof q !== 'string' || typeof d !== 'string') {
          throw new InputError(`Pair ${i} is not two strings (it changed after the call).`);
        }
        segs = this.encode(q, d);
        if (segs.length === 0) throw new InputError(`Pair ${i} produced no sequence to score.`);
      } catch (err) {
        this.hooks.tokenizeFailed(
          call,
          err instanceof MlxRerankError ? err : new InputError(`Pair ${i}: ${String(err)}`),
        );
        this.dropDead();
        continue;
      }
      const ms = performance.now() - t0;
      if (tokenized(call, i, segs, ms)) this.hooks.truncated();
      for (let w = 0; w < segs.length; w++) {
        const s = segs[w] as Segment;
        const order = this.order++;
        this.ready.push({
          call,
          pair: i,
          window: w,
          order,
          ids: s.ids,
          typeIds: s.typeIds,
          tokenizeMs: ms / segs.length,
        });
      }
      if (call.cursor >= call.count) this.advance();
      if (performance.now() > deadline) break;
    }
    this.compact();
    for (let c = this.pending[this.head]; c && (!c.live || c.cursor >= c.count); ) {
      this.advance();
      c = this.pending[this.head];
    }
    return this.ready.length >= target || this.head >= this.pending.length;
  }

  /** Takes the next batch: the balanced run of the length-sorted window that holds the oldest sequence. */
  form(): Batch | undefined {
    const { maxBatchTokens, maxBatchSize, sortWindow } = this.limits;
    this.dropDead();
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
      chosen = sorted.slice(cuts[g] as number, cuts[g + 1] as number);
      const taken = new Set(chosen);
      // Keep arrival order in the batch (the engine does not care; results are scattered by pair).
      chosen.sort((a, b) => a.order - b.order);
      this.ready = ready.filter((s) => !taken.has(s));
    }
    return this.batchOf(chosen);
  }

  /** A batch of these sequences, numbered; its tokenizeMs is its sequences' (packing is added later). */
  batchOf(seqs: Seq[]): Batch {
    let tokens = 0;
    let maxLength = 0;
    let tokenizeMs = 0;
    for (const s of seqs) {
      tokens += s.ids.length;
      if (s.ids.length > maxLength) maxLength = s.ids.length;
      tokenizeMs += s.tokenizeMs;
    }
    return { id: ++this.batchSeq, seqs, tokens, maxLength, tokenizeMs, startedAt: 0 };
  }

  /** Drops the sequences of calls that settled early from the window (lazily, once per change). */
  private dropDead(): void {
    if (!this.dirty) return;
    this.ready = this.ready.filter((s) => s.call.live);
    this.dirty = false;
  }

  /** Moves past the call at the head, letting go of it; an empty queue starts again at slot 0. */
  private advance(): void {
    this.pending[this.head++] = undefined;
    if (this.head === this.pending.length) {
      this.pending.length = 0;
      this.head = 0;
    }
  }

  /** Keeps the pending list's memory bounded: drops passed slots, and dead calls once they dominate. */
  private compact(): void {
    const size = this.pending.length - this.head;
    if (this.head > 1024 && this.head > size) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
    if (size < 64) return;
    let live = 0;
    for (let i = this.head; i < this.pending.length; i++) if ((this.pending[i] as Call).live) live++;
    if (live * 2 < size) {
      this.pending = this.pending.slice(this.head).filter((c) => c?.live === true);
      this.head = 0;
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
