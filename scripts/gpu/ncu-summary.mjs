#!/usr/bin/env node
// Summarises an Nsight Compute per-kernel CSV of a few mlx engine forwards: kernels grouped by kind
// (GEMM, attention, fused elementwise, LayerNorm, ...), with launches and GPU time per forward, so that two
// profiles (e.g. the CUDA-core and the tensor-core attention kernel) can be set side by side.
//
//   e.g. ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel --csv \
//          node scripts/gpu/forward-timing.mjs MODEL_DIR PAIRS_JSONL --batch 32 --n 3 --no-warmup --forward-only \
//          > ncu-32.csv
//   node scripts/gpu/ncu-summary.mjs ncu-32.csv [--forwards N] [--kernels]
//
// The forward count comes from forward-timing.mjs's line "forward, ...: T1 T2 T3 ms" in the file (one time
// a forward), else from --forwards (default 1). ncu's per-kernel summary does not say which forward a
// launch belongs to, so one-time work of the first forward (weight copies) is spread over all of them:
// the "copy" kind is also left out of a second total for that reason. --kernels lists every row as well.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { forwards: { type: 'string' }, kernels: { type: 'boolean', default: false } },
});
if (positionals.length !== 1) {
  console.error('usage: node scripts/gpu/ncu-summary.mjs NCU_CSV [--forwards N] [--kernels]');
  process.exit(2);
}

// Kinds, first match wins. MLX's compiled (mx::compile) kernels are named after their graph: an
// upper-case letter and the fused ops (e.g. `mlx::Df2IBroadcastAB...AddGH_VVV_...`).
const KINDS = [
  ['attention', /attention/i],
  ['GEMM', /nvjet|gemm|cutlass|xmma|cublas/i],
  ['LayerNorm', /layer_norm|rms_norm/],
  ['fused elementwise (compiled)', /mlx::[A-Z]\w*(Broadcast|Add|Multiply)\w*_(strided|contiguous)/],
  ['elementwise', /mlx::(unary|binary|ternary)/],
  ['gather / scatter', /gather|scatter/],
  ['copy', /copy/],
  ['reduction / softmax', /reduce|softmax|scan/],
];
const kindOf = (name) => KINDS.find(([, re]) => re.test(name))?.[0] ?? 'other';

/** One CSV line (double-quoted fields, commas inside quotes) into its fields. */
function fields(line) {
  const out = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      if (quoted && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else quoted = !quoted;
    } else if (c === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

const num = (s) => Number(s.replaceAll(',', ''));
const lines = readFileSync(positionals[0], 'utf8').split(/\r?\n/);
const headerAt = lines.findIndex((l) => l.startsWith('"Process ID"') || l.startsWith('"ID"'));
if (headerAt < 0) {
  console.error(`${positionals[0]}: no ncu CSV header ("Process ID", ...) found`);
  process.exit(1);
}
const header = fields(lines[headerAt]);
const col = (name) => {
  const i = header.indexOf(name);
  if (i < 0) throw new Error(`${positionals[0]}: no column "${name}"`);
  return i;
};
const [cName, cGrid, cCalls, cMetric, cUnit, cAvg] = [
  'Kernel Name',
  'Grid Size',
  'Invocations',
  'Metric Name',
  'Metric Unit',
  'Average',
].map(col);
const toNs = { ns: 1, usecond: 1e3, us: 1e3, msecond: 1e6, ms: 1e6, second: 1e9, s: 1e9 };

const rows = [];
for (const line of lines.slice(headerAt + 1)) {
  if (!line.startsWith('"')) continue;
  const f = fields(line);
  if (f[cMetric] !== 'gpu__time_duration.sum') continue;
  const scale = toNs[f[cUnit]];
  if (scale === undefined) throw new Error(`unknown time unit "${f[cUnit]}"`);
  const calls = num(f[cCalls]);
  rows.push({ name: f[cName], grid: f[cGrid], calls, ns: calls * num(f[cAvg]) * scale });
}

const forwardLine = lines.slice(0, headerAt).find((l) => /^forward\b.*:\s*[\d.\s]+ms\s*$/.test(l));
const forwards = values.forwards
  ? Number(values.forwards)
  : forwardLine
    ? forwardLine.split(':').at(-1).trim().split(/\s+/).length - 1
    : 1;
if (!(forwards >= 1)) throw new Error(`bad forward count ${values.forwards}`);

const byKind = new Map();
for (const r of rows) {
  const k = kindOf(r.name);
  const s = byKind.get(k) ?? { calls: 0, ns: 0 };
  s.calls += r.calls;
  s.ns += r.ns;
  byKind.set(k, s);
}
const total = rows.reduce((a, r) => ({ calls: a.calls + r.calls, ns: a.ns + r.ns }), { calls: 0, ns: 0 });
const copy = byKind.get('copy') ?? { calls: 0, ns: 0 };
const us = (ns) => (ns / forwards / 1e3).toFixed(1);
const per = (calls) => (calls / forwards).toFixed(calls % forwards ? 1 : 0);

if (forwardLine) console.log(forwardLine.trim());
console.log(`${positionals[0]}: ${rows.length} kernel rows, ${forwards} forwards; figures are per forward\n`);
console.log('| kind | launches | GPU time (us) | share |');
console.log('| --- | ---: | ---: | ---: |');
for (const [k, s] of [...byKind].sort((a, b) => b[1].ns - a[1].ns)) {
  console.log(`| ${k} | ${per(s.calls)} | ${us(s.ns)} | ${((100 * s.ns) / total.ns).toFixed(1)}% |`);
}
console.log(`| **all kernels** | ${per(total.calls)} | ${us(total.ns)} | 100% |`);
console.log(`| all but copies | ${per(total.calls - copy.calls)} | ${us(total.ns - copy.ns)} | |`);

if (values.kernels) {
  console.log('\n| kernel | grid | launches (all forwards) | GPU time (us, all forwards) |');
  console.log('| --- | --- | ---: | ---: |');
  for (const r of [...rows].sort((a, b) => b.ns - a.ns)) {
    const short = r.name
      .replace(/^void /, '')
      .replace(/\(.*$/, '')
      .slice(0, 60);
    console.log(`| ${short} | ${r.grid} | ${r.calls} | ${(r.ns / 1e3).toFixed(1)} |`);
  }
}
