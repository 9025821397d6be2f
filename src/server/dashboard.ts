/**
 * The live dashboard: `GET /` is one static page (no build step) that draws uPlot charts, served from
 * the installed `uplot` package; `GET /events` is a server-sent-event stream: the header line and the
 * last minutes of samples on connect, then one `Sample` (src/server/metrics.ts) a second.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { FastifyInstance } from 'fastify';
import type { Sample } from './metrics';

/** Where the dashboard's samples come from: this process, or all workers merged (src/server/cluster.ts). */
export interface SampleSource {
  readonly history: readonly Sample[];
  subscribe(fn: (s: Sample) => void): () => void;
}

export interface DashboardHeader {
  model: string;
  engine: string;
  machine: string;
  workers: number;
  version: string;
}

function uplotFile(name: string): string {
  return readFileSync(createRequire(import.meta.url).resolve(`uplot/dist/${name}`), 'utf8');
}

export function registerDashboard(
  app: FastifyInstance,
  source: SampleSource,
  header: () => DashboardHeader,
): void {
  let uplot: { js: string; css: string } | undefined; // read once, on the first page load
  const lib = () => {
    uplot ??= { js: uplotFile('uPlot.iife.min.js'), css: uplotFile('uPlot.min.css') };
    return uplot;
  };
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE));
  app.get('/dashboard/uPlot.js', async (_req, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'max-age=86400').send(lib().js),
  );
  app.get('/dashboard/uPlot.css', async (_req, reply) =>
    reply.type('text/css; charset=utf-8').header('cache-control', 'max-age=86400').send(lib().css),
  );
  // Event streams never end by themselves: a shutdown ends them, or it would wait for them forever.
  const streams = new Set<import('node:http').ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of streams) res.end();
  });
  app.get('/events', (req, reply) => {
    reply.hijack();
    const res = reply.raw;
    streams.add(res);
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-request-id': req.id,
    });
    res.write(`event: init\ndata: ${JSON.stringify({ header: header(), history: source.history })}\n\n`);
    const off = source.subscribe((s) => res.write(`data: ${JSON.stringify(s)}\n\n`));
    // The header changes once (when the model has loaded): resend it with every tenth sample.
    const every = setInterval(
      () => res.write(`event: header\ndata: ${JSON.stringify(header())}\n\n`),
      10_000,
    );
    every.unref();
    const close = () => {
      streams.delete(res);
      off();
      clearInterval(every);
    };
    req.raw.on('close', close);
    res.on('error', close);
  });
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mlx-rerank serve</title>
<link rel="stylesheet" href="/dashboard/uPlot.css">
<style>
  :root { color-scheme: dark; --bg:#0f1419; --panel:#171d24; --line:#263040; --text:#d8dee6; --dim:#8a96a6; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; background:var(--bg); color:var(--text); }
  header { padding:12px 20px; border-bottom:1px solid var(--line); display:flex; flex-wrap:wrap; gap:6px 24px; align-items:baseline; }
  header h1 { font-size:16px; margin:0; font-weight:600; }
  header .meta { color:var(--dim); font-size:13px; }
  #status { margin-left:auto; font-size:13px; }
  #status::before { content:''; display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:6px; background:#d9534f; }
  #status.live::before { background:#3fb950; }
  .tiles { display:grid; grid-template-columns:repeat(auto-fill, minmax(150px, 1fr)); gap:10px; padding:14px 20px 4px; }
  .tile { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:8px 12px; }
  .tile .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
  .tile .k { color:var(--dim); font-size:12px; }
  .grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(520px, 1fr)); gap:14px; padding:14px 20px 20px; }
  .chart { background:var(--panel); border:1px solid var(--line); border-radius:6px; padding:8px 8px 2px; min-height:250px; }
  .chart h2 { font-size:13px; font-weight:600; margin:0 0 4px 6px; color:var(--text); }
  .u-legend { font-size:12px; color:var(--dim); }
</style>
</head>
<body>
<header>
  <h1>mlx-rerank serve</h1>
  <span class="meta" id="model">model: …</span>
  <span class="meta" id="engine"></span>
  <span class="meta" id="machine"></span>
  <span id="status">connecting</span>
