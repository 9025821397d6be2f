/**
 * A real HTTP server on 127.0.0.1 that answers the way the Hugging Face Hub does, for tests:
 *
 *   HEAD|GET /{org}/{name}/resolve/{revision}/{file}
 *     small files: 200, ETag "<git blob sha1>", X-Repo-Commit, Content-Length, Range support
 *     LFS files (>= lfsThreshold bytes): 302 to a second server (another origin, like the CDN) with
 *       X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit; the CDN serves Range requests and, like
 *       S3, refuses requests that carry an Authorization header
 *     404 X-Error-Code EntryNotFound / RevisionNotFound / RepositoryNotFound
 *     401 X-Error-Code RepositoryNotFound for a private (or unknown) repo without a valid token
 *
 * Knobs: cut(file, afterBytes, times) drops the connection mid-body; corrupt(file) flips served bytes;
 * throttle slows bodies so concurrent downloads overlap; `requests` logs what clients asked.
 * Hostile knobs: setHeaders(file, headers) makes the Hub's answers for a file (or '*') carry other
 * headers (a lying ETag, X-Linked-Etag, X-Repo-Commit); stall(file, method, mode) makes a request for
 * it never answer ('silent'), send its headers a byte at a time ('headers') or its body ('body').
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { expect } from 'vitest';
import { MlxRerankError } from '../../src/errors';
import type { ResolveOptions } from '../../src/hub';

export interface HubRepoSpec {
  private?: boolean;
  /** commit hash -> files */
  commits: Record<string, Record<string, Uint8Array>>;
  /** branch or tag -> commit hash */
  refs: Record<string, string>;
}

export interface HubServerOptions {
  repos: Record<string, HubRepoSpec>;
  token?: string;
  lfsThreshold?: number;
  /** Bytes per write and pause between writes (ms), to make transfers take time. */
  throttle?: { chunk: number; delayMs: number };
}

export interface LoggedRequest {
  method: string;
  url: string;
  server: 'hub' | 'cdn';
  range?: string;
  authorization?: string;
}

export type StallMode = 'silent' | 'headers' | 'body';

export interface HubServer {
  url: string;
  cdnUrl: string;
  requests: LoggedRequest[];
  cut(file: string, afterBytes: number, times?: number): void;
  corrupt(file: string, times?: number): void;
  setThrottle(t: HubServerOptions['throttle']): void;
  setHeaders(file: string, headers: Record<string, string>): void;
  /** A GET stalls where the bytes come from (the CDN for LFS files); a HEAD at the Hub. */
  stall(file: string, method: 'HEAD' | 'GET', mode: StallMode): void;
  /** Downloads (GET bodies) served per file name. */
  gets(file: string): number;
  close(): Promise<void>;
}

