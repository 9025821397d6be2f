/**
 * `--workers N`: N processes (node:cluster), each with its own engine, share one listening port; the
 * primary only supervises. So that any worker can answer for all of them, the primary merges:
 * `GET /metrics` is prom-client's cluster aggregation, and the dashboard's one-a-second samples are
 * merged (mergeSamples) and sent back to every worker. On SIGTERM/SIGINT the primary passes SIGTERM to
 * each worker, which drains as a single server does; it exits 0 when all of them did.
 */
import cluster, { type Worker } from 'node:cluster';
import client from 'prom-client';
import type { ServerHooks } from './app';
import type { SampleSource } from './dashboard';
import type { ServeOptions } from './index';
import { HISTORY_SECONDS, mergeSamples, type Sample, type ServerMetrics } from './metrics';

type Message =
  | { type: 'mlx-rerank:ready' }
  | { type: 'mlx-rerank:sample'; sample: Sample }
  | { type: 'mlx-rerank:merged'; sample: Sample }
  | { type: 'mlx-rerank:metrics-req'; id: number }
  | { type: 'mlx-rerank:metrics-res'; id: number; text?: string; error?: string };

function isMessage(m: unknown): m is Message {
  return (
    typeof m === 'object' && m !== null && String((m as { type?: unknown }).type).startsWith('mlx-rerank:')
  );
}

/** A worker's side: merged samples for its dashboard, cluster-wide text for its /metrics. */
export function workerHooks(): ServerHooks & { attach(metrics: ServerMetrics): void } {
  const history: Sample[] = [];
  const listeners = new Set<(s: Sample) => void>();
  const pending = new Map<number, (text: string | Error) => void>();
  let next = 0;
  process.on('message', (m: unknown) => {
    if (!isMessage(m)) return;
    if (m.type === 'mlx-rerank:merged') {
      history.push(m.sample);
      if (history.length > HISTORY_SECONDS) history.shift();
      for (const fn of listeners) fn(m.sample);
    } else if (m.type === 'mlx-rerank:metrics-res') {
      pending.get(m.id)?.(m.text ?? new Error(m.error ?? 'no metrics'));
      pending.delete(m.id);
    }
  });
  const samples: SampleSource = {
    history,
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  return {
    samples,
    metricsText: () =>
      new Promise<string>((resolve, reject) => {
        const id = next++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error('the cluster primary did not answer for metrics within 5 s'));
        }, 5000);
        pending.set(id, (r) => {
          clearTimeout(timer);
          r instanceof Error ? reject(r) : resolve(r);
        });
        process.send?.({ type: 'mlx-rerank:metrics-req', id });
      }),
    attach(metrics) {
      // The primary's aggregation asks every worker for this registry (prom-client's cluster protocol).
      new client.AggregatorRegistry();
      client.AggregatorRegistry.setRegistries([metrics.registry]);
      metrics.subscribe((sample) => process.send?.({ type: 'mlx-rerank:sample', sample }));
    },
  };
}

/** The primary: forks, merges, supervises; resolves with the exit code. */
export function runPrimary(o: ServeOptions): Promise<number> {
  const aggregator = new client.AggregatorRegistry();
  const latest = new Map<number, Sample>();
  const ready = new Set<number>();
  let stopping = false;
  let failed = false;
  const log = (msg: string, extra: Record<string, unknown> = {}) =>
    process.stdout.write(
      `${JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, msg, ...extra })}\n`,
    );

  const fork = (index: number): Worker => cluster.fork({ MLX_RERANK_WORKER_INDEX: String(index) });
  const index = new Map<number, number>();
  for (let i = 0; i < o.workers; i++) index.set(fork(i).id, i);

  cluster.on('message', (worker, m: unknown) => {
    if (!isMessage(m)) return;
    if (m.type === 'mlx-rerank:ready') ready.add(worker.id);
    else if (m.type === 'mlx-rerank:sample') latest.set(worker.id, m.sample);
    else if (m.type === 'mlx-rerank:metrics-req') {
      aggregator.clusterMetrics().then(
        (text) => worker.send({ type: 'mlx-rerank:metrics-res', id: m.id, text }),
        (err: Error) => worker.send({ type: 'mlx-rerank:metrics-res', id: m.id, error: err.message }),
      );
    }
  });

  const merge = setInterval(() => {
    const fresh = [...latest.values()].filter((s) => Date.now() - s.t < 2500);
    if (!fresh.length) return;
    const sample = mergeSamples(fresh);
    for (const w of Object.values(cluster.workers ?? {})) w?.send({ type: 'mlx-rerank:merged', sample });
  }, 1000);

  return new Promise<number>((resolve) => {
    cluster.on('exit', (worker, code, signal) => {
      latest.delete(worker.id);
      const i = index.get(worker.id) ?? 0;
      if (!stopping) {
        // A worker that never got ready (bad model, bad flags) would fail again: stop everything.
        if (!ready.has(worker.id)) {
          log('a worker failed before it was ready: stopping', { worker: i, code, signal });
          failed = true;
          stop();
        } else {
          log('a worker died: starting another', { worker: i, code, signal });
          index.set(fork(i).id, i);
        }
      } else if (code !== 0) failed = true;
      if (Object.keys(cluster.workers ?? {}).length === 0 && stopping) {
        clearInterval(merge);
        resolve(failed ? 1 : 0);
      }
    });
    const stop = () => {
      if (stopping) return;
      stopping = true;
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    log('primary started', { workers: o.workers });
  });
}
