/**
 * Everything CrossEncoder takes from its callers, and how: the options of load / predict / rank (their
 * names, types and ranges; docs/limits.md lists them) and the pairs and documents, each read ONCE,
 * synchronously, into arrays the library owns. Bad input is an InputError naming what was wrong.
 */
import { InputError, MlxRerankError } from './errors';
import { HUB_RANGES, type resolveModel } from './hub';
import type { BatchMetrics, CallMetrics } from './metrics';
import { type Priority, type SchedulerLimits, tooManyPairs } from './scheduler';
import type { Tokenizer } from './tokenizer';
import type { Activation, Backend, DeviceKind, DType, EngineTuning } from './types';
import {
  checkBoolean,
  checkFunction,
  checkNumber,
  checkOneOf,
  checkSignal,
  checkString,
  describe,
  int,
  MAX_TIMER_MS,
  real,
} from './validate';

export type HubOptions = NonNullable<Parameters<typeof resolveModel>[1]>;
export type PairOptions = NonNullable<Parameters<Tokenizer['encodePair']>[2]>;

/** Options of `CrossEncoder.load`. Scheduler limits default to DEFAULT_LIMITS (src/scheduler.ts). */
export interface LoadOptions extends HubOptions, Partial<Omit<SchedulerLimits, 'pipelineDepth'>> {
  /** 'auto' (default): mlx when compiled in and it has a GPU, else the cpu engine. */
  backend?: 'auto' | Backend;
  /** 'auto' (default), 'gpu' or 'cpu'. The cpu engine runs only on the CPU. */
  device?: DeviceKind;
  /** Engine arithmetic: the engine's default for its device when omitted (float16 on GPU, float32 on CPU). */
  dtype?: DType;
  /** Tokens per pair at most; default min(tokenizer model_max_length, max_position_embeddings). */
  maxLength?: number;
  /** Tokenizer truncation strategy (default 'longest_first', as Hugging Face). */
  truncation?: PairOptions['truncation'];
  /** Engine threads (cpu engine); default sized to the machine. */
  threads?: number;
  /**
   * Worker threads that tokenize off the JS thread, in parallel (0: on the JS thread). Default: on a
   * GPU the cores but one, at most 8; on a CPU 0, whose cores the engine already uses (docs/latency.md).
   */
  tokenizerThreads?: number;
  /**
   * Engines of the model, each with its own native thread (and on a GPU its own stream and copy of the
   * weights), sharing the batches (default 1). On a GPU more than one overlaps the host's per-forward
   * work: src/engine-replicas.ts.
   */
  engineReplicas?: number;
  /** mlx: the buffer cache limit in bytes. */
  cacheLimitBytes?: number;
  /** mlx: use mx::compile (default true). */
  compile?: boolean;
  /** Engine tuning, for measuring (src/engine-options.ts, docs/engine-options.md). */
  engine?: EngineTuning;
  /** Default activation of predict/rank; default the model's (sigmoid for one label, else none). */
  activation?: Activation;
  /**
   * 'truncate' (default): pairs longer than maxLength are truncated. 'chunk': the document is split into
   * overlapping windows that each fit with the query; each is scored and the pair keeps its best window
   * (the one with the highest first logit, before activation; ties: the earlier window).
   */
  longDocuments?: 'truncate' | 'chunk';
  /** 'chunk' mode: tokens shared by consecutive windows (default maxLength / 4, rounded down). */
  chunkStride?: number;
  /** Run the engine's warm-up during load (default true). */
  warmup?: boolean;
  /** Called after every engine batch (same as `on('batch', fn)`). */
  onBatch?: (batch: BatchMetrics) => void;
}

export interface PredictOptions {
  /** Overrides the default activation for this call. */
  activation?: Activation;
  /** Aborting rejects the call with AbortedError at once; other callers are unaffected. */
  signal?: AbortSignal;
  /** Receives this call's metrics just before it resolves. */
  onMetrics?: (metrics: CallMetrics) => void;
  /** 'high' calls are batched before 'normal' (default) ones, 'normal' before 'low'; FIFO within each. */
  priority?: Priority;
  /**
   * Milliseconds from the call: if some of its pairs have not reached the engine by then, it rejects
   * with DeadlineError (E_DEADLINE) and those pairs are never computed. Default: no deadline.
   */
  deadlineMs?: number;
}

