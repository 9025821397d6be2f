/**
 * A Hub, a cache or a caller that means harm (issue 13, items 1, 2, 11 and 13): every name from outside
 * is refused with a typed error before a path is built, nothing is ever written outside the cache, a
 * stalled or trickling server fails within the stall timeout, and an aborted signal stops resolution.
 * All against the real loopback server (test/helpers/hub-server.ts) and real files.
 */
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  realpath,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ResolveOptions, resolveModel } from '../src/hub';
import { isRepoFile, isRepoId, isRevision, normalizeEtag } from '../src/hub/names';
import { synthesizeModel } from '../src/synth';
import {
  caught,
  type HubRepoSpec,
  type HubServer,
  hubOptions,
  sha256,
  startHubServer,
} from './helpers/hub-server';

const C1 = 'a'.repeat(40);
const HEX40 = '0123456789abcdef0123456789abcdef01234567';
const HEX64 = `${HEX40}0123456789abcdef01234567`;

let work: string;
let model: Record<string, Uint8Array>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mlx-rerank-hub-hostile-'));
  const dir = (
    await synthesizeModel({ shape: 'tiny', dtype: 'float16', seed: 1, outDir: join(work, 'model') })
  ).dir;
  model = {};
  for (const f of await readdir(dir)) model[f] = new Uint8Array(await readFile(join(dir, f)));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const servers: HubServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()?.close();
});

async function serve(extra: Record<string, HubRepoSpec> = {}): Promise<HubServer> {
  const s = await startHubServer({
    repos: { 'org/tiny': { commits: { [C1]: model }, refs: { main: C1 } }, ...extra },
    lfsThreshold: 1_000_000, // model.safetensors comes from the "CDN", the small files from the Hub
  });
  servers.push(s);
  return s;
}

/** A fresh <case>/cache next to a <case>/victim/notes.txt that nothing may touch. */
let n = 0;
async function scene(): Promise<{
  cache: string;
  victim: string;
  check: (planted?: string[]) => Promise<void>;
}> {
  const base = join(work, `case-${n++}`);
  const cache = join(base, 'cache');
  const victim = join(base, 'victim');
  await mkdir(cache, { recursive: true });
  await mkdir(victim, { recursive: true });
  await writeFile(join(victim, 'notes.txt'), 'do not touch');
  const check = async (planted: string[] = []) => {
    expect((await readdir(base)).sort()).toEqual(['cache', 'victim']);
    expect(await readdir(victim)).toEqual(['notes.txt']);
    expect(await readFile(join(victim, 'notes.txt'), 'utf8')).toBe('do not touch');
    await expectAllInside(cache, planted);
  };
  return { cache, victim, check };
}

/** Every entry of the cache (links not followed) lies in it, and every link leads into it, but `planted`. */
async function expectAllInside(cache: string, planted: string[]): Promise<void> {
  const root = await realpath(cache);
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      const st = await lstat(path);
      if (st.isSymbolicLink()) {
        if (planted.includes(path)) continue;
        const lands = await realpath(path).catch(async () => resolve(dirname(path), await readlink(path)));
        expect(isUnder(root, lands), `${path} -> ${lands}`).toBe(true);
      } else {
        expect(isUnder(root, await realpath(path)), path).toBe(true);
        if (st.isDirectory()) await walk(path);
      }
    }
  };
  await walk(cache);
}

const isUnder = (root: string, p: string) => {
  const rel = relative(root, p);
  return rel !== '' && !rel.startsWith(`..${sep}`) && rel !== '..' && !rel.startsWith(sep);
};

const opts = (server: HubServer | undefined, cacheDir: string, more: ResolveOptions = {}) =>
  hubOptions(server, cacheDir, { retries: 0, ...more });

