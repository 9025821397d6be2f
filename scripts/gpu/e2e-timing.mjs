#!/usr/bin/env node
// End to end through the public API (tokenize, schedule, engine, scatter), side by side in one run, on
// the same pairs: predict() pairs/s and latency p50 / p99 at each batch size and client count, with
// tokenization on the JS thread (tokenizerThreads 0) and in N worker threads (issue 18). With one client,
// where a call's time goes, from the batches' engine timelines (drive()).
//
//   node scripts/gpu/e2e-timing.mjs MODEL_DIR PAIRS_JSONL [--threads 0,7] [--batches 32,512]
//        [--clients 1,16] [--seconds 4] [--backend auto] [--device auto] [--dtype float16]
//        [--max-batch-tokens N] [--early-batch-tokens N] [--cache-limit-bytes N] [--replicas N] [--dist DIR]
//        [--out e2e.json]
//
// MODEL_DIR is a model folder (e.g. `mlx-rerank synth --shape minilm-l6 --dtype float16`), PAIRS_JSONL a
// JSONL of {"query", "document"}. Needs dist/ (npm run prepare; --dist: another build of it, inside the
// package, to compare) and the built addon. Each scenario runs
// 1 s untimed, then `--seconds` timed; every configuration sends the same requests in the same order.
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string', default: `0,${Math.min(availableParallelism() - 1, 8)}` },
    batches: { type: 'string', default: '32,512' },
    clients: { type: 'string', default: '1,16' },
    seconds: { type: 'string', default: '4' },
    backend: { type: 'string', default: 'auto' },
    device: { type: 'string', default: 'auto' },
    dtype: { type: 'string' },
    'max-batch-tokens': { type: 'string' },
    'early-batch-tokens': { type: 'string' },
    'cache-limit-bytes': { type: 'string' },
    replicas: { type: 'string' },
    dist: { type: 'string' },
    out: { type: 'string' },
  },
});
const dist = values.dist ? pathToFileURL(resolve(values.dist, 'index.js')).href : '../../dist/index.js';
const { CrossEncoder, resolveModel } = await import(dist);
const [modelDir, pairsFile] = positionals;
if (!modelDir || !pairsFile) {
  console.error('usage: node scripts/gpu/e2e-timing.mjs MODEL_DIR PAIRS_JSONL [options]');
  process.exit(2);
}
const list = (s) => s.split(',').map(Number);
const seconds = Number(values.seconds);
const pairs = readFileSync(pairsFile, 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => {
    const r = JSON.parse(l);
    return [r.query, r.document];
  });
const files = await resolveModel(modelDir, { offline: true });

const at = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * q))];

const median = (xs) =>
  at(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

/**
 * `clients` clients, each sending requests of `batch` pairs back to back for `ms`. With one client every
 * engine batch between a call and its result is that call's, so each call's time splits (medians) into:
 * until its first batch left for the engine (tokenizing, scheduling), from then until the engine thread
 * began it, the engine (its batches, from the first's beginning to the last's result), until the JS
 * thread got that result, and until predict() resolved (scatter, promise); and the call at the median
 * latency is shown batch by batch.
 */
async function drive(ce, batch, clients, ms) {
  let next = 0;
  const lat = [];
  const calls = [];
  const batchEvents = [];
  const onBatch = (b) => batchEvents.push(b);
  if (clients === 1) ce.on('batch', onBatch);
  let done = 0;
  const t0 = performance.now();
  const client = async () => {
    while (performance.now() - t0 < ms) {
      const start = (next++ * batch) % Math.max(1, pairs.length - batch);
      const s = performance.now();
      await ce.predict(pairs.slice(start, start + batch));
      const e = performance.now();
      lat.push(e - s);
      calls.push([s, e]);
      done += batch;
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  const wall = performance.now() - t0;
  if (clients === 1) ce.off('batch', onBatch);
  lat.sort((a, b) => a - b);
  const r = { pairsPerS: (done * 1000) / wall, p50: at(lat, 0.5), p99: at(lat, 0.99), requests: lat.length };
  return clients === 1 ? { ...r, ...splitCalls(calls, batchEvents, r.p50) } : r;
}

/** The one-client split of each call's time (medians) and the median call's batches (see drive()). */
function splitCalls(calls, batchEvents, p50) {
  const parts = { toFirstBatch: [], toEngine: [], engine: [], toJs: [], afterLastBatch: [], batches: [] };
  let typical;
  let j = 0;
  for (const [s, e] of calls) {
    while (j < batchEvents.length && batchEvents[j].startedAt < s) j++;
    const mine = [];
    for (let k = j; k < batchEvents.length && batchEvents[k].endedAt <= e; k++) mine.push(batchEvents[k]);
    if (mine.length === 0) continue;
    const first = mine[0];
    const last = mine.reduce((a, b) => (b.endedAt > a.endedAt ? b : a));
    const began = first.engineTimes?.beganAt ?? first.startedAt;
    const engineEnded = last.engineTimes?.endedAt ?? last.endedAt;
    parts.toFirstBatch.push(first.startedAt - s);
    parts.toEngine.push(began - first.startedAt);
    parts.engine.push(engineEnded - began);
    parts.toJs.push(last.endedAt - engineEnded);
    parts.afterLastBatch.push(e - last.endedAt);
    parts.batches.push(mine.length);
    if (!typical || Math.abs(e - s - p50) < Math.abs(typical.ms - p50)) typical = { ms: e - s, s, mine };
  }
  const split = Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, v.length ? median(v) : 0]));
  const rel = (t) => (t === undefined ? '-' : `+${(t - typical.s).toFixed(2)}`);
  const timeline = typical?.mine.map(
    (b) =>
      `${b.pairs} pairs ${b.tokens} tokens: sent ${rel(b.startedAt)}, began ${rel(b.engineTimes?.beganAt)}, begun ${rel(b.engineTimes?.begunAt)}, queued ${rel(b.engineTimes?.queuedAt)}, device done ${rel(b.engineTimes?.deviceDoneAt)}, engine done ${rel(b.engineTimes?.endedAt)}, JS got it ${rel(b.endedAt)}`,
  );
  return { split, typical: typical && { ms: typical.ms, timeline } };
}

