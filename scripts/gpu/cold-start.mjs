#!/usr/bin/env node
// One process's start, timed: CrossEncoder.load (warm-up included), then the first and second predict of
// 32 pairs. Prints one JSON line. scripts/gpu/cold-start.sh runs it in fresh processes against a fresh
// and then a warm kernel cache (docs/latency-gpu.md, "Cold start").
//
//   node scripts/gpu/cold-start.mjs MODEL_DIR [--label NAME] [--attention varlen|flash] [--dtype float16]
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
  },
});
const [modelDir] = positionals;
if (!modelDir) {
  console.error('usage: node scripts/gpu/cold-start.mjs MODEL_DIR [--label NAME] [--attention varlen|flash]');
  process.exit(2);
}
const { CrossEncoder } = await import('../../dist/index.js');
const tImport = performance.now();
const model = await CrossEncoder.load(modelDir, {
  backend: 'mlx',
  device: 'gpu',
  dtype: values.dtype,
  ...(values.attention && { engine: { attention: values.attention } }),
});
const tLoad = performance.now();
const words = 'the of and to in is was for on that with as by at from his her an which'.split(' ');
const pairs = Array.from({ length: 32 }, (_, i) => [
  `query ${i} ${words[i % words.length]}`,
  Array.from({ length: 60 + (i % 40) }, (_, j) => words[(i * 7 + j) % words.length]).join(' '),
]);
await model.predict(pairs);
const tFirst = performance.now();
await model.predict(pairs);
const tSecond = performance.now();
console.log(
  JSON.stringify({
    label: values.label,
    attention: values.attention ?? 'default',
    mlxPtxCacheDir: process.env.MLX_PTX_CACHE_DIR ?? null,
    startupMs: Math.round(t0),
    importMs: Math.round(tImport - t0),
    loadMs: Math.round(model.info.loadMs),
    warmupMs: Math.round(model.info.warmupMs),
    loadWithoutWarmupMs: Math.round(model.info.loadMs - model.info.warmupMs),
    firstPredictMs: +(tFirst - tLoad).toFixed(1),
    secondPredictMs: +(tSecond - tFirst).toFixed(1),
    totalMs: Math.round(tSecond),
  }),
);
await model.dispose();
