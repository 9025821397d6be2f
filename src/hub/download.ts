/**
 * Talking to the Hub: `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` for a file's metadata (commit,
 * etag, size, where to download it), and a resumable, verified GET of one blob into the cache.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DownloadError, IntegrityError, ModelNotFoundError } from '../errors';
import {
  acquireLock,
  blobPath,
  blobStamp,
  fileSize,
  hashFile,
  lockPath,
  readVerifiedStamp,
  repoFolder,
  sleep,
  writable,
  writeVerifiedStamp,
} from './cache';
import { COMMIT_RE, etagHashKind, normalizeEtag, quote } from './names';
import { StallGuard, throwIfAborted } from './stall';

export interface HubContext {
  endpoint: string;
  repoId: string;
  cacheDir: string;
  token?: string;
  signal?: AbortSignal;
  /** Stall timeouts (see STALL_TIMEOUT_DEFAULT_S): of metadata requests, and of downloads. */
  etagTimeoutMs: number;
  stallTimeoutMs: number;
  /** Times a broken transfer is resumed before giving up. */
  retries: number;
  onBytes?: (file: string, loaded: number, total: number) => void;
}

export interface FileMeta {
  file: string;
  commit: string;
  etag: string;
  size: number;
  /** Where the bytes are: the resolve URL, or the CDN location an LFS redirect named. */
  url: string;
}

/** The Hub could not be reached at all (not an HTTP answer): callers may fall back to the cache. */
export class HubUnreachableError extends DownloadError {}

const USER_AGENT = `mlx-rerank (node ${process.versions.node})`;

export function resolveUrl(ctx: HubContext, revision: string, file: string): string {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${ctx.endpoint.replace(/\/+$/, '')}/${ctx.repoId}/resolve/${encodeURIComponent(revision)}/${path}`;
}

/** File metadata, or null when the repo has no such file (404 EntryNotFound). */
export async function headFile(ctx: HubContext, revision: string, file: string): Promise<FileMeta | null> {
  let url = resolveUrl(ctx, revision, file);
  for (let hop = 0, attempt = 0; hop < 10; ) {
    let res: Response;
    const guard = new StallGuard(ctx.etagTimeoutMs, url, 'HF_HUB_ETAG_TIMEOUT', ctx.signal);
    try {
      res = await fetch(url, {
        method: 'HEAD',
        redirect: 'manual',
        headers: headers(ctx, url, { 'Accept-Encoding': 'identity' }),
        signal: guard.signal,
      });
    } catch (err) {
      throwIfAborted(ctx.signal);
      // A server that sent nothing for a whole timeout is not asked again: it fails now, not 3x later.
      if (!guard.stalled && attempt++ < 2) {
        await sleep(200 * attempt, ctx.signal);
        continue;
      }
      throw new HubUnreachableError(
        `Could not reach the Hub at ${ctx.endpoint} for ${ctx.repoId}/${file} (${guard.stalled?.message ?? errorText(err)}). ` +
          'Check the network or HF_ENDPOINT, or load offline from the cache (HF_HUB_OFFLINE=1).',
        undefined,
        { cause: err },
      );
    } finally {
      guard.stop();
    }
    const commit = res.headers.get('x-repo-commit') ?? undefined;
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location && !commit) {
      // A renamed repo answers with a relative redirect: follow it. LFS redirects carry the metadata.
      url = new URL(location, url).href;
      hop++;
      continue;
    }
    if ((res.status === 429 || res.status >= 500) && attempt++ < 3) {
      await sleep(500 * attempt, ctx.signal);
      continue;
    }
    if (res.status >= 400) return httpError(ctx, res, revision, file);
    const etagHeader = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
    const sizeHeader = res.headers.get('x-linked-size') ?? res.headers.get('content-length');
    const size = Number(sizeHeader);
    if (!etagHeader || !sizeHeader || !Number.isSafeInteger(size) || size < 0) {
      throw new DownloadError(
        `The Hub's answer for ${ctx.repoId}/${file} lacks an ETag or size header; is HF_ENDPOINT (${ctx.endpoint}) a Hugging Face Hub or mirror?`,
        res.status,
      );
    }
    if (!commit) {
      throw new DownloadError(
        `The Hub's answer for ${ctx.repoId}/${file} lacks the X-Repo-Commit header; is HF_ENDPOINT (${ctx.endpoint}) a Hugging Face Hub or mirror?`,
        res.status,
      );
    }
    // Both name things in the cache (blobs/<etag>, snapshots/<commit>/): only hashes are accepted.
    const etag = normalizeEtag(etagHeader);
    if (!etag || !COMMIT_RE.test(commit)) {
      const what = etag
        ? `X-Repo-Commit ${quote(commit)}, which is not a 40-hex commit hash`
        : `ETag ${quote(etagHeader)}, which is not a sha256 or git sha1`;
      throw new DownloadError(
        `Refused the Hub's answer for ${ctx.repoId}/${file}: it carries ${what} (the cache names files after it). ` +
          `Is HF_ENDPOINT (${ctx.endpoint}) a Hugging Face Hub or a faithful mirror?`,
        res.status,
      );
    }
    return { file, commit, etag, size, url: location ? new URL(location, url).href : url };
  }
  throw new DownloadError(`Too many redirects resolving ${ctx.repoId}/${file} at ${ctx.endpoint}.`);
}

