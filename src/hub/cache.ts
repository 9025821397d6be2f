/**
 * The Hugging Face cache layout, shared with Python's huggingface_hub so that a model fetched by either
 * side is used by the other as is:
 *
 *   <cache>/models--org--name/blobs/<etag>                 file contents, named by their etag
 *   <cache>/models--org--name/snapshots/<commit>/<file>    relative symlinks to ../../blobs/<etag>
 *   <cache>/models--org--name/refs/<revision>              the commit hash a branch or tag pointed to
 *   <cache>/models--org--name/.no_exist/<commit>/<file>    empty markers: the file is not in the repo
 *   <cache>/.locks/models--org--name/<etag>.lock           Python's locks (fcntl; we don't take those)
 *
 * Etags: for LFS files the sha256 of the content; for small files the git blob sha1.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import {
  lstat,
  mkdir,
  open,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { AbortedError } from '../errors';

/** HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(explicit?: string): string {
  if (explicit) return expandHome(explicit);
  const env = process.env;
  if (env.HF_HUB_CACHE) return expandHome(env.HF_HUB_CACHE);
  if (env.HUGGINGFACE_HUB_CACHE) return expandHome(env.HUGGINGFACE_HUB_CACHE);
  return join(hfHome(), 'hub');
}

export function hfHome(): string {
  const env = process.env;
  if (env.HF_HOME) return expandHome(env.HF_HOME);
  return join(env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), '.cache'), 'huggingface');
}

export function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
}

/** The token as huggingface_hub finds it: HF_TOKEN, else the file `huggingface-cli login` wrote. */
export function envToken(): string | undefined {
  const fromEnv = process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  if (fromEnv?.trim()) return fromEnv.trim();
  const path = process.env.HF_TOKEN_PATH ? expandHome(process.env.HF_TOKEN_PATH) : join(hfHome(), 'token');
  try {
    const token = readFileSync(path, 'utf8').trim();
    return token || undefined;
  } catch {
    return undefined;
  }
}

/** huggingface_hub's truthy values for HF_HUB_OFFLINE. */
export function envOffline(): boolean {
  const v = (process.env.HF_HUB_OFFLINE ?? process.env.TRANSFORMERS_OFFLINE ?? '').trim().toUpperCase();
  return v === '1' || v === 'ON' || v === 'YES' || v === 'TRUE';
}

export function repoFolder(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.split('/').join('--')}`);
}

/** "W/\"abc\"" -> "abc", as huggingface_hub normalises etags before naming blobs. */
export function normalizeEtag(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

export const COMMIT_RE = /^[0-9a-f]{40}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;

export async function readRef(repoDir: string, revision: string): Promise<string | undefined> {
  if (COMMIT_RE.test(revision)) return revision;
  try {
    const commit = (await readFile(join(repoDir, 'refs', revision), 'utf8')).trim();
    return COMMIT_RE.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

export async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  const path = join(repoDir, 'refs', revision);
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current?.trim() === commit) return;
  await atomicWrite(path, commit); // no newline, like huggingface_hub
}

/** Writes through a unique temp file + rename so readers never see half a file. */
export async function atomicWrite(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export function snapshotPath(repoDir: string, commit: string, file: string): string {
  return join(repoDir, 'snapshots', commit, file);
}

export function blobPath(repoDir: string, etag: string): string {
  return join(repoDir, 'blobs', etag);
}

/** snapshots/<commit>/<file> -> ../../blobs/<etag> (relative, so the cache can be moved), replaced atomically. */
export async function linkSnapshot(
  repoDir: string,
  commit: string,
  file: string,
  etag: string,
): Promise<string> {
  const link = snapshotPath(repoDir, commit, file);
  const target = relative(dirname(link), blobPath(repoDir, etag));
  const existing = await readlink(link).catch(() => undefined);
  if (existing === target) return link;
  await mkdir(dirname(link), { recursive: true });
  const tmp = `${link}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await symlink(target, tmp);
  } catch {
    // No symlinks (some Windows setups): a copy, as huggingface_hub does there.
    const { copyFile } = await import('node:fs/promises');
    await copyFile(blobPath(repoDir, etag), tmp);
  }
  await rename(tmp, link);
  return link;
}

