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
import { readFile, realpath, rm, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve as resolvePath } from 'node:path';
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
  blobStamp,
  COMMIT_RE,
  envOffline,
  envToken,
  etagHashKind,
  exists,
  expandHome,
  hubCacheDir,
  isMarkedNoExist,
  linkSnapshot,
  markNoExist,
  readRef,
  readVerifiedStamp,
  repoFolder,
  snapshotPath,
  writeRef,
  writeVerifiedStamp,
} from './hub/cache';
import {
  ensureBlob,
  type FileMeta,
  type HubContext,
  HubUnreachableError,
  headFile,
  verify,
} from './hub/download';
import { createProgressReporter } from './progress';
import type { ModelFiles } from './types';

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
  /** Times a broken transfer is resumed with Range before giving up. Default 5. */
  retries?: number;
}

/** The files a cross-encoder needs, besides the weights. Optional ones are fetched when present. */
const TOKENIZER_FILES = ['tokenizer.json', 'vocab.txt', 'tokenizer_config.json', 'special_tokens_map.json'];
const ST_CONFIG = 'config_sentence_transformers.json';
const WEIGHTS = 'model.safetensors';
const WEIGHTS_INDEX = 'model.safetensors.index.json';
const PICKLE_WEIGHTS = ['pytorch_model.bin', 'pytorch_model.bin.index.json'];