function httpError(ctx: HubContext, res: Response, revision: string, file: string): null {
  const code = res.headers.get('x-error-code');
  const hubMsg = res.headers.get('x-error-message');
  const detail = hubMsg ? ` (Hub: ${hubMsg})` : '';
  const repoUrl = `${ctx.endpoint.replace(/\/+$/, '')}/${ctx.repoId}`;
  if (res.status === 404 && (code === 'EntryNotFound' || code === null)) return null;
  if (res.status === 404 && code === 'RevisionNotFound') {
    throw new ModelNotFoundError(
      `Revision "${revision}" of ${ctx.repoId} does not exist on ${ctx.endpoint}${detail}. ` +
        `Use a branch, tag or commit listed at ${repoUrl}/commits/main.`,
    );
  }
  if (res.status === 404) {
    throw new ModelNotFoundError(
      `No model "${ctx.repoId}" on ${ctx.endpoint}${detail}. Check the id (org/name) at ${repoUrl}.`,
    );
  }
  if (res.status === 401) {
    throw new DownloadError(
      ctx.token
        ? `The Hub refused the token for ${ctx.repoId} (401)${detail}: the repository does not exist or the token has no read access. Check the id and the token (HF_TOKEN).`
        : `The Hub answered 401 for ${ctx.repoId}${detail}: the repository does not exist, or it is private and needs a token. Check the id; for a private model set HF_TOKEN (or run \`huggingface-cli login\`) or pass { token }.`,
      401,
    );
  }
  if (res.status === 403) {
    throw new DownloadError(
      `Access to ${ctx.repoId} is forbidden (403)${detail}: the model may be gated. Accept its conditions at ${repoUrl} with the account whose token you use (HF_TOKEN).`,
      403,
    );
  }
  throw new DownloadError(
    `The Hub answered ${res.status} for ${ctx.repoId}/${file}${detail}. Try again later, or use the cached copy offline (HF_HUB_OFFLINE=1).`,
    res.status,
  );
}

// ---------------------------------------------------------------------------------------------------

const inflight = new Map<string, Promise<void>>();

/**
 * Makes blobs/<etag> exist and match meta (size, and hash when the etag is one). One download per blob
 * per process (concurrent callers share it), one per machine (lock file), resumable (.incomplete +
 * Range), published by an atomic rename only once verified.
 */
