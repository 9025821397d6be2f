/**
 * The native addon (native/addon/), loaded by node-gyp-build from the package root: a prebuild in
 * prebuilds/<platform>-<arch>/ when one matches, else build/Release. This file types it, and is the one
 * place where native errors enter TypeScript: everything the addon rejects or throws is mapped to an
 * MlxRerankError subclass here (fromNativeError), so no plain Error reaches a caller. It is also where the
 * engine tuning's environment variables are read (withEnvTuning, src/engine-options.ts): the engines
 * themselves read nothing from the environment.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withEnvTuning } from './engine-options';
import { BackendUnavailableError, fromNativeError } from './errors';
import { withKernelCache } from './kernel-cache';
import type { DType, EngineTuning, ModelSpec } from './types';

export interface NativeBackendInfo {
  available: boolean;
  /** Why it is not available (not compiled in and which paths were tried, or no device). */
  reason?: string;
  version?: string;
  /** Devices this backend can run on: 'cpu' and/or 'gpu'. */
  devices?: Array<'cpu' | 'gpu'>;
  /** cpu engine: the SIMD level picked at run time (e.g. "avx2+fma") and default thread count. */
  isa?: string;
  /** cpu engine: the kernels `dtype: 'bfloat16'` / `'int8'` would run here (e.g. "avx512-vnni", "avx2"). */
  dtypeIsa?: { bfloat16: string; int8: string };
  threads?: number;
}

export interface NativeBackends {
  cpu: NativeBackendInfo;
  mlx: NativeBackendInfo;
}

export interface NativeEngineOptions extends EngineTuning {
  backend: 'cpu' | 'mlx';
  device: 'auto' | 'gpu' | 'cpu';
  dtype?: DType;
  /** safetensors files: one, or the shards in index order. */
  weights: string[];
  spec: Pick<
    ModelSpec,
    | 'vocabSize'
    | 'hiddenSize'
    | 'numLayers'
    | 'numHeads'
    | 'intermediateSize'
    | 'maxPositions'
    | 'typeVocabSize'
    | 'numLabels'
    | 'layerNormEps'
    | 'hiddenAct'
  > &
    Partial<Pick<ModelSpec, 'arch'>>; // absent: BERT
  threads?: number;
  cacheLimitBytes?: number;
  compile?: boolean;
}

export interface ForwardResult {
  logits: Float32Array; // pairs * numLabels
  inferenceMs: number;
  computedSlots: number;
  /** Stopped by cancel(batchId) (logits empty: nothing to deliver); absent from engines that cannot. */
  cancelled?: boolean;
  /** Encoder layers computed: all of them unless cancelled. */
  layersRun?: number;
  /** The engine began this batch while the batch before it waited for the device (startAhead). */
  startedAhead?: boolean;
  /** Where the batch's time went on the engine's thread, on performance.now()'s clock (the native engines). */
  engineTimes?: EngineTimes;
}

/** A batch on the engine's thread, in performance.now() milliseconds (GPU engines report the optional ones). */
export interface EngineTimes {
  /** The engine thread began it (validated it, built and queued its work). */
  beganAt: number;
  /** The first part of its work was queued on the device (early, while the batch before it computed, when startedAhead). */
  begunAt?: number;
  /** All of its work was queued: from here the engine thread waits for the device. */
  queuedAt?: number;
  /** The engine thread found it computed on the device (after beginning the next batch, if it began one meanwhile). */
  deviceDoneAt?: number;
  /** Its result was ready to go back to the JS thread. */
  endedAt: number;
}

/** forward()'s result as the addon makes it: the engine's times on its steady clock (native/engine.h). */
type RawForwardResult = Omit<ForwardResult, 'engineTimes'> & { engineTimes?: Float64Array };

/**
 * What an engine is built for, from its own constants (native/engine.h, EngineLimits), as Text Embeddings
 * Inference's backends report max_batch_size and is_padded: the scheduler's defaults for the limits a
 * caller leaves unset.
 */
export interface EngineLimits {
  /** Real tokens per batch (on the CPU, load's warm-up measures a better one: src/scheduler/batch-curve.ts). */
  maxBatchTokens: number;
  /** Pairs per batch. */
  maxBatchSize: number;
  /** Batches in the engine at once (1 on a CPU; 2 on a GPU, to hide the launch cost). */
  pipelineDepth: number;
  /** Attention pads the pairs of a batch to shared lengths, so batching pairs of like length saves compute. */
  pads: boolean;
  /**
   * The scheduler's earlyBatchTokens for this engine: while a call is still being tokenized, an idle engine
   * takes a batch of at least this many ready tokens (16384 on a GPU; 0, wait, on a CPU).
   */
  earlyBatchTokens: number;
}

export interface EngineInfo extends EngineLimits {
  backend: 'cpu' | 'mlx';
  device: 'cpu' | 'gpu';
  deviceName: string;
  dtype: DType;
  version: string;
}

export interface EngineMemory {
  activeBytes: number;
  peakBytes: number;
  cacheBytes: number;
}

/** One loaded model. Every method that computes runs on the engine's own native thread. */
export interface NativeEngine {
  /** `batchId` (any finite number, the caller's): cancel(batchId) can stop this batch while it runs. */
  forward(
    tokens: Int32Array,
    typeIds: Int32Array,
    offsets: Int32Array,
    batchId?: number,
  ): Promise<ForwardResult>;
  /**
   * Stops the batches in flight forwarded with `batchId` at their next layer boundary (one not started
   * never starts); they resolve with `cancelled: true`. True when there was one.
   */
  cancel(batchId: number): boolean;
  /** Runs the engine's warm-up (compiles common shapes); resolves with the milliseconds it took. */
  warmup(): Promise<number>;
  /**
   * Where construction and warm-up spent their time (the mlx engine: milliseconds and forward counts,
   * docs/latency-gpu.md "Cold start"; other engines: {}). Optional so that test doubles may omit it.
   */
  startup?(): Promise<Record<string, number>>;
  info(): EngineInfo;
  memory(): EngineMemory;
  /** Frees native memory once the batch in flight (if any) is done. Idempotent. */
  dispose(): Promise<void>;
}

