/**
 * Batch formation (TEI keeps this apart too, in queue.rs): the calls waiting to be tokenized, the window
 * of tokenized sequences, and how the next batch is cut from it.
 *
 * - Pairs are tokenized lazily, a window at a time (never a whole huge call at once), in slices bounded
 *   by a deadline, so the event loop stays free and tokenizing batch N+1 overlaps the engine computing N.
 * - Calls wait in one lane per priority ('high', 'normal', 'low'); the queue's order is lane first, then
 *   arrival. Tokenizing takes from the first lane with work, and batches take sequences in that order.
 * - `sortWindow: 0` (default): the next batch is the front of the queue, as many sequences as
 *   `maxBatchTokens` and `maxBatchSize` allow: request-fair, the oldest calls complete first, and under a
 *   burst of N equal calls the mean call waits ~(N+1)/2 batches' worth instead of N.
 * - `sortWindow: N > 0` (the previous policy): the first `max(N, maxBatchSize)` sequences are sorted by
 *   length and cut into as few contiguous runs as the limits allow, with about equal tokens each
 *   (balancedCuts); the next batch is the run holding the first waiting sequence. Pads less on an engine
 *   that pads, but spreads every call in the window over all its batches.
 * - A call whose deadline passed while it still has sequences here fails (hooks.expired) before a batch
 *   is cut, so its sequences never reach the engine.
 * - With a ChunkEncoder (tokenizer worker threads, src/tokenizer-pool.ts), `fill` hands chunks of pairs
 *   from the queue front to idle workers instead of tokenizing them here, and their sequences join the
 *   window in the order the chunks were taken (a chunk that comes back early waits for the ones before
 *   it), so batches are cut exactly as on the JS thread. Pairs not yet in a worker stay in their call,
 *   where an abort or a deadline drops them.
 */
import { fromNativeError, InputError, MlxRerankError } from '../errors';
import {
  type Call,
  type Pair,
  type PairEncoder,
  PRIORITIES,
  type Segment,
  tokenized,
  windowDispatched,
} from './calls';
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

/** The sequences of a chunk of pairs encoded elsewhere (a tokenizer worker), packed. */
export interface EncodedChunk {
  ids: Int32Array;
  typeIds: Int32Array;
  /** Sequence k is ids[ends[k - 1] .. ends[k]) (from 0 for k = 0). */
  ends: Int32Array;
  /** Pair j of the chunk has segsPerPair[j] consecutive sequences (its windows). */
  segsPerPair: Int32Array;
  /** 1 where sequence k was truncated. */
  truncated: Uint8Array;
  /** Encoding time of the whole chunk. */
  ms: number;
}

/** Encodes chunks of pairs off the JS thread (src/tokenizer-pool.ts). */
export interface ChunkEncoder {
  readonly threads: number;
  /** Chunks that may be handed over now. */
  idle(): number;
  /** False once it has no worker: the queue tokenizes on the JS thread again. */
  usable(): boolean;
  /** The sequences of `pairs` (the call's from index `first`), or a typed error that fails the call. */
  encode(first: number, pairs: readonly Pair[]): Promise<EncodedChunk>;
  /** Set by the scheduler: a worker became free or ready, or stopped. */
  onIdle: (() => void) | undefined;
  dispose(): Promise<void>;
}

/** Pairs per chunk: enough to spread a call over every worker, few enough for an early first batch. */
const CHUNK_PAIRS = { min: 4, max: 32 };

/** A chunk handed to the ChunkEncoder, until its sequences join the window. */
interface Chunk {
  call: Call;
  first: number;
  count: number;
  done: boolean;
  result: EncodedChunk | undefined;
  error: MlxRerankError | undefined;
}

export interface QueueHooks {
  /** A pair of `call` could not be tokenized: the call must fail (and be dropped from the queue). */
  tokenizeFailed(call: Call, err: MlxRerankError): void;
  /** A pair was truncated to fit maxLength. */
  truncated(): void;
  /** `call`'s deadline passed while it still had sequences waiting: the call must fail. */
  expired(call: Call): void;
  /** Sequences of a chunk joined the window (or the chunk failed): a batch may be formed. */
  chunkDone(): void;
}

/**
 * The calls of one priority with pairs still to tokenize, in arrival order (dead ones skipped lazily),
 * from `head` on. Slots before the head are cleared as it passes them (advance): a finished call must
 * not stay reachable from here, or every call outlives a few scavenges, is promoted, and the old
 * generation fills with them (a mark-compact pause every few hundred calls).
 */
class Lane {
  private calls: (Call | undefined)[] = [];
  private head = 0;

  push(call: Call): void {
    this.calls.push(call);
  }

  /** The first call with pairs to tokenize, after letting go of the finished or dead ones before it. */
  front(): Call | undefined {
    for (let c = this.calls[this.head]; c; c = this.calls[this.head]) {
      if (c.live && c.cursor < c.count) return c;
      this.advance();
    }
    return undefined;
  }