describe('names from the Hub become no path', () => {
  // Each of these, sent by the Hub, once named a file or folder; none is a sha256 / git sha1 / commit.
  const hostile = [
    '"../../../victim/notes.txt"',
    '../../../victim/notes.txt',
    'W/"../../../victim/notes.txt"',
    `"${HEX40}/../../../victim/notes.txt"`,
    `"../${HEX64}"`,
    '"/tmp/abs"',
    '"..\\\\..\\\\victim"',
    '"%2e%2e%2fvictim"',
    '"abc"',
    `"${HEX64.slice(1)}"`,
    `"${HEX40}0"`,
    `"${HEX64.slice(1)}g"`,
    '".."',
  ];

  it.each(hostile)('ETag %s (small file) and X-Linked-Etag (LFS file) are refused', async (etag) => {
    for (const [file, header] of [
      ['config.json', 'ETag'],
      ['model.safetensors', 'X-Linked-Etag'],
    ] as const) {
      const server = await serve();
      server.setHeaders(file, { [header]: etag });
      const { cache, check } = await scene();
      const err = await caught(resolveModel('org/tiny', opts(server, cache)));
      expect(err.code, `${file}: ${err.message}`).toBe('E_DOWNLOAD');
      expect(err.message).toMatch(/not a sha256 or git sha1/);
      await check();
    }
  });

  const commits = [
    '../../../victim',
    '../../victim',
    '..',
    `${HEX40}/../../../victim`,
    '/tmp/abs',
    `${HEX40.slice(1)}`,
    `${HEX40}0`,
    HEX40.toUpperCase(),
    'main',
  ];

  it.each(commits)('X-Repo-Commit %s is refused before refs/ or snapshots/ are written', async (commit) => {
    const server = await serve();
    server.setHeaders('*', { 'X-Repo-Commit': commit });
    const { cache, check } = await scene();
    const err = await caught(resolveModel('org/tiny', opts(server, cache)));
    expect(err.code).toBe('E_DOWNLOAD');
    expect(err.message).toMatch(/not a 40-hex commit hash/);
    await check();
    // Nothing was made of the answer: no ref holds it, no snapshot folder was created.
    expect(await readdir(cache)).toEqual([]);
  });
});

describe('names from the caller, a ref file or a repo index become no path', () => {
  it('refuses revisions that break git ref-name rules, before any request or write', async () => {
    const server = await serve();
    const revisions = [
      '..',
      '../../../victim',
      'refs/../../victim',
      '/main',
      'main/',
      'a//b',
      '.hidden',
      'refs/.x',
      'a..b',
      'branch.lock',
      'main.',
      '@',
      'a@{1}',
      'a b',
      'a:b',
      'a?b',
      'a*b',
      'a[b',
      'a~1',
      'a^',
      'a\\b',
      'a\0b',
      'a\nb',
      'a\x7fb',
      'x'.repeat(256),
    ];
    for (const revision of revisions) {
      const { cache, check } = await scene();
      const err = await caught(resolveModel('org/tiny', opts(server, cache, { revision })));
      expect(err.code, JSON.stringify(revision)).toBe('E_INPUT');
      await check();
      expect(await readdir(cache)).toEqual([]);
    }
    expect(server.requests).toEqual([]);
    // What git and the Hub accept still goes through to the Hub.
    for (const ok of ['main', 'v1.0', 'refs/pr/1', 'feature/x-y_z', HEX40])
      expect(isRevision(ok), ok).toBe(true);
  });

  it('ignores ref files that hold anything but a commit hash', async () => {
    for (const content of [
      '../../../victim',
      '../../victim\n',
      '/tmp',
      `${HEX40}/../x`,
      '',
      HEX40.slice(1),
    ]) {
      const { cache, victim, check } = await scene();
      const repo = join(cache, 'models--org--tiny');
      await mkdir(join(repo, 'refs'), { recursive: true });
      await writeFile(join(repo, 'refs', 'main'), content);
      // A config.json where the ref would lead: never read as the model's.
      await writeFile(join(victim, 'config.json'), '{}');
      const err = await caught(resolveModel('org/tiny', opts(undefined, cache, { offline: true })));
      expect(err.code, JSON.stringify(content)).toBe('E_MODEL_NOT_FOUND');
      await rm(join(victim, 'config.json'));
      await check();
    }
  });

  it('refuses shard names in model.safetensors.index.json that are not plain file names', async () => {
    const shards: unknown[] = [
      '../../../victim/x.safetensors',
      '/tmp/x.safetensors',
      'sub/../../x.safetensors',
      'C:\\x.safetensors',
      'a\\b.safetensors',
      'x.safetensors\0',
      'model.bin',
      '',
      42,
      null,
    ];
    const repos: Record<string, HubRepoSpec> = {};
    shards.forEach((shard, i) => {
      const files: Record<string, Uint8Array> = { ...model };
      delete files['model.safetensors'];
      files['model.safetensors.index.json'] = new TextEncoder().encode(
        JSON.stringify({ metadata: {}, weight_map: { a: shard } }),
      );
      repos[`org/shard${i}`] = { commits: { [C1]: files }, refs: { main: C1 } };
    });
    const server = await serve(repos);
    for (let i = 0; i < shards.length; i++) {
      const { cache, check } = await scene();
      const err = await caught(resolveModel(`org/shard${i}`, opts(server, cache)));
      expect(err.code, JSON.stringify(shards[i])).toBe('E_UNSUPPORTED_MODEL');
      await check();
    }
  });

  it('refuses a model.safetensors.index.json larger than an index can be, without parsing it', async () => {
    const dir = join(work, 'huge-index');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'config.json'), '{}');
    // Valid JSON naming a shard that is absent: read whole, it would fail later with E_MODEL_NOT_FOUND.
    const pad = 'x'.repeat(17 << 20);
    const index = { metadata: { pad }, weight_map: { a: 'model-00001-of-00001.safetensors' } };
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    const err = await caught(resolveModel(dir));
    expect(err.code).toBe('E_UNSUPPORTED_MODEL');
    expect(err.message).toMatch(/model\.safetensors\.index\.json is \d+ bytes, more than the 16777216/);
  });

  it('the validators accept what the Hub uses and nothing that leaves a folder', () => {
    expect(normalizeEtag(`W/"${HEX64.toUpperCase()}"`)).toBe(HEX64);
    expect(normalizeEtag(`"${HEX40}"`)).toBe(HEX40);
    for (const bad of ['', '"', `"${HEX40}"x`, `${HEX40}\0`, `${HEX40} x`])
      expect(normalizeEtag(bad)).toBeUndefined();
    for (const id of ['org/name', 'cross-encoder/ms-marco-MiniLM-L-6-v2', 'gpt2', 'a_b/c.d']) {
      expect(isRepoId(id), id).toBe(true);
    }
    for (const id of ['../x', 'org/..', 'org/a--b', 'org/name/x', '/org', 'org/', '.a/b', 'a/b.', 'o\\x/y']) {
      expect(isRepoId(id), id).toBe(false);
    }
    for (const f of ['config.json', 'onnx/model.onnx', '.gitattributes']) expect(isRepoFile(f), f).toBe(true);
    for (const f of [
      '',
      '/etc/passwd',
      '../x',
      'a/../../x',
      'a//b',
      './a',
      'a\\b',
      'C:x',
      'a\0b',
      'x'.repeat(256),
    ]) {
      expect(isRepoFile(f), f).toBe(false);
    }
  });
});

