/**
 * Per-call bookkeeping: what the scheduler keeps for one predict / rank call while its pairs are
 * tokenized, batched and scored, and the call's metrics when it settles.
 */
import type { CallMetrics } from '../metrics';
import { offerWindow } from './best-window';

export type Pair = readonly [string, string];

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

/** What a call resolves with: for each pair the logits row of its best window (row-major). */
export interface CallResult {
  logits: Float32Array;
  metrics: CallMetrics;
}

/** A call's place in the queue: 'high' before 'normal' before 'low'; arrival order within each. */
export type Priority = 'high' | 'normal' | 'low';
export const PRIORITIES: readonly Priority[] = ['high', 'normal', 'low'];

/** What a call asks of the scheduler besides its pairs. */
export interface SubmitOptions {
  signal?: AbortSignal | undefined;
  /** Default 'normal'. */
  priority?: Priority | undefined;
  /** Milliseconds from now by which every pair must have reached the engine, else DeadlineError. */
  deadlineMs?: number | undefined;
}

export interface Call {
  /** The pairs; the first `count` are read (CrossEncoder hands over its own copy of the caller's). */
  pairs: readonly Pair[];
  count: number;
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
  /** Index into PRIORITIES (0 = high): the lane the call waits in. */
  lane: number;
  /** performance.now() by which its pairs must reach the engine (Infinity: none), and its timer. */
  deadline: number;
  deadlineTimer: NodeJS.Timeout | undefined;
}

export function newCall(
  pairs: readonly Pair[],
  numLabels: number,
  resolve: (r: CallResult) => void,
  reject: (e: Error) => void,
  opts: SubmitOptions = {},
): Call {
  const n = pairs.length;
  const enqueuedAt = performance.now();
  return {
    pairs,
    count: n,
    enqueuedAt,
    live: true,
    cursor: 0,
    queuedPairs: n,
    outstanding: n,
    logits: new Float32Array(n * numLabels),
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
    signal: opts.signal,
    onAbort: undefined,
    lane: PRIORITIES.indexOf(opts.priority ?? 'normal'),
    deadline: opts.deadlineMs === undefined ? Number.POSITIVE_INFINITY : enqueuedAt + opts.deadlineMs,
    deadlineTimer: undefined,
  };
}

/** Pair `pair` was tokenized into `windows` sequences in `ms`; true when one of them was truncated. */
export function tokenized(call: Call, pair: number, segs: readonly Segment[], ms: number): boolean {
  call.tokenizeMs += ms;
  call.sequences += segs.length;
  call.undispatched[pair] = segs.length;
  call.unscored[pair] = segs.length;
  const truncated = segs.some((s) => s.truncated);
  if (truncated) call.truncated++;
  return truncated;
}

/** One window of `pair` went to the engine; true when that was the pair's last (it left the queue). */
export function windowDispatched(call: Call, pair: number): boolean {
  if (decrement(call.undispatched, pair) > 0) return false;
  call.queuedPairs--;
  return true;
}

/**
 * A window of `pair` was scored in batch `batchId` (its logits at `row[rowAt..]`); true when that was
 * the pair's last. A batch's engine time counts once per call however many of its windows it held.
 */
export function windowScored(
  call: Call,
  pair: number,
  window: number,
  row: Float32Array,
  rowAt: number,
  L: number,
  batchId: number,
  inferenceMs: number,
): boolean {
  if (call.lastBatch !== batchId) {
    call.lastBatch = batchId;
    call.inferenceMs += inferenceMs;
  }
  offerWindow(call.logits, call.bestWindow, pair, window, row, rowAt, L);
  if (decrement(call.unscored, pair) > 0) return false;
  call.outstanding--;
  return true;
}

/** The call's metrics as it resolves: the four times add up to its wall time. */
export function callMetrics(call: Call, now: number): CallMetrics {
  const totalMs = now - call.enqueuedAt;
  return {
    pairs: call.count,
    sequences: call.sequences,
    truncatedPairs: call.truncated,
    tokenizeMs: call.tokenizeMs,
    inferenceMs: call.inferenceMs,
    queueWaitMs: Math.max(0, totalMs - call.tokenizeMs - call.inferenceMs),
    totalMs,
  };
}

/** Stops listening to the call's signal and deadline (it settled). */
export function detach(call: Call): void {
  call.live = false;
  if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
  if (call.deadlineTimer) clearTimeout(call.deadlineTimer);
}

function decrement(a: Int32Array, i: number): number {
  const v = (a[i] as number) - 1;
  a[i] = v;
  return v;
}
