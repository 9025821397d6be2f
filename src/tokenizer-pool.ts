/**
 * Tokenization off the JS thread (issue 18): N worker threads (src/tokenizer-worker.ts), each with the
 * model's Tokenizer loaded from the same files and the same PairEncoder, encode chunks of pairs for the
 * scheduler's queue (src/scheduler/queue.ts, `ChunkEncoder`), in parallel, while the JS thread forms
 * batches and the engine computes.
 *
 * - Each worker holds at most MAX_CHUNKS chunks, so pairs of a call aborted meanwhile mostly stay in
 *   the queue, where they are dropped; a chunk already in a worker is encoded and its result dropped.
 * - A worker proves it tokenizes as the JS thread does (the fingerprint of src/scheduler/encoder.ts)
 *   before it gets work: tokenizer files changed on disk since load() read them are refused.
 * - A worker that dies (crash, out of memory, terminated) fails the chunks it held with an
 *   EngineError, so only their calls fail, and is replaced. A pool left with no worker is no longer
 *   `usable()`: the queue tokenizes on the JS thread again.
 * - A worker is referenced (keeps the process alive) only while it holds chunks; dispose() terminates
 *   them all and rejects what they held with DisposedError.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { DisposedError, EngineError, fromNativeError, InputError, TokenizerError } from './errors';
import type { Pair } from './scheduler/calls';
import type { EncoderSpec } from './scheduler/encoder';
import type { ChunkEncoder, EncodedChunk } from './scheduler/queue';
import type { TokenizerFiles } from './tokenizer';
import type { Backend, DeviceKind } from './types';

/** What a worker starts with (workerData). */
export interface WorkerData {
  files: TokenizerFiles;
  encoder: EncoderSpec;
}
export interface ChunkRequest {
  id: number;
  /** The call's index of the chunk's first pair (error messages name the pair). */
  first: number;
  pairs: readonly Pair[];
}
export type WorkerReply =
  | { type: 'ready'; fingerprint: string }
  | { type: 'failed'; code: string; message: string }
  | ({ type: 'done'; id: number } & EncodedChunk)
  | { type: 'error'; id: number; code: string; message: string };

/** Chunks a worker holds at once: one encoding, one waiting, so it never idles between messages. */
const MAX_CHUNKS = 2;

/**
 * The default `tokenizerThreads`: on a GPU engine the cores but one (the JS thread's), at most 8;
 * on a CPU 0, since the engine's GEMM threads already use every core (docs/latency.md).
 */
export function defaultTokenizerThreads(backend: Backend, device: DeviceKind): number {
  if (backend !== 'mlx' || device === 'cpu') return 0;
  return Math.max(0, Math.min(availableParallelism() - 1, 8));
}

/**
 * The worker's entry: next to this module, as dist/tokenizer-worker.js in the build (tsup.config.ts),
 * or the TypeScript source when the library runs from src/ (vitest, `node --import tsx`): then a
 * bootstrap registers tsx's loader in the worker first (a `--import` flag does not reach a worker's
 * loader on Node 20). tsx is a development dependency; the package ships dist/ and never gets there.
 */
