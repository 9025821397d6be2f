/**
 * The public face: `CrossEncoder.load(model, options)`, then `predict(pairs)` / `rank(query, docs)`.
 *
 * ```ts
 * await using ce = await CrossEncoder.load('cross-encoder/ms-marco-MiniLM-L-6-v2');
 * const scores = await ce.predict([['what is a cat', 'A cat is a small mammal.'], ...]);
 * const top = await ce.rank('what is a cat', docs, { topK: 3 });
 * ```
 *
 * Every call, from any number of concurrent callers, joins one queue (src/scheduler.ts); the engine
 * computes on its own native thread, so awaiting a call never blocks the event loop.
 */

import { backends } from './backends';
import { AbortedError, BackendUnavailableError, DisposedError, InputError } from './errors';
import { resolveModel } from './hub';
import type { BatchMetrics, CallMetrics, Stats } from './metrics';
import { loadModelSpec } from './model';
import { type NativeEngine, native } from './native';
import {
  DEFAULT_LIMITS,
  GPU_BATCH_LIMITS,
  type PairEncoder,
  resolveLimits,
  Scheduler,
  type SchedulerLimits,
  type Segment,
} from './scheduler';
import { assertTokenizerFitsModel, Tokenizer } from './tokenizer';
import type { Activation, Backend, DeviceKind, DType, ModelFiles, ModelSpec } from './types';

type HubOptions = NonNullable<Parameters<typeof resolveModel>[1]>;
type PairOptions = NonNullable<Parameters<Tokenizer['encodePair']>[2]>;

/** GPU_BATCH_LIMITS for the limits the caller left unset. */
function gpuBatchDefaults(o: Partial<SchedulerLimits>): Partial<SchedulerLimits> {
  return {
    ...(o.maxBatchTokens === undefined && { maxBatchTokens: GPU_BATCH_LIMITS.maxBatchTokens }),
    ...(o.maxBatchSize === undefined && { maxBatchSize: GPU_BATCH_LIMITS.maxBatchSize }),
  };
}

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
  /** mlx: the buffer cache limit in bytes. */
  cacheLimitBytes?: number;
  /** mlx: use mx::compile (default true). */
  compile?: boolean;
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
}

export interface RankOptions extends PredictOptions {
  /** Keep only the best topK results (default: all). */
  topK?: number;
  /** Include each document's text in the results (default false). */
  returnDocuments?: boolean;
  /** Multi-label models: which label's score ranks (default 0). */
  label?: number;
}

export interface RankResult {
  /** Index of the document in the array given to rank(). */
  index: number;
  score: number;
  document?: string;
}

/** What was loaded and where it runs. */
export interface CrossEncoderInfo {
  modelId: string;
  revision: string | undefined;
  modelDir: string;
  spec: ModelSpec;
  backend: Backend;
  device: 'cpu' | 'gpu';
  deviceName: string;
  dtype: DType;
  /** Engine version (MLX's version for the mlx engine). */
  version: string;
  /** True for a synthetic model (random weights): scores mean nothing. */
  synthetic: boolean;
  maxLength: number;
  activation: Activation;
  longDocuments: 'truncate' | 'chunk';
  /** Wall ms of load() and of its warm-up (0 when skipped). */
  loadMs: number;
  warmupMs: number;
}

type Events = { batch: BatchMetrics; call: CallMetrics };
type Listener<K extends keyof Events> = (v: Events[K]) => void;

function pickBackend(want: 'auto' | Backend, device: DeviceKind): Backend {
  const b = backends();
  if (want !== 'auto' && want !== 'mlx' && want !== 'cpu') {
    throw new InputError(`backend must be 'auto', 'mlx' or 'cpu' (got ${String(want)}).`);
  }
  if (device !== 'auto' && device !== 'gpu' && device !== 'cpu') {
    throw new InputError(`device must be 'auto', 'gpu' or 'cpu' (got ${String(device)}).`);
  }
  const mlxGpu = b.mlx.available && (b.mlx.devices ?? []).includes('gpu');
  if (want === 'auto') {
    if (device === 'gpu' && !mlxGpu) {
      throw new BackendUnavailableError(
        `device 'gpu' needs the mlx engine with a GPU: ${b.mlx.reason ?? 'mlx reports no GPU device'}.`,
      );
    }
    return mlxGpu && device !== 'cpu' ? 'mlx' : 'cpu';
  }
  if (want === 'mlx' && !b.mlx.available) {
    throw new BackendUnavailableError(
      `The mlx engine is not available: ${b.mlx.reason ?? 'not compiled in'}. Use backend 'cpu' or 'auto'.`,
    );
  }
  if (want === 'cpu' && device === 'gpu') {
    throw new BackendUnavailableError(
      "The cpu engine runs only on the CPU: use backend 'mlx' for device 'gpu'.",
    );
  }
  return want;
}

