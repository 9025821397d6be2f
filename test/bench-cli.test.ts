/**
 * `mlx-rerank bench` end to end, as a user runs it (a child process through tsx), on the tiny
 * synthetic shape with few pairs: the files it writes, their arithmetic against the request log,
 * engines that are not there, and bad arguments.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ScenarioResult } from '../src/bench/results';
import { parsePairsText } from '../src/bench/workload';
import { native } from '../src/native';
import { synthesizeModel } from '../src/synth';

const root = new URL('..', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'bench-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

describe('mlx-rerank bench', () => {
  it('runs a grid on the tiny synthetic model and writes Markdown, JSON and SVG', () => {
    const out = join(work, 'grid');
    const r = cli(
      'bench',
      '--model',
      'synthetic:tiny',
      '--backend',
      'cpu',
      '--batch',
      '8,32',
      '--concurrency',
      '1,3',
      '--pairs',
      '100',
      '--sample-ms',
      '20',
      '--out',
      out,
      '--progress',
      'plain',
      '--offline',
    );
    expect(r.stderr).not.toMatch(/Error|failed/i);
    expect(r.code).toBe(0);
    const files = r.stdout.trim().split('\n');
    const base = join(out, '00_backend_cpu_float32');
    expect(files).toEqual([
      `${base}.md`,
      `${base}.json`,
      `${base}.latency.svg`,
      `${base}.histogram.svg`,
      `${base}.throughput.svg`,
    ]);
    for (const f of files) expect(existsSync(f)).toBe(true);

    const res = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as ScenarioResult;
    expect(res.model.synthetic).toBe(true);
    const run = res.runs[0];
    expect(run?.status).toBe('ok');
    expect(run?.configs.map((c) => [c.batch, c.concurrency])).toEqual([
      [8, 1],
      [8, 3],
      [32, 1],
      [32, 3],
    ]);
    for (const c of run?.configs ?? []) {
      // 100 pairs in requests of `batch`: the last one short; every request scored once.
      expect(c.requests).toBe(Math.ceil(100 / c.batch));
      expect(c.requestLog.map((q) => q.index)).toEqual([...Array(c.requests).keys()]);
      expect(sum(c.requestLog.map((q) => q.pairs))).toBe(100);
      expect(c.pairs).toBe(100);
      for (const q of c.requestLog) expect(q.throughput).toBeCloseTo((q.pairs * 1000) / q.latencyMs, 6);
      expect(c.overallPairsPerSec).toBeCloseTo(100 / c.wallS, 6);
      expect(c.latency.max).toBeLessThanOrEqual(c.wallS * 1000);
      expect(sum(c.buckets.map((b) => b.count))).toBe(c.requests);
      // Concurrent clients overlap: the sum of latencies exceeds the wall time only when c > 1.
      const busy = sum(c.requestLog.map((q) => q.latencyMs));
      if (c.concurrency === 1) expect(busy).toBeLessThanOrEqual(c.wallS * 1000 + 1e-6);
      expect(c.samples.length).toBeGreaterThan(0);
      expect(c.padding.batches).toBeGreaterThan(0);
    }
    expect(run?.warmup?.loadMs).toBeGreaterThan(0);
    // Warm-up requests before each configuration stay out of its figures (request counts above).
    expect(run?.warmup?.requestsPerConfig).toBe(20);
    const md = readFileSync(`${base}.md`, 'utf8');
    expect(md).toContain('up to 20 requests (2 s at most) before each configuration');
    expect(md).toMatch(
      /Engine memory after the last configuration \(engine allocations\):\*\* active [\d.]+ MiB/,
    );
    expect(md).toContain('**synthetic**');
    expect(md).toContain('## Comparison');
    expect(md).toContain(
      '| Batch | Conc | Pairs | Time(s) | Lat Avg | Lat P95 | Lat P99 | TP Avg | TP P95 |',
    );
    expect(readFileSync(`${base}.throughput.svg`, 'utf8').match(/<circle /g)).toHaveLength(4);
    expect(r.stderr).toContain('requests'); // plain progress lines
  });

  it('reads pairs from a JSONL file and compares engines, or skips one that is not there, saying why', () => {
    const jsonl = join(work, 'pairs.jsonl');
    writeFileSync(
      jsonl,
      `${JSON.stringify({ query: 'what is a cat', document: 'A cat is a small domesticated mammal.' })}\n\n${JSON.stringify({ query: 'capital of france', document: 'Paris is the capital of France.' })}\n`,
    );
    const out = join(work, 'file');
    const mlx = native().backends().mlx;
    const r = cli(
      'bench',
      '--model',
      'synthetic:tiny',
      '--backend',
      'cpu,mlx',
      '--pairs',
      '10',
      '--batch',
      '4',
      '--pairs-file',
      jsonl,
      '--out',
      out,
      '--name',
      'files',
      '--progress',
      'none',
      '--no-ablation',
    );
    expect(r.code).toBe(0);
    const res = JSON.parse(readFileSync(join(out, '00_files.json'), 'utf8')) as ScenarioResult;
    expect(res.workload.description).toContain('2 pairs from');
    expect(res.runs[0]?.configs[0]?.pairs).toBe(10);
    expect(res.runs[0]?.unsortedPadding).toBeUndefined();
    const m = res.runs[1];
    if (mlx.available) {
      expect(m?.status).toBe('ok');
    } else {
      expect(m?.status).toBe('skipped');
      expect(m?.reason).toContain(mlx.reason ?? 'not available');
      expect(readFileSync(join(out, '00_files.md'), 'utf8')).toContain('**SKIPPED:**');
      expect(r.stderr).toContain('Skipping mlx');
    }
    expect(parsePairsText('q1\td1\nq2\td2 with\ttab\n')).toEqual([
      ['q1', 'd1'],
      ['q2', 'd2 with\ttab'],
    ]);
  });

  it('exits 1 with the reason in the report when no engine can run', () => {
    const mlx = native().backends().mlx;
    if (mlx.available && mlx.devices?.includes('gpu')) return; // a GPU is there: nothing to refuse
    const out = join(work, 'nogpu');
    const r = cli(
      'bench',
      '--model',
      'synthetic:tiny',
      '--backend',
      'mlx',
      '--device',
      'gpu',
      '--pairs',
      '4',
      '--out',
      out,
      '--name',
      'nogpu',
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no engine could run');
    const [mdPath, jsonPath] = r.stdout.trim().split('\n');
    expect(jsonPath).toMatch(/\d\d_nogpu\.json$/);
    const res = JSON.parse(readFileSync(jsonPath as string, 'utf8')) as ScenarioResult;
    expect(['skipped', 'failed']).toContain(res.runs[0]?.status);
    expect(res.runs[0]?.reason).toMatch(/gpu|GPU|not available|not compiled/);
    const md = readFileSync(mdPath as string, 'utf8');
    expect(md).toContain('No configuration ran');
    expect(md).toContain(res.runs[0]?.reason ?? '?');
  });

  it('reports the stored dtype the weights really have, and the tokenizer threads and engine options given', async () => {
    // A folder written in float16 (as `mlx-rerank synth --dtype float16` does): no --weights flag.
    const dir = join(work, 'tiny-f16');
    await synthesizeModel({ shape: 'tiny', dtype: 'float16', seed: 3, outDir: dir });
    const out = join(work, 'f16');
    const r = cli(
      ...['bench', '--model', dir, '--backend', 'cpu', '--batch', '8', '--pairs', '16'],
      ...['--out', out, '--progress', 'none', '--offline', '--no-ablation'],
      ...['--tokenizer-threads', '1', '--cpu-isa', 'scalar'],
    );
    expect(r.stderr).not.toMatch(/Error|failed/i);
    expect(r.code).toBe(0);
    const [mdPath, jsonPath] = r.stdout.trim().split('\n');
    const res = JSON.parse(readFileSync(jsonPath as string, 'utf8')) as ScenarioResult;
    expect(res.model.weights).toBe('float16');
    expect(res.runs[0]?.info?.tokenizerThreads).toBe(1);
    expect(res.runs[0]?.info?.tuning).toEqual({ cpuIsa: 'scalar' });
    const md = readFileSync(mdPath as string, 'utf8');
    expect(md).toContain('**Weights stored:** `float16`');
    expect(md).toContain('**Tokenizer threads:** 1');
    expect(md).toContain('**Engine options:** `cpuIsa=scalar`');
  });

  it('rejects bad arguments with a message and exit code 2', () => {
    for (const [args, text] of [
      [['--batch', '0'], '--batch takes positive integers'],
      [['--backend', 'tpu'], '--backend takes one of'],
      [['--scenario', '09'], '--scenario takes numbers or names'],
      [['--bogus'], 'Unknown option'],
      [['--tokenizer-threads', '65'], '--tokenizer-threads takes 0..64'],
      [['--early-batch-tokens', '1.5'], '--early-batch-tokens takes'],
      [['--attention', 'bogus'], '--attention takes one of varlen, flash, coarse, fine'],
      [['--kernel-cache-dir', 'relative/dir'], '--kernel-cache-dir takes an absolute folder path'],
      [['--row-buckets', 'yes'], '--row-buckets takes one of'],
    ] as const) {
      const r = cli('bench', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(text);
    }
    const missing = cli(
      'bench',
      '--pairs-file',
      join(work, 'nope.tsv'),
      '--model',
      'synthetic:tiny',
      '--out',
      work,
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('Cannot read --pairs-file');
    expect(() => parsePairsText('{"query": 1}\n', 'x.jsonl')).toThrow(/x.jsonl:1 needs string fields/);
    expect(() => parsePairsText('no tab here\n', 'x.tsv')).toThrow(/x.tsv:1 is neither/);
    expect(() => parsePairsText('\n\n', 'x.tsv')).toThrow(/holds no pairs/);
  });
});

describe('model choice', () => {
  it('makes a float16 copy of a float32 model that scores like it', async () => {
    const { synthesizeModel } = await import('../src/synth');
    const { f16ToF32 } = await import('../src/safetensors');
    const { storedCopy } = await import('../src/bench/model');
    const { CrossEncoder } = await import('../src/cross-encoder');
    const files = await synthesizeModel({
      shape: 'tiny',
      dtype: 'float32',
      seed: 5,
      outDir: join(work, 'tiny32'),
    });
    const dir = storedCopy(files, 'float16', join(work, 'cache'));
    expect(storedCopy(files, 'float16', join(work, 'cache'))).toBe(dir); // made once
    const read = (path: string) => {
      const buf = readFileSync(path);
      const n = Number(buf.readBigUInt64LE(0));
      const header = JSON.parse(buf.subarray(8, 8 + n).toString()) as Record<
        string,
        { dtype: string; shape: number[]; data_offsets: [number, number] }
      >;
      return { header, data: buf.subarray(8 + n), headerLen: n };
    };
    const a = read(files.weights[0] as string);
    const b = read(join(dir, 'model.safetensors'));
    expect(b.headerLen % 8).toBe(0);
    const names = Object.keys(a.header).filter((k) => k !== '__metadata__');
    expect(
      Object.keys(b.header)
        .filter((k) => k !== '__metadata__')
        .sort(),
    ).toEqual(names.sort());
    for (const name of names) {
      const ta = a.header[name];
      const tb = b.header[name];
      expect(tb?.shape).toEqual(ta?.shape);
      if (ta?.dtype !== 'F32') continue;
      expect(tb?.dtype).toBe('F16');
      const [a0, a1] = ta.data_offsets;
      const [b0, b1] = tb?.data_offsets ?? [0, 0];
      expect(b1 - b0).toBe((a1 - a0) / 2);
      for (let i = 0; i < (a1 - a0) / 4; i += 97) {
        const x = a.data.readFloatLE(a0 + i * 4);
        const y = f16ToF32(b.data.readUInt16LE(b0 + i * 2));
        // Half precision keeps 11 significant bits (values here are far from the subnormal range).
        expect(Math.abs(x - y)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -11 + 2 ** -24);
      }
    }
    const pairs: Array<[string, string]> = [
      ['what is a cat', 'A cat is a small domesticated carnivorous mammal.'],
      ['capital of france', 'Paris is the capital and largest city of France.'],
    ];
    const full = await CrossEncoder.load(files.dir, { backend: 'cpu', offline: true, activation: 'none' });
    const half = await CrossEncoder.load(dir, { backend: 'cpu', offline: true, activation: 'none' });
    const sa = (await full.predict(pairs)) as Float32Array;
    const sb = (await half.predict(pairs)) as Float32Array;
    await full.dispose();
    await half.dispose();
    expect(sb).toHaveLength(sa.length);
    for (const [i, v] of sa.entries()) {
      expect(Math.abs(v - (sb[i] as number))).toBeLessThan(2e-2 * Math.max(1, Math.abs(v)));
    }
  });

  it('falls back to a synthetic model, saying why, when the Hub cannot serve the real one', async () => {
    const { createServer } = await import('node:http');
    const { pickModel } = await import('../src/bench/model');
    const saved = {
      cache: process.env.HF_HUB_CACHE,
      endpoint: process.env.HF_ENDPOINT,
      off: process.env.HF_HUB_OFFLINE,
    };
    process.env.HF_HUB_CACHE = join(work, 'empty-hub');
    delete process.env.HF_HUB_OFFLINE;
    let hits = 0;
    // A Hub that answers 404 to everything, and one that never answers.
    const notFound = createServer((_req, res) => {
      hits++;
      res.writeHead(404).end('{"error":"Repository not found"}');
    });
    const silent = createServer(() => {});
    await new Promise<void>((r) => notFound.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (s: typeof notFound): number => (s.address() as { port: number }).port;
    try {
      process.env.HF_ENDPOINT = `http://127.0.0.1:${port(notFound)}`;
      const a = await pickModel({
        model: undefined,
        weights: 'float32',
        cacheDir: join(work, 'synth'),
        probeMs: 2000,
      });
      expect(a.synthetic).toBe(true);
      expect(a.id).toBe('cross-encoder/ms-marco-MiniLM-L-6-v2');
      expect(a.note).toContain('not in the Hugging Face cache');
      expect(a.note).toContain('download failed');
      expect(hits).toBeGreaterThan(1);
      expect(existsSync(join(a.source, 'config.json'))).toBe(true);

      process.env.HF_ENDPOINT = `http://127.0.0.1:${port(silent)}`;
      const t0 = Date.now();
      const b = await pickModel({ weights: 'float32', cacheDir: join(work, 'synth'), probeMs: 300 });
      expect(Date.now() - t0).toBeLessThan(10_000); // the synthetic model is reused, the probe is short
      expect(b.source).toBe(a.source);
      expect(b.note).toContain('did not answer within 300 ms');

      const c = await pickModel({ weights: 'float32', cacheDir: join(work, 'synth'), offline: true });
      expect(c.note).toContain('offline mode');
    } finally {
      notFound.close();
      silent.closeAllConnections();
      silent.close();
      for (const [k, v] of [
        ['HF_HUB_CACHE', saved.cache],
        ['HF_ENDPOINT', saved.endpoint],
        ['HF_HUB_OFFLINE', saved.off],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