function workerEntry(): { entry: string | URL; eval: boolean } {
  const url = import.meta.url;
  if (!url.endsWith('.ts')) return { entry: new URL('./tokenizer-worker.js', url), eval: false };
  // The ES module build of tsx's API (require.resolve finds its CommonJS twin, index.cjs).
  const tsx = pathToFileURL(
    createRequire(url)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs'),
  ).href;
  const worker = new URL('./tokenizer-worker.ts', url).href;
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(worker)}); })`;
  return { entry: code, eval: true };
}

interface Job {
  resolve(c: EncodedChunk): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  jobs: Map<number, Job>;
  /** Settles when the worker is ready (or could not start). */
  started: Promise<void>;
  start: { resolve(): void; reject(e: Error): void };
  error: Error | undefined;
}

export interface PoolOptions {
  threads: number;
  files: TokenizerFiles;
  encoder: EncoderSpec;
  /** The JS thread's fingerprint (src/scheduler/encoder.ts): a worker must have the same. */
  fingerprint: string;
}

export class TokenizerPool implements ChunkEncoder {
  readonly threads: number;
  onIdle: (() => void) | undefined;
  private readonly data: WorkerData;
  private readonly expected: string;
  private readonly slots = new Set<Slot>();
  private readonly initial: Promise<void>;
  private nextId = 0;
  private disposed = false;

  /** Starts the workers at once; they load their tokenizers in parallel with whatever the caller does. */
  constructor(opts: PoolOptions) {
    this.threads = opts.threads;
    this.data = { files: opts.files, encoder: opts.encoder };
    this.expected = opts.fingerprint;
    const started: Promise<void>[] = [];
    for (let i = 0; i < opts.threads; i++) started.push(this.trySpawn());
    this.initial = Promise.all(started).then(() => undefined);
    this.initial.catch(() => undefined); // awaited through ready(); never an unhandled rejection
  }

  /** Resolves once every worker started; rejects with the first one's failure (a typed error). */
  ready(): Promise<void> {
    return this.initial;
  }

  usable(): boolean {
    return !this.disposed && this.slots.size > 0;
  }

  idle(): number {
    let n = 0;
    for (const s of this.slots) if (s.ready) n += MAX_CHUNKS - s.jobs.size;
    return Math.max(0, n);
  }

  /** Encodes `pairs` (the call's pairs from index `first`) on the least busy ready worker. */
  encode(first: number, pairs: readonly Pair[]): Promise<EncodedChunk> {
    if (this.disposed) return Promise.reject(new DisposedError());
    let best: Slot | undefined;
    for (const s of this.slots) if (s.ready && (!best || s.jobs.size < best.jobs.size)) best = s;
    if (!best) return Promise.reject(new EngineError('No tokenizer worker is running.'));
    const slot = best;
    const id = ++this.nextId;
    return new Promise<EncodedChunk>((resolve, reject) => {
      try {
        slot.worker.postMessage({ id, first, pairs } satisfies ChunkRequest);
      } catch (err) {
        // Only a pair the structured clone cannot copy gets here; the queue hands over strings.
        reject(new InputError(`Pairs ${first}..${first + pairs.length - 1}: ${String(err)}`));
        return;
      }
      if (slot.jobs.size === 0) slot.worker.ref();
      slot.jobs.set(id, { resolve, reject });
    });
  }

  /** Terminates every worker; the chunks they held reject with DisposedError. Idempotent. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const slots = [...this.slots];
    this.slots.clear();
    for (const s of slots) this.settleAll(s, new DisposedError());
    await Promise.all(slots.map((s) => s.worker.terminate().catch(() => undefined)));
  }

  /** A new worker's start, or why it could not be made (no worker entry, no tsx under src/, ...). */
  private trySpawn(): Promise<void> {
    try {
      return this.spawn().started;
    } catch (err) {
      const e = new EngineError(`A tokenizer worker could not be started: ${String(err)}`, { cause: err });
      const failed = Promise.reject(e);
      failed.catch(() => undefined);
      return failed;
    }
  }

  private spawn(): Slot {
    const { entry, eval: isCode } = workerEntry();
    const worker = new Worker(entry, { workerData: this.data, name: 'mlx-rerank tokenizer', eval: isCode });
    let start!: Slot['start'];
    const started = new Promise<void>((resolve, reject) => {
      start = { resolve, reject };
    });
    started.catch(() => undefined);
    const slot: Slot = { worker, ready: false, jobs: new Map(), started, start, error: undefined };
    this.slots.add(slot);
    worker.on('message', (m: WorkerReply) => this.onMessage(slot, m));
    worker.on('error', (err) => {
      slot.error = err;
    });
    worker.on('exit', (code) => this.onExit(slot, code));
    return slot;
  }

  private onMessage(slot: Slot, m: WorkerReply): void {
    if (m.type === 'ready') {
      if (m.fingerprint !== this.expected) {
        this.refuse(
          slot,
          new TokenizerError(
            'A tokenizer worker read tokenizer files that tokenize differently from the ones load() read (did they change on disk while loading?): load the model again.',
          ),
        );
        return;
      }
      slot.ready = true;
      if (slot.jobs.size === 0) slot.worker.unref(); // an idle worker never keeps the process alive
      slot.start.resolve();
      this.onIdle?.();
      return;
    }
    if (m.type === 'failed') {
      this.refuse(slot, fromNativeError({ code: m.code, message: m.message }));
      return;
    }
    const job = slot.jobs.get(m.id);
    if (!job) return;
    slot.jobs.delete(m.id);
    if (slot.jobs.size === 0) slot.worker.unref();
    if (m.type === 'done') job.resolve(m);
    else job.reject(fromNativeError({ code: m.code, message: m.message }));
    this.onIdle?.();
  }

  /** A worker that could not start as it should: it stops, and is not replaced (it would do the same). */
  private refuse(slot: Slot, err: Error): void {
    slot.error = err;
    slot.start.reject(err);
    this.slots.delete(slot);
    void slot.worker.terminate().catch(() => undefined);
    this.onIdle?.();
  }

  /**
   * A worker stopped. Unless the pool is being disposed, that was a crash: its chunks fail (only their
   * calls fail), and a worker that had started is replaced.
   */
  private onExit(slot: Slot, code: number): void {
    if (!this.slots.delete(slot)) return; // disposed or refused: already settled
    const why = `exit code ${code}${slot.error ? `: ${slot.error.message}` : ''}`;
    const err = new EngineError(
      slot.ready
        ? `A tokenizer worker stopped (${why}) while it held pairs of this call; it has been replaced, so the call can be retried.`
        : `A tokenizer worker could not start (${why}); use tokenizerThreads: 0 to tokenize on the JS thread.`,
      { cause: slot.error },
    );
    slot.start.reject(err);
    this.settleAll(slot, err);
    if (slot.ready && !this.disposed) void this.trySpawn();
    this.onIdle?.();
  }

  private settleAll(slot: Slot, err: Error): void {
    const jobs = [...slot.jobs.values()];
    slot.jobs.clear();
    for (const j of jobs) j.reject(err);
  }
}
