import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseId, type ResolveOptions, resolveModel } from '../src/hub';
import { hubCacheDir } from '../src/hub/cache';
import { createProgressReporter, ProgressBar, renderBar } from '../src/progress';
import { synthesizeModel, writeSafetensors } from '../src/synth';
import {
  caught,
  gitBlobSha1,
  type HubRepoSpec,
  type HubServer,
  hubOptions,
  sha256,
  startHubServer,
} from './helpers/hub-server';

const run = promisify(execFile);
const C1 = 'a'.repeat(40);
const C2 = 'b'.repeat(40);
const C3 = 'c'.repeat(40);

let work: string;
let model: Record<string, Uint8Array>; // the files of a tiny synthetic cross-encoder
let modelV1: Record<string, Uint8Array>;

async function readModel(dir: string): Promise<Record<string, Uint8Array>> {
  const out: Record<string, Uint8Array> = {};
  for (const f of await readdir(dir)) out[f] = new Uint8Array(await readFile(join(dir, f)));
  return out;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mlx-rerank-hub-'));
  model = await readModel(
    (await synthesizeModel({ shape: 'tiny', dtype: 'float16', seed: 1, outDir: join(work, 'src-main') })).dir,
  );
  modelV1 = await readModel(
    (await synthesizeModel({ shape: 'tiny', dtype: 'float16', seed: 2, outDir: join(work, 'src-v1') })).dir,
  );
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const servers: HubServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()?.close();
});

function repos(extra: Record<string, HubRepoSpec> = {}): Record<string, HubRepoSpec> {
  return {
    'org/tiny': { commits: { [C1]: modelV1, [C2]: model }, refs: { main: C2, v1: C1 } },
    'org/private': { private: true, commits: { [C1]: model }, refs: { main: C1 } },
    ...extra,
  };
}

async function serve(
  extra?: Record<string, HubRepoSpec>,
  opts: { throttle?: { chunk: number; delayMs: number } } = {},
) {
  const s = await startHubServer({
    repos: repos(extra),
    token: 'hf_secret',
    lfsThreshold: 1_000_000,
    ...opts,
  });
  servers.push(s);
  return s;
}

