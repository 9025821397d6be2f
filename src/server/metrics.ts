/**
 * What the server measures, two ways: Prometheus metrics (prom-client, `GET /metrics`) for scrapers and
 * autoscalers, and one `Sample` a second for the live dashboard (`GET /events`), kept for the last ten
 * minutes. Both are fed by the same hooks: every HTTP response, and the CrossEncoder's public `call`
 * and `batch` events; gauges read `CrossEncoder.stats()` when scraped.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import client from 'prom-client';
import type { CrossEncoder } from '../cross-encoder';
import type { BatchMetrics, CallMetrics } from '../metrics';
import { percentile } from '../metrics';

/** One second of the server, as the dashboard plots it. */
export interface Sample {
  /** End of the second, epoch ms. */
  t: number;
  /** Scoring requests answered per second (any status), and those that scored (2xx). */
  requests: number;
  ok: number;
  /** 429s and 5xx/424s per second. */
  rejected: number;
  errors: number;
  pairs: number;
  /** Latency of the scoring requests answered this second, ms (0 when none). */
  p50: number;
  p99: number;
  queueDepth: number;
  /** Mean sequences per engine batch this second. */
  batchSize: number;
  /** Engine padding this second: 100 * (1 - tokens / computed slots). */
  paddingPct: number;
  /** Mean per call this second, ms: tokenize + queue + inference = the call's wall time. */
  tokenizeMs: number;
  queueMs: number;
  inferenceMs: number;
  /** Engine compute time / wall time this second. */
  busyPct: number;
  engineBytes: number;
  rssBytes: number;
  cpuPct: number;
  eventLoopP99Ms: number;
}

export const HISTORY_SECONDS = 600;
const SCORING_ROUTES = new Set(['/rerank', '/predict', '/v1/rerank', '/v2/rerank']);

/** Per-second accumulators, reset by `ServerMetrics.tick`. */
class Second {
  requests = 0;
  ok = 0;
  rejected = 0;
  errors = 0;
  latencies: number[] = [];
  pairs = 0;
  calls = 0;
  tokenizeMs = 0;
  queueMs = 0;
  inferenceMs = 0;
  batches = 0;
  sequences = 0;
  tokens = 0;
  slots = 0;
  batchInferenceMs = 0;
}

export class ServerMetrics {
  readonly registry = new client.Registry();
  readonly history: Sample[] = [];
  private readonly listeners = new Set<(s: Sample) => void>();
  private ce: CrossEncoder | undefined;
  private second = new Second();
  private last = { at: performance.now(), cpu: process.cpuUsage() };
  private readonly loop = monitorEventLoopDelay({ resolution: 10 });
  private timer: NodeJS.Timeout | undefined;
  private readonly requests: client.Counter<'route' | 'method' | 'status'>;
  private readonly duration: client.Histogram<'route' | 'method' | 'status'>;
  private readonly pairs: client.Counter;
  private readonly batchSize: client.Histogram;
  private readonly padding: client.Histogram;
  private readonly tokenize: client.Histogram;
  private readonly queue: client.Histogram;
  private readonly inference: client.Histogram;
  private readonly batchInference: client.Histogram;
  private readonly onCall = (c: CallMetrics) => this.call(c);
  private readonly onBatch = (b: BatchMetrics) => this.batch(b);