function positiveInt(name: string, v: unknown, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new InputError(`${name} must be an integer >= ${min} (got ${String(v)}).`);
  }
  return v;
}

function checkActivation(a: unknown): Activation {
  if (a !== 'none' && a !== 'sigmoid' && a !== 'softmax') {
    throw new InputError(`activation must be 'none', 'sigmoid' or 'softmax' (got ${String(a)}).`);
  }
  return a;
}

/**
 * Applies the activation to row-major logits in float32 (a new array). 'softmax' normalises each row
 * over the labels (max-subtracted); 'sigmoid' is element-wise.
 */
export function activate(logits: Float32Array, numLabels: number, activation: Activation): Float32Array {
  const out = new Float32Array(logits.length);
  if (activation === 'none') {
    out.set(logits);
  } else if (activation === 'sigmoid') {
    for (let i = 0; i < logits.length; i++) out[i] = 1 / (1 + Math.exp(-(logits[i] as number)));
  } else {
    for (let r = 0; r < logits.length; r += numLabels) {
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < numLabels; j++) max = Math.max(max, logits[r + j] as number);
      let sum = 0;
      for (let j = 0; j < numLabels; j++) sum += Math.exp((logits[r + j] as number) - max);
      for (let j = 0; j < numLabels; j++) out[r + j] = Math.exp((logits[r + j] as number) - max) / sum;
    }
  }
  return out;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  return typeof v;
}

/** Checks pairs; returns them as a list and whether a single pair was given. */
function validatePairs(pairs: unknown): { list: ReadonlyArray<readonly [string, string]>; single: boolean } {
  if (!Array.isArray(pairs)) {
    throw new InputError(
      `pairs must be an array of [query, document] string pairs (got ${describe(pairs)}).`,
    );
  }
  if (pairs.length === 2 && typeof pairs[0] === 'string' && typeof pairs[1] === 'string') {
    return { list: [pairs as unknown as readonly [string, string]], single: true };
  }
  for (let i = 0; i < pairs.length; i++) {
    const p = pairs[i] as unknown;
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string' || typeof p[1] !== 'string') {
      const got = Array.isArray(p) ? `[${p.map(describe).join(', ')}]` : describe(p);
      throw new InputError(`pairs[${i}] must be a [query, document] pair of two strings (got ${got}).`);
    }
  }
  return { list: pairs as ReadonlyArray<readonly [string, string]>, single: false };
}

export class CrossEncoder {
  readonly info: CrossEncoderInfo;
  readonly tokenizer: Tokenizer;
  private readonly engine: NativeEngine;
  private readonly scheduler: Scheduler;
  private readonly listeners: { [K in keyof Events]: Set<Listener<K>> } = {
    batch: new Set(),
    call: new Set(),
  };

  private constructor(
    info: CrossEncoderInfo,
    tokenizer: Tokenizer,
    engine: NativeEngine,
    scheduler: Scheduler,
  ) {
    this.info = info;
    this.tokenizer = tokenizer;
    this.engine = engine;
    this.scheduler = scheduler;
  }