export function ensureBlob(ctx: HubContext, meta: FileMeta): Promise<void> {
  const repoDir = repoFolder(ctx.cacheDir, ctx.repoId);
  const path = blobPath(repoDir, meta.etag);
  let job = inflight.get(path);
  if (!job) {
    job = downloadLocked(ctx, meta, repoDir, path).finally(() => inflight.delete(path));
    inflight.set(path, job);
  }
  return job;
}

async function downloadLocked(ctx: HubContext, meta: FileMeta, repoDir: string, path: string): Promise<void> {
  // Everything this writes, truncates, renames or deletes lands in the cache (src/hub/cache.ts).
  const incomplete = await writable(ctx.cacheDir, `${path}.incomplete`);
  await writable(ctx.cacheDir, path);
  const lock = await writable(ctx.cacheDir, lockPath(repoDir, meta.etag));
  await mkdir(dirname(path), { recursive: true });
  const release = await acquireLock(lock, ctx.signal);
  try {
    await waitForForeignWriter(incomplete, path, ctx.signal);
    // Another process (or Python) may have published it meanwhile: reuse it if it checks out.
    const st = await stat(path).catch(() => undefined);
    if (st?.size === meta.size) {
      if ((await readVerifiedStamp(repoDir, meta.etag)) === blobStamp(st)) return;
      if ((await verify(path, meta.etag, ctx.signal)) === undefined) {
        await writeVerifiedStamp(repoDir, meta.etag, blobStamp(st));
        return;
      }
    }
    await rm(path, { force: true }); // missing, or a corrupt copy: fetch again
    for (let fresh = 0; ; fresh++) {
      await transfer(ctx, meta, incomplete);
      const problem = await verify(incomplete, meta.etag, ctx.signal);
      if (problem === undefined) break;
      await rm(incomplete, { force: true });
      if (fresh >= 1) {
        throw new IntegrityError(
          `Downloaded ${ctx.repoId}/${meta.file} twice and it did not match its ${problem} both times. ` +
            `The server (${ctx.endpoint}) or a proxy is corrupting it; try again later or another HF_ENDPOINT.`,
        );
      }
    }
    await rename(incomplete, path);
    await writeVerifiedStamp(repoDir, meta.etag, blobStamp(await stat(path)));
  } finally {
    await release();
  }
}

/**
 * Python's huggingface_hub writes the same `<blob>.incomplete` under an fcntl lock we can't see from
 * Node. While that file keeps growing (touched in the last few seconds) someone else is downloading:
 * wait for them rather than append to their file, up to a bound, then carry on (their bytes are resumed
 * from and everything is hash-checked before use).
 */
async function waitForForeignWriter(incomplete: string, blob: string, signal?: AbortSignal): Promise<void> {
  if (writtenHere.has(incomplete)) return; // our own leftover from an earlier call
  const deadline = Date.now() + 10 * 60_000;
  while (Date.now() < deadline) {
    if ((await fileSize(blob)) !== undefined) return;
    const st = await stat(incomplete).catch(() => undefined);
    if (!st || Date.now() - st.mtimeMs > 5_000) return;
    await sleep(500, signal);
  }
}

/** Partial files this process wrote (so a quick retry doesn't wait for itself). */
const writtenHere = new Set<string>();

/** undefined when the file matches the hash its etag names (or the etag is not a hash); else what failed. */
export async function verify(path: string, etag: string, signal?: AbortSignal): Promise<string | undefined> {
  const kind = etagHashKind(etag);
  if (!kind) return undefined;
  const actual = await hashFile(path, kind, signal);
  return actual === etag ? undefined : `${kind} ${etag} (got ${actual})`;
}

