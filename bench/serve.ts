/**
 * `npm run bench:serve`: what the HTTP server costs and how it holds under overload, measured side by
 * side in one run on one engine.
 *
 *   1. The library in-process: C concurrent callers `rank(query, 32 documents)`.
 *   2. `mlx-rerank serve` (a child process) under autocannon on loopback, C connections, the same
 *      request as `POST /rerank`: throughput vs (1) is the HTTP overhead; p50/p99. (1) and (2) take
 *      turns in 5 rounds of D/5 seconds each (both see the same background load) and report medians.
 *   3. The same server with `--max-queue-pairs` sized to one second of (2), offered twice its
 *      capacity (autocannon's overallRate) by 64 connections: 429s with Retry-After, no 5xx, no crash,
 *      RSS sampled each second.
 *
 * Options: --model (default synthetic:tiny) --backend (cpu) --threads --seconds D (10) --concurrency C (8)
 * (3 D seconds of overload) --out FILE (results/serve.md). Writes Markdown and prints it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { machine } from '../src/bench/bench';
import { pickModel } from '../src/bench/model';
import { median, percentile } from '../src/bench/stats';
import { CrossEncoder } from '../src/cross-encoder';
import { msMarcoPairs } from '../src/workload';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values: v } = parseArgs({
  options: {
    model: { type: 'string', default: 'synthetic:tiny' },
    backend: { type: 'string', default: 'cpu' },
    threads: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '8' },
    out: { type: 'string', default: 'results/serve.md' },
  },
});
const seconds = Number(v.seconds);
const concurrency = Number(v.concurrency);
const DOCS = 32;
const ROUNDS = 5;
const pairs = msMarcoPairs(DOCS, 7);
const query = pairs[0]?.[0] as string;
const texts = pairs.map((p) => p[1]);
const body = JSON.stringify({ query, texts });
const engineFlags = ['--backend', v.backend as string, ...(v.threads ? ['--threads', v.threads] : [])];

/** `concurrency` callers ranking for `ms`; pairs/s and the call latencies. */
async function librarySlice(ce: CrossEncoder, ms: number): Promise<{ pairsPerSec: number; lat: number[] }> {
  const lat: number[] = [];
  const t0 = performance.now();
  const end = t0 + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await ce.rank(query, texts);
        lat.push(performance.now() - s);
      }
    }),
  );
  return { pairsPerSec: (lat.length * DOCS * 1000) / (performance.now() - t0), lat };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startServer(model: string, extra: string[]): Promise<{ proc: ChildProcess; url: string }> {
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli.ts',
      'serve',
      '--model',
      model,
      '--port',
      String(port),
      ...engineFlags,
      ...extra,
    ],
    { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    if (proc.exitCode !== null) throw new Error('the server exited while starting');
    const ok = await fetch(`${url}/health`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return { proc, url };
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stop(proc: ChildProcess): Promise<number | null> {
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  proc.kill('SIGTERM');
  return exit;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function cannon(url: string, opts: Partial<autocannon.Options>): Promise<autocannon.Result> {
  return autocannon({
    url: `${url}/rerank`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    duration: seconds,
    ...opts,
  });
}

async function main(): Promise<void> {
  const loadStart = loadavg()[0] as number;
  const picked = await pickModel({ model: v.model, offline: true });
  const model = picked.source;
  // The library and the server take turns, ROUNDS times: on a busy machine the background load drifts,
  // and alternating slices exposes both to the same drift; the figures are medians over the rounds.
  const ce = await CrossEncoder.load(model, {
    backend: v.backend as 'cpu',
    ...(v.threads && { threads: Number(v.threads) }),
  });
  for (let i = 0; i < 20; i++) await ce.rank(query, texts); // warm, as the server is before it is ready
  const a = await startServer(model, ['--log-level', 'info']);
  await cannon(a.url, { duration: 2, connections: concurrency }); // warm the connections and JIT
  const slice = Math.max(2, Math.round(seconds / ROUNDS));
  const rounds: Array<{ lib: number; server: number; p50: number; p99: number; non2xx: number }> = [];
  const libLat: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    process.stderr.write(`round ${r + 1}/${ROUNDS}: library ${slice} s, server ${slice} s...\n`);
    const l = await librarySlice(ce, slice * 1000);
    libLat.push(...l.lat);
    const s = await cannon(a.url, { connections: concurrency, duration: slice });
    rounds.push({
      lib: l.pairsPerSec,
      server: s.requests.average * DOCS,
      p50: s.latency.p50,
      p99: s.latency.p99,
      non2xx: s.non2xx + s.errors,
    });
  }
  await ce.dispose();
  const codeA = await stop(a.proc);
  const lib = {
    pairsPerSec: median(rounds.map((r) => r.lib)),
    p50: percentile(libLat, 50),
    p99: percentile(libLat, 99),
  };
  const serverPairs = median(rounds.map((r) => r.server));
  const overheads = rounds.map((r) => 100 * (1 - r.server / r.lib));
  const overhead = median(overheads);

  // One second of work: autocannon's overallRate sends each connection's share in step, so arrivals come
  // in bursts; a queue shorter than the burst period would leave the engine idle between them.
  const queuePairs = Math.max(64, Math.round(serverPairs));
  const offered = Math.max(1, (2 * serverPairs) / DOCS);
  process.stderr.write(
    `overload: ${offered.toFixed(0)} req/s offered (2x), --max-queue-pairs ${queuePairs}...\n`,
  );
  const b = await startServer(model, ['--log-level', 'info', '--max-queue-pairs', String(queuePairs)]);
  const pid = b.proc.pid as number;
  const rss: number[] = [];
  const sampler = setInterval(() => rss.push(rssMiB(pid)), 1000);
  const retryAfter: string[] = [];
  const probe = setTimeout(
    async () => {
      const rs = await Promise.all(
        Array.from({ length: 16 }, () =>
          fetch(`${b.url}/rerank`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }),
        ),
      );
      for (const r of rs) if (r.status === 429) retryAfter.push(r.headers.get('retry-after') ?? 'missing');
    },
    (seconds * 1000) / 2,
  );
  const over = await cannon(b.url, { connections: 64, overallRate: offered, duration: seconds * 3 });
  clearInterval(sampler);
  clearTimeout(probe);
  const alive = b.proc.exitCode === null && (await fetch(`${b.url}/health`)).status === 200;
  const codeB = await stop(b.proc);

  const codes = Object.entries(over.statusCodeStats ?? {}).map(([c, s]) => [c, s.count ?? 0] as const);
  const count = (pred: (c: number) => boolean) =>
    codes.filter(([c]) => pred(Number(c))).reduce((x, [, n]) => x + n, 0);
  const m = machine();
  const f = (x: number, d = 1) => x.toFixed(d);
  const settled = rss.slice(Math.min(10, rss.length - 1)); // after the heap's warm-up
  const md = [
    '# mlx-rerank serve: HTTP overhead and overload',
    '',
    `**Machine:** ${m.cpu}, ${m.cores} cores (${cpus().length} visible), ${f(m.memoryGiB, 0)} GiB RAM, ${m.os} | Node ${process.version}`,
    `**Model:** ${picked.id}${picked.synthetic ? ' (synthetic: random weights)' : ''} | **Engine:** ${engineFlags.join(' ')} | **Request:** 1 query x ${DOCS} MS MARCO-like passages (POST /rerank)`,
    `**Load generator:** autocannon on loopback, in the bench process; the server is a child process (log level info, JSON to a pipe).`,
    `**1-minute load average, start/end:** ${f(loadStart, 2)} / ${f(loadavg()[0] as number, 2)} on ${m.cores} cores${Math.max(loadStart, loadavg()[0] as number) > m.cores ? ' — other processes competed for the CPU: read the ratios, not the absolute figures' : ''}`,
    '',
    '## Throughput: library in-process vs the server',
    '',
    '| | clients | pairs/s | requests/s | p50 ms | p99 ms |',
    '|---|---:|---:|---:|---:|---:|',
    `| library \`rank()\` in-process | ${concurrency} | ${f(lib.pairsPerSec, 0)} | ${f(lib.pairsPerSec / DOCS)} | ${f(lib.p50, 2)} | ${f(lib.p99, 2)} |`,
    `| \`mlx-rerank serve\` over HTTP | ${concurrency} | ${f(serverPairs, 0)} | ${f(serverPairs / DOCS)} | ${f(median(rounds.map((r) => r.p50)), 2)} | ${f(median(rounds.map((r) => r.p99)), 2)} |`,
    '',
    `**HTTP overhead: ${f(overhead)}%** of the library's throughput: the median of ${ROUNDS} alternating rounds of ${slice} s each (per round: ${overheads.map((o) => `${f(o)}%`).join(', ')}). Library: pairs/s the median of the rounds, p50/p99 over all its calls; server: medians of the rounds' autocannon figures. Server non-2xx or errors: ${rounds.reduce((x, r) => x + r.non2xx, 0)}; exit code after SIGTERM: ${codeA}.`,
    '',
    '## Overload: twice the capacity',
    '',
    `Offered ${f(offered)} requests/s (2x the ${f(serverPairs / DOCS)} measured) by 64 connections for ${seconds * 3} s; \`--max-queue-pairs ${queuePairs}\` (one second of work).`,
    '',
    '| status | count |',
    '|---|---:|',
    ...codes.map(([c, n]) => `| ${c} | ${n} |`),
    '',
    `- 2xx: ${count((c) => c < 300)}, 429: ${count((c) => c === 429)}, 5xx: ${count((c) => c >= 500)}; connection errors ${over.errors}, timeouts ${over.timeouts}`,
    `- Retry-After on 429s sampled mid-run: ${retryAfter.length ? [...new Set(retryAfter)].join(', ') : 'no 429 in the sample'}`,
    `- Served throughput under overload: ${f((over.requests.average * DOCS * count((c) => c < 300)) / Math.max(1, over.requests.total), 0)} pairs/s; p50 ${f(over.latency.p50, 1)} ms, p99 ${f(over.latency.p99, 1)} ms (all answers, 429s included)`,
    `- Server alive and ready after the run: ${alive}; exit code after SIGTERM: ${codeB}`,
    `- Server RSS (MiB) each second: ${rss.map((x) => f(x, 0)).join(' ')}; after the first 10 s: min ${f(Math.min(...settled), 0)}, max ${f(Math.max(...settled), 0)}`,
    '',
  ].join('\n');
  mkdirSync(dirname(v.out as string), { recursive: true });
  writeFileSync(v.out as string, md);
  process.stdout.write(md);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:serve failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exitCode = 1;
});