  constructor(prefix = 'mlx_rerank_') {
    const r = this.registry;
    client.collectDefaultMetrics({ register: r }); // process CPU, RSS, heap, event-loop delay, GC
    const ms = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    this.requests = new client.Counter({
      name: `${prefix}http_requests_total`,
      help: 'HTTP requests answered, by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      registers: [r],
    });
    this.duration = new client.Histogram({
      name: `${prefix}http_request_duration_seconds`,
      help: 'HTTP request latency (first byte in to last byte out), by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      buckets: ms,
      registers: [r],
    });
    this.pairs = new client.Counter({
      name: `${prefix}pairs_total`,
      help: 'Pairs scored.',
      registers: [r],
    });
    this.batchSize = new client.Histogram({
      name: `${prefix}batch_size`,
      help: 'Sequences per engine batch.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: [r],
    });
    this.padding = new client.Histogram({
      name: `${prefix}batch_padding_ratio`,
      help: 'Share of the token slots an engine batch computed that were padding (0..1).',
      buckets: [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1],
      registers: [r],
    });
    const callHist = (name: string, help: string) =>
      new client.Histogram({ name: `${prefix}${name}`, help, buckets: ms, registers: [r] });
    this.tokenize = callHist('tokenize_seconds', 'Tokenizing time per scoring call.');
    this.queue = callHist(
      'queue_seconds',
      'Time a scoring call waited in the queue (not tokenizing or computing).',
    );
    this.inference = callHist('inference_seconds', 'Engine time of the batches that carried a scoring call.');
    this.batchInference = callHist('batch_inference_seconds', 'Engine compute time per batch.');
    const gauge = (name: string, help: string, read: (g: client.Gauge) => void, labelNames: string[] = []) =>
      new client.Gauge({
        name: `${prefix}${name}`,
        help,
        labelNames,
        registers: [r],
        collect() {
          read(this);
        },
      });
    gauge('queue_depth', 'Pairs waiting for the engine.', (g) => g.set(this.ce?.stats().queueDepth ?? 0));
    gauge('in_flight_batches', 'Batches in the engine.', (g) => g.set(this.ce?.stats().inFlightBatches ?? 0));
    gauge('engine_busy_ratio', 'Engine compute time / wall time since its first batch.', (g) =>
      g.set((this.ce?.stats().busyPct ?? 0) / 100),
    );
    gauge(
      'engine_memory_bytes',
      'Engine memory: active (in use), peak, cache (held for reuse).',
      (g) => {
        const m = this.ce?.stats().memory;
        g.set({ kind: 'active' }, m?.activeBytes ?? 0);
        g.set({ kind: 'peak' }, m?.peakBytes ?? 0);
        g.set({ kind: 'cache' }, m?.cacheBytes ?? 0);
      },
      ['kind'],
    );
    gauge('ready', '1 once the model is loaded and warm (and not shutting down).', (g) =>
      g.set(this.ready ? 1 : 0),
    );
  }

  ready = false;

  /** Starts listening to a loaded CrossEncoder. */
  attach(ce: CrossEncoder): void {
    this.ce = ce;
    ce.on('call', this.onCall).on('batch', this.onBatch);
  }

  detach(): void {
    this.ce?.off('call', this.onCall).off('batch', this.onBatch);
  }

  /** Samples once a second from now on (`history`, `subscribe`). */
  start(): void {
    this.loop.enable();
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.loop.disable();
  }