let n = 0;
async function freshCache(): Promise<string> {
  const dir = join(work, `cache-${n++}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

const opts = (server: HubServer | undefined, cacheDir: string, more: ResolveOptions = {}) =>
  hubOptions(server, cacheDir, { retries: 2, ...more });

const bytes = async (p: string) => new Uint8Array(await readFile(p));
const repoDir = (cache: string, id: string) => join(cache, `models--${id.replace('/', '--')}`);

describe('resolveModel from the Hub', () => {
  it('downloads into the Python cache layout: refs, blobs named by etag, relative snapshot links', async () => {
    const server = await serve();
    const cache = await freshCache();
    const events: { file: string; loaded: number; total: number }[] = [];
    const files = await resolveModel('org/tiny', opts(server, cache, { onProgress: (p) => events.push(p) }));

    const repo = repoDir(cache, 'org/tiny');
    expect(files.id).toBe('org/tiny');
    expect(files.revision).toBe(C2);
    expect(files.dir).toBe(join(repo, 'snapshots', C2));
    expect((await readFile(join(repo, 'refs', 'main'), 'utf8')).trim()).toBe(C2);
    const weights = model['model.safetensors'] as Uint8Array;
    expect(await readlink(files.weights[0] as string)).toBe(`../../blobs/${sha256(weights)}`);
    expect(await readlink(files.config)).toBe(
      `../../blobs/${gitBlobSha1(model['config.json'] as Uint8Array)}`,
    );
    for (const [name, path] of [
      ['config.json', files.config],
      ['model.safetensors', files.weights[0]],
      ['vocab.txt', files.vocabTxt],
      ['tokenizer.json', files.tokenizerJson],
      ['tokenizer_config.json', files.tokenizerConfig],
      ['special_tokens_map.json', files.specialTokensMap],
    ] as const) {
      expect(Buffer.compare(await bytes(path as string), model[name] as Uint8Array), name).toBe(0);
    }
    expect(files.sentenceTransformersConfig).toBeUndefined();
    // The repo has no ST config: recorded the way huggingface_hub does, so it is not asked again.
    expect((await stat(join(repo, '.no_exist', C2, 'config_sentence_transformers.json'))).size).toBe(0);
    expect((await readdir(join(repo, 'blobs'))).filter((f) => f.endsWith('.incomplete'))).toEqual([]);

    const last = events.filter((e) => e.file === 'model.safetensors').pop();
    expect(last).toEqual({
      file: 'model.safetensors',
      loaded: weights.byteLength,
      total: weights.byteLength,
    });
    // Large files came from the "CDN" (another origin) through the redirect.
    expect(server.requests.some((r) => r.server === 'cdn' && r.method === 'GET')).toBe(true);
  });

  it('loads from the cache when the server is gone (online fallback, offline option, HF_HUB_OFFLINE=1)', async () => {
    const server = await serve();
    const cache = await freshCache();
    const first = await resolveModel('org/tiny', opts(server, cache));
    await server.close();
    servers.length = 0;

    expect(await resolveModel('org/tiny', opts(server, cache))).toEqual(first);
    expect(await resolveModel('org/tiny', opts(undefined, cache, { offline: true }))).toEqual(first);
    process.env.HF_HUB_OFFLINE = '1';
    try {
      expect(await resolveModel('org/tiny', opts(undefined, cache))).toEqual(first);
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
  });

  it('pins revisions: tag, commit hash (no network once cached), unknown revision', async () => {
    const server = await serve();
    const cache = await freshCache();
    const v1 = await resolveModel('org/tiny@v1', opts(server, cache));
    expect(v1.revision).toBe(C1);
    expect(
      Buffer.compare(await bytes(v1.weights[0] as string), modelV1['model.safetensors'] as Uint8Array),
    ).toBe(0);
    expect((await readFile(join(repoDir(cache, 'org/tiny'), 'refs', 'v1'), 'utf8')).trim()).toBe(C1);
    const main = await resolveModel('org/tiny', opts(server, cache, { revision: 'main' }));
    expect(main.revision).toBe(C2);
    expect(main.dir).not.toBe(v1.dir);

    const before = server.requests.length;
    expect((await resolveModel(`org/tiny@${C1}`, opts(server, cache))).dir).toBe(v1.dir);
    expect(server.requests.length).toBe(before); // a cached commit needs no request at all

    const err = await caught(resolveModel('org/tiny@nope', opts(server, cache)));
    expect(err.code).toBe('E_MODEL_NOT_FOUND');
    expect(err.message).toMatch(/Revision "nope"/);
  });

  it('resumes an interrupted download with Range, within one call and across calls', async () => {
    const server = await serve();
    const weights = model['model.safetensors'] as Uint8Array;

    // Cut mid-body once: the same call resumes from where the bytes stopped.
    server.cut('model.safetensors', 700_000, 1);
    const cacheA = await freshCache();
    const a = await resolveModel('org/tiny', opts(server, cacheA));
    expect(sha256(await bytes(a.weights[0] as string))).toBe(sha256(weights));
    const ranged = server.requests.filter((r) => r.server === 'cdn' && r.range);
    expect(ranged.length).toBe(1);
    const from = Number(/bytes=(\d+)-/.exec(ranged[0]?.range ?? '')?.[1]);
    expect(from).toBeGreaterThan(0);
    expect(from).toBeLessThanOrEqual(700_000);

    // A call that gives up keeps the partial file; the next call resumes it.
    server.cut('model.safetensors', 500_000, 10);
    const cacheB = await freshCache();
    const err = await caught(resolveModel('org/tiny', opts(server, cacheB, { retries: 0 })));
    expect(err.code).toBe('E_DOWNLOAD');
    expect(err.message).toMatch(/resumes/);
    const partial = join(repoDir(cacheB, 'org/tiny'), 'blobs', `${sha256(weights)}.incomplete`);
    const have = (await stat(partial)).size;
    expect(have).toBeGreaterThan(0);
    expect(have).toBeLessThan(weights.byteLength);
    server.cut('model.safetensors', 0, 0);
    server.requests.length = 0;
    const b = await resolveModel('org/tiny', opts(server, cacheB));
    expect(sha256(await bytes(b.weights[0] as string))).toBe(sha256(weights));
    expect(server.requests.find((r) => r.server === 'cdn' && r.method === 'GET')?.range).toBe(
      `bytes=${have}-`,
    );
  });

  it('detects corrupted downloads and corrupted cached blobs', async () => {
    const server = await serve();
    // Corrupted in transit every time: refused, nothing published.
    server.corrupt('model.safetensors', 5);
    const cacheA = await freshCache();
    const err = await caught(resolveModel('org/tiny', opts(server, cacheA)));
    expect(err.code).toBe('E_INTEGRITY');
    const blobs = await readdir(join(repoDir(cacheA, 'org/tiny'), 'blobs'));
    expect(blobs).not.toContain(sha256(model['model.safetensors'] as Uint8Array));

    // Corrupted once: the retry from scratch succeeds.
    server.corrupt('model.safetensors', 1);
    const cacheB = await freshCache();
    const ok = await resolveModel('org/tiny', opts(server, cacheB));
    expect(sha256(await bytes(ok.weights[0] as string))).toBe(
      sha256(model['model.safetensors'] as Uint8Array),
    );

    // A blob damaged on disk: offline it is reported with what to do; online it is fetched again.
    const cacheC = await freshCache();
    const files = await resolveModel('org/tiny', opts(server, cacheC));
    const blob = join(repoDir(cacheC, 'org/tiny'), 'blobs', sha256(model['model.safetensors'] as Uint8Array));
    await new Promise((r) => setTimeout(r, 30)); // a later rewrite, as a real corruption would be
    const damaged = await bytes(blob);
    damaged[100] = (damaged[100] as number) ^ 1;
    await writeFile(blob, damaged);
    const fresh = resolve(join(cacheC)); // other processes must notice too
    const child = await runChild('org/tiny', { cacheDir: fresh, offline: true });
    expect(child.ok).toBe(false);
    expect(child.code).toBe('E_INTEGRITY');
    expect(child.message).toContain(blob);
    const healed = await runChild('org/tiny', { cacheDir: fresh, endpoint: server.url });
    expect(healed.ok).toBe(true);
    expect(sha256(await bytes(files.weights[0] as string))).toBe(
      sha256(model['model.safetensors'] as Uint8Array),
    );
  });

  it('shares one download between two concurrent calls in a process', async () => {
    const server = await serve(undefined, { throttle: { chunk: 256 * 1024, delayMs: 20 } });
    const cache = await freshCache();
    const [a, b] = await Promise.all([
      resolveModel('org/tiny', opts(server, cache)),
      resolveModel('org/tiny', opts(server, cache)),
    ]);
    expect(a).toEqual(b);
    expect(server.gets('model.safetensors')).toBe(1);
    expect(sha256(await bytes(a.weights[0] as string))).toBe(
      sha256(model['model.safetensors'] as Uint8Array),
    );
  });

  it('two processes loading the same model at once do not corrupt the cache', async () => {
    const server = await serve(undefined, { throttle: { chunk: 128 * 1024, delayMs: 40 } });
    const cache = await freshCache();
    const o = { cacheDir: cache, endpoint: server.url };
    const [a, b] = await Promise.all([runChild('org/tiny', o), runChild('org/tiny', o)]);
    expect(a.ok && b.ok).toBe(true);
    expect(a.files).toEqual(b.files);
    // The lock let one process download; the other found the published blob.
    expect(server.gets('model.safetensors')).toBe(1);
    const weights = (a.files as { weights: string[] }).weights[0] as string;
    expect(sha256(await bytes(weights))).toBe(sha256(model['model.safetensors'] as Uint8Array));
    expect(await readdir(join(cache, '.locks', 'models--org--tiny'))).toEqual([]);
  });

  it('uses a cache laid out by Python huggingface_hub as is', async () => {
    const cache = await freshCache();
    const repo = repoDir(cache, 'org/pymodel');
    await mkdir(join(repo, 'blobs'), { recursive: true });
    await mkdir(join(repo, 'refs'), { recursive: true });
    await mkdir(join(repo, 'snapshots', C3), { recursive: true });
    await writeFile(join(repo, 'refs', 'main'), C3); // no newline, as Python writes it
    for (const [name, data] of Object.entries(model)) {
      const etag = data.byteLength >= 1_000_000 ? sha256(data) : gitBlobSha1(data);
      await writeFile(join(repo, 'blobs', etag), data);
      await symlink(`../../blobs/${etag}`, join(repo, 'snapshots', C3, name));
    }
    const offline = await resolveModel('org/pymodel', opts(undefined, cache, { offline: true }));
    expect(offline.revision).toBe(C3);
    expect(offline.weights).toEqual([join(repo, 'snapshots', C3, 'model.safetensors')]);
    expect(offline.vocabTxt).toBe(join(repo, 'snapshots', C3, 'vocab.txt'));

    // Online with the same commit upstream: only metadata requests, no file is downloaded again.
    const server = await serve({ 'org/pymodel': { commits: { [C3]: model }, refs: { main: C3 } } });
    const online = await resolveModel('org/pymodel', opts(server, cache));
    expect(online).toEqual(offline);
    expect(server.requests.filter((r) => r.method === 'GET')).toEqual([]);
  });

  it('downloads sharded safetensors through the index, shards in order', async () => {
    const shard = (seed: number) => ({
      dtype: 'F32' as const,
      shape: [4],
      data: new Float32Array([seed, 1, 2, 3]),
    });
    const dir = join(work, 'sharded');
    await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), { a: shard(1) });
    await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), { b: shard(2) });
    const index = {
      metadata: {},
      weight_map: { b: 'model-00002-of-00002.safetensors', a: 'model-00001-of-00002.safetensors' },
    };
    const files: Record<string, Uint8Array> = { ...model };
    delete files['model.safetensors'];
    files['model.safetensors.index.json'] = new TextEncoder().encode(JSON.stringify(index));
    files['model-00001-of-00002.safetensors'] = await bytes(join(dir, 'model-00001-of-00002.safetensors'));
    files['model-00002-of-00002.safetensors'] = await bytes(join(dir, 'model-00002-of-00002.safetensors'));
    const server = await serve({ 'org/sharded': { commits: { [C1]: files }, refs: { main: C1 } } });
    const cache = await freshCache();
    const got = await resolveModel('org/sharded', opts(server, cache));
    expect(got.weights.map((w) => w.split('/').pop())).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    expect(
      Buffer.compare(
        await bytes(got.weights[1] as string),
        files['model-00002-of-00002.safetensors'] as Uint8Array,
      ),
    ).toBe(0);
  });
});

describe('resolveModel failures are typed and say what to do', () => {
  it('refuses pickle-only repos and folders, explaining the conversion', async () => {
    const files: Record<string, Uint8Array> = { ...model };
    delete files['model.safetensors'];
    files['pytorch_model.bin'] = new Uint8Array([0x80, 2, 0x7d]);
    const server = await serve({ 'org/pickle': { commits: { [C1]: files }, refs: { main: C1 } } });
    const err = await caught(resolveModel('org/pickle', opts(server, await freshCache())));
    expect(err.code).toBe('E_UNSUPPORTED_MODEL');
    expect(err.message).toContain("from_pretrained('org/pickle')");
    expect(err.message).toContain('safe_serialization=True');

    const folder = join(work, 'pickle-folder');
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, 'config.json'), model['config.json'] as Uint8Array);
    await writeFile(join(folder, 'pytorch_model.bin'), files['pytorch_model.bin'] as Uint8Array);
    const local = await caught(resolveModel(folder));
    expect(local.code).toBe('E_UNSUPPORTED_MODEL');
    expect(local.message).toContain('safe_serialization=True');
  });

  it('private repos: 401 without a token, works with one, and the token never reaches the CDN', async () => {
    const server = await serve();
    const saved = process.env.HF_TOKEN;
    delete process.env.HF_TOKEN;
    try {
      const cache = await freshCache();
      const err = await caught(resolveModel('org/private', opts(server, cache, { token: undefined })));
      expect(err.code).toBe('E_AUTH');
      expect(err.message).toContain('HF_TOKEN');
      const wrong = await caught(resolveModel('org/private', opts(server, cache, { token: 'hf_wrong' })));
      expect(wrong.code).toBe('E_AUTH');

      process.env.HF_TOKEN = 'hf_secret';
      server.requests.length = 0;
      const files = await resolveModel('org/private', opts(server, cache));
      expect(files.revision).toBe(C1);
      expect(
        server.requests
          .filter((r) => r.server === 'hub')
          .every((r) => r.authorization === 'Bearer hf_secret'),
      ).toBe(true);
      expect(
        server.requests.filter((r) => r.server === 'cdn').every((r) => r.authorization === undefined),
      ).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.HF_TOKEN;
      else process.env.HF_TOKEN = saved;
    }
  });

  it('missing models: offline, unknown repo, no config.json, unreachable Hub, bad ids and folders', async () => {
    const cache = await freshCache();
    const offline = await caught(resolveModel('org/absent', opts(undefined, cache, { offline: true })));
    expect(offline.code).toBe('E_MODEL_NOT_FOUND');
    expect(offline.message).toContain(join(repoDir(cache, 'org/absent'), 'refs', 'main'));
    expect(offline.message).toContain('huggingface-cli download org/absent');

    const noConfig: Record<string, Uint8Array> = { ...model };
    delete noConfig['config.json'];
    const server = await serve({ 'org/noconfig': { commits: { [C1]: noConfig }, refs: { main: C1 } } });
    const unknown = await caught(resolveModel('org/unknown', opts(server, cache, { token: 'hf_secret' })));
    expect(unknown.code).toBe('E_MODEL_NOT_FOUND');
    const nc = await caught(resolveModel('org/noconfig', opts(server, cache)));
    expect(nc.code).toBe('E_MODEL_NOT_FOUND');
    expect(nc.message).toContain('config.json');

    const down = await caught(resolveModel('org/tiny', opts(undefined, cache)));
    expect(down.code).toBe('E_DOWNLOAD');
    expect(down.message).toMatch(/HF_ENDPOINT|HF_HUB_OFFLINE/);

    const fileAsCache = join(work, 'not-a-folder');
    await writeFile(fileAsCache, 'x');
    const unwritable = await caught(resolveModel('org/tiny', opts(server, fileAsCache)));
    expect(unwritable.code).toBe('E_DOWNLOAD');
    expect(unwritable.message).toContain('HF_HUB_CACHE');

    expect((await caught(resolveModel('not a valid id!'))).code).toBe('E_MODEL_NOT_FOUND');
    expect((await caught(resolveModel('./no/such/folder'))).code).toBe('E_MODEL_NOT_FOUND');
    expect((await caught(resolveModel(''))).code).toBe('E_INPUT');
    expect((await caught(resolveModel('org/tiny@../x', opts(server, cache)))).code).toBe('E_INPUT');
  });

  it('honours an AbortSignal', async () => {
    const server = await serve(undefined, { throttle: { chunk: 64 * 1024, delayMs: 50 } });
    const ac = new AbortController();
    const p = resolveModel('org/tiny', opts(server, await freshCache(), { signal: ac.signal }));
    setTimeout(() => ac.abort(), 200);
    expect((await caught(p)).code).toBe('E_ABORTED');
  });
});

describe('progress', () => {
  it('draws a bar on a TTY stream, throttled, one line per file', () => {
    let t = 0;
    const out: string[] = [];
    const stream = { columns: 60, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream;
    const bar = new ProgressBar(stream, () => t);
    bar.update('model.safetensors', 0, 2_000_000);
    t = 50;
    bar.update('model.safetensors', 500_000, 2_000_000); // within 100 ms: not drawn
    t = 1000;
    bar.update('model.safetensors', 1_000_000, 2_000_000);
    t = 2000;
    bar.update('model.safetensors', 2_000_000, 2_000_000);
    bar.update('vocab.txt', 231_508, 231_508);
    bar.finish();
    expect(out.length).toBe(6); // 4 draws + 2 line ends
    expect(out[1]).toMatch(/^\rmodel\.safetensors \[#{5}-{4}\] {2}50% {2}977 kB\/1\.9 MB {2}977 kB\/s$/);
    expect(out[2]).toContain('100%');
    expect(out[3]).toBe('\n');
    expect(out.every((l) => l.replace('\r', '').length <= 59)).toBe(true);
    expect(renderBar('f', 5, 10, 1, 40)).toBe('f [#######------]  50%  5 B/10 B  5 B/s');
  });

  it('calls onProgress and stays quiet off a TTY', () => {
    const events: unknown[] = [];
    const r = createProgressReporter((p) => events.push(p), false);
    r.update('a', 1, 2);
    r.finish();
    expect(events).toEqual([{ file: 'a', loaded: 1, total: 2 }]);
  });
});

describe('resolution helpers', () => {
  it('parses ids with revisions', () => {
    expect(parseId('cross-encoder/ms-marco-MiniLM-L-6-v2')).toEqual({
      repoId: 'cross-encoder/ms-marco-MiniLM-L-6-v2',
      revision: 'main',
    });
    expect(parseId('org/m@v1.0', 'main')).toEqual({ repoId: 'org/m', revision: 'v1.0' });
    expect(parseId('org/m', 'refs/pr/1')).toEqual({ repoId: 'org/m', revision: 'refs/pr/1' });
  });

  it('finds the cache like huggingface_hub: HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME', () => {
    const saved = { ...process.env };
    try {
      delete process.env.HF_HUB_CACHE;
      delete process.env.HUGGINGFACE_HUB_CACHE;
      process.env.XDG_CACHE_HOME = '/x';
      delete process.env.HF_HOME;
      expect(hubCacheDir()).toBe('/x/huggingface/hub');
      process.env.HF_HOME = '/h';
      expect(hubCacheDir()).toBe('/h/hub');
      process.env.HF_HUB_CACHE = '/c';
      expect(hubCacheDir()).toBe('/c');
      expect(hubCacheDir('/explicit')).toBe('/explicit');
    } finally {
      process.env = saved;
    }
  });

  it('uses a local folder directly', async () => {
    const dir = join(work, 'src-main');
    const files = await resolveModel(dir);
    expect(files).toMatchObject({
      dir,
      id: dir,
      config: join(dir, 'config.json'),
      weights: [join(dir, 'model.safetensors')],
    });
    expect(files.revision).toBeUndefined();
  });
});

async function runChild(
  id: string,
  o: Record<string, unknown>,
): Promise<{ ok: boolean; code?: string; message?: string; files?: unknown }> {
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', 'test/helpers/resolve-child.ts', JSON.stringify({ id, opts: { retries: 2, ...o } })],
    {
      cwd: resolve(__dirname, '..'),
      env: { ...process.env, HF_HUB_OFFLINE: '' },
      timeout: 60_000,
    },
  );
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}');
}
