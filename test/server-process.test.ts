/**
 * `mlx-rerank serve` as a user runs it (a child process through tsx): graceful drain on SIGTERM, two
 * workers behind one port, and the command line's help, version and argument errors.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseServe } from '../src/server/args';
import type { ModelFiles } from '../src/types';
import { cleanupModels, syntheticModel } from './helpers/api-model';

const root = new URL('..', import.meta.url).pathname;
let files: ModelFiles;
const started: ChildProcess[] = [];

beforeAll(async () => {
  files = await syntheticModel('tiny', 3);
});
afterAll(() => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  cleanupModels();
});

interface Child {
  proc: ChildProcess;
  url: string;
  lines: Array<Record<string, unknown>>;
  exit: Promise<number | null>;
  /** Resolves once `n` log lines say "ready". */
  ready(n?: number): Promise<void>;
}

/** Starts `mlx-rerank serve` on a free port; resolves once it listens. */
async function serve(...args: string[]): Promise<Child> {
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli.ts',
      'serve',
      '--model',
      files.dir,
      '--backend',
      'cpu',
      '--port',
      '0',
      ...args,
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HF_HUB_OFFLINE: '1' } },
  );
  started.push(proc);
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  proc.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ msg: line });
      }
      for (const w of waiters.splice(0)) w();
    }
  });
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const until = (pred: () => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => (pred() ? resolve() : waiters.push(check));
      exit.then(() => reject(new Error(`serve exited before ${what}: ${stderr}`)));
      check();
    });
  await until(() => lines.some((l) => typeof l.url === 'string'), 'listening');
  const url = lines.find((l) => typeof l.url === 'string')?.url as string;
  const ready = (n = 1) => until(() => lines.filter((l) => l.msg === 'ready').length >= n, 'ready');
  return { proc, url, lines, exit, ready };
}

async function rerank(url: string, texts: string[]) {
  const res = await fetch(`${url}/rerank`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: 'what is music', texts }),
  });
  return {
    status: res.status,
    worker: res.headers.get('x-worker'),
    body: await res.json(),
    at: performance.now(),
  };
}

const texts = (n: number, words: number) =>
  Array.from({ length: n }, (_, i) => `doc ${i} ${'music water history energy '.repeat(words / 4)}`);

describe('mlx-rerank serve (child process)', () => {
  it('drains on SIGTERM: requests in flight complete, new ones are refused, exit code 0', async () => {
    // Batches wait up to 1.5 s to fill (--max-wait-ms) and these requests never fill one: however fast the
    // machine, their pairs are still queued when the signal comes.
    const child = await serve(
      '--threads',
      '1',
      '--max-wait-ms',
      '1500',
      '--max-batch-size',
      '1024',
      '--max-batch-tokens',
      '100000',
    );
    await child.ready();
    const health = await fetch(`${child.url}/health`);
    expect(health.status).toBe(200);
    const inFlight = Array.from({ length: 4 }, () => rerank(child.url, texts(100, 12)));
    const metric = async () =>
      (await (await fetch(`${child.url}/metrics`)).text()).match(/^mlx_rerank_queue_depth (\d+)$/m)?.[1];
    while ((await metric()) !== '400') await new Promise((r) => setTimeout(r, 20));
    const termAt = performance.now();
    child.proc.kill('SIGTERM');
    const done = await Promise.all(inFlight);
    for (const r of done) {
      expect(r.status).toBe(200);
      expect(r.body).toHaveLength(100);
      expect(r.at).toBeGreaterThan(termAt);
    }
    expect(await child.exit).toBe(0);
    await expect(fetch(`${child.url}/health`)).rejects.toThrow();
    expect(child.lines.some((l) => l.msg === 'shutting down: finishing accepted requests')).toBe(true);
  });

  it('--workers 2: both workers serve behind one port; /metrics adds them up; SIGTERM stops both', async () => {
    const child = await serve('--workers', '2', '--threads', '1');
    await child.ready(2);
    const results = await Promise.all(Array.from({ length: 16 }, () => rerank(child.url, texts(20, 20))));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(new Set(results.map((r) => r.worker))).toEqual(new Set(['0', '1']));
    const metrics = await (await fetch(`${child.url}/metrics`)).text();
    expect(metrics).toMatch(/^mlx_rerank_pairs_total 320$/m);
    child.proc.kill('SIGTERM');
    expect(await child.exit).toBe(0);
  });
});

describe('mlx-rerank command line', () => {
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it('--version, a bare command, bench --help, and serve argument errors', () => {
    const pkg = JSON.parse(readFileSync(`${root}/package.json`, 'utf8')) as { version: string };
    expect(cli('--version')).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    const bare = cli();
    expect(bare.code).toBe(0);
    expect(bare.stdout).toMatch(/Commands:[\s\S]*serve/);
    const bench = cli('bench', '--help');
    expect(bench.code).toBe(0);
    expect(bench.stdout).toContain('Usage: mlx-rerank bench');
    expect(bench.stdout).toContain('--concurrency');
    expect(bench.stdout).not.toContain('Commands:');
    const noModel = cli('serve');
    expect(noModel.code).toBe(2);
    expect(noModel.stderr).toContain('--model is required');
    expect(() => parseServe(['--model', 'x', '--port', '70000'])).toThrow(/--port takes 0..65535/);
    expect(() => parseServe(['--model', 'x', '--api-key', 'short'])).toThrow(/at least 8 characters/);
    // Every dtype the library takes (int8: the cpu engine's quantised GEMMs) is a serve flag too.
    expect(parseServe(['--model', 'x', '--dtype', 'int8']).load).toMatchObject({ dtype: 'int8' });
    expect(() => parseServe(['--model', 'x', '--dtype', 'int4'])).toThrow(/--dtype takes one of/);
    expect(parseServe(['--model', 'x'], { MLX_RERANK_API_KEY: 'from-the-env' })).toMatchObject({
      apiKeys: ['from-the-env'],
      host: '127.0.0.1',
      port: 8080,
      maxBodyBytes: 2_000_000,
      maxDocuments: 1000,
      autoTruncate: true,
      corsOrigins: [],
      workers: 1,
    });
  });
});
