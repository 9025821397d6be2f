#!/usr/bin/env node
// One process's start, timed: CrossEncoder.load (warm-up included) with the engine's breakdown of it
// (info.startup: weights, first forward, row-bucket sweep, kernels compiled or loaded from the cache),
// then the first and second predict of 32 pairs; with --steady, then the steady state right after load:
// requests of 32 and of 512 pairs of varied lengths (so that they meet many row buckets), one client,
// pairs/s, p50 and the first request's time. Prints one JSON line. scripts/gpu/cold-start.sh runs it in
// fresh processes against a fresh and then a warm kernel cache (docs/latency-gpu.md, "Cold start").
//
//   node scripts/gpu/cold-start.mjs MODEL_DIR [--label NAME] [--attention varlen|flash] [--dtype float16]
//        [--warmup-rows N] [--warmup-depth N] [--kernel-cache-dir DIR|none] [--steady]
//
// Needs dist/ (npm run prepare) and the addon built with MLX.
import { parseArgs } from 'node:util';

const t0 = performance.now(); // ms since the process started (performance.timeOrigin)
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    label: { type: 'string', default: '' },
    attention: { type: 'string' },
    dtype: { type: 'string', default: 'float16' },
    'warmup-rows': { type: 'string' },
    'warmup-depth': { type: 'string' },
    'kernel-cache-dir': { type: 'string' },
    steady: { type: 'boolean', default: false },
  },
});
const [modelDir] = positionals;
if (!modelDir) {
  console.error(
    'usage: node scripts/gpu/cold-start.mjs MODEL_DIR [--label NAME] [--attention varlen|flash] [--warmup-rows N] [--warmup-depth N] [--kernel-cache-dir DIR|none] [--steady]',
  );
  process.exit(2);
}
const engine = {
  ...(values.attention && { attention: values.attention }),
  ...(values['warmup-rows'] !== undefined && { warmupRows: Number(values['warmup-rows']) }),
  ...(values['warmup-depth'] !== undefined && { warmupDepth: Number(values['warmup-depth']) }),
  ...(values['kernel-cache-dir'] !== undefined && { kernelCacheDir: values['kernel-cache-dir'] }),
};
const { CrossEncoder } = await import('../../dist/index.js');
const tImport = performance.now();
const model = await CrossEncoder.load(modelDir, {
  backend: 'mlx',
  device: 'gpu',
  dtype: values.dtype,
  engine,
});
const tLoad = performance.now();
const words = 'the of and to in is was for on that with as by at from his her an which'.split(' ');
const pairs = Array.from({ length: 32 }, (_, i) => [
  `query ${i} ${words[i % words.length]}`,
  Array.from({ length: 60 + (i % 40) }, (_, j) => words[(i * 7 + j) % words.length]).join(' '),
]);
const scores = await model.predict(pairs);
const tFirst = performance.now();
await model.predict(pairs);
const tSecond = performance.now();

// A seeded generator, so that every process sends the same requests.
function lcg(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
// Requests of `batch` pairs of 20-200 words, one after another for `seconds`; the first one's time is
// also reported on its own (it meets whatever the warm-up left cold).
async function steady(batch, seconds, seed) {
  const r = lcg(seed);
  const request = () =>
    Array.from({ length: batch }, (_, i) => [
      `query ${i} ${words[Math.floor(r() * words.length)]}`,
      Array.from({ length: 20 + Math.floor(r() * 180) }, () => words[Math.floor(r() * words.length)]).join(
        ' ',
      ),
    ]);
  const latencies = [];
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) {
    const req = request();
    const t = performance.now();
    await model.predict(req);
    latencies.push(performance.now() - t);
    n += batch;
  }
  const elapsed = (performance.now() - start) / 1000;
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    pairsPerS: Math.round(n / elapsed),
    p50Ms: +sorted[Math.floor(sorted.length / 2)].toFixed(2),
    firstMs: +latencies[0].toFixed(1),
    maxMs: +sorted.at(-1).toFixed(1),
    requests: latencies.length,
  };
}
const steadyState = values.steady
  ? { batch32: await steady(32, 1.5, 32), batch512: await steady(512, 2.5, 512) }
  : undefined;

const round = (o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, +Number(v).toFixed(1)]));
console.log(
  JSON.stringify({
    label: values.label,
    attention: values.attention ?? 'default',
    engine,
    mlxPtxCacheDir: process.env.MLX_PTX_CACHE_DIR ?? null,
    startupMs: Math.round(t0),
    importMs: Math.round(tImport - t0),
    loadMs: Math.round(model.info.loadMs),
    warmupMs: Math.round(model.info.warmupMs),
    loadWithoutWarmupMs: Math.round(model.info.loadMs - model.info.warmupMs),
    firstPredictMs: +(tFirst - tLoad).toFixed(1),
    secondPredictMs: +(tSecond - tFirst).toFixed(1),
    totalMs: Math.round(tSecond),
    // The same 32 pairs in every process: the kernels loaded from the cache must give what NVRTC's give.
    scores: Array.from(scores.slice(0, 8), (v) => +v.toFixed(4)),
    startup: round(model.info.startup ?? {}),
    ...(steadyState && { steady: steadyState }),
  }),
);
await model.dispose();
