#!/usr/bin/env node
// End to end through the public API (tokenize, schedule, engine, scatter), side by side in one run, on
// the same pairs: predict() pairs/s and latency p50 / p99 at each batch size and client count, with
// tokenization on the JS thread (tokenizerThreads 0) and in N worker threads (issue 18). With one client,
// where a call's time goes: until its first engine batch, the engine, and after (drive()).
//
//   node scripts/gpu/e2e-timing.mjs MODEL_DIR PAIRS_JSONL [--threads 0,7] [--batches 32,512]
//        [--clients 1,16] [--seconds 4] [--backend auto] [--device auto] [--dtype float16]
//        [--max-batch-tokens N] [--early-batch-tokens N] [--out e2e.json]
//
// MODEL_DIR is a model folder (e.g. `mlx-rerank synth --shape minilm-l6 --dtype float16`), PAIRS_JSONL a
// JSONL of {"query", "document"}. Needs dist/ (npm run prepare) and the built addon. Each scenario runs
// 1 s untimed, then `--seconds` timed; every configuration sends the same requests in the same order.
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { CrossEncoder, resolveModel } from '../../dist/index.js';

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
    out: { type: 'string' },
  },
});
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
 * until its first batch left for the engine (tokenizing, scheduling), from then until its last batch
 * came back (the engine, `batches` of them), and from then until predict() resolved (scatter, promise).
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
  if (clients !== 1) return r;
  const split = { toFirstBatch: [], engine: [], afterLastBatch: [], batches: [] };
  for (const [s, e] of calls) {
    const mine = batchEvents.filter((b) => b.startedAt >= s && b.endedAt <= e);
    if (mine.length === 0) continue;
    const first = Math.min(...mine.map((b) => b.startedAt));
    const last = Math.max(...mine.map((b) => b.endedAt));
    split.toFirstBatch.push(first - s);
    split.engine.push(last - first);
    split.afterLastBatch.push(e - last);
    split.batches.push(mine.length);
  }
  return { ...r, split: Object.fromEntries(Object.entries(split).map(([k, v]) => [k, median(v)])) };
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
    tokenizerThreads: threads,
  });
  const i = ce.info;
  console.log(
    `tokenizerThreads ${i.tokenizerThreads}: ${i.backend} ${i.deviceName} ${i.dtype}, load ${(performance.now() - t0).toFixed(0)} ms (warm-up ${i.warmupMs.toFixed(0)} ms), maxBatchTokens ${ce.limits.maxBatchTokens}`,
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
        const { toFirstBatch, engine, afterLastBatch, batches: n } = r.split;
        console.log(
          `      a call (medians): ${toFirstBatch.toFixed(2)} ms to its first batch, ${engine.toFixed(2)} ms from then to its last batch's result (${n} batches), ${afterLastBatch.toFixed(2)} ms to resolve`,
        );
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
