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
  constants,
  copyFile,
  lstat,
  mkdir,
  open,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { homedir, hostname } from 'node:os';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { AbortedError, IntegrityError } from '../errors';
import { COMMIT_RE, etagHashKind, isRepoFile, isRepoId, isRevision } from './names';

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
  if (!isRepoId(repoId)) throw outside(cacheDir, `models--${repoId}`);
  return inside(cacheDir, `models--${repoId.split('/').join('--')}`);
}

/** repoFolder's inverse: the cache a repo folder lies in. */
function cacheOf(repoDir: string): string {
  return dirname(repoDir);
}

// ---------------------------------------------------------------------------------------------------
// The path rule. Every path below is built by `inside` (lexically under its folder: the repo, its
// blobs/, snapshots/<commit>/, refs/ ...), and every path that is written, linked, truncated or deleted
// first passes `writable` (resolved through the symlinks that exist, under the real cache root). Names
// are validated first (src/hub/names.ts); these checks are what holds if a name slips through or the
// cache itself holds a symlink that leads out of it. Reads follow the cache's links (it is the user's
// own cache, and Python's may be spread over disks by links); writes never do.

/** join(root, ...parts), refused unless strictly under root. */
export function inside(root: string, ...parts: string[]): string {
  const path = join(root, ...parts);
  if (parts.some((p) => p.includes('\0')) || !isUnder(resolve(root), resolve(path)))
    throw outside(root, path);
  return path;
}

/**
 * `path` once sure that writing (or linking, truncating, deleting) there stays under the real cache
 * root: the path is resolved as open(O_CREAT) would resolve it (existing symlinks followed, a dangling
 * final link to where it points) and must land under realpath(cacheDir).
 */
export async function writable(cacheDir: string, path: string): Promise<string> {
  const root = await whereItLands(resolve(cacheDir));
  const real = await whereItLands(resolve(path));
  if (!isUnder(resolve(cacheDir), resolve(path)) || !isUnder(root, real)) throw outside(cacheDir, path, real);
  return path;
}