export interface RankOptions extends PredictOptions {
  /** Keep only the best topK results (default: all). */
  topK?: number;
  /** Include each document's text in the results (default false). */
  returnDocuments?: boolean;
  /** Multi-label models: which label's score ranks (default 0). */
  label?: number;
}

/**
 * Ranges of the numeric load and call options whose defaults come from the model or the machine
 * (the scheduler limits' are in src/scheduler.ts, LIMITS). docs/limits.md lists them all.
 */
export const OPTION_RANGES = {
  /** Default: min(tokenizer model_max_length, max_position_embeddings); never above the latter. */
  maxLength: int(4, 1 << 20),
  /** Default: maxLength / 4; must also be < (maxLength - 3) / 2 so that windows advance. */
  chunkStride: int(0, 1 << 20),
  /** Default: the machine's cores (the cpu engine caps its pool at 256 threads). */
  threads: int(1, 256),
  /** Default: min(cores - 1, 8) on a GPU engine, 0 on the CPU. */
  tokenizerThreads: int(0, 64),
  /** Default: 1. */
  engineReplicas: int(1, 8),
  /** Default: MLX's own. */
  cacheLimitBytes: int(0, Number.MAX_SAFE_INTEGER),
  ...HUB_RANGES,
  /** Default: all documents. */
  topK: int(0, 2 ** 32 - 1),
  /** Default: none. 0 is accepted (a budget already spent fails with E_DEADLINE). */
  deadlineMs: real(0, MAX_TIMER_MS),
} as const;

export const ACTIVATIONS: readonly Activation[] = ['none', 'sigmoid', 'softmax'];

/** Every load option's name: an option not here is refused (a typo gets "did you mean"). */
/** The load options that belong to resolving the model (src/hub.ts); only these are handed to it. */
export const HUB_KEYS: { readonly [K in keyof HubOptions]-?: true } = {
  revision: true,
  cacheDir: true,
  offline: true,
  token: true,
  endpoint: true,
  onProgress: true,
  progress: true,
  signal: true,
  verify: true,
  retries: true,
  stallTimeoutMs: true,
};

export const LOAD_KEYS: { readonly [K in keyof LoadOptions]-?: true } = {
  ...HUB_KEYS,
  maxBatchTokens: true,
  maxBatchSize: true,
  maxQueuePairs: true,
  maxWaitMs: true,
  sortWindow: true,
  earlyBatchTokens: true,
  backend: true,
  device: true,
  dtype: true,
  maxLength: true,
  truncation: true,
  threads: true,
  tokenizerThreads: true,
  engineReplicas: true,
  cacheLimitBytes: true,
  compile: true,
  engine: true,
  activation: true,
  longDocuments: true,
  chunkStride: true,
  warmup: true,
  onBatch: true,
};
export const PREDICT_KEYS: { readonly [K in keyof PredictOptions]-?: true } = {
  activation: true,
  signal: true,
  onMetrics: true,
  priority: true,
  deadlineMs: true,
};
export const RANK_KEYS: { readonly [K in keyof RankOptions]-?: true } = {
  ...PREDICT_KEYS,
  topK: true,
  returnDocuments: true,
  label: true,
};

/** The defined options among `keys` (each layer gets its own slice of the options, not all of them). */
export function slice<T extends object, K extends keyof T>(
  o: T,
  keys: { readonly [P in K]: true },
): Pick<T, K> {
  const out: Partial<T> = {};
  for (const k of Object.keys(keys) as K[]) if (o[k] !== undefined) out[k] = o[k];
  return out as Pick<T, K>;
}

/**
 * Checks every load option's type and range (InputError naming the option) before any work. Options
 * whose range depends on the model (maxLength, chunkStride) are checked again once it is known.
 */