describe('a planted cache: writes never follow a link out of it', () => {
  // Each plants one symlink in an empty cache that leads to the victim folder (or a file in it).
  const plants: [string, (repo: string, victim: string) => Promise<string>][] = [
    ['blobs/ -> victim', async (repo, victim) => plant(join(repo, 'blobs'), victim)],
    ['refs/ -> victim', async (repo, victim) => plant(join(repo, 'refs'), victim)],
    ['snapshots/<commit>/ -> victim', async (repo, victim) => plant(join(repo, 'snapshots', C1), victim)],
    ['.no_exist/ -> victim', async (repo, victim) => plant(join(repo, '.no_exist'), victim)],
    ['.locks/ -> victim', async (repo, victim) => plant(join(dirname(repo), '.locks'), victim)],
    [
      'blobs/<sha>.incomplete -> victim/new (dangling)',
      async (repo, victim) =>
        plant(
          join(repo, 'blobs', `${sha256(model['model.safetensors'] as Uint8Array)}.incomplete`),
          join(victim, 'new'),
        ),
    ],
    [
      'snapshots/<commit>/config.json -> victim/<a sha256 it does not match>',
      async (repo, victim) => {
        await writeFile(join(victim, HEX64), 'not the config');
        return plant(join(repo, 'snapshots', C1, 'config.json'), join(victim, HEX64));
      },
    ],
  ];

  it.each(plants)('%s: refused with E_INTEGRITY, nothing written or deleted outside', async (_name, make) => {
    const server = await serve();
    const { cache, victim } = await scene();
    const before = await readdir(victim);
    const link = await make(join(cache, 'models--org--tiny'), victim);
    const victimFiles = async () =>
      Promise.all((await readdir(victim)).map(async (f) => [f, await readFile(join(victim, f), 'utf8')]));
    const was = await victimFiles();
    const err = await caught(resolveModel('org/tiny', opts(server, cache)));
    expect(err.code, err.message).toBe('E_INTEGRITY');
    expect(err.message).toContain('outside the Hugging Face cache');
    expect(await victimFiles()).toEqual(was);
    expect(before).toContain('notes.txt');
    await expectAllInside(cache, [link]);
  });

  it('a stamp folder linked out of the cache is not written through, and the load still works', async () => {
    const server = await serve();
    const { cache, check } = await scene();
    const link = await plant(
      join(cache, 'models--org--tiny', '.mlx-rerank-verified'),
      join(dirname(cache), 'victim'),
    );
    const files = await resolveModel('org/tiny', opts(server, cache));
    expect(files.revision).toBe(C1);
    await check([link]);
  });
});