function isUnder(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/** Where the file system puts `path` (absolute): symlinks followed, missing parts appended as they are. */
async function whereItLands(path: string, hops = 0): Promise<string> {
  if (hops > 40) throw Object.assign(new Error(`too many symlinks at ${path}`), { code: 'ELOOP' });
  try {
    return await realpath(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
  }
  const parent = dirname(path);
  if (parent === path) return path;
  const realParent = await whereItLands(parent, hops);
  const st = await lstat(path).catch(() => undefined);
  if (st?.isSymbolicLink()) return whereItLands(resolve(realParent, await readlink(path)), hops + 1);
  return join(realParent, basename(path));
}

function outside(root: string, path: string, real?: string): IntegrityError {
  return new IntegrityError(
    `Refusing to touch ${path}: it ${real && real !== resolve(path) ? `resolves to ${real}, which is` : 'is'} outside the ` +
      `Hugging Face cache ${root}. Either a name the Hub sent tried to leave the cache, or a symlink in the cache ` +
      'leads out of it: remove that link (or the repo folder) and load again.',
  );
}

// ---------------------------------------------------------------------------------------------------

export async function readRef(repoDir: string, revision: string): Promise<string | undefined> {
  if (COMMIT_RE.test(revision)) return revision;
  try {
    const commit = (await readFile(refPath(repoDir, revision), 'utf8')).trim();
    return COMMIT_RE.test(commit) ? commit : undefined;
  } catch {
    return undefined;
  }
}

export async function writeRef(repoDir: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  if (!COMMIT_RE.test(commit)) throw outside(repoDir, commit);
  const path = refPath(repoDir, revision);
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current?.trim() === commit) return;
  await atomicWrite(cacheOf(repoDir), path, commit); // no newline, like huggingface_hub
}

function refPath(repoDir: string, revision: string): string {
  if (!isRevision(revision)) throw outside(repoDir, revision);
  return inside(join(repoDir, 'refs'), revision);
}

/** Writes through a unique temp file + rename so readers never see half a file. */
export async function atomicWrite(cacheDir: string, path: string, data: string | Uint8Array): Promise<void> {
  await writable(cacheDir, path);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, data, { flag: 'wx' });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export function snapshotPath(repoDir: string, commit: string, file?: string): string {
  if (!COMMIT_RE.test(commit) || (file !== undefined && !isRepoFile(file))) {
    throw outside(repoDir, `snapshots/${commit}/${file ?? ''}`);
  }
  const dir = inside(join(repoDir, 'snapshots'), commit);
  return file === undefined ? dir : inside(dir, file);
}

export function blobPath(repoDir: string, etag: string): string {
  if (!etagHashKind(etag)) throw outside(repoDir, `blobs/${etag}`);
  return inside(join(repoDir, 'blobs'), etag);
}

/**
 * snapshots/<commit>/<file> -> ../../blobs/<etag> (relative, so the cache can be moved), replaced
 * atomically. The link made must lead to that very blob, inside the cache.
 */
export async function linkSnapshot(
  repoDir: string,
  commit: string,
  file: string,
  etag: string,
): Promise<string> {
  const link = snapshotPath(repoDir, commit, file);
  const blob = await writable(cacheOf(repoDir), blobPath(repoDir, etag));
  const target = relative(dirname(link), blob);
  const existing = await readlink(link).catch(() => undefined);
  if (existing === target && (await leadsTo(link, blob))) return link;
  await writable(cacheOf(repoDir), link);
  await mkdir(dirname(link), { recursive: true });
  const tmp = `${link}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    let copied = false;
    try {
      await symlink(target, tmp);
    } catch {
      // No symlinks (some Windows setups): a copy, as huggingface_hub does there.
      await copyFile(blob, tmp, constants.COPYFILE_EXCL);
      copied = true;
    }
    // A snapshots/<commit> folder that is itself a link elsewhere would make the relative target
    // point at another blobs/ folder: check where the new link really leads before publishing it.
    if (!copied && !(await leadsTo(tmp, blob))) {
      throw outside(repoDir, link, await whereItLands(tmp).catch(() => tmp));
    }
    await rename(tmp, link);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return link;
}

/** Whether the link resolves to the very file `blob` is. */
async function leadsTo(link: string, blob: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([realpath(link), realpath(blob)]);
    return a === b;
  } catch {
    return false;
  }
}

/** Identity of a blob file's current contents as far as the file system tells: size, mtime, inode. */
export function blobStamp(st: { size: number; mtimeMs: number; ino: number }): string {
  return `${st.size}:${st.mtimeMs}:${st.ino}`;
}

/** Stamps of blobs whose hash was checked, kept in the repo folder where huggingface_hub ignores them. */
function stampPath(repoDir: string, etag: string): string {
  if (!etagHashKind(etag)) throw outside(repoDir, etag);
  return inside(join(repoDir, '.mlx-rerank-verified'), etag);
}

export async function readVerifiedStamp(repoDir: string, etag: string): Promise<string | undefined> {
  return readFile(stampPath(repoDir, etag), 'utf8').catch(() => undefined);
}

export async function writeVerifiedStamp(repoDir: string, etag: string, stamp: string): Promise<void> {
  // A read-only cache still works (and a stamp that would land outside the cache is simply not kept).
  await atomicWrite(cacheOf(repoDir), stampPath(repoDir, etag), stamp).catch(() => {});
}

function noExistPath(repoDir: string, commit: string, file: string): string {
  if (!COMMIT_RE.test(commit) || !isRepoFile(file)) throw outside(repoDir, `.no_exist/${commit}/${file}`);
  return inside(join(repoDir, '.no_exist', commit), file);
}

export async function markNoExist(repoDir: string, commit: string, file: string): Promise<void> {
  const path = await writable(cacheOf(repoDir), noExistPath(repoDir, commit, file));
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, '', { flag: 'a' });
}

/** Where blobs/<etag>'s download lock lives: <cache>/.locks/models--org--name/<etag>.mlx-rerank.lock. */
export function lockPath(repoDir: string, etag: string): string {
  if (!etagHashKind(etag)) throw outside(repoDir, etag);
  return inside(join(cacheOf(repoDir), '.locks', basename(repoDir)), `${etag}.mlx-rerank.lock`);
}

export async function isMarkedNoExist(repoDir: string, commit: string, file: string): Promise<boolean> {
  return exists(noExistPath(repoDir, commit, file));
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
export async function hashFile(
  path: string,
  kind: 'sha256' | 'git-sha1',
  signal?: AbortSignal,
): Promise<string> {
  const hash = createHash(kind === 'sha256' ? 'sha256' : 'sha1');
  if (kind === 'git-sha1') hash.update(`blob ${(await stat(path)).size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, signal })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
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