export function checkLoadOptions(o: Partial<LoadOptions>): void {
  for (const k of [
    'maxLength',
    'chunkStride',
    'threads',
    'tokenizerThreads',
    'engineReplicas',
    'cacheLimitBytes',
    'retries',
    'stallTimeoutMs',
  ] as const) {
    if (o[k] !== undefined) checkNumber(k, o[k], OPTION_RANGES[k]);
  }
  for (const k of ['offline', 'progress', 'verify', 'compile', 'warmup'] as const) {
    if (o[k] !== undefined) checkBoolean(k, o[k]);
  }
  for (const k of ['revision', 'cacheDir', 'token', 'endpoint', 'dtype'] as const) {
    if (o[k] !== undefined) checkString(k, o[k]);
  }
  for (const k of ['onProgress', 'onBatch'] as const) {
    if (o[k] !== undefined) checkFunction(k, o[k]);
  }
  if (o.signal !== undefined) checkSignal('signal', o.signal);
  if (o.activation !== undefined) checkOneOf('activation', o.activation, ACTIVATIONS);
  if (o.truncation !== undefined) {
    checkOneOf('truncation', o.truncation, ['longest_first', 'only_second'] as const);
  }
  if (o.longDocuments !== undefined) checkOneOf('longDocuments', o.longDocuments, ['truncate', 'chunk']);
  if (o.backend !== undefined) checkOneOf('backend', o.backend, ['auto', 'mlx', 'cpu']);
  if (o.device !== undefined) checkOneOf('device', o.device, ['auto', 'gpu', 'cpu']);
}

export type Pair = readonly [string, string];

/** Runs `read`, turning anything but our own error it throws (a getter, a Proxy trap) into one. */
function reading<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (err instanceof MlxRerankError) throw err;
    throw new InputError(`${what} could not be read: ${String(err)}`, { cause: err });
  }
}

const MAX_ARRAY_LENGTH = 2 ** 32 - 1;

/** An array's length, read once and checked (a Proxy can claim any length). */
function lengthOf(name: string, a: readonly unknown[], most: number): number {
  const n = a.length;
  if (!Number.isInteger(n) || n < 0 || n > MAX_ARRAY_LENGTH)
    throw new InputError(`${name} has an invalid length (${describe(n)}).`);
  if (n > most) throw tooManyPairs(n, most);
  return n;
}

function pairAt(p: unknown, i: number): Pair {
  if (!Array.isArray(p)) {
    throw new InputError(`pairs[${i}] must be a [query, document] pair of two strings (got ${describe(p)}).`);
  }
  const len = (p as unknown[]).length;
  if (len !== 2) {
    throw new InputError(
      `pairs[${i}] must be a [query, document] pair of two strings (got an array of length ${String(len)}).`,
    );
  }
  const q = p[0] as unknown;
  const d = p[1] as unknown;
  if (typeof q !== 'string' || typeof d !== 'string') {
    throw new InputError(
      `pairs[${i}] must be a [query, document] pair of two strings (got [${describe(q)}, ${describe(d)}]).`,
    );
  }
  return [q, d];
}

/**
 * Takes the pairs from the caller: each element and string is read ONCE, now, into a new array the
 * library owns; nothing the caller does to its array afterwards (change, shrink, a getter or Proxy that
 * answers differently or throws later) reaches the queue. A single `[query, document]` is one pair.
 */
export function readPairs(pairs: unknown, most: number): { list: Pair[]; single: boolean } {
  return reading('pairs', () => {
    if (!Array.isArray(pairs)) {
      throw new InputError(
        `pairs must be an array of [query, document] string pairs (got ${describe(pairs)}).`,
      );
    }
    const n = lengthOf('pairs', pairs, most);
    const first = n === 2 ? [pairs[0] as unknown, pairs[1] as unknown] : [];
    if (typeof first[0] === 'string' && typeof first[1] === 'string') {
      return { list: [[first[0], first[1]]], single: true };
    }
    const list = new Array<Pair>(n);
    for (let i = 0; i < n; i++) list[i] = pairAt(i < first.length ? first[i] : (pairs[i] as unknown), i);
    return { list, single: false };
  });
}

/** Takes the documents from the caller, each read once, as readPairs does. */
export function readDocuments(documents: unknown, most: number): string[] {
  return reading('documents', () => {
    if (!Array.isArray(documents)) {
      throw new InputError(`documents must be an array of strings (got ${describe(documents)}).`);
    }
    const n = lengthOf('documents', documents, most);
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) {
      const d = documents[i] as unknown;
      if (typeof d !== 'string')
        throw new InputError(`documents[${i}] must be a string (got ${describe(d)}).`);
      out[i] = d;
    }
    return out;
  });
}
