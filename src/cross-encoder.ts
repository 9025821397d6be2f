/**
 * One concern, the public face: `CrossEncoder.load(model, options)`, then `predict(pairs)` / `rank(query, docs)`
 * (loading wires hub, model, tokenizer, engine and scheduler together; the work is theirs).
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

import {
  ACTIVATIONS,
  checkLoadOptions,
  HUB_KEYS,
  LOAD_KEYS,
  type LoadOptions,
  OPTION_RANGES,
  type Pair,
  PREDICT_KEYS,
  type PredictOptions,
  RANK_KEYS,
  type RankOptions,
  readDocuments,
  readPairs,
  slice,
} from './api-input';
import { backends, MLX_FAMILIES } from './backends';
import { checkEngineTuning } from './engine-options';
import { loadReplicas } from './engine-replicas';
import { AbortedError, BackendUnavailableError, DisposedError, fromNativeError, InputError } from './errors';
import { resolveModel } from './hub';
import { callSafely } from './listeners';
import type { BatchMetrics, CallMetrics, Stats } from './metrics';
import { loadModelSpec } from './model';
import { type EngineLimits, type NativeEngine, native } from './native';
import {
  DEFAULT_LIMITS,
  engineDefaults,
  PRIORITIES,
  resolveLimits,
  Scheduler,
  type SchedulerLimits,
} from './scheduler';
import { type BatchTokensChoice, chooseBatchTokens } from './scheduler/batch-curve';
import { fingerprint, makeEncoder } from './scheduler/encoder';
import { assertTokenizerFitsModel, Tokenizer, type TokenizerFiles } from './tokenizer';
import { defaultTokenizerThreads, TokenizerPool } from './tokenizer-pool';
import type { Activation, Backend, DeviceKind, DType, ModelFamily, ModelFiles, ModelSpec } from './types';
import {
  checkBoolean,
  checkFunction,
  checkNumber,
  checkOneOf,
  checkSignal,
  checkString,
  describe,
  int,
  readOptions,
} from './validate';

export type { BatchTokensChoice } from './scheduler/batch-curve';

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
  /** Worker threads tokenizing off the JS thread (0: on the JS thread); the `tokenizerThreads` option. */
  tokenizerThreads: number;
  /** Engines sharing the batches (the `engineReplicas` option); engineLimits.pipelineDepth counts them all. */
  engineReplicas: number;
  /** Wall ms of load() and of its warm-up (0 when skipped). */
  loadMs: number;
  warmupMs: number;
  /** The engine's breakdown of load and warm-up (mlx: ms per phase and forward counts; else {}). */
  startup: Record<string, number>;
  /** What the engine reports it is built for (the defaults of the limits the caller left unset). */
  engineLimits: EngineLimits;
  /** The batch size in force (`limits.maxBatchTokens`) and where it came from. */
  batchTokens: BatchTokensChoice;
}

function abortedError(signal: AbortSignal): AbortedError {
  return new AbortedError(undefined, { cause: signal.reason });
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortedError(signal);
}

/**
 * `p`, or AbortedError as soon as `signal` fires; what `p` makes after an abort is handed to `release`
 * (a loaded engine is disposed rather than leaked).
 */
function abortable<T>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
  release?: (v: T) => Promise<unknown>,
): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortedError(signal));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        if (!signal.aborted) return resolve(v);
        release?.(v).catch(() => undefined);
        onAbort();
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

export type { LoadOptions, PredictOptions, RankOptions } from './api-input';

type Events = { batch: BatchMetrics; call: CallMetrics };
type Listener<K extends keyof Events> = (v: Events[K]) => void;

