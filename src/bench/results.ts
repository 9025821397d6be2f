/** The bench's results as data: what the Markdown, the JSON and the charts are all written from. */
import type { EngineTuning } from '../types';
import type { Jitter } from './jitter';
import {
  type BatchRecord,
  mergeTicks,
  type RawRun,
  type RequestRecord,
  type Sample,
  timeSeries,
} from './runner';
import {
  type Bucket,
  latencyBuckets,
  PERCENTILE_METHOD,
  pearson,
  STD_METHOD,
  type Summary,
  summarize,
} from './stats';

export const SCHEMA = 'mlx-rerank-bench/1';

export const DASHBOARD_METRICS = [
  ['memoryMB', 'Device Memory (MB)'],
  ['busyPct', 'Device Busy (%)'],
  ['cpuPct', 'Process CPU (%)'],
  ['tokenizeMs', 'Tokenization (ms)'],
  ['inferenceMs', 'Inference (ms)'],
  ['queueWaitMs', 'Queue Wait (ms)'],
  ['paddingPct', 'Padding Waste (%)'],
] as const;
export type DashboardKey = (typeof DASHBOARD_METRICS)[number][0];

/** The NVML column and dashboard row: shown only for runs that sampled NVML (an engine on a GPU). */
export const GPU_UTIL_LABEL = 'GPU util (NVML, %)';

export const NVML_METHOD =
  "GPU util % = NVML's utilisation.gpu read at each sample: the share of NVML's own last sample period (1/6 s to 1 s, by GPU) during which a kernel ran on the GPU, any process's; a merged table interval shows the mean of its readings";

export interface PaddingSummary {
  batches: number;
  /** Measured: 1 - tokens / slots the engine computed, over all batches (token-weighted). */
  measuredPct: number;
  /** If every batch had been padded to its longest pair (what a dense padded engine computes). */
  ifPaddedPct: number;
}

export interface ConfigResult {
  batch: number;
  concurrency: number;
  pairs: number;
  requests: number;
  wallS: number;
  /** pairs / wall time of the whole config. */
  overallPairsPerSec: number;
  latency: Summary;
  throughput: Summary;
  buckets: Bucket[];
  correlation: number;
  padding: PaddingSummary;
  dashboard: Record<DashboardKey, Summary>;
  /** NVML's GPU utilisation (%) over the samples; only when the run sampled it. */
  gpuUtil?: Summary;
  /** Every sampler interval. */
  samples: Sample[];
  /** The same run in at most MAX_TABLE_ROWS longer intervals (whole multiples of the sample interval), for the Markdown table. */
  tableSamples: Sample[];
  requestLog: RequestRecord[];
  /** Set when the config stopped at its time budget before all its pairs were scored. */
  stoppedAtBudget?: { budgetS: number; plannedPairs: number };
}

export const MAX_TABLE_ROWS = 40;

export interface WarmupTimes {
  /** CrossEncoder.load: resolve, read, tokenizer, engine. */
  loadMs: number;
  /** CrossEncoder.warmup(). */
  warmupMs: number;
  /** The first request of `batch` pairs after warm-up, not counted in the figures. */
  firstCallMs: number;
  /** At most this many requests (2 s at most) of each configuration's batch size sent before it, not counted. */
  requestsPerConfig?: number;
}

/** Whether NVML could be read for an engine on a GPU: the device sampled, or why not. */
export type NvmlStatus =
  | { available: true; index: number; name: string }
  | { available: false; reason: string };

export interface EngineRun {
  label: string;
  requested: { backend: string; device: string; dtype?: string };
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  info?: {
    backend: string;
    device: string;
    deviceName: string;
    dtype: string;
    version: string;
    /** Tokenizer worker threads that ran (0: on the JS thread); absent in older results. */
    tokenizerThreads?: number;
    /** The engine tuning options given (LoadOptions.engine), when any. */
    tuning?: EngineTuning;
  };
  warmup?: WarmupTimes;
  /** Set for an engine that ran on a GPU only. */
  nvml?: NvmlStatus;
  /** Engine memory after the last configuration (MLX's own counters for the mlx engine), bytes. */
  memory?: { activeBytes: number; peakBytes: number; cacheBytes: number };
  configs: ConfigResult[];
  /** The same workload with the scheduler's length sorting turned off (a short extra run). */
  unsortedPadding?: PaddingSummary & { pairs: number; batch: number };
}