const results = [];
for (const threads of list(values.threads)) {
  const t0 = performance.now();
  const ce = await CrossEncoder.load(files, {
    backend: values.backend,
    device: values.device,
    ...(values.dtype && { dtype: values.dtype }),
    ...(values['max-batch-tokens'] && { maxBatchTokens: Number(values['max-batch-tokens']) }),
    ...(values['early-batch-tokens'] && { earlyBatchTokens: Number(values['early-batch-tokens']) }),
    ...(values['cache-limit-bytes'] && { cacheLimitBytes: Number(values['cache-limit-bytes']) }),
    ...(values.replicas && { engineReplicas: Number(values.replicas) }),
    tokenizerThreads: threads,
  });
  const i = ce.info;
  console.log(
    `tokenizerThreads ${i.tokenizerThreads}, engineReplicas ${i.engineReplicas}: ${i.backend} ${i.deviceName} ${i.dtype}, load ${(performance.now() - t0).toFixed(0)} ms (warm-up ${i.warmupMs.toFixed(0)} ms), maxBatchTokens ${ce.limits.maxBatchTokens}`,
  );
  for (const batch of list(values.batches)) {
    for (const clients of list(values.clients)) {
      await drive(ce, batch, clients, 1000);
      const before = ce.stats();
      const r = await drive(ce, batch, clients, seconds * 1000);
      const after = ce.stats();
      const batches = after.batches - before.batches;
      const meanBatch = (after.pairs - before.pairs) / Math.max(1, batches);
      // Padding the engine computed in this scenario (row buckets on a GPU): 1 - real tokens / slots.
      const tokens = after.tokens - before.tokens;
      const slots = after.computedSlots - before.computedSlots;
      const paddingPct = slots > 0 ? 100 * (1 - tokens / slots) : 0;
      const row = {
        threads: i.tokenizerThreads,
        batch,
        clients,
        ...r,
        engineBatches: batches,
        meanBatch,
        paddingPct,
      };
      results.push(row);
      console.log(
        `  batch ${String(batch).padStart(4)} x ${String(clients).padStart(2)} clients: ${r.pairsPerS.toFixed(0).padStart(7)} pairs/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms (${r.requests} requests, ${batches} engine batches of ${meanBatch.toFixed(0)} pairs, padding ${paddingPct.toFixed(2)}%)`,
      );
      if (r.split) {
        const { toFirstBatch, toEngine, engine, toJs, afterLastBatch, batches: n } = r.split;
        const f = (x) => x.toFixed(2);
        console.log(
          `      a call (medians, ms): ${f(toFirstBatch)} to its first batch, ${f(toEngine)} until the engine began it, ${f(engine)} in the engine (${n} batches), ${f(toJs)} until JS got the last, ${f(afterLastBatch)} to resolve`,
        );
        for (const line of r.typical?.timeline ?? []) console.log(`        ${line}`);
      }
    }
  }
  await ce.dispose();
}
console.log('\nratio (threads N / threads 0), pairs/s and p50:');
const base = results.filter((r) => r.threads === results[0].threads);
for (const r of results.filter((x) => x.threads !== results[0].threads)) {
  const b = base.find((x) => x.batch === r.batch && x.clients === r.clients);
  console.log(
    `  threads ${r.threads}, batch ${r.batch} x ${r.clients}: ${(r.pairsPerS / b.pairsPerS).toFixed(2)}x pairs/s, p50 ${(r.p50 / b.p50).toFixed(2)}x`,
  );
}
if (values.out) writeFileSync(values.out, `${JSON.stringify(results, null, 2)}\n`);