export function pickBackend(
  want: 'auto' | Backend,
  device: DeviceKind,
  family: ModelFamily = 'bert',
): Backend {
  const b = backends();
  const mlxGpu = b.mlx.available && (b.mlx.devices ?? []).includes('gpu');
  if (want === 'auto') {
    if (device === 'gpu' && !mlxGpu) {
      throw new BackendUnavailableError(
        `device 'gpu' needs the mlx engine with a GPU: ${b.mlx.reason ?? 'mlx reports no GPU device'}.`,
      );
    }
    // A family the mlx engine does not run (MLX_FAMILIES, docs/models.md) goes to the cpu engine,
    // unless the caller asked for the GPU, where the engine's load says what it lacks.
    if (!MLX_FAMILIES.has(family) && device !== 'gpu') return 'cpu';
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
  static async load(model: string | ModelFiles, options?: LoadOptions): Promise<CrossEncoder> {
    try {
      return await CrossEncoder.loadUnwrapped(model, options);
    } catch (err) {
      // Whatever a step let through untyped (a file-system error, say) still reaches the caller typed.
      throw fromNativeError(err);
    }
  }

  private static async loadUnwrapped(model: string | ModelFiles, options: unknown): Promise<CrossEncoder> {
    const t0 = performance.now();
    const o = readOptions<LoadOptions>('CrossEncoder.load', options, LOAD_KEYS);
    checkLoadOptions(o);
    const tuning = o.engine === undefined ? {} : checkEngineTuning(o.engine);
    const signal = o.signal;
    throwIfAborted(signal);
    if (typeof model !== 'string' && (typeof model !== 'object' || model === null || !('config' in model))) {
      throw new InputError(
        `model must be a Hugging Face id, a local folder, or ModelFiles from resolveModel() (got ${describe(model)}).`,
      );
    }
    const device: DeviceKind = o.device ?? 'auto';
    pickBackend(o.backend ?? 'auto', device); // an impossible backend/device is refused before any download
    const longDocuments = o.longDocuments ?? 'truncate';
    const limits = resolveLimits({ ...o, pipelineDepth: DEFAULT_LIMITS.pipelineDepth });
    const files =
      typeof model === 'string' ? await abortable(resolveModel(model, slice(o, HUB_KEYS)), signal) : model;
    const spec = await abortable(loadModelSpec(files), signal);
    const backend = pickBackend(o.backend ?? 'auto', device, spec.arch.family);
    const tokenizer = await abortable(Tokenizer.fromFiles(files), signal);
    assertTokenizerFitsModel(tokenizer, spec);
    const limit = Math.min(tokenizer.modelMaxLength || spec.maxPositions, spec.maxPositions);
    const maxLength = o.maxLength ?? limit;
    if (maxLength > spec.maxPositions) {
      throw new InputError(
        `maxLength ${maxLength} is more than this model's max_position_embeddings (${spec.maxPositions}).`,
      );
    }
    const activation = o.activation ?? spec.activation;
    const stride = o.chunkStride ?? Math.floor(maxLength / 4);
    // Every window has at least (maxLength - specials) / 2 document tokens (the query is cut to half
    // when longer); specials is 3 for BERT's [CLS] q [SEP] d [SEP], 4 for XLM-R's <s> q </s></s> d </s>.
    const room = Math.floor((maxLength - tokenizer.numSpecialTokens) / 2);
    if (longDocuments === 'chunk' && stride >= room) {
      throw new InputError(
        `chunkStride (${stride}) must be less than half of maxLength - ${tokenizer.numSpecialTokens} (${room}): windows must advance.`,
      );
    }
    const encoderSpec = { mode: longDocuments, maxLength, truncation: o.truncation, stride };
    const encode = makeEncoder(tokenizer, encoderSpec);
    throwIfAborted(signal);
    // The workers load their tokenizers while the engine loads and warms up.
    const threads = o.tokenizerThreads ?? defaultTokenizerThreads(backend, device);
    let pool: TokenizerPool | undefined =
      threads > 0
        ? new TokenizerPool({
            threads,
            files: tokenizerFiles(files),
            encoder: encoderSpec,
            fingerprint: fingerprint(tokenizer, encode),
          })
        : undefined;
    const replicas = o.engineReplicas ?? 1;
    const engine = await abortable(
      loadReplicas(replicas, () =>
        native().loadEngine({
          backend,
          device: backend === 'cpu' ? 'cpu' : device,
          ...(o.dtype !== undefined && { dtype: o.dtype }),
          weights: files.weights,
          spec,
          ...(o.threads !== undefined && { threads: o.threads }),
          ...(o.cacheLimitBytes !== undefined && { cacheLimitBytes: o.cacheLimitBytes }),
          ...(o.compile !== undefined && { compile: o.compile }),
          ...tuning,
        }),
      ),
      signal,
      (e) => e.dispose(),
    ).catch(async (err: unknown) => {
      await pool?.dispose();
      throw err;
    });
    try {
      const warm = o.warmup ?? true;
      const warmupMs = warm ? await abortable(engine.warmup(), signal) : 0;
      const startup = await abortable(engine.startup?.() ?? Promise.resolve({}), signal);
      throwIfAborted(signal);
      const e = engine.info();
      const defaults = engineDefaults(e, o);
      const batchTokens = await abortable(
        chooseBatchTokens(
          engine,
          e,
          {
            maxBatchTokens: o.maxBatchTokens,
            maxBatchSize: defaults.maxBatchSize ?? limits.maxBatchSize,
            warm,
            maxLength,
            spec,
          },
          signal,
        ),
        signal,
      );
      throwIfAborted(signal);
      pool = await startedPool(pool, o.tokenizerThreads !== undefined, signal);
      let self: CrossEncoder | undefined;
      const onBatch = o.onBatch;
      const scheduler = new Scheduler({
        ...limits,
        ...defaults,
        maxBatchTokens: batchTokens.value,
        engine,
        replicas,
        encode,
        tokenizer: pool,
        numLabels: spec.numLabels,
        onBatch: (b) => {
          if (onBatch) callSafely(onBatch, b, 'onBatch');
          self?.emit('batch', b);
        },
        onCall: (c) => self?.emit('call', c),
      });
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
        tokenizerThreads: pool?.threads ?? 0,
        engineReplicas: replicas,
        loadMs: performance.now() - t0,
        warmupMs,
        startup,
        engineLimits: {
          maxBatchTokens: e.maxBatchTokens,
          maxBatchSize: e.maxBatchSize,
          pipelineDepth: e.pipelineDepth,
          pads: e.pads,
          earlyBatchTokens: e.earlyBatchTokens ?? 0,
        },
        batchTokens,
      };
      self = new CrossEncoder(info, tokenizer, engine, scheduler);
      return self;
    } catch (err) {
      await Promise.all([engine.dispose().catch(() => undefined), pool?.dispose()]);
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
    options?: PredictOptions,
  ): Promise<Float32Array | number> {
    // Everything the call needs is read from the caller's arguments now, before the first await.
    const o = readOptions<PredictOptions>('predict', options, PREDICT_KEYS);
    const { list, single } = readPairs(pairs, this.scheduler.limits.maxQueuePairs);
    const scores = await this.score(list, o);
    if (single && this.info.spec.numLabels === 1) return scores[0] as number;
    return scores;
  }

  /**
   * Scores every document against the query and returns them best first (ties: lower index first).
   * Multi-label models rank by `label` (default 0).
   */
  async rank(query: string, documents: readonly string[], options?: RankOptions): Promise<RankResult[]> {
    const o = readOptions<RankOptions>('rank', options, RANK_KEYS);
    checkString('query', query);
    const L = this.info.spec.numLabels;
    const label = o.label === undefined ? 0 : checkNumber('label', o.label, int(0, L - 1));
    const docs = readDocuments(documents, this.scheduler.limits.maxQueuePairs);
    const topK = o.topK === undefined ? docs.length : checkNumber('topK', o.topK, OPTION_RANGES.topK);
    const returnDocuments =
      o.returnDocuments === undefined ? false : checkBoolean('returnDocuments', o.returnDocuments);
    const pairs = docs.map((d) => [query, d] as const);
    const scores = await this.score(pairs, o);
    const order = Array.from({ length: docs.length }, (_, i) => i);
    const key = (i: number) => {
      const s = scores[i * L + label] as number;
      return Number.isNaN(s) ? Number.NEGATIVE_INFINITY : s;
    };
    order.sort((a, b) => key(b) - key(a) || a - b);
    return order.slice(0, topK).map((index) => {
      const r: RankResult = { index, score: scores[index * L + label] as number };
      if (returnDocuments) r.document = docs[index] as string;
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
    this.listenerSet(event).add(checkFunction<Listener<K>>('listener', fn));
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

  /** Calls each listener isolated: one that throws is reported (src/listeners.ts), the rest still run. */
  private emit<K extends keyof Events>(event: K, v: Events[K]): void {
    for (const fn of [...(this.listeners[event] as Set<Listener<K>>)])
      callSafely(fn, v, `a '${event}' listener`);
  }

  /** Checks the options every call shares, queues the pairs (our own copy) and applies the activation. */
  private async score(pairs: readonly Pair[], o: PredictOptions): Promise<Float32Array> {
    const activation =
      o.activation === undefined ? this.info.activation : checkOneOf('activation', o.activation, ACTIVATIONS);
    const signal = o.signal === undefined ? undefined : checkSignal('signal', o.signal);
    const onMetrics =
      o.onMetrics === undefined
        ? undefined
        : checkFunction<(m: CallMetrics) => void>('onMetrics', o.onMetrics);
    const priority = o.priority === undefined ? undefined : checkOneOf('priority', o.priority, PRIORITIES);
    const deadlineMs =
      o.deadlineMs === undefined
        ? undefined
        : checkNumber('deadlineMs', o.deadlineMs, OPTION_RANGES.deadlineMs);
    throwIfAborted(signal);
    const { logits, metrics } = await this.scheduler.submit(pairs, { signal, priority, deadlineMs });
    if (onMetrics) callSafely(onMetrics, metrics, 'onMetrics');
    return activate(logits, this.info.spec.numLabels, activation);
  }
}

function tokenizerFiles(f: ModelFiles): TokenizerFiles {
  const { tokenizerJson, vocabTxt, tokenizerConfig, specialTokensMap } = f;
  return {
    ...(tokenizerJson !== undefined && { tokenizerJson }),
    ...(vocabTxt !== undefined && { vocabTxt }),
    ...(tokenizerConfig !== undefined && { tokenizerConfig }),
    ...(specialTokensMap !== undefined && { specialTokensMap }),
  };
}

/**
 * The pool once its workers are ready. Workers that cannot start fail load() when the caller asked for
 * them (`tokenizerThreads`); by default load() goes on tokenizing on the JS thread, with a warning.
 */
async function startedPool(
  pool: TokenizerPool | undefined,
  asked: boolean,
  signal: AbortSignal | undefined,
): Promise<TokenizerPool | undefined> {
  if (!pool) return undefined;
  try {
    await abortable(pool.ready(), signal);
    return pool;
  } catch (err) {
    await pool.dispose();
    if (asked || signal?.aborted) throw err;
    process.emitWarning(
      `mlx-rerank: tokenizer workers could not start, tokenizing on the JS thread (${String(err)})`,
    );
    return undefined;
  }
}