  /** The earliest enqueue time of a live call here (calls are in arrival order). */
  oldest(): number {
    for (let i = this.head; i < this.calls.length; i++) {
      const c = this.calls[i] as Call;
      if (c.live) return c.enqueuedAt;
    }
    return Number.POSITIVE_INFINITY;
  }

  /** Moves past the call at the head, letting go of it; an empty lane starts again at slot 0. */
  private advance(): void {
    this.calls[this.head++] = undefined;
    if (this.head === this.calls.length) {
      this.calls.length = 0;
      this.head = 0;
    }
  }

  /** Keeps the list's memory bounded: drops passed slots, and dead calls once they dominate. */
  compact(): void {
    const size = this.calls.length - this.head;
    if (this.head > 1024 && this.head > size) {
      this.calls = this.calls.slice(this.head);
      this.head = 0;
    }
    if (size < 64) return;
    let live = 0;
    for (let i = this.head; i < this.calls.length; i++) if ((this.calls[i] as Call).live) live++;
    if (live * 2 < size) {
      this.calls = this.calls.slice(this.head).filter((c) => c?.live === true);
      this.head = 0;
    }
  }
}

export class BatchQueue {
  /** Pairs waiting: not yet wholly handed to the engine. */
  depth = 0;
  /** Calls with pairs still to tokenize, one lane per priority (PRIORITIES order). */
  private lanes: Lane[] = PRIORITIES.map(() => new Lane());
  /** Tokenized sequences waiting for a batch, in arrival order; `dirty` once a call in it died. */
  private ready: Seq[] = [];
  private dirty = false;
  private order = 0;
  private batchSeq = 0;
  /** Chunks in the ChunkEncoder, in the order they were taken; the pairs they hold. */
  private chunks: Chunk[] = [];
  private chunkPairs = 0;

  constructor(
    private readonly limits: SchedulerLimits,
    private readonly encode: PairEncoder,
    private readonly hooks: QueueHooks,
    private readonly encoder?: ChunkEncoder,
  ) {}

  /** True while tokenizing happens in workers (fill does not block, chunkDone reports progress). */
  get parallel(): boolean {
    return this.encoder?.usable() === true;
  }

  /** Sequences in the window. */
  get windowSize(): number {
    return this.ready.length;
  }

  add(call: Call): void {
    this.depth += call.count;
    (this.lanes[call.lane] as Lane).push(call);
  }

  /** The call settled early (failed, aborted): its pairs stop counting, its sequences leave lazily. */
  drop(call: Call): void {
    this.depth -= call.queuedPairs;
    call.queuedPairs = 0;
    this.dirty = true;
    (this.lanes[call.lane] as Lane).compact();
  }

  /** The batch went to the engine: pairs whose last window it holds leave the queue. */
  dispatched(batch: Batch): void {
    for (const s of batch.seqs) if (windowDispatched(s.call, s.pair)) this.depth--;
  }

  clear(): void {
    this.lanes = PRIORITIES.map(() => new Lane());
    this.ready = [];
    this.chunks = [];
    this.chunkPairs = 0;
  }

  /** True when the window already holds a full batch (by size or by tokens). */
  holdsBatch(): boolean {
    const { maxBatchSize, maxBatchTokens } = this.limits;
    return this.ready.length >= maxBatchSize || this.holdsTokens(maxBatchTokens);
  }

  /** The window holds at least `n` real tokens. */
  holdsTokens(n: number): boolean {
    let tokens = 0;
    for (const s of this.ready) {
      tokens += s.ids.length;
      if (tokens >= n) return true;
    }
    return false;
  }

  oldestEnqueuedAt(): number {
    for (const s of this.ready) if (s.call.live) return s.call.enqueuedAt;
    const oldest = Math.min(...this.lanes.map((l) => l.oldest()));
    return Number.isFinite(oldest) ? oldest : performance.now();
  }