  subscribe(fn: (s: Sample) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Pairs per second over the last five samples (for Retry-After); 0 when unknown. */
  recentPairsPerSecond(): number {
    const recent = this.history.slice(-5);
    return recent.length ? recent.reduce((a, s) => a + s.pairs, 0) / recent.length : 0;
  }

  response(route: string, method: string, status: number, seconds: number): void {
    const labels = { route, method, status: String(status) };
    this.requests.inc(labels);
    this.duration.observe(labels, seconds);
    if (!SCORING_ROUTES.has(route)) return;
    const s = this.second;
    s.requests++;
    if (status < 300) {
      s.ok++;
      s.latencies.push(seconds * 1000);
    } else if (status === 429) s.rejected++;
    else if (status >= 424 && status !== 503) s.errors++;
  }

  private call(c: CallMetrics): void {
    this.pairs.inc(c.pairs);
    this.tokenize.observe(c.tokenizeMs / 1000);
    this.queue.observe(c.queueWaitMs / 1000);
    this.inference.observe(c.inferenceMs / 1000);
    const s = this.second;
    s.calls++;
    s.pairs += c.pairs;
    s.tokenizeMs += c.tokenizeMs;
    s.queueMs += c.queueWaitMs;
    s.inferenceMs += c.inferenceMs;
  }

  private batch(b: BatchMetrics): void {
    this.batchSize.observe(b.pairs);
    this.padding.observe(b.paddingPct / 100);
    this.batchInference.observe(b.inferenceMs / 1000);
    const s = this.second;
    s.batches++;
    s.sequences += b.pairs;
    s.tokens += b.tokens;
    s.slots += b.computedSlots;
    s.batchInferenceMs += b.inferenceMs;
  }

  /** Closes the current second into a Sample. */
  tick(): Sample {
    const now = performance.now();
    const cpu = process.cpuUsage();
    const wallMs = Math.max(1, now - this.last.at);
    const cpuMs = (cpu.user - this.last.cpu.user + cpu.system - this.last.cpu.system) / 1000;
    const s = this.second;
    const lat = Float64Array.from(s.latencies).sort();
    const stats = this.ce?.stats();
    const perCall = (v: number) => (s.calls ? v / s.calls : 0);
    const sample: Sample = {
      t: Date.now(),
      requests: (s.requests * 1000) / wallMs,
      ok: (s.ok * 1000) / wallMs,
      rejected: (s.rejected * 1000) / wallMs,
      errors: (s.errors * 1000) / wallMs,
      pairs: (s.pairs * 1000) / wallMs,
      p50: percentile(lat, 0.5),
      p99: percentile(lat, 0.99),
      queueDepth: stats?.queueDepth ?? 0,
      batchSize: s.batches ? s.sequences / s.batches : 0,
      paddingPct: s.slots ? 100 * (1 - s.tokens / s.slots) : 0,
      tokenizeMs: perCall(s.tokenizeMs),
      queueMs: perCall(s.queueMs),
      inferenceMs: perCall(s.inferenceMs),
      busyPct: Math.min(100, (100 * s.batchInferenceMs) / wallMs),
      engineBytes: stats?.memory.activeBytes ?? 0,
      rssBytes: process.memoryUsage.rss(),
      cpuPct: (100 * cpuMs) / wallMs,
      eventLoopP99Ms: this.loop.percentile(99) / 1e6,
    };
    this.loop.reset();
    this.second = new Second();
    this.last = { at: now, cpu };
    this.history.push(sample);
    if (this.history.length > HISTORY_SECONDS) this.history.shift();
    for (const fn of this.listeners) fn(sample);
    return sample;
  }
}

/**
 * One sample for several workers' samples of the same second: rates, queues and memory add up;
 * latency percentiles cannot be merged exactly without the raw values, so p50 is the request-weighted
 * mean of the workers' p50s and p99 the highest p99 (an upper bound); per-call times are weighted by
 * pairs; busy % is the mean over workers.
 */
export function mergeSamples(samples: readonly Sample[]): Sample {
  const sum = (k: keyof Sample) => samples.reduce((a, s) => a + s[k], 0);
  const weighted = (k: keyof Sample, w: keyof Sample) => {
    const total = sum(w);
    return total ? samples.reduce((a, s) => a + s[k] * s[w], 0) / total : 0;
  };
  return {
    t: Math.max(...samples.map((s) => s.t)),
    requests: sum('requests'),
    ok: sum('ok'),
    rejected: sum('rejected'),
    errors: sum('errors'),
    pairs: sum('pairs'),
    p50: weighted('p50', 'ok'),
    p99: Math.max(...samples.map((s) => s.p99)),
    queueDepth: sum('queueDepth'),
    batchSize: weighted('batchSize', 'pairs'),
    paddingPct: weighted('paddingPct', 'pairs'),
    tokenizeMs: weighted('tokenizeMs', 'pairs'),
    queueMs: weighted('queueMs', 'pairs'),
    inferenceMs: weighted('inferenceMs', 'pairs'),
    busyPct: sum('busyPct') / Math.max(1, samples.length),
    engineBytes: sum('engineBytes'),
    rssBytes: sum('rssBytes'),
    cpuPct: sum('cpuPct'),
    eventLoopP99Ms: Math.max(...samples.map((s) => s.eventLoopP99Ms)),
  };
}
