/**
 * Runs one bench configuration: `concurrency` clients each send requests of `batch` pairs until
 * `pairs` pairs are scored, while a sampler records process CPU (and NVML's GPU utilisation, for an
 * engine on an NVIDIA GPU) at a fixed interval. Everything else in the time series (latency,
 * throughput, memory, busy %, per-batch timings) is derived afterwards from the request and batch
 * records, so that the derivation is a pure function the tests can check.
 */
import { performance } from 'node:perf_hooks';
import type { BatchMetrics } from '../metrics';
import { overlap, requestThroughput } from './stats';

export type Pair = [string, string];

/** Pairs of request i (0-based): `batch` consecutive pairs, cycling over the workload. */
export function requestPairs(workload: readonly Pair[], index: number, batch: number, total: number): Pair[] {
  const start = index * batch;
  const n = Math.min(batch, total - start);
  const out: Pair[] = new Array(n);
  for (let k = 0; k < n; k++) out[k] = workload[(start + k) % workload.length] as Pair;
  return out;
}

/** The slice of CrossEncoder the runner drives. */
export interface Scorer {
  predict(pairs: Pair[], opts?: { signal?: AbortSignal }): Promise<unknown>;
}

export interface RequestRecord {
  index: number;
  client: number;
  pairs: number;
  /** ms since the run started. */
  startMs: number;
  endMs: number;
  latencyMs: number;
  /** pairs / latency, pairs per second. */
  throughput: number;
}

export interface BatchRecord {
  /** ms since the run started, when the batch's metrics arrived (the batch had just finished). */
  atMs: number;
  pairs: number;
  tokens: number;
  computedSlots: number;
  paddingPct: number;
  paddingIfPaddedPct: number;
  tokenizeMs: number;
  queueWaitMs: number;
  inferenceMs: number;
  activeBytes: number;
  peakBytes: number;
}

export interface Tick {
  /** ms since the run started. */
  tMs: number;
  /** process.cpuUsage() user + system, microseconds, cumulative since the run started. */
  cpuMicros: number;
  /** NVML's GPU utilisation (%) read at this tick; absent when not sampled, NaN when a read failed. */
  gpuUtilPct?: number;
}

export interface Sample {
  index: number;
  /** End of the interval, seconds since the run started. */
  tS: number;
  memoryMB: number;
  busyPct: number;
  /** NVML's GPU utilisation (%) at the end of the interval; present only when the run sampled it. */
  gpuUtilPct?: number;
  cpuPct: number;
  latencyMs: number;
  throughput: number;
  tokenizeMs: number;
  inferenceMs: number;
  queueWaitMs: number;
  paddingPct: number;
}

export interface RunConfig {
  batch: number;
  concurrency: number;
  pairs: number;
  sampleMs: number;
  /** Time budget: no new request starts after this many seconds (0 or absent: none). */
  maxSeconds?: number;
}

export interface RawRun {
  config: RunConfig;
  wallMs: number;
  requests: RequestRecord[];
  batches: BatchRecord[];
  ticks: Tick[];
  /** Engine memory (bytes) just before the run, for samples before the first batch. */
  baselineBytes: number;
}

/** Turns the CrossEncoder's batch events into records; `attach` points it at the current run. */
export class BatchSink {
  private target: BatchRecord[] | undefined;
  private t0 = 0;
  lastActiveBytes = 0;
  lastPeakBytes = 0;

  attach(target: BatchRecord[] | undefined, t0: number): void {
    this.target = target;
    this.t0 = t0;
  }

  readonly onBatch = (m: BatchMetrics): void => {
    const active = m.memory.activeBytes;
    this.lastActiveBytes = active;
    this.lastPeakBytes = Math.max(this.lastPeakBytes, m.memory.peakBytes);
    this.target?.push({
      atMs: m.endedAt - this.t0,
      pairs: m.pairs,
      tokens: m.tokens,
      computedSlots: m.computedSlots,
      // Measured waste from the engine's own slot count, so it does not depend on how the
      // scheduler rounds its percentage.
      paddingPct: m.computedSlots > 0 ? (1 - m.tokens / m.computedSlots) * 100 : Number.NaN,
      paddingIfPaddedPct: m.paddingIfPaddedPct,
      tokenizeMs: m.tokenizeMs,
      queueWaitMs: m.queueWaitMs,
      inferenceMs: m.inferenceMs,
      activeBytes: active,
      peakBytes: m.memory.peakBytes,
    });
  };
}

export type Progress = (done: number, total: number) => void;

/** Reads the GPU utilisation (%) at a tick; NaN when the read failed. */
export type GpuSampler = () => number;

