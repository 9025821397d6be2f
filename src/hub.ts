/**
 * Model resolution: a local folder, or a Hugging Face Hub id (`org/name`, `org/name@revision`) fetched
 * into the cache Python's huggingface_hub uses (see src/hub/cache.ts for the layout), so a model
 * downloaded by either side serves the other without a new download, and works offline afterwards.
 *
 * Why not @huggingface/hub's downloadFileToCacheDir: it asks the paths-info API instead of `resolve`
 * (no X-Repo-Commit, no redirects to read), does not write refs/<revision>, has no offline mode, no
 * resume, no lock, no size/hash check and no progress, and logs with console.debug. We use the same
 * layout and write the rest here.
 */
import { realpath, rm, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import {
  AbortedError,
  DownloadError,
  InputError,
  IntegrityError,
  MlxRerankError,
  ModelNotFoundError,
  TokenizerError,
  UnsupportedModelError,
} from './errors';
import {
  envOffline,
  envToken,
  exists,
  expandHome,
  hubCacheDir,
  inside,
  isMarkedNoExist,
  linkSnapshot,
  markNoExist,
  readRef,
  repoFolder,
  snapshotPath,
  writable,
  writeRef,
} from './hub/cache';
import { ensureBlob, type FileMeta, type HubContext, HubUnreachableError, headFile } from './hub/download';
import {
  filesInFolder,
  PICKLE_WEIGHTS,
  pickleOnly,
  ST_CONFIG,
  shardsOf,
  TOKENIZER_FILES,
  verifyCached,
  WEIGHTS,
  WEIGHTS_INDEX,
} from './hub/folder';
import { COMMIT_RE, isRepoId, isRevision, quote } from './hub/names';
import { STALL_TIMEOUT_DEFAULT_S, throwIfAborted } from './hub/stall';
import { createProgressReporter } from './progress';
import type { ModelFiles } from './types';
import { checkNumber, int, MAX_TIMER_MS, type Range, real } from './validate';

/** Ranges of the numeric hub options (docs/limits.md lists them with the others). */
export const HUB_RANGES = {
  /** Default 5. */
  retries: int(0, 100),
  /** Default: HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT seconds, else STALL_TIMEOUT_DEFAULT_S. */
  stallTimeoutMs: real(1, MAX_TIMER_MS),
} as const;

export interface ResolveOptions {
  /** Branch, tag or commit; `org/name@rev` in the id wins. Default "main". */
  revision?: string;
  /** The hub cache folder; default HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Use the cache only (also HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** Default HF_TOKEN, else the token `huggingface-cli login` saved. */
  token?: string;
  /** Default HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  onProgress?: (p: { file: string; loaded: number; total: number }) => void;
  /** A progress bar on stderr; default: when stderr is a TTY. */
  progress?: boolean;
  signal?: AbortSignal;
  /**
   * Hash-check cached blobs against their etag (sha256 / git sha1) before use; a checked blob is stamped
   * (size, mtime, inode) and hashed again only once the file changed. Default true.
   */
  verify?: boolean;
  /** Times a broken (or stalled) transfer is resumed with Range before giving up: an integer 0-100. Default 5. */
  retries?: number;
  /**
   * Milliseconds a Hub request may make no progress before it fails with E_DOWNLOAD: waiting for the
   * response headers (connecting included), or receiving less than 1 KiB of a download. Default:
   * HF_HUB_ETAG_TIMEOUT (metadata requests) / HF_HUB_DOWNLOAD_TIMEOUT (downloads) in seconds, else 10 s.
   */
  stallTimeoutMs?: number;
}

export async function resolveModel(idOrPath: string, opts: ResolveOptions = {}): Promise<ModelFiles> {
  try {
    return await resolveUnwrapped(idOrPath, opts);
  } catch (err) {
    if (err instanceof MlxRerankError) throw err;
    if ((err as Error)?.name === 'AbortError' || opts.signal?.aborted)
      throw new AbortedError(undefined, { cause: err });
    // File-system failures (read-only or full cache, permissions) and anything unforeseen.
    const cacheDir = hubCacheDir(opts.cacheDir);
    throw new DownloadError(
      `Resolving ${idOrPath} failed: ${(err as Error)?.message ?? String(err)}. If the cache folder ${cacheDir} ` +
        'is not writable or the disk is full, set HF_HUB_CACHE (or the cacheDir option) to a writable folder with space.',
      undefined,
      { cause: err },
    );
  }
}

async function resolveUnwrapped(idOrPath: string, opts: ResolveOptions): Promise<ModelFiles> {
  if (typeof idOrPath !== 'string' || idOrPath.trim() === '') {
    throw new InputError('The model must be a Hugging Face id ("org/name") or a local folder path.');
  }
  const { signal } = opts;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InputError('signal must be an AbortSignal.');
  }
  const stallTimeoutMs = optional('stallTimeoutMs', opts.stallTimeoutMs, HUB_RANGES.stallTimeoutMs);
  const retries = optional('retries', opts.retries, HUB_RANGES.retries) ?? 5;
  throwIfAborted(signal); // before anything is read or written
  const local = await localFolder(idOrPath);
  if (local) return filesInFolder(local, idOrPath, undefined, undefined, signal);
  const { repoId, revision } = parseId(idOrPath, opts.revision);
  const cacheDir = hubCacheDir(opts.cacheDir);
  const offline = opts.offline ?? envOffline();
  const verifyBlobs = opts.verify ?? true;
  if (offline) return fromCache(cacheDir, repoId, revision, verifyBlobs, 'offline', signal);

  // A commit already complete in the cache needs no network at all (huggingface_hub does the same).
  if (COMMIT_RE.test(revision)) {
    const cached = await fromCache(cacheDir, repoId, revision, verifyBlobs, 'online', signal).catch((err) => {
      if (err instanceof AbortedError) throw err;
      return undefined;
    });
    if (cached) return cached;
  }
  const progress = createProgressReporter(opts.onProgress, opts.progress ?? Boolean(process.stderr.isTTY));
  const ctx: HubContext = {
    endpoint: (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    repoId,
    cacheDir,
    token: opts.token ?? envToken(),
    signal,
    etagTimeoutMs: stallTimeoutMs ?? envSeconds('HF_HUB_ETAG_TIMEOUT', STALL_TIMEOUT_DEFAULT_S) * 1000,
    stallTimeoutMs: stallTimeoutMs ?? envSeconds('HF_HUB_DOWNLOAD_TIMEOUT', STALL_TIMEOUT_DEFAULT_S) * 1000,
    retries,
    onBytes: progress.update,
  };
  try {
    return await download(ctx, revision, verifyBlobs);
  } catch (err) {
    if (!(err instanceof HubUnreachableError)) throw err;
    // Like huggingface_hub: when the Hub can't be reached, a complete cached copy is used.
    try {
      return await fromCache(cacheDir, repoId, revision, verifyBlobs, 'unreachable', signal);
    } catch (cacheErr) {
      if (cacheErr instanceof ModelNotFoundError) {
        throw new DownloadError(
          `${err.message} No usable cached copy either: ${cacheErr.message}`,
          undefined,
          {
            cause: err,
          },
        );
      }
      throw cacheErr;
    }
  } finally {
    progress.finish();
  }
}

/** `org/name@rev` -> repo id + revision; the id's revision wins over opts.revision. */
export function parseId(id: string, revision?: string): { repoId: string; revision: string } {
  const at = id.indexOf('@');
  const repoId = at >= 0 ? id.slice(0, at) : id;
  const rev = (at >= 0 ? id.slice(at + 1) : undefined) || revision || 'main';
  if (!isRepoId(repoId)) {
    throw new ModelNotFoundError(
      `"${id}" is neither an existing folder nor a valid Hugging Face id. Pass a folder that holds config.json, ` +
        'or an id like "cross-encoder/ms-marco-MiniLM-L-6-v2" (optionally "@revision").',
    );
  }
  if (!isRevision(rev)) {
    throw new InputError(
      `Invalid revision ${quote(rev)}: use a branch, tag or commit hash (git's ref-name rules: no "..", no leading "/", no "\\", spaces or control characters).`,
    );
  }
  return { repoId, revision: rev };
}

async function localFolder(idOrPath: string): Promise<string | undefined> {
  const path = expandHome(idOrPath);
  const base = idOrPath.split('@')[0] ?? '';
  const looksLikePath =
    isAbsolute(path) ||
    path.startsWith('.') ||
    path.includes('\\') ||
    path !== idOrPath ||
    base.split('/').length > 2;
  const st = await stat(path).catch(() => undefined);
  if (st?.isDirectory()) return resolvePath(path);
  if (st) throw new ModelNotFoundError(`${path} is a file; pass the folder that holds config.json.`);
  if (looksLikePath) {
    throw new ModelNotFoundError(
      `No model folder at ${resolvePath(path)}. Pass an existing folder holding config.json, model.safetensors and the tokenizer files, or a Hugging Face id.`,
    );
  }
  return undefined;
}

/** An env variable in seconds (huggingface_hub's convention), else the fallback; capped to what a timer holds. */
function envSeconds(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? Math.min(v, MAX_TIMER_MS / 1000) : fallback;
}

/** An optional numeric option within [min, max] (an integer when asked), else E_INPUT naming it. */
function optional(name: string, v: unknown, range: Range): number | undefined {
  return v === undefined ? undefined : checkNumber(name, v, range);
}

// ---------------------------------------------------------------------------------------------------
// Online: resolve the revision to a commit, then fetch what is missing from snapshots/<commit>/.

async function download(ctx: HubContext, revision: string, verifyBlobs: boolean): Promise<ModelFiles> {
  const repoDir = repoFolder(ctx.cacheDir, ctx.repoId);
  const config = await headFile(ctx, revision, 'config.json');
  if (!config) {
    throw new ModelNotFoundError(
      `${ctx.repoId}@${revision} on ${ctx.endpoint} has no config.json, so it is not a transformers model. Check the id.`,
    );
  }
  const commit = config.commit;
  await writeRef(repoDir, revision, commit);
  const fetchFile = async (file: string, required: boolean): Promise<boolean> => {
    throwIfAborted(ctx.signal);
    if (await isMarkedNoExist(repoDir, commit, file)) return false;
    const cached = snapshotPath(repoDir, commit, file);
    // Files of a commit never change: a cached one is reused once it passes its hash check; a corrupt
    // one is dropped and fetched again.
    if (await exists(cached)) {
      if (!verifyBlobs) return true;
      try {
        await verifyCached(cached, ctx.repoId, repoDir, ctx.signal);
        return true;
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        // Only a blob inside the cache is deleted; a link leading out of it is refused (E_INTEGRITY).
        await rm(await writable(ctx.cacheDir, await realpath(cached)), { force: true });
      }
    }
    const meta = file === 'config.json' ? config : await headFile(ctx, commit, file);
    if (!meta) {
      await markNoExist(repoDir, commit, file);
      if (required) {
        throw new ModelNotFoundError(`${ctx.repoId}@${commit} has no ${file}, which the model needs.`);
      }
      return false;
    }
    await ensureBlob(ctx, meta);
    await linkSnapshot(repoDir, commit, file, meta.etag);
    return true;
  };

  await fetchFile('config.json', true);
  if (!(await fetchFile(WEIGHTS, false))) {
    if (await fetchFile(WEIGHTS_INDEX, false)) {
      for (const shard of await shardsOf(snapshotPath(repoDir, commit, WEIGHTS_INDEX)))
        await fetchFile(shard, true);
    } else {
      for (const pickle of PICKLE_WEIGHTS) {
        const meta: FileMeta | null = await headFile(ctx, commit, pickle);
        if (meta) throw pickleOnly(ctx.repoId);
      }
      throw new UnsupportedModelError(
        `${ctx.repoId}@${commit} has no model.safetensors nor model.safetensors.index.json: there are no weights this library can load.`,
      );
    }
  }
  // Small optional files: asked for together, so the round trips overlap. All settle before the call
  // does, so nothing is still writing into the cache once it has failed.
  const optional = await Promise.allSettled(
    [...TOKENIZER_FILES, ST_CONFIG].map((file) => fetchFile(file, false)),
  );
  for (const r of optional) if (r.status === 'rejected') throw r.reason;
  return filesInFolder(
    snapshotPath(repoDir, commit),
    ctx.repoId,
    commit,
    { repoDir, verifyBlobs },
    ctx.signal,
  );
}

// ---------------------------------------------------------------------------------------------------
// Cache only.

type CacheMode = 'offline' | 'online' | 'unreachable';

async function fromCache(
  cacheDir: string,
  repoId: string,
  revision: string,
  verifyBlobs: boolean,
  mode: CacheMode,
  signal: AbortSignal | undefined,
): Promise<ModelFiles> {
  const repoDir = repoFolder(cacheDir, repoId);
  const how =
    `Download it while online (drop HF_HUB_OFFLINE / offline: true and load it once), or with Python: ` +
    `huggingface-cli download ${repoId}${revision === 'main' ? '' : ` --revision ${revision}`}` +
    `${cacheDir === hubCacheDir() ? '' : ` --cache-dir ${cacheDir}`}; or point HF_HUB_CACHE / HF_HOME at the cache that holds it.`;
  const commit = await readRef(repoDir, revision);
  if (!commit) {
    throw new ModelNotFoundError(
      `${repoId}@${revision} is not in the Hugging Face cache (looked for ${join(repoDir, 'refs', revision)}${mode === 'offline' ? ', offline mode' : ''}). ${how}`,
    );
  }
  const dir = snapshotPath(repoDir, commit);
  if (!(await exists(inside(dir, 'config.json')))) {
    throw new ModelNotFoundError(
      `${repoId}@${revision} (commit ${commit}) is not in the Hugging Face cache: ${inside(dir, 'config.json')} is missing. ${how}`,
    );
  }
  try {
    return await filesInFolder(dir, repoId, commit, { repoDir, verifyBlobs }, signal);
  } catch (err) {
    if (err instanceof ModelNotFoundError || err instanceof TokenizerError) {
      throw new ModelNotFoundError(
        `The cached copy of ${repoId} at ${dir} is incomplete: ${err.message} ${how}`,
      );
    }
    throw err;
  }
}