/**
 * One NVIDIA GPU's counters from NVML (loaded at run time; absent on macOS, Windows and machines
 * without an NVIDIA driver). The percentages are NVML's: the share of its last sample period (1/6 s to
 * 1 s, by GPU) during which a kernel ran, and during which device memory was read or written (memory
 * traffic, not capacity: see memoryUsedBytes for that). Device-wide: every process's work counts.
 */
export type GpuUtilization =
  | {
      available: true;
      /** NVML's device index (PCI bus order, which CUDA_DEVICE_ORDER may not follow). */
      index: number;
      name: string;
      gpuPct: number;
      memoryPct: number;
      memoryUsedBytes: number;
      memoryTotalBytes: number;
    }
  | { available: false; reason: string };

export interface NativeAddon {
  /** What this build offers; `cpuIsa` reports the cpu engine's kernels under that cap. */
  backends(options?: Pick<EngineTuning, 'cpuIsa'>): NativeBackends;
  loadEngine(options: NativeEngineOptions): Promise<NativeEngine>;
  /** NVML's utilisation of GPU `index` (default 0): synchronous and cheap; never throws. */
  gpuUtilization(index?: number): GpuUtilization;
  /** For the bench: the float32 GEMM ceiling in GFLOP/s (n x n, the engine's kernels under `isaCap`). */
  _gemmGflops(n: number, threads: number, seconds: number, isaCap?: string): number;
  /** The engines' steady clock in milliseconds (their batch timelines are on it). */
  steadyMs(): number;
}

/** The package root: the nearest folder above this file holding package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('mlx-rerank: package.json not found above the module');
    dir = up;
  }
  return dir;
}

let addon: NativeAddon | undefined;

/** Runs `fn`, turning a synchronous native throw into a typed error. */
function mapped<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw fromNativeError(err);
  }
}

/** Calls an async native method; a synchronous throw or a rejection becomes a typed rejection. */
function mappedAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn().catch((err: unknown) => Promise.reject(fromNativeError(err)));
  } catch (err) {
    return Promise.reject(fromNativeError(err));
  }
}

/**
 * The result with its engine times moved onto performance.now()'s clock: `offset` is the steady clock's
 * reading minus performance.now()'s, taken at load.
 */
function withEngineTimes(r: RawForwardResult, offset: number): ForwardResult {
  const t = r.engineTimes;
  const { engineTimes: _, ...rest } = r;
  if (!(t instanceof Float64Array) || t.length < 5 || !((t[0] as number) > 0)) return rest;
  const [began, begun, queued, device, ended] = t as unknown as [number, number, number, number, number];
  const times: EngineTimes = { beganAt: began - offset, endedAt: ended - offset };
  if (begun > 0) times.begunAt = begun - offset;
  if (queued > 0) times.queuedAt = queued - offset;
  if (device > 0) times.deviceDoneAt = device - offset;
  return { ...rest, engineTimes: times };
}

function wrapEngine(e: NativeEngine, offset: number): NativeEngine {
  const raw = e as unknown as {
    forward(...a: Parameters<NativeEngine['forward']>): Promise<RawForwardResult>;
  };
  return {
    forward: (tokens, typeIds, offsets, batchId) =>
      mappedAsync(() => raw.forward(tokens, typeIds, offsets, batchId)).then((r) =>
        withEngineTimes(r, offset),
      ),
    cancel: (batchId) => mapped(() => e.cancel(batchId)),
    warmup: () => mappedAsync(() => e.warmup()),
    startup: () => mappedAsync(() => e.startup?.() ?? Promise.resolve({})),
    info: () => mapped(() => e.info()),
    memory: () => mapped(() => e.memory()),
    dispose: () => mappedAsync(() => e.dispose()),
  };
}

/**
 * The raw addon with its error-raising entry points wrapped (other exports kept), and the engine
 * tuning the caller leaves unset taken from the environment (the one place that reads it).
 */
function wrapAddon(raw: NativeAddon): NativeAddon {
  return {
    ...raw,
    backends: (o) => mapped(() => raw.backends({ cpuIsa: withEnvTuning({ ...o }).cpuIsa })),
    loadEngine: (options) =>
      mappedAsync(() => raw.loadEngine(withKernelCache(withEnvTuning(options)))).then((e) =>
        wrapEngine(e, raw.steadyMs() - performance.now()),
      ),
    _gemmGflops: (n, threads, seconds, isaCap) =>
      mapped(() => raw._gemmGflops(n, threads, seconds, isaCap ?? withEnvTuning<EngineTuning>({}).cpuIsa)),
  };
}

export function native(): NativeAddon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  const load = require('node-gyp-build') as (dir: string) => NativeAddon;
  try {
    addon = wrapAddon(load(packageRoot()));
  } catch (err) {
    throw new BackendUnavailableError(
      `The mlx-rerank native addon could not be loaded (${(err as Error).message}). ` +
        'Reinstall the package so that it builds (needs python3, make and a C++17 compiler), ' +
        'or install a release that ships a prebuild for this platform.',
      { cause: err },
    );
  }
  return addon;
}