export async function runConfig(
  scorer: Scorer,
  sink: BatchSink,
  workload: readonly Pair[],
  config: RunConfig,
  progress?: Progress,
  sampleGpu?: GpuSampler,
): Promise<RawRun> {
  const totalRequests = Math.ceil(config.pairs / config.batch);
  const requests: RequestRecord[] = [];
  const batches: BatchRecord[] = [];
  const ticks: Tick[] = [];
  const baselineBytes = sink.lastActiveBytes;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const tick = (): void => {
    const c = process.cpuUsage(cpu0);
    const gpu = sampleGpu ? { gpuUtilPct: sampleGpu() } : {};
    ticks.push({ tMs: performance.now() - t0, cpuMicros: c.user + c.system, ...gpu });
  };
  sink.attach(batches, t0);
  const timer = setInterval(tick, config.sampleMs);
  let next = 0;
  let done = 0;
  const deadline = config.maxSeconds ? t0 + config.maxSeconds * 1000 : Number.POSITIVE_INFINITY;
  const client = async (id: number): Promise<void> => {
    while (next < totalRequests && performance.now() < deadline) {
      const index = next++;
      const pairs = requestPairs(workload, index, config.batch, config.pairs);
      const start = performance.now();
      await scorer.predict(pairs);
      const end = performance.now();
      const latencyMs = end - start;
      requests.push({
        index,
        client: id,
        pairs: pairs.length,
        startMs: start - t0,
        endMs: end - t0,
        latencyMs,
        throughput: requestThroughput(pairs.length, latencyMs),
      });
      progress?.(++done, totalRequests);
    }
  };
  try {
    await Promise.all(Array.from({ length: config.concurrency }, (_, i) => client(i)));
  } finally {
    clearInterval(timer);
    sink.attach(undefined, t0);
  }
  tick();
  const wallMs = performance.now() - t0;
  requests.sort((a, b) => a.index - b.index);
  return { config, wallMs, requests, batches, ticks, baselineBytes };
}

const NaN_ = Number.NaN;

function mean(xs: number[]): number {
  if (xs.length === 0) return NaN_;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/**
 * The time series: one sample per sampler tick, covering (previous tick, this tick].
 * - memory: the engine's active bytes after the last batch finished by then (MB = 2^20 bytes);
 * - busy %: the engine's inference time inside the interval / the interval (each batch occupies
 *   [finish - inferenceMs, finish]), i.e. engine compute time over wall time, not a hardware counter;
 * - CPU %: process CPU time (all threads) / wall time, 100 = one core;
 * - GPU util %: NVML's reading at the tick, carried as is (only when the ticks have one);
 * - latency: mean of the requests that finished in the interval; throughput: pairs of those
 *   requests / interval length; tokenize, inference, queue wait, padding: means over the batches
 *   that finished in the interval. NaN (shown as "-") when nothing finished in an interval.
 */
export function timeSeries(run: Pick<RawRun, 'requests' | 'batches' | 'ticks' | 'baselineBytes'>): Sample[] {
  const samples: Sample[] = [];
  let prevT = 0;
  let prevCpu = 0;
  let mem = run.baselineBytes;
  const batches = [...run.batches].sort((a, b) => a.atMs - b.atMs);
  let bi = 0;
  for (const tk of run.ticks) {
    const dt = tk.tMs - prevT;
    if (dt <= 0) continue;
    const inBatches: BatchRecord[] = [];
    while (bi < batches.length && (batches[bi] as BatchRecord).atMs <= tk.tMs) {
      const b = batches[bi++] as BatchRecord;
      inBatches.push(b);
      mem = b.activeBytes;
    }
    let busy = 0;
    for (const b of batches) busy += overlap(b.atMs - b.inferenceMs, b.atMs, prevT, tk.tMs);
    const done = run.requests.filter((r) => r.endMs > prevT && r.endMs <= tk.tMs);
    const pairsDone = done.reduce((s, r) => s + r.pairs, 0);
    samples.push({
      index: samples.length,
      tS: tk.tMs / 1000,
      memoryMB: mem / 2 ** 20,
      busyPct: Math.min(100, (busy / dt) * 100),
      ...(tk.gpuUtilPct !== undefined ? { gpuUtilPct: tk.gpuUtilPct } : {}),
      cpuPct: ((tk.cpuMicros - prevCpu) / 1000 / dt) * 100,
      latencyMs: mean(done.map((r) => r.latencyMs)),
      throughput: (pairsDone * 1000) / dt,
      tokenizeMs: mean(inBatches.map((b) => b.tokenizeMs)),
      inferenceMs: mean(inBatches.map((b) => b.inferenceMs)),
      queueWaitMs: mean(inBatches.map((b) => b.queueWaitMs)),
      paddingPct: mean(inBatches.map((b) => b.paddingPct)),
    });
    prevT = tk.tMs;
    prevCpu = tk.cpuMicros;
  }
  return samples;
}

/**
 * Every `stride`-th tick (and the last), for a coarser time series. CPU time is cumulative, so the
 * kept tick already covers its group; NVML readings are point readings, so the kept tick gets the
 * mean of its group's finite readings (NaN if none).
 */
export function mergeTicks(ticks: readonly Tick[], stride: number): Tick[] {
  const out: Tick[] = [];
  let group: number[] = [];
  ticks.forEach((tk, i) => {
    if (tk.gpuUtilPct !== undefined && Number.isFinite(tk.gpuUtilPct)) group.push(tk.gpuUtilPct);
    if ((i + 1) % stride !== 0 && i !== ticks.length - 1) return;
    out.push(tk.gpuUtilPct === undefined ? tk : { ...tk, gpuUtilPct: mean(group) });
    group = [];
  });
  return out;
}