/** Brings `incomplete` to meta.size bytes, resuming with Range after broken connections. */
async function transfer(ctx: HubContext, meta: FileMeta, incomplete: string): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt <= ctx.retries; attempt++) {
    let have = (await fileSize(incomplete)) ?? 0;
    if (have > meta.size) {
      await truncate(incomplete, 0);
      have = 0;
    }
    if (have === meta.size) return;
    try {
      await getRange(ctx, meta, incomplete, have);
      if ((await fileSize(incomplete)) === meta.size) return;
      lastError = new Error(`connection closed at ${await fileSize(incomplete)} of ${meta.size} bytes`);
    } catch (err) {
      throwIfAborted(ctx.signal);
      if (
        err instanceof DownloadError &&
        err.status !== undefined &&
        err.status < 500 &&
        err.status !== 429
      ) {
        throw err;
      }
      lastError = err;
    }
    if (attempt < ctx.retries) await sleep(Math.min(250 * 2 ** attempt, 4000), ctx.signal);
  }
  throw new DownloadError(
    `Downloading ${ctx.repoId}/${meta.file} failed after ${ctx.retries + 1} attempts (${errorText(lastError)}). ` +
      'The partial file is kept and the next load resumes it; check the network and load again.',
    undefined,
    { cause: lastError },
  );
}

async function getRange(ctx: HubContext, meta: FileMeta, incomplete: string, from: number): Promise<void> {
  let url = meta.url;
  let res: Response | undefined;
  const guard = new StallGuard(ctx.stallTimeoutMs, url, 'HF_HUB_DOWNLOAD_TIMEOUT', ctx.signal);
  try {
    for (let hop = 0; hop < 10; hop++) {
      const extra: Record<string, string> = { 'Accept-Encoding': 'identity' };
      if (from > 0) extra.Range = `bytes=${from}-`;
      guard.waitHeaders(url);
      res = await fetch(url, { redirect: 'manual', headers: headers(ctx, url, extra), signal: guard.signal });
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        url = new URL(location, url).href;
        continue;
      }
      break;
    }
    if (!res) throw new DownloadError('no response');
    if (res.status === 416) {
      await res.body?.cancel();
      await truncate(incomplete, 0); // the server won't resume from there: start over
      throw new DownloadError(`range ${from}- not satisfiable`, 500);
    }
    if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      httpError(ctx, res, meta.commit, meta.file);
      throw new DownloadError(
        `${ctx.repoId}/${meta.file} vanished from ${ctx.endpoint} (404) while downloading.`,
        404,
      );
    }
    let start = 0;
    if (res.status === 206) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      start = m ? Number(m[1]) : -1;
      if (start !== from) {
        await res.body?.cancel();
        await truncate(incomplete, 0);
        throw new DownloadError(`the server resumed at ${start}, not ${from}`, 500);
      }
    }
    if (!res.body) throw new DownloadError('empty body', 500);
    writtenHere.add(incomplete);
    const out = createWriteStream(incomplete, { flags: start > 0 ? 'a' : 'w' });
    let loaded = start;
    guard.waitBody(meta.size - start);
    try {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        guard.progress(value.byteLength);
        loaded += value.byteLength;
        if (loaded > meta.size) throw new DownloadError(`server sent more than ${meta.size} bytes`, 500);
        if (!out.write(value)) await new Promise<void>((r) => out.once('drain', () => r()));
        ctx.onBytes?.(meta.file, loaded, meta.size);
      }
    } finally {
      await new Promise<void>((resolve, reject) =>
        out.end((err?: Error | null) => (err ? reject(err) : resolve())),
      );
    }
  } catch (err) {
    if (guard.stalled && !ctx.signal?.aborted) throw guard.stalled;
    throw err;
  } finally {
    guard.stop();
  }
}

/** Authorization goes to the Hub only, never to another origin (a CDN) a redirect points at. */
function headers(ctx: HubContext, url: string, extra: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { 'User-Agent': USER_AGENT, ...extra };
  if (ctx.token && new URL(url).origin === new URL(ctx.endpoint).origin)
    h.Authorization = `Bearer ${ctx.token}`;
  return h;
}

function errorText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = (err as { cause?: unknown }).cause;
  const code = (cause as { code?: string } | undefined)?.code;
  return code ? `${err.message}: ${code}` : err.message;
}