</header>
<section class="tiles" id="tiles"></section>
<section class="grid" id="charts"></section>
<script src="/dashboard/uPlot.js"></script>
<script>
'use strict';
var WINDOW_S = 300;
var TILES = [
  ['ok', 'requests/s (2xx)', 1], ['pairs', 'pairs/s', 0], ['p50', 'latency p50 ms', 1], ['p99', 'latency p99 ms', 1],
  ['queueDepth', 'queue (pairs)', 0], ['busyPct', 'engine busy %', 0], ['rejected', '429/s', 1], ['errors', 'errors/s', 1],
  ['engineBytes', 'engine MiB', 0, 1048576], ['rssBytes', 'process RSS MiB', 0, 1048576]
];
var CHARTS = [
  { id: 'throughput', title: 'Throughput (per second)', series: [['pairs', 'pairs/s', '#58a6ff'], ['ok', 'requests/s', '#3fb950'], ['rejected', '429/s', '#d29922'], ['errors', 'errors/s', '#f85149']] },
  { id: 'latency', title: 'Request latency (ms)', series: [['p50', 'p50', '#58a6ff'], ['p99', 'p99', '#f0883e']] },
  { id: 'split', title: 'Where a call spends its time (ms, mean per call)', series: [['tokenizeMs', 'tokenize', '#a371f7'], ['queueMs', 'queue', '#d29922'], ['inferenceMs', 'inference', '#3fb950']] },
  { id: 'queue', title: 'Queue depth (pairs waiting)', series: [['queueDepth', 'queue', '#f0883e']] },
  { id: 'batch', title: 'Batch size (sequences) and padding %', series: [['batchSize', 'batch size', '#58a6ff'], ['paddingPct', 'padding %', '#db61a2']] },
  { id: 'busy', title: 'Engine busy %, process CPU %, event-loop p99 ms', series: [['busyPct', 'engine busy %', '#3fb950'], ['cpuPct', 'CPU %', '#58a6ff'], ['eventLoopP99Ms', 'event loop p99 ms', '#d29922']] },
  { id: 'memory', title: 'Memory (MiB)', series: [['engineBytes', 'engine', '#a371f7', 1048576], ['rssBytes', 'process RSS', '#58a6ff', 1048576]] }
];
var samples = [];
var plots = [];

function el(tag, cls, text) { var e = document.createElement(tag); if (cls) e.className = cls; if (text) e.textContent = text; return e; }

function setHeader(h) {
  document.getElementById('model').textContent = 'model: ' + h.model;
  document.getElementById('engine').textContent = h.engine ? 'engine: ' + h.engine + (h.workers > 1 ? ' × ' + h.workers + ' workers' : '') : '';
  document.getElementById('machine').textContent = h.machine;
  document.title = 'mlx-rerank · ' + h.model;
}

function buildTiles() {
  var root = document.getElementById('tiles');
  TILES.forEach(function (t) {
    var d = el('div', 'tile'); d.id = 'tile-' + t[0];
    d.appendChild(el('div', 'v', '–')); d.appendChild(el('div', 'k', t[1]));
    root.appendChild(d);
  });
}

function buildCharts() {
  var root = document.getElementById('charts');
  CHARTS.forEach(function (c) {
    var box = el('div', 'chart'); box.id = 'chart-' + c.id; box.dataset.points = '0';
    box.appendChild(el('h2', '', c.title));
    root.appendChild(box);
    var width = Math.max(300, box.clientWidth - 16);
    var opts = {
      width: width, height: 200,
      scales: { x: { time: true } },
      axes: [
        { stroke: '#8a96a6', grid: { stroke: '#263040' }, ticks: { stroke: '#263040' } },
        { stroke: '#8a96a6', grid: { stroke: '#263040' }, ticks: { stroke: '#263040' }, size: 60 }
      ],
      series: [{}].concat(c.series.map(function (s) { return { label: s[1], stroke: s[2], width: 1.5, points: { show: false } }; }))
    };
    plots.push({ def: c, box: box, plot: new uPlot(opts, [[]].concat(c.series.map(function () { return []; })), box) });
  });
  window.addEventListener('resize', function () {
    plots.forEach(function (p) { p.plot.setSize({ width: Math.max(300, p.box.clientWidth - 16), height: 200 }); });
  });
}

function fmt(v, digits) { return v >= 100 ? Math.round(v).toLocaleString() : v.toFixed(digits); }

function redraw() {
  var cut = Date.now() - WINDOW_S * 1000;
  while (samples.length && samples[0].t < cut) samples.shift();
  var xs = samples.map(function (s) { return s.t / 1000; });
  plots.forEach(function (p) {
    var data = [xs].concat(p.def.series.map(function (s) { var scale = s[3] || 1; return samples.map(function (x) { return x[s[0]] / scale; }); }));
    p.plot.setData(data);
    p.box.dataset.points = String(xs.length);
  });
  var last = samples[samples.length - 1];
  if (!last) return;
  TILES.forEach(function (t) {
    document.querySelector('#tile-' + t[0] + ' .v').textContent = fmt(last[t[0]] / (t[3] || 1), t[2]);
  });
}

function connect() {
  var status = document.getElementById('status');
  var es = new EventSource('/events');
  es.addEventListener('init', function (e) {
    var m = JSON.parse(e.data); setHeader(m.header); samples = m.history.slice(); redraw();
    status.className = 'live'; status.textContent = 'live';
  });
  es.addEventListener('header', function (e) { setHeader(JSON.parse(e.data)); });
  es.onmessage = function (e) { samples.push(JSON.parse(e.data)); redraw(); };
  es.onerror = function () { status.className = ''; status.textContent = 'reconnecting…'; };
}

buildTiles(); buildCharts(); connect();
</script>
</body>
</html>
`;