  /**
   * Loads a model: a Hugging Face id (`org/name` or `org/name@revision`), a local folder, or the
   * ModelFiles that `resolveModel` / `synthesizeModel` return. The engine loads off the JS thread.
   */
  static async load(model: string | ModelFiles, options: LoadOptions = {}): Promise<CrossEncoder> {
    const t0 = performance.now();
    const o = options;
    if (typeof model !== 'string' && (typeof model !== 'object' || model === null || !('config' in model))) {
      throw new InputError(
        `model must be a Hugging Face id, a local folder, or ModelFiles from resolveModel() (got ${describe(model)}).`,
      );
    }
    const device: DeviceKind = o.device ?? 'auto';
    const backend = pickBackend(o.backend ?? 'auto', device);
    const longDocuments = o.longDocuments ?? 'truncate';
    if (longDocuments !== 'truncate' && longDocuments !== 'chunk') {
      throw new InputError(`longDocuments must be 'truncate' or 'chunk' (got ${String(longDocuments)}).`);
    }
    const limits = resolveLimits({ ...o, pipelineDepth: DEFAULT_LIMITS.pipelineDepth });
    const files = typeof model === 'string' ? await resolveModel(model, o) : model;
    const spec = await loadModelSpec(files);
    const tokenizer = await Tokenizer.fromFiles(files);
    assertTokenizerFitsModel(tokenizer, spec);
    const limit = Math.min(tokenizer.modelMaxLength || spec.maxPositions, spec.maxPositions);
    const maxLength = o.maxLength === undefined ? limit : positiveInt('maxLength', o.maxLength, 4);
    if (maxLength > spec.maxPositions) {
      throw new InputError(
        `maxLength ${maxLength} is more than this model's max_position_embeddings (${spec.maxPositions}).`,
      );
    }
    const activation = checkActivation(o.activation ?? spec.activation);
    const stride =
      o.chunkStride === undefined ? Math.floor(maxLength / 4) : positiveInt('chunkStride', o.chunkStride, 0);
    // Every window has at least (maxLength - 3) / 2 document tokens (the query is cut to half when longer).
    if (longDocuments === 'chunk' && stride >= Math.floor((maxLength - 3) / 2)) {
      throw new InputError(
        `chunkStride (${stride}) must be less than half of maxLength - 3 (${Math.floor((maxLength - 3) / 2)}): windows must advance.`,
      );
    }
    const encode = makeEncoder(tokenizer, longDocuments, maxLength, o.truncation, stride);
    const engine = await native().loadEngine({
      backend,
      device: backend === 'cpu' ? 'cpu' : device,
      ...(o.dtype !== undefined && { dtype: o.dtype }),
      weights: files.weights,
      spec,
      ...(o.threads !== undefined && { threads: o.threads }),
      ...(o.cacheLimitBytes !== undefined && { cacheLimitBytes: o.cacheLimitBytes }),
      ...(o.compile !== undefined && { compile: o.compile }),
    });
    let warmupMs = 0;
    let scheduler: Scheduler;
    try {
      if (o.warmup ?? true) warmupMs = await engine.warmup();
      let self: CrossEncoder | undefined;
      scheduler = new Scheduler({
        ...limits,
        ...(engine.info().device === 'gpu' && gpuBatchDefaults(o)),
        engine,
        encode,
        numLabels: spec.numLabels,
        onBatch: (b) => {
          o.onBatch?.(b);
          self?.emit('batch', b);
        },
        onCall: (c) => self?.emit('call', c),
      });
      const e = engine.info();
      const info: CrossEncoderInfo = {
        modelId: files.id,
        revision: files.revision,
        modelDir: files.dir,
        spec,
        backend: e.backend,
        device: e.device,
        deviceName: e.deviceName,
        dtype: e.dtype,
        version: e.version,
        synthetic: spec.synthetic,
        maxLength,
        activation,
        longDocuments,
        loadMs: performance.now() - t0,
        warmupMs,
      };
      self = new CrossEncoder(info, tokenizer, engine, scheduler);
      return self;
    } catch (err) {
      await engine.dispose().catch(() => undefined);
      throw err;
    }
  }

  /**
   * Scores pairs. A list of pairs resolves with a Float32Array in input order (pairs x numLabels,
   * row-major, for multi-label models); a single `[query, document]` pair resolves with a number (a
   * Float32Array of numLabels for multi-label models). An empty list resolves with an empty array.
   */
  predict(pairs: ReadonlyArray<readonly [string, string]>, options?: PredictOptions): Promise<Float32Array>;
  predict(pair: readonly [string, string], options?: PredictOptions): Promise<number>;
  async predict(
    pairs: ReadonlyArray<readonly [string, string]> | readonly [string, string],
    options: PredictOptions = {},
  ): Promise<Float32Array | number> {
    const activation = checkActivation(options.activation ?? this.info.activation);
    const { list, single } = validatePairs(pairs);
    const scores = await this.score(list, activation, options);
    if (single && this.info.spec.numLabels === 1) return scores[0] as number;
    return scores;
  }