export function gitBlobSha1(data: Uint8Array): string {
  return createHash('sha1').update(`blob ${data.byteLength}\0`).update(data).digest('hex');
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function startHubServer(opts: HubServerOptions): Promise<HubServer> {
  const lfsThreshold = opts.lfsThreshold ?? 10_000;
  const requests: LoggedRequest[] = [];
  const cuts = new Map<string, { after: number; times: number }>();
  const corrupts = new Map<string, number>();
  let throttle = opts.throttle;
  const overrides = new Map<string, Record<string, string>>();
  const stalls = new Map<string, StallMode>();
  const hostile = (file: string, h: Record<string, string>) => ({
    ...h,
    ...overrides.get('*'),
    ...overrides.get(file),
  });
  /** Answers the way a stalled server does; true when it took the request. */
  const stalled = (req: IncomingMessage, res: ServerResponse, file: string): boolean => {
    const mode = stalls.get(`${req.method} ${file}`);
    if (!mode || mode === 'body') return false;
    if (mode === 'headers') {
      const sock = res.socket;
      sock?.write('HTTP/1.1 200 OK\r\nX-Slow: ');
      const t = setInterval(() => (sock?.destroyed ? clearInterval(t) : sock?.write('a')), 100);
      sock?.on('close', () => clearInterval(t));
    }
    return true; // 'silent': never a byte back
  };
  const lfsBlobs = new Map<string, { file: string; data: Uint8Array }>();
  for (const repo of Object.values(opts.repos)) {
    for (const files of Object.values(repo.commits)) {
      for (const [file, data] of Object.entries(files)) {
        if (data.byteLength >= lfsThreshold) lfsBlobs.set(sha256(data), { file, data });
      }
    }
  }

  const sockets = new Set<Socket>();
  const track = (s: Server) =>
    s.on('connection', (sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
    });

  const log = (req: IncomingMessage, server: 'hub' | 'cdn') => {
    const entry: LoggedRequest = { method: req.method ?? '', url: req.url ?? '', server };
    if (req.headers.range) entry.range = req.headers.range;
    if (req.headers.authorization) entry.authorization = req.headers.authorization;
    requests.push(entry);
  };

  /** Sends data (or the Range part of it), honouring cut/corrupt/throttle. */
  const sendBody = async (
    req: IncomingMessage,
    res: ServerResponse,
    file: string,
    data: Uint8Array,
    headers: Record<string, string>,
  ) => {
    let start = 0;
    let end = data.byteLength - 1;
    const range = req.headers.range;
    if (range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m || Number(m[1]) >= data.byteLength) {
        res.writeHead(416, { 'Content-Range': `bytes */${data.byteLength}` });
        res.end();
        return;
      }
      start = Number(m[1]);
      if (m[2]) end = Math.min(end, Number(m[2]));
    }
    let body = data.subarray(start, end + 1);
    const status = range ? 206 : 200;
    const h: Record<string, string> = {
      ...headers,
      'Content-Length': String(body.byteLength),
      'Accept-Ranges': 'bytes',
    };
    if (range) h['Content-Range'] = `bytes ${start}-${end}/${data.byteLength}`;
    res.writeHead(status, h);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const corrupt = corrupts.get(file) ?? 0;
    if (corrupt > 0) {
      corrupts.set(file, corrupt - 1);
      body = Uint8Array.from(body);
      for (let i = 0; i < body.length; i += 997) body[i] = (body[i] as number) ^ 0xff;
    }
    const cut = cuts.get(file);
    let limit = body.byteLength;
    if (cut && cut.times > 0) {
      cut.times--;
      limit = Math.min(limit, Math.max(0, cut.after - start));
    }
    gets.set(file, (gets.get(file) ?? 0) + 1);
    const trickle = stalls.get(`${req.method} ${file}`) === 'body';
    const step = trickle ? 1 : (throttle?.chunk ?? 1 << 16);
    const delayMs = trickle ? 100 : throttle?.delayMs;
    for (let off = 0; off < limit; off += step) {
      if (res.destroyed) return;
      res.write(body.subarray(off, Math.min(off + step, limit)));
      if (delayMs !== undefined) await new Promise((r) => setTimeout(r, delayMs));
    }
    if (limit < body.byteLength) {
      // Let the bytes written so far leave, then drop the connection mid-body.
      await new Promise((r) => setTimeout(r, 20));
      res.socket?.destroy();
      return;
    }
    res.end();
  };
  const gets = new Map<string, number>();

  const cdn = createServer((req, res) => {
    log(req, 'cdn');
    const m = /^\/lfs\/([0-9a-f]{64})/.exec(req.url ?? '');
    const blob = m ? lfsBlobs.get(m[1] as string) : undefined;
    if (!blob) {
      res.writeHead(404).end();
      return;
    }
    if (req.headers.authorization) {
      // S3 answers 400 when a request carries its own Authorization next to a signed URL.
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('Only one auth mechanism allowed');
      return;
    }
    if (stalled(req, res, blob.file)) return;
    void sendBody(req, res, blob.file, blob.data, { ETag: `"${m?.[1]}"` });
  });
  track(cdn);
  await new Promise<void>((r) => cdn.listen(0, '127.0.0.1', r));
  const cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;

  const hub = createServer((req, res) => {
    log(req, 'hub');
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const fail = (status: number, code: string, extra: Record<string, string> = {}) => {
      res.writeHead(status, { 'X-Error-Code': code, 'X-Error-Message': code, ...extra }).end();
    };
    if (!m || (req.method !== 'HEAD' && req.method !== 'GET')) return fail(404, 'RepoNotFound');
    const repoId = m[1] as string;
    const revision = decodeURIComponent(m[2] as string);
    const file = (m[3] as string).split('/').map(decodeURIComponent).join('/');
    const repo = opts.repos[repoId];
    const auth = req.headers.authorization;
    const authorized = opts.token !== undefined && auth === `Bearer ${opts.token}`;
    if (!repo || (repo.private && !authorized)) {
      // The Hub does not tell "private" from "missing": 401 without a valid token, 404 with one.
      return fail(auth && !repo ? 404 : 401, 'RepositoryNotFound');
    }
    const commit = repo.commits[revision] ? revision : repo.refs[revision];
    const files = commit ? repo.commits[commit] : undefined;
    if (!commit || !files) return fail(404, 'RevisionNotFound');
    const data = files[file];
    if (!data) return fail(404, 'EntryNotFound', { 'X-Repo-Commit': commit });
    const lfs = data.byteLength >= lfsThreshold;
    if ((req.method === 'HEAD' || !lfs) && stalled(req, res, file)) return;
    if (lfs) {
      const sha = sha256(data);
      res
        .writeHead(
          302,
          hostile(file, {
            Location: `${cdnUrl}/lfs/${sha}?X-Signature=test`,
            'X-Repo-Commit': commit,
            'X-Linked-Etag': `"${sha}"`,
            'X-Linked-Size': String(data.byteLength),
            ETag: `"${gitBlobSha1(new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\n`))}"`,
            'Content-Length': '0',
          }),
        )
        .end();
      return;
    }
    void sendBody(
      req,
      res,
      file,
      data,
      hostile(file, { ETag: `"${gitBlobSha1(data)}"`, 'X-Repo-Commit': commit }),
    );
  });
  track(hub);
  await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(hub.address() as AddressInfo).port}`;

  return {
    url,
    cdnUrl,
    requests,
    cut(file, afterBytes, times = 1) {
      cuts.set(file, { after: afterBytes, times });
    },
    corrupt(file, times = 1) {
      corrupts.set(file, times);
    },
    setThrottle(t) {
      throttle = t;
    },
    setHeaders(file, headers) {
      overrides.set(file, headers);
    },
    stall(file, method, mode) {
      stalls.set(`${method} ${file}`, mode);
    },
    gets(file) {
      return gets.get(file) ?? 0;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise((r) => hub.close(r)), new Promise((r) => cdn.close(r))]);
    },
  };
}

/** resolveModel options for a test: this server (or a closed port), this cache, no progress bar. */
export function hubOptions(
  server: HubServer | undefined,
  cacheDir: string,
  more: ResolveOptions = {},
): ResolveOptions {
  return { endpoint: server?.url ?? 'http://127.0.0.1:9', cacheDir, progress: false, ...more };
}

/** The MlxRerankError a promise rejects with (fails the test when it resolves or throws anything else). */
export async function caught(p: Promise<unknown>): Promise<MlxRerankError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(MlxRerankError);
    return err as MlxRerankError;
  }
  throw new Error('expected a rejection');
}
