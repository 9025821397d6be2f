#!/usr/bin/env node
// The cpu engine's dtypes x GEMM kernel sets, end to end, side by side in one run (plain node over
// dist/: runs where only the package build and the addon are present, as on the lent GPU machine's host).
//
//   node scripts/cpu-dtypes-bench.mjs [--threads N] [--pairs N] [--rounds N] [--contenders LIST]
//
// Pin it to the cores it may use (`taskset -c 0-1 ... --threads 2`). Contenders are dtype@cpuIsa (the
// engine option capping the instruction sets; empty = the best here, AMX where it runs): bfloat16@amx,
// bfloat16@avx512 (vdpbf16ps), bfloat16@avx512f (widened + FMA), int8@amx, int8@avx512 (512-bit
// VNNI), int8@avxvnni (256-bit VNNI; its float32 parts on AVX2). Each loaded engine's kernel is
// printed (info.deviceName); a contender whose kernel another contender already has is skipped. The MiniLM-L6 shape with seeded random weights (synthesizeModel), query-grouped
// MS MARCO-like pairs (~90 tokens: a 6-9 word query, a 55-75 word passage), batches of 32 through
// CrossEncoder.predict, every contender once a round in rotating order; medians over the rounds, and
// each contender's max |logit - float32| and mean per-query Spearman against float32 on the same pairs.
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CrossEncoder, synthesizeModel } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    pairs: { type: 'string', default: '320' },
    rounds: { type: 'string', default: '3' },
    contenders: {
      type: 'string',
      default: 'float32@,bfloat16@,int8@,bfloat16@avx512,bfloat16@avx512f,int8@avx512,int8@avxvnni',
    },
  },
});
const threads = Number(values.threads);
const perQuery = 10;
const nPairs = Math.ceil(Number(values.pairs) / perQuery) * perQuery;
const rounds = Number(values.rounds);

// Seeded words that are whole tokens of the uncased BERT vocabulary.
const WORDS = (
  'the of and to in is was for on as with by at from that this which be are or an it not have has ' +
  'had were can all one two first new time year people city state world water system school music ' +
  'film game team house family group life area number part day work night river church power body ' +
  'history war death court law health food market police party music light field army book air ' +
  'land money paper story fire heart road science energy disease blood plant animal cell human ' +
  'college street island village mountain ocean forest coast station bridge hospital museum'
).split(' ');
let seed = 1234567;
const rand = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 2 ** 32;
};
const sentence = (lo, hi) =>
  Array.from(
    { length: lo + Math.floor(rand() * (hi - lo + 1)) },
    () => WORDS[Math.floor(rand() * WORDS.length)],
  ).join(' ');
const pairs = [];
for (let q = 0; q < nPairs / perQuery; q++) {
  const query = sentence(6, 9);
  for (let p = 0; p < perQuery; p++) pairs.push([query, sentence(55, 75)]);
}

const dir = mkdtempSync(join(tmpdir(), 'cpu-dtypes-bench-'));
const files = await synthesizeModel({ shape: 'minilm-l6', outDir: dir, seed: 1 });
console.log(
  `machine: ${cpus()[0]?.model.trim()} x ${cpus().length} logical, node ${process.version}, load ${loadavg()[0].toFixed(1)}`,
);
console.log(
  `workload: ${nPairs} pairs (${nPairs / perQuery} queries x ${perQuery}), batch 32, ${threads} threads`,
);

const loaded = [];
const seen = new Set();
for (const c of values.contenders.split(',')) {
  const [dtype, isa] = c.split('@');
  try {
    const ce = await CrossEncoder.load(files, {
      backend: 'cpu',
      dtype,
      threads,
      maxBatchSize: 32,
      warmup: false,
      ...(isa ? { engine: { cpuIsa: isa } } : {}),
    });
    const kernels = `${dtype} ${ce.info.deviceName.replace(/ \(load check.*$/, '')}`;
    if (seen.has(kernels)) {
      console.log(`skip ${c}: the same kernels as another contender (${kernels})`);
      await ce.dispose();
      continue;
    }
    seen.add(kernels);
    const gemm = /GEMMs on ([^ ]+)/.exec(ce.info.deviceName)?.[1] ?? ce.info.deviceName.split(' ')[0];
    console.log(`load ${c}: ${ce.info.deviceName}`);
    loaded.push({ name: `${dtype}@${gemm}`, ce, rates: [], logits: null });
  } catch (e) {
    console.log(`skip ${c}: ${e.message}`);
  }
}

async function scoreAll(ce) {
  const out = new Float32Array(pairs.length);
  for (let i = 0; i < pairs.length; i += 32) out.set(await ce.predict(pairs.slice(i, i + 32)), i);
  return out;
}
for (const c of loaded) c.logits = await scoreAll(c.ce); // warm-up round, and the logits compared
for (let r = 0; r < rounds; r++) {
  const line = [];
  for (let j = 0; j < loaded.length; j++) {
    const c = loaded[(j + r) % loaded.length];
    const t0 = process.hrtime.bigint();
    await scoreAll(c.ce);
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    c.rates.push(nPairs / s);
    line.push(`${c.name} ${(nPairs / s).toFixed(1)}`);
  }
  console.log(`round ${r + 1}: ${line.join(', ')} pairs/s (load ${loadavg()[0].toFixed(1)})`);
}

const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ranks = (v) => {
  const idx = [...v.keys()].sort((a, b) => v[a] - v[b]);
  const r = new Array(v.length);
  idx.forEach((i, k) => {
    r[i] = k;
  });
  return r;
};
const spearman = (a, b) => {
  const ra = ranks(a);
  const rb = ranks(b);
  const n = a.length;
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (ra[i] - rb[i]) ** 2;
  return 1 - (6 * d2) / (n * (n * n - 1));
};
const f32 = loaded.find((c) => c.name.startsWith('float32'));
const base = f32 ? median(f32.rates) : Number.NaN;
console.log(`\nRESULT threads=${threads} pairs=${nPairs} rounds=${rounds}`);
for (const c of loaded) {
  const m = median(c.rates);
  let err = 0;
  let rho = 0;
  if (f32) {
    for (let i = 0; i < pairs.length; i++) err = Math.max(err, Math.abs(c.logits[i] - f32.logits[i]));
    for (let q = 0; q < pairs.length; q += perQuery)
      rho += spearman([...c.logits.slice(q, q + perQuery)], [...f32.logits.slice(q, q + perQuery)]);
    rho /= pairs.length / perQuery;
  }
  console.log(
    `RESULT ${c.name.padEnd(22)} ${m.toFixed(1).padStart(7)} pairs/s  ${(m / base).toFixed(2)}x float32  ` +
      `(rounds ${c.rates.map((x) => x.toFixed(1)).join(' ')}; max |logit - f32| ${err.toPrecision(3)}, Spearman ${rho.toFixed(4)})`,
  );
  await c.ce.dispose();
}
rmSync(dir, { recursive: true, force: true });