async function plant(at: string, target: string): Promise<string> {
  await mkdir(dirname(at), { recursive: true });
  await symlink(target, at);
  return at;
}

describe('stall timeout', () => {
  const STALL = 500;
  const elapsed = async (p: Promise<unknown>) => {
    const t0 = performance.now();
    const err = await caught(p);
    return { err, ms: performance.now() - t0 };
  };

  it.each([
    ['HEAD', 'config.json', 'silent', '/org/tiny/resolve/main/config.json'],
    ['HEAD', 'config.json', 'headers', '/org/tiny/resolve/main/config.json'],
    ['GET', 'model.safetensors', 'silent', '/lfs/'],
    ['GET', 'model.safetensors', 'headers', '/lfs/'],
    ['GET', 'model.safetensors', 'body', '/lfs/'],
    ['GET', 'vocab.txt', 'body', '/org/tiny/resolve/'],
  ] as const)(
    '%s %s, %s: E_DOWNLOAD naming the URL and the timeout, within a few timeouts',
    async (method, file, mode, path) => {
      const server = await serve();
      server.stall(file, method, mode);
      const { cache, check } = await scene();
      const { err, ms } = await elapsed(
        resolveModel('org/tiny', opts(server, cache, { stallTimeoutMs: STALL, retries: 1 })),
      );
      expect(err.code, err.message).toBe('E_DOWNLOAD');
      expect(err.message).toContain(path);
      expect(err.message).toContain(`${STALL} ms`);
      expect(err.message).toContain('stallTimeoutMs');
      expect(err.message).not.toContain('X-Signature'); // a signed CDN URL's query stays out of messages
      // Two attempts of 0.5 s and a backoff; the old code took 30 s (silent) or forever (trickle).
      expect(ms).toBeLessThan(8_000);
      await check();
    },
    20_000,
  );

  it('reads HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT (seconds) when the option is not given', async () => {
    const server = await serve();
    server.stall('model.safetensors', 'GET', 'body');
    const { cache } = await scene();
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = '0.4';
    try {
      const { err, ms } = await elapsed(resolveModel('org/tiny', opts(server, cache)));
      expect(err.message).toContain('400 ms');
      expect(err.message).toContain('HF_HUB_DOWNLOAD_TIMEOUT');
      expect(ms).toBeLessThan(8_000);
    } finally {
      delete process.env.HF_HUB_DOWNLOAD_TIMEOUT;
    }
  }, 20_000);

  it('a slow but steady download completes; bad timeouts are refused', async () => {
    const server = await serve();
    server.setThrottle({ chunk: 128 * 1024, delayMs: 150 }); // ~0.85 MB/s, a chunk well within each window
    const { cache } = await scene();
    const files = await resolveModel('org/tiny', opts(server, cache, { stallTimeoutMs: STALL }));
    expect(sha256(new Uint8Array(await readFile(files.weights[0] as string)))).toBe(
      sha256(model['model.safetensors'] as Uint8Array),
    );
    for (const stallTimeoutMs of [0, -1, Number.NaN, 1e12, Number.POSITIVE_INFINITY]) {
      expect((await caught(resolveModel('org/tiny', opts(server, cache, { stallTimeoutMs })))).code).toBe(
        'E_INPUT',
      );
    }
    for (const retries of [-1, 1.5, Number.NaN, 1e9]) {
      expect((await caught(resolveModel('org/tiny', opts(server, cache, { retries })))).code).toBe('E_INPUT');
    }
  }, 30_000);
});

describe('the load signal', () => {
  it('a pre-aborted signal rejects with E_ABORTED for a folder, the cache and the Hub, writing nothing', async () => {
    const ac = new AbortController();
    ac.abort();
    const signal = ac.signal;
    expect((await caught(resolveModel(join(work, 'model'), { signal }))).code).toBe('E_ABORTED');

    const server = await serve();
    const { cache, check } = await scene();
    await resolveModel('org/tiny', opts(server, cache)); // now cached
    server.requests.length = 0;
    expect(
      (await caught(resolveModel('org/tiny', opts(server, cache, { signal, offline: true })))).code,
    ).toBe('E_ABORTED');
    expect((await caught(resolveModel(`org/tiny@${C1}`, opts(server, cache, { signal })))).code).toBe(
      'E_ABORTED',
    );

    const fresh = join(work, `never-made-${n++}`);
    expect((await caught(resolveModel('org/tiny', opts(server, fresh, { signal })))).code).toBe('E_ABORTED');
    await expect(lstat(fresh)).rejects.toThrow();
    expect(server.requests).toEqual([]);
    await check();
  });
});