/** Identity of a blob file's current contents as far as the file system tells: size, mtime, inode. */
export function blobStamp(st: { size: number; mtimeMs: number; ino: number }): string {
  return `${st.size}:${st.mtimeMs}:${st.ino}`;
}

/** Stamps of blobs whose hash was checked, kept in the repo folder where huggingface_hub ignores them. */
function stampPath(repoDir: string, etag: string): string {
  return join(repoDir, '.mlx-rerank-verified', etag);
}

export async function readVerifiedStamp(repoDir: string, etag: string): Promise<string | undefined> {
  return readFile(stampPath(repoDir, etag), 'utf8').catch(() => undefined);
}

export async function writeVerifiedStamp(repoDir: string, etag: string, stamp: string): Promise<void> {
  await atomicWrite(stampPath(repoDir, etag), stamp).catch(() => {}); // a read-only cache still works
}

export async function markNoExist(repoDir: string, commit: string, file: string): Promise<void> {
  const path = join(repoDir, '.no_exist', commit, file);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, '', { flag: 'a' });
}

export async function isMarkedNoExist(repoDir: string, commit: string, file: string): Promise<boolean> {
  return exists(join(repoDir, '.no_exist', commit, file));
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** sha256 of a file, or git's blob sha1 (sha1 of "blob <size>\0" + content). */
export async function hashFile(path: string, kind: 'sha256' | 'git-sha1'): Promise<string> {
  const hash = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') hash.update(`blob ${(await stat(path)).size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Which hash an etag is, if any: LFS etags are sha256, small files' etags are git blob sha1s. */
export function etagHashKind(etag: string): 'sha256' | 'git-sha1' | undefined {
  if (SHA256_RE.test(etag)) return 'sha256';
  if (COMMIT_RE.test(etag)) return 'git-sha1';
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Cross-process lock: a file created with O_EXCL holding {pid, host}; the holder touches it every few
// seconds. A waiter breaks it only when it is stale (holder dead on this host, or no heartbeat for
// STALE_MS). Python's fcntl locks can't be taken from Node 20 without native code, so ours live next to
// them under another name; correctness does not rest on the lock alone: every blob is verified
// (size + hash) before the atomic rename that publishes it.

const HEARTBEAT_MS = 2_000;
const STALE_MS = 30_000;

export async function acquireLock(path: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true });
  const me = JSON.stringify({ pid: process.pid, host: hostname(), at: Date.now() });
  for (let delay = 25; ; delay = Math.min(delay * 2, 500)) {
    if (signal?.aborted) throw new AbortedError(undefined, { cause: signal.reason });
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(me);
      await fh.close();
      const timer = setInterval(() => {
        const now = new Date();
        utimes(path, now, now).catch(() => {});
      }, HEARTBEAT_MS);
      timer.unref();
      return async () => {
        clearInterval(timer);
        await rm(path, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    await breakIfStale(path);
    await sleep(delay, signal);
  }
}

async function breakIfStale(path: string): Promise<void> {
  let before: Awaited<ReturnType<typeof lstat>>;
  let holder: { pid?: number; host?: string } = {};
  try {
    before = await lstat(path);
    holder = JSON.parse(await readFile(path, 'utf8')) as typeof holder;
  } catch {
    return; // gone already, or being written: try again
  }
  const age = Date.now() - before.mtimeMs;
  const deadHere = holder.host === hostname() && typeof holder.pid === 'number' && !processAlive(holder.pid);
  if (!deadHere && age < STALE_MS) return;
  // Only remove the very file we judged stale (same inode, not touched since).
  const now = await lstat(path).catch(() => undefined);
  if (now && now.ino === before.ino && now.mtimeMs === before.mtimeMs) await rm(path, { force: true });
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new AbortedError(undefined, { cause: signal.reason }));
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError(undefined, { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