  /**
   * Tokenizes from the queue front until the window holds `target` sequences, the queue is drained, or
   * the deadline passed. Returns true when the window is complete (full or nothing left to tokenize).
   */
  fill(target: number, deadline: number): boolean {
    if (this.parallel) return this.fillParallel(target);
    this.dropDead();
    let call = this.front();
    while (this.ready.length < target && call) {
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
        call = this.front();
        continue;
      }
      this.push(call, i, segs, performance.now() - t0);
      if (performance.now() > deadline) break;
      call = this.front();
    }
    for (const l of this.lanes) l.compact();
    return this.ready.length >= target || this.front() === undefined;
  }

  /** Pair `i` of `call` was tokenized into `segs` in `ms`: its sequences join the window. */
  private push(call: Call, i: number, segs: readonly Segment[], ms: number): void {
    if (tokenized(call, i, segs, ms)) this.hooks.truncated();
    for (let w = 0; w < segs.length; w++) {
      const s = segs[w] as Segment;
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
  }

  /**
   * fill() with workers: hands chunks from the queue front to every idle worker while the window and
   * the chunks out hold fewer than `target` pairs. Never blocks; chunkDone() says when sequences came.
   */
  private fillParallel(target: number): boolean {
    const encoder = this.encoder as ChunkEncoder;
    this.dropDead();
    let free = encoder.idle();
    for (let call = this.front(); call && free > 0; call = this.front(), free--) {
      if (this.ready.length + this.chunkPairs >= target) break;
      const left = call.count - call.cursor;
      const per = Math.ceil(left / Math.max(1, encoder.threads));
      const count = Math.min(left, Math.max(CHUNK_PAIRS.min, Math.min(CHUNK_PAIRS.max, per)));
      const chunk: Chunk = {
        call,
        first: call.cursor,
        count,
        done: false,
        result: undefined,
        error: undefined,
      };
      call.cursor += count;
      this.chunks.push(chunk);
      this.chunkPairs += count;
      encoder.encode(chunk.first, call.pairs.slice(chunk.first, chunk.first + count)).then(
        (r) => this.chunkSettled(chunk, r, undefined),
        (err: unknown) => this.chunkSettled(chunk, undefined, fromNativeError(err)),
      );
    }
    for (const l of this.lanes) l.compact();
    return this.ready.length >= target || (this.front() === undefined && this.chunks.length === 0);
  }

  /** A chunk came back: it and the chunks after it that are back too join the window, in order. */
  private chunkSettled(chunk: Chunk, r: EncodedChunk | undefined, err: MlxRerankError | undefined): void {
    chunk.done = true;
    chunk.result = r;
    chunk.error = err;
    if (this.chunks[0] !== chunk) return; // one taken before it is still out (or the queue was cleared)
    while (this.chunks[0]?.done) {
      const c = this.chunks.shift() as Chunk;
      this.chunkPairs -= c.count;
      this.commit(c);
    }
    this.hooks.chunkDone();
  }

  /** A chunk's sequences join the window (a settled call's are dropped; a failed chunk fails its call). */
  private commit(c: Chunk): void {
    const call = c.call;
    if (!call.live) return;
    if (c.error || !c.result) {
      this.hooks.tokenizeFailed(call, c.error ?? new InputError('A chunk of pairs came back empty.'));
      return;
    }
    const r = c.result;
    const ms = r.ms / c.count;
    let k = 0;
    let start = 0;
    for (let j = 0; j < c.count; j++) {
      const segs: Segment[] = [];
      for (let w = r.segsPerPair[j] as number; w > 0; w--, k++) {
        const end = r.ends[k] as number;
        segs.push({
          ids: r.ids.subarray(start, end),
          typeIds: r.typeIds.subarray(start, end),
          truncated: r.truncated[k] === 1,
        });
        start = end;
      }
      this.push(call, c.first + j, segs, ms);
    }
  }

  /** The call to tokenize next: the oldest of the first lane that has one. */
  private front(): Call | undefined {
    for (const l of this.lanes) {
      const c = l.front();
      if (c) return c;
    }
    return undefined;
  }

  /**
   * Takes the next batch: the front of the queue (sortWindow 0), or the balanced run of the
   * length-sorted window that holds the queue's first sequence (sortWindow > 0).
   */
  form(now = performance.now()): Batch | undefined {
    const { maxBatchTokens, maxBatchSize, sortWindow } = this.limits;
    this.expire(now);
    this.dropDead();
    if (this.ready.length === 0) return undefined;
    const queue = this.inQueueOrder();
    let chosen: Seq[];
    if (sortWindow === 0 || queue.length === 1) {
      chosen = [];
      let tokens = 0;
      for (const s of queue) {
        const len = s.ids.length;
        if (chosen.length > 0 && (chosen.length >= maxBatchSize || tokens + len > maxBatchTokens)) break;
        chosen.push(s);
        tokens += len;
      }
    } else {
      const sorted = queue.slice(0, Math.max(sortWindow, maxBatchSize));
      const first = sorted[0] as Seq;
      sorted.sort((a, b) => a.ids.length - b.ids.length || a.order - b.order);
      const at = sorted.indexOf(first);
      const cuts = balancedCuts(
        sorted.map((x) => x.ids.length),
        maxBatchTokens,
        maxBatchSize,
      );
      let g = 0;
      while ((cuts[g + 1] as number) <= at) g++;
      chosen = sorted.slice(cuts[g] as number, cuts[g + 1] as number);
      // Keep queue order in the batch (the engine does not care; results are scattered by pair).
      chosen.sort((a, b) => a.order - b.order);
    }
    if (chosen.length === this.ready.length) this.ready = [];
    else {
      const taken = new Set(chosen);
      this.ready = this.ready.filter((s) => !taken.has(s));
    }
    return this.batchOf(chosen);
  }

  /** The window in queue order: by priority lane, then arrival (`ready` is in arrival order). */
  private inQueueOrder(): Seq[] {
    const ready = this.ready;
    const lane = (ready[0] as Seq).call.lane;
    if (ready.every((s) => s.call.lane === lane)) return ready;
    return [...ready].sort((a, b) => a.call.lane - b.call.lane || a.order - b.order);
  }

  /** Fails the calls whose deadline passed while sequences of theirs still wait here. */
  private expire(now: number): void {
    for (const s of this.ready) {
      if (s.call.live && s.call.deadline <= now) this.hooks.expired(s.call);
    }
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