const REPO_ID_RE = /^[A-Za-z0-9][\w.-]{0,95}(\/[\w.-]{1,96})?$/;

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
  const local = await localFolder(idOrPath);
  if (local) return filesInFolder(local, idOrPath, undefined, 'folder');
  const { repoId, revision } = parseId(idOrPath, opts.revision);
  const cacheDir = hubCacheDir(opts.cacheDir);
  const offline = opts.offline ?? envOffline();
  const verifyBlobs = opts.verify ?? true;
  if (offline) return fromCache(cacheDir, repoId, revision, verifyBlobs, 'offline');

  // A commit already complete in the cache needs no network at all (huggingface_hub does the same).
  if (COMMIT_RE.test(revision)) {
    const cached = await fromCache(cacheDir, repoId, revision, verifyBlobs, 'online').catch(() => undefined);
    if (cached) return cached;
  }
  const progress = createProgressReporter(opts.onProgress, opts.progress ?? Boolean(process.stderr.isTTY));
  const ctx: HubContext = {
    endpoint: (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, ''),
    repoId,
    cacheDir,
    token: opts.token ?? envToken(),
    signal: opts.signal,
    etagTimeoutMs: envSeconds('HF_HUB_ETAG_TIMEOUT', 10) * 1000,
    downloadTimeoutMs: envSeconds('HF_HUB_DOWNLOAD_TIMEOUT', 30) * 1000,
    retries: opts.retries ?? 5,
    onBytes: progress.update,
  };
  try {
    return await download(ctx, revision, verifyBlobs);
  } catch (err) {
    if (!(err instanceof HubUnreachableError)) throw err;
    // Like huggingface_hub: when the Hub can't be reached, a complete cached copy is used.
    try {
      return await fromCache(cacheDir, repoId, revision, verifyBlobs, 'unreachable');
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
  if (!REPO_ID_RE.test(repoId) || repoId.includes('--') || repoId.includes('..')) {
    throw new ModelNotFoundError(
      `"${id}" is neither an existing folder nor a valid Hugging Face id. Pass a folder that holds config.json, ` +
        'or an id like "cross-encoder/ms-marco-MiniLM-L-6-v2" (optionally "@revision").',
    );
  }
  if (rev.split('/').some((s) => s === '' || s === '.' || s === '..') || /[\\\0]/.test(rev)) {
    throw new InputError(`Invalid revision "${rev}": use a branch, tag or commit hash.`);
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

function envSeconds(name: string, fallback: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : fallback;
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
    if (await isMarkedNoExist(repoDir, commit, file)) return false;
    const cached = snapshotPath(repoDir, commit, file);
    // Files of a commit never change: a cached one is reused once it passes its hash check; a corrupt
    // one is dropped and fetched again.
    if (await exists(cached)) {
      if (!verifyBlobs) return true;
      try {
        await verifyCached(cached, ctx.repoId);
        return true;
      } catch (err) {
        if (!(err instanceof IntegrityError)) throw err;
        await rm(await realpath(cached), { force: true });
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
  // Small optional files: asked for together, so the round trips overlap.
  await Promise.all([...TOKENIZER_FILES, ST_CONFIG].map((file) => fetchFile(file, false)));
  return filesInFolder(join(repoDir, 'snapshots', commit), ctx.repoId, commit, 'cache', verifyBlobs);
}

function pickleOnly(id: string): UnsupportedModelError {
  return new UnsupportedModelError(
    `${id} has only PyTorch pickle weights (pytorch_model.bin), which are not loaded because unpickling can run arbitrary code. ` +
      `Convert them to safetensors once, e.g. python -c "from transformers import AutoModelForSequenceClassification as M, AutoTokenizer as T; ` +
      `M.from_pretrained('${id}').save_pretrained('DIR', safe_serialization=True); T.from_pretrained('${id}').save_pretrained('DIR')" ` +
      'and load DIR.',
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
  const dir = join(repoDir, 'snapshots', commit);
  if (!(await exists(join(dir, 'config.json')))) {
    throw new ModelNotFoundError(
      `${repoId}@${revision} (commit ${commit}) is not in the Hugging Face cache: ${join(dir, 'config.json')} is missing. ${how}`,
    );
  }
  try {
    return await filesInFolder(dir, repoId, commit, 'cache', verifyBlobs);
  } catch (err) {
    if (err instanceof ModelNotFoundError || err instanceof TokenizerError) {
      throw new ModelNotFoundError(
        `The cached copy of ${repoId} at ${dir} is incomplete: ${err.message} ${how}`,
      );
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// Picking the files out of a folder (a snapshot or a user's folder).

async function filesInFolder(
  dir: string,
  id: string,
  revision: string | undefined,
  kind: 'folder' | 'cache',
  verifyBlobs = kind === 'cache',
): Promise<ModelFiles> {
  const has = async (f: string) => {
    const st = await stat(join(dir, f)).catch(() => undefined);
    return st?.isFile() === true;
  };
  if (!(await has('config.json'))) {
    throw new ModelNotFoundError(`${dir} has no config.json; pass the folder of a transformers model.`);
  }
  let weights: string[];
  if (await has(WEIGHTS)) weights = [join(dir, WEIGHTS)];
  else if (await has(WEIGHTS_INDEX)) {
    weights = (await shardsOf(join(dir, WEIGHTS_INDEX))).map((s) => join(dir, s));
    for (const w of weights) {
      if (!(await has(w.slice(dir.length + 1)))) {
        throw new ModelNotFoundError(
          `${dir} lacks ${w.slice(dir.length + 1)}, a shard named by ${WEIGHTS_INDEX}.`,
        );
      }
    }
  } else if ((await has(PICKLE_WEIGHTS[0] as string)) || (await has(PICKLE_WEIGHTS[1] as string))) {
    throw pickleOnly(kind === 'folder' ? dir : id);
  } else {
    throw new ModelNotFoundError(`${dir} has no model.safetensors (nor model.safetensors.index.json).`);
  }
  const files: ModelFiles = { dir, id, config: join(dir, 'config.json'), weights };
  if (revision) files.revision = revision;
  if (await has('tokenizer.json')) files.tokenizerJson = join(dir, 'tokenizer.json');
  if (await has('vocab.txt')) files.vocabTxt = join(dir, 'vocab.txt');
  if (await has('tokenizer_config.json')) files.tokenizerConfig = join(dir, 'tokenizer_config.json');
  if (await has('special_tokens_map.json')) files.specialTokensMap = join(dir, 'special_tokens_map.json');
  if (await has(ST_CONFIG)) files.sentenceTransformersConfig = join(dir, ST_CONFIG);
  if (!files.tokenizerJson && !files.vocabTxt) {
    throw new TokenizerError(
      `${dir} has neither tokenizer.json nor vocab.txt; the model's tokenizer is missing.`,
    );
  }
  if (kind === 'cache' && verifyBlobs) {
    for (const f of [files.config, ...weights, files.tokenizerJson, files.vocabTxt]) {
      if (f) await verifyCached(f, id);
    }
  }
  return files;
}

/** Shard file names from a safetensors index, in order, each checked to stay inside the folder. */
async function shardsOf(indexPath: string): Promise<string[]> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (err) {
    throw new UnsupportedModelError(`${indexPath} is not valid JSON (${(err as Error).message}).`);
  }
  const map = (index as { weight_map?: unknown })?.weight_map;
  if (!map || typeof map !== 'object') {
    throw new UnsupportedModelError(
      `${indexPath} has no "weight_map" object; it is not a safetensors index.`,
    );
  }
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    if (typeof s !== 'string' || !/^[\w.-]+\.safetensors$/.test(s)) {
      throw new UnsupportedModelError(
        `${indexPath} names a shard "${String(s)}" that is not a plain *.safetensors file name.`,
      );
    }
  }
  return (shards as string[]).sort();
}

/**
 * A cached file (symlink to blobs/<etag>) must hash to its etag; a corrupt one is reported, never used.
 * Hashing 90 MB costs ~0.1-0.6 s, so a blob that passed is stamped (size, mtime, inode) and rehashed only
 * when one of those changed: anything that rewrites the file is caught, silent bit rot is not.
 */
async function verifyCached(file: string, id: string): Promise<void> {
  const real = await realpath(file);
  const etag = basename(real);
  if (!etagHashKind(etag)) return;
  const repoDir = dirname(dirname(real));
  const st = await stat(real);
  if ((await readVerifiedStamp(repoDir, etag)) === blobStamp(st)) return;
  const problem = await verify(real, etag);
  if (problem) {
    throw new IntegrityError(
      `The cached file ${file} of ${id} is corrupted: it does not match its ${problem}. ` +
        `Delete ${real} and load the model again while online (it is downloaded again), or run huggingface-cli download ${id} --force-download.`,
    );
  }
  await writeVerifiedStamp(repoDir, etag, blobStamp(st));
}
