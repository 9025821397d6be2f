#!/usr/bin/env node
// Runs the golden fixtures (test/fixtures/models: Python transformers, float64 logits) through one
// engine of the built addon and prints the error, with no test runner: for machines that have only
// node and the addon (a GPU box), and for people.
//
//   node scripts/check-fixtures.mjs --backend mlx --device gpu --dtype float16 [--tol 3e-2] [--json FILE]
//        [--attention varlen|coarse|fine]   (the mlx engine's layout; docs/engine-options.md)
//
// Tolerances (issues 2 and 5): float32 arithmetic 1e-4 max abs error; 16-bit arithmetic 3e-2 and the
// same ranking of every fixture's pairs (Spearman >= 0.999). Exits 1 when a fixture misses them.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModelSpec } from '../dist/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'cpu' },
    device: { type: 'string', default: 'auto' },
    dtype: { type: 'string' },
    tol: { type: 'string' },
    json: { type: 'string' },
    attention: { type: 'string' },
  },
});
const addon = createRequire(import.meta.url)('node-gyp-build')(root);

/** Spearman's rank correlation (ties get their mean rank). */
function spearman(a, b) {
  const rank = (v) => {
    const idx = v.map((x, i) => [x, i]).sort((p, q) => p[0] - q[0]);
    const r = new Array(v.length);
    for (let i = 0; i < idx.length; ) {
      let j = i;
      while (j + 1 < idx.length && idx[j + 1][0] === idx[i][0]) j++;
      for (let k = i; k <= j; k++) r[idx[k][1]] = (i + j) / 2;
      i = j + 1;
    }
    return r;
  };
  const ra = rank(a);
  const rb = rank(b);
  const mean = (ra.length - 1) / 2;
  let num = 0;
  let da = 0;
  let db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - mean) * (rb[i] - mean);
    da += (ra[i] - mean) ** 2;
    db += (rb[i] - mean) ** 2;
  }
  return num / Math.sqrt(da * db);
}

async function checkOne(dir, storage) {
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8'));
  // config.json -> ModelSpec as the package reads it (dist/, built by npm install).
  const spec = await loadModelSpec({ config: join(dir, 'config.json') });
  const engine = await addon.loadEngine({
    backend: args.backend,
    device: args.device,
    dtype: args.dtype,
    ...(args.attention && { attention: args.attention }),
    weights: [join(dir, storage, 'model.safetensors')],
    spec,
  });
  try {
    const pairs = expected.pairs;
    const offsets = new Int32Array(pairs.length + 1);
    pairs.forEach((p, i) => {
      offsets[i + 1] = offsets[i] + p.ids.length;
    });
    const tokens = new Int32Array(pairs.flatMap((p) => p.ids));
    const typeIds = new Int32Array(pairs.flatMap((p) => p.typeIds));
    const t0 = performance.now();
    const out = await engine.forward(tokens, typeIds, offsets);
    const ms = performance.now() - t0;
    const want = expected.logits[storage];
    let maxErr = 0;
    let minRho = 1;
    for (let l = 0; l < spec.numLabels; l++) {
      const got = pairs.map((_, i) => out.logits[i * spec.numLabels + l]);
      const ref = want.map((row) => row[l]);
      got.forEach((g, i) => {
        maxErr = Math.max(maxErr, Number.isFinite(g) ? Math.abs(g - ref[i]) : Number.POSITIVE_INFINITY);
      });
      minRho = Math.min(minRho, spearman(got, ref));
    }
    return { model: dir.split('/').pop(), storage, ...engine.info(), maxErr, spearman: minRho, ms };
  } finally {
    await engine.dispose();
  }
}

const fixtures = join(root, 'test', 'fixtures', 'models');
const results = [];
for (const name of readdirSync(fixtures).sort()) {
  for (const storage of ['float32', 'float16', 'bfloat16']) {
    results.push(await checkOne(join(fixtures, name), storage));
  }
}
let failed = 0;
for (const r of results) {
  const sixteen = r.dtype !== 'float32';
  const tol = Number(args.tol ?? (sixteen ? 3e-2 : 1e-4));
  const ok = r.maxErr <= tol && (!sixteen || r.spearman >= 0.999);
  if (!ok) failed++;
  console.log(
    `${ok ? 'ok  ' : 'FAIL'} ${r.model.padEnd(14)} weights ${r.storage.padEnd(8)} ${r.backend}/${r.device} ` +
      `${r.dtype.padEnd(8)} max abs err ${r.maxErr.toExponential(2)} (tol ${tol.toExponential(0)}) ` +
      `spearman ${r.spearman.toFixed(5)} ${r.ms.toFixed(1)} ms  [${r.deviceName}]`,
  );
}
if (args.json) writeFileSync(args.json, JSON.stringify(results, null, 1));
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