export interface ScenarioResult {
  schema: typeof SCHEMA;
  number: string;
  name: string;
  description: string;
  timestamp: string;
  model: { id: string; path?: string; synthetic: boolean; note?: string; weights: string };
  workload: { description: string; seed: number; pairsPerConfig: number };
  machine: {
    cpu: string;
    cores: number;
    memoryGiB: number;
    os: string;
    gpu: string;
    /** 1-minute load average when the scenario started and ended (other work competing for the cores). */
    loadAvg?: [number, number];
    /** How steadily the CPUs ran short work units before and after the engines ran (see jitter.ts). */
    jitter?: [Jitter, Jitter];
  };
  versions: { package: string; node: string; mlx: string; engines: Record<string, string> };
  method: Record<'percentile' | 'std' | 'throughput' | 'busy' | 'cpu' | 'memory' | 'samples', string> & {
    /** Only when an engine ran on a GPU. */
    nvml?: string;
  };
  sampleMs: number;
  runs: EngineRun[];
  notes: string[];
}

/** `gpu`: an engine ran on a GPU, so the report says how NVML's figure is read. */
export function methodNotes(sampleMs: number, gpu = false): ScenarioResult['method'] {
  return {
    percentile: PERCENTILE_METHOD,
    std: STD_METHOD,
    throughput:
      'per request: pairs in the request / its latency (pairs/s); overall: pairs scored / wall time of the config',
    busy: 'device busy % = time the engine spent computing batches / wall time of the interval (engine accounting, not a hardware counter)',
    cpu: 'process CPU % = CPU time of the whole process (JS thread + engine threads) / wall time; 100 = one core',
    memory:
      'device memory = engine active bytes after the latest batch: MLX active memory for the mlx engine, the engine allocation accounting for cpu (MB = 2^20 bytes)',
    samples: `one sample every ${sampleMs} ms of wall time; a sample covers the interval since the previous one`,
    ...(gpu ? { nvml: NVML_METHOD } : {}),
  };
}

export function paddingOf(batches: readonly BatchRecord[]): PaddingSummary {
  let tokens = 0;
  let slots = 0;
  let paddedSlots = 0;
  let paddedTokens = 0;
  for (const b of batches) {
    tokens += b.tokens;
    slots += b.computedSlots;
    if (Number.isFinite(b.paddingIfPaddedPct) && b.paddingIfPaddedPct < 100) {
      paddedTokens += b.tokens;
      paddedSlots += b.tokens / (1 - b.paddingIfPaddedPct / 100);
    }
  }
  return {
    batches: batches.length,
    measuredPct: slots > 0 ? (1 - tokens / slots) * 100 : Number.NaN,
    ifPaddedPct: paddedSlots > 0 ? (1 - paddedTokens / paddedSlots) * 100 : Number.NaN,
  };
}

function gpuUtilOf(samples: readonly Sample[]): Pick<ConfigResult, 'gpuUtil'> {
  if (!samples.some((x) => x.gpuUtilPct !== undefined)) return {};
  return { gpuUtil: summarize(samples.map((x) => x.gpuUtilPct ?? Number.NaN)) };
}

export function analyzeRun(raw: RawRun): ConfigResult {
  const lat = raw.requests.map((r) => r.latencyMs);
  const tp = raw.requests.map((r) => r.throughput);
  const pairs = raw.requests.reduce((s, r) => s + r.pairs, 0);
  const samples = timeSeries(raw);
  const stride = Math.ceil(raw.ticks.length / MAX_TABLE_ROWS);
  const dashboard = {} as Record<DashboardKey, Summary>;
  for (const [key] of DASHBOARD_METRICS) {
    // Per-batch timings are summarised over batches, the rest over samples.
    const perBatch: Partial<Record<DashboardKey, (b: BatchRecord) => number>> = {
      tokenizeMs: (b) => b.tokenizeMs,
      inferenceMs: (b) => b.inferenceMs,
      queueWaitMs: (b) => b.queueWaitMs,
      paddingPct: (b) => b.paddingPct,
    };
    const f = perBatch[key];
    dashboard[key] = f ? summarize(raw.batches.map(f)) : summarize(samples.map((s) => s[key]));
  }
  return {
    batch: raw.config.batch,
    concurrency: raw.config.concurrency,
    pairs,
    requests: raw.requests.length,
    wallS: raw.wallMs / 1000,
    overallPairsPerSec: raw.wallMs > 0 ? (pairs * 1000) / raw.wallMs : Number.NaN,
    latency: summarize(lat),
    throughput: summarize(tp),
    buckets: latencyBuckets(lat, tp),
    correlation: pearson(lat, tp),
    padding: paddingOf(raw.batches),
    dashboard,
    ...gpuUtilOf(samples),
    samples,
    tableSamples: stride > 1 ? timeSeries({ ...raw, ticks: mergeTicks(raw.ticks, stride) }) : samples,
    requestLog: raw.requests,
    ...(pairs < raw.config.pairs && raw.config.maxSeconds
      ? { stoppedAtBudget: { budgetS: raw.config.maxSeconds, plannedPairs: raw.config.pairs } }
      : {}),
  };
}