  /**
   * Scores every document against the query and returns them best first (ties: lower index first).
   * Multi-label models rank by `label` (default 0).
   */
  async rank(query: string, documents: readonly string[], options: RankOptions = {}): Promise<RankResult[]> {
    if (typeof query !== 'string') throw new InputError(`query must be a string (got ${describe(query)}).`);
    if (!Array.isArray(documents)) {
      throw new InputError(`documents must be an array of strings (got ${describe(documents)}).`);
    }
    const L = this.info.spec.numLabels;
    const label = options.label ?? 0;
    if (!Number.isInteger(label) || label < 0 || label >= L) {
      throw new InputError(
        `label must be an integer in [0, ${L - 1}] for this model (got ${String(label)}).`,
      );
    }
    const topK = options.topK ?? documents.length;
    positiveInt('topK', topK, 0);
    const pairs = new Array<readonly [string, string]>(documents.length);
    for (let i = 0; i < documents.length; i++) {
      const d = documents[i] as unknown;
      if (typeof d !== 'string')
        throw new InputError(`documents[${i}] must be a string (got ${describe(d)}).`);
      pairs[i] = [query, d];
    }
    const activation = checkActivation(options.activation ?? this.info.activation);
    const scores = await this.score(pairs, activation, options);
    const order = Array.from({ length: documents.length }, (_, i) => i);
    const key = (i: number) => {
      const s = scores[i * L + label] as number;
      return Number.isNaN(s) ? Number.NEGATIVE_INFINITY : s;
    };
    order.sort((a, b) => key(b) - key(a) || a - b);
    return order.slice(0, topK).map((index) => {
      const r: RankResult = { index, score: scores[index * L + label] as number };
      if (options.returnDocuments) r.document = documents[index] as string;
      return r;
    });
  }

  /** Runs the engine's warm-up again (compiles common shapes); resolves with its milliseconds. */
  async warmup(): Promise<number> {
    if (this.scheduler.isDisposed) throw new DisposedError();
    return this.engine.warmup();
  }

  /** Totals, percentiles, queue depth, engine memory and busy %; see Stats in src/metrics.ts. */
  stats(): Stats {
    return this.scheduler.stats();
  }

  /** The scheduler limits in force. */
  get limits(): Readonly<SchedulerLimits> {
    return this.scheduler.limits;
  }

  /** `batch`: after every engine batch (BatchMetrics); `call`: after every resolved call (CallMetrics). */
  on<K extends keyof Events>(event: K, fn: Listener<K>): this {
    this.listenerSet(event).add(fn);
    return this;
  }

  off<K extends keyof Events>(event: K, fn: Listener<K>): this {
    this.listenerSet(event).delete(fn);
    return this;
  }

  /**
   * Queued calls reject with DisposedError, the batch in the engine completes (its results dropped),
   * then native memory is released. Idempotent.
   */
  dispose(): Promise<void> {
    return this.scheduler.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  private listenerSet<K extends keyof Events>(event: K): Set<Listener<K>> {
    const set = this.listeners[event] as Set<Listener<K>> | undefined;
    if (!set) throw new InputError(`Unknown event '${String(event)}': use 'batch' or 'call'.`);
    return set;
  }

  private emit<K extends keyof Events>(event: K, v: Events[K]): void {
    for (const fn of this.listeners[event] as Set<Listener<K>>) fn(v);
  }

  private async score(
    pairs: ReadonlyArray<readonly [string, string]>,
    activation: Activation,
    options: PredictOptions,
  ): Promise<Float32Array> {
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
      throw new InputError('signal must be an AbortSignal.');
    }
    if (options.signal?.aborted) throw new AbortedError(undefined, { cause: options.signal.reason });
    const { logits, metrics } = await this.scheduler.submit(pairs, options.signal);
    options.onMetrics?.(metrics);
    return activate(logits, this.info.spec.numLabels, activation);
  }
}

function makeEncoder(
  tokenizer: Tokenizer,
  mode: 'truncate' | 'chunk',
  maxLength: number,
  truncation: PairOptions['truncation'] | undefined,
  stride: number,
): PairEncoder {
  if (mode === 'chunk') {
    return (q, d) => tokenizer.encodeChunks(q, d, { maxLength, stride }) as Segment[];
  }
  const opts = { maxLength, ...(truncation !== undefined && { truncation }) } as PairOptions;
  return (q, d) => [tokenizer.encodePair(q, d, opts)];
}
