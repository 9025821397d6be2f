/**
 * Which files of a model folder (a user's folder or a snapshot of the cache) make up a model: config,
 * safetensors weights (one file or the shards an index names), tokenizer files; pickled weights are
 * refused, and a snapshot's files are hash-checked against their etags before use.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { IntegrityError, ModelNotFoundError, TokenizerError, UnsupportedModelError } from '../errors';
import type { ModelFiles } from '../types';
import { readJsonFile } from '../validate';
import { blobStamp, inside, readVerifiedStamp, writeVerifiedStamp } from './cache';
import { verify } from './download';
import { etagHashKind, isShardName, quote } from './names';
import { throwIfAborted } from './stall';

/** The files a cross-encoder needs, besides the weights. Optional ones are fetched when present. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'vocab.txt',
  'tokenizer_config.json',
  'special_tokens_map.json',
];
export const ST_CONFIG = 'config_sentence_transformers.json';
export const WEIGHTS = 'model.safetensors';
export const WEIGHTS_INDEX = 'model.safetensors.index.json';
export const PICKLE_WEIGHTS = ['pytorch_model.bin', 'pytorch_model.bin.index.json'];

/** The largest safetensors index read: a 400-shard model's index is about 100 KB. */
const MAX_INDEX_BYTES = 16 << 20;

/** The refusal of a repository or folder that has only pickled weights, with the conversion command. */
export function pickleOnly(id: string): UnsupportedModelError {
  return new UnsupportedModelError(
    `${id} has only PyTorch pickle weights (pytorch_model.bin), which are not loaded because unpickling can run arbitrary code. ` +
      `Convert them to safetensors once, e.g. python -c "from transformers import AutoModelForSequenceClassification as M, AutoTokenizer as T; ` +
      `M.from_pretrained('${id}').save_pretrained('DIR', safe_serialization=True); T.from_pretrained('${id}').save_pretrained('DIR')" ` +
      'and load DIR.',
  );
}

/** A snapshot folder's repo folder, and whether its blobs are hash-checked. */
export interface CacheFolder {
  repoDir: string;
  verifyBlobs: boolean;
}

/** The model files in `dir`: a user's folder, or a snapshot of the cache (`cache` set). */
export async function filesInFolder(
  dir: string,
  id: string,
  revision: string | undefined,
  cache: CacheFolder | undefined,
  signal: AbortSignal | undefined,
): Promise<ModelFiles> {
  throwIfAborted(signal);
  // Every name is a constant or a checked shard name, and every path is built inside `dir`.
  const has = async (f: string) => {
    const st = await stat(inside(dir, f)).catch(() => undefined);
    return st?.isFile() === true;
  };
  if (!(await has('config.json'))) {
    throw new ModelNotFoundError(`${dir} has no config.json; pass the folder of a transformers model.`);
  }
  let weights: string[];
  if (await has(WEIGHTS)) weights = [inside(dir, WEIGHTS)];
  else if (await has(WEIGHTS_INDEX)) {
    const shards = await shardsOf(inside(dir, WEIGHTS_INDEX));
    for (const s of shards) {
      if (!(await has(s)))
        throw new ModelNotFoundError(`${dir} lacks ${s}, a shard named by ${WEIGHTS_INDEX}.`);
    }
    weights = shards.map((s) => inside(dir, s));
  } else if ((await has(PICKLE_WEIGHTS[0] as string)) || (await has(PICKLE_WEIGHTS[1] as string))) {
    throw pickleOnly(cache ? id : dir);
  } else {
    throw new ModelNotFoundError(`${dir} has no model.safetensors (nor model.safetensors.index.json).`);
  }
  const files: ModelFiles = { dir, id, config: inside(dir, 'config.json'), weights };
  if (revision) files.revision = revision;
  if (await has('tokenizer.json')) files.tokenizerJson = inside(dir, 'tokenizer.json');
  if (await has('vocab.txt')) files.vocabTxt = inside(dir, 'vocab.txt');
  if (await has('tokenizer_config.json')) files.tokenizerConfig = inside(dir, 'tokenizer_config.json');
  if (await has('special_tokens_map.json')) files.specialTokensMap = inside(dir, 'special_tokens_map.json');
  if (await has(ST_CONFIG)) files.sentenceTransformersConfig = inside(dir, ST_CONFIG);
  if (!files.tokenizerJson && !files.vocabTxt) {
    throw new TokenizerError(
      `${dir} has neither tokenizer.json nor vocab.txt; the model's tokenizer is missing.`,
    );
  }
  if (cache?.verifyBlobs) {
    for (const f of [files.config, ...weights, files.tokenizerJson, files.vocabTxt]) {
      if (f) await verifyCached(f, id, cache.repoDir, signal);
    }
  }
  throwIfAborted(signal);
  return files;
}

/** Shard file names from a safetensors index, in order, each checked to stay inside the folder. */
export async function shardsOf(indexPath: string): Promise<string[]> {
  const index = await readJsonFile(indexPath, 'safetensors index', MAX_INDEX_BYTES, UnsupportedModelError);
  const map = (index as { weight_map?: unknown })?.weight_map;
  if (!map || typeof map !== 'object') {
    throw new UnsupportedModelError(
      `${indexPath} has no "weight_map" object; it is not a safetensors index.`,
    );
  }
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  const bad = shards.find((s) => !isShardName(s));
  if (bad !== undefined || shards.length === 0) {
    throw new UnsupportedModelError(
      `${indexPath} names a shard ${quote(bad)} that is not a plain *.safetensors file name next to the index.`,
    );
  }
  return (shards as string[]).sort();
}

/**
 * A cached file (symlink to blobs/<etag>) must hash to its etag; a corrupt one is reported, never used.
 * Hashing 90 MB costs ~0.1-0.6 s, so a blob that passed is stamped (size, mtime, inode) and rehashed only
 * when one of those changed: anything that rewrites the file is caught, silent bit rot is not.
 */
export async function verifyCached(
  file: string,
  id: string,
  repoDir: string,
  signal?: AbortSignal,
): Promise<void> {
  const real = await realpath(file);
  const etag = basename(real);
  if (!etagHashKind(etag)) return;
  // Stamps live in the repo folder this file was asked for, never next to wherever a link leads.
  const st = await stat(real);
  if ((await readVerifiedStamp(repoDir, etag)) === blobStamp(st)) return;
  const problem = await verify(real, etag, signal);
  if (problem) {
    throw new IntegrityError(
      `The cached file ${file} of ${id} is corrupted: it does not match its ${problem}. ` +
        `Delete ${real} and load the model again while online (it is downloaded again), or run huggingface-cli download ${id} --force-download.`,
    );
  }
  await writeVerifiedStamp(repoDir, etag, blobStamp(st));
}
