/**
 * Which model the bench scores with: the one the user names, else the real
 * cross-encoder/ms-marco-MiniLM-L-6-v2 when it is in the Hugging Face cache or quickly downloadable,
 * else a synthetic model of the same shape (seeded random weights, the real vocabulary), made once
 * into a cache folder. The fallback must be fast on a machine with no network: the cache is checked
 * offline first and the Hub is probed with a short timeout before any download is tried.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError, ModelNotFoundError } from '../errors';
import { resolveModel } from '../hub';
import { filesInFolder } from '../hub/folder';
import {
  f32ToBf16,
  f32ToF16,
  type HeaderEntry,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  type StoredTensor,
  safetensorsChunks,
} from '../safetensors';
import { NAMED_SHAPES, type NamedShape, synthesizeModel } from '../synth';
import type { ModelFiles, WeightDType } from '../types';

export const DEFAULT_MODEL = 'cross-encoder/ms-marco-MiniLM-L-6-v2';
export const SYNTHETIC_SEED = 42;

export interface BenchModel {
  /** What CrossEncoder.load gets: a folder or a Hub id. */
  source: string;
  /** What the report names. */
  id: string;
  synthetic: boolean;
  note?: string;
  /** How the loaded weights are stored, read from their safetensors headers once an engine loaded them. */
  stored?: string;
}

export interface PickModelOptions {
  model?: string;
  offline?: boolean;
  /** How the weights are stored: a synthetic model is made so, a real float32 one converted. */
  weights?: WeightDType;
  cacheDir?: string;
  probeMs?: number;
  log?: (line: string) => void;
}

export function syntheticCacheDir(): string {
  return join(tmpdir(), 'mlx-rerank-bench');
}

/** "synthetic", "synthetic:tiny", "synthetic:minilm-l6" -> the shape; anything else -> undefined. */
export function syntheticShape(model: string | undefined): NamedShape | undefined {
  if (model === undefined || !model.startsWith('synthetic')) return undefined;
  const shape = model.slice('synthetic'.length).replace(/^:/, '') || 'minilm-l6';
  return (NAMED_SHAPES as string[]).includes(shape) ? (shape as NamedShape) : undefined;
}

/** Makes (once) a synthetic model folder; concurrent or interrupted runs never see a half-made one. */
export async function syntheticModel(
  shape: NamedShape,
  dtype: WeightDType,
  cacheDir = syntheticCacheDir(),
): Promise<string> {
  const dir = join(cacheDir, `synthetic-${shape}-${dtype}-seed${SYNTHETIC_SEED}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    await synthesizeModel({ shape, dtype, seed: SYNTHETIC_SEED, outDir: tmp });
    writeFileSync(join(tmp, '.complete'), '');
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    if (existsSync(join(dir, '.complete'))) return dir; // another run made it meanwhile
    throw err;
  }
  return dir;
}

/** True when the Hub answers within `ms`. */
export async function hubReachable(ms: number): Promise<boolean> {
  const endpoint = process.env.HF_ENDPOINT ?? 'https://huggingface.co';
  try {
    const res = await fetch(`${endpoint}/api/models/${DEFAULT_MODEL}`, {
      method: 'HEAD',
      signal: AbortSignal.timeout(ms),
    });
    return res.status < 500;
  } catch {
    return false;
  }
}

export async function pickModel(opts: PickModelOptions = {}): Promise<BenchModel> {
  const dtype = opts.weights ?? 'float32';
  const shape = syntheticShape(opts.model);
  if (shape) {
    const source = await syntheticModel(shape, dtype, opts.cacheDir);
    return {
      source,
      id: `synthetic ${shape}`,
      synthetic: true,
      note: `seeded random weights (${shape} shape, stored ${dtype})`,
    };
  }
  // A 16-bit stored copy of a real model is made from its resolved files.
  const real = (files: ModelFiles, id: string): BenchModel => {
    if (dtype === 'float32') return { source: files.dir, id, synthetic: false };
    opts.log?.(`Making a ${dtype} copy of ${id}'s weights...`);
    return {
      source: storedCopy(files, dtype, opts.cacheDir),
      id,
      synthetic: false,
      note: `weights converted from float32 to ${dtype} for this run`,
    };
  };
  if (opts.model) {
    if (dtype === 'float32') return { source: opts.model, id: opts.model, synthetic: false };
    return real(await resolveModel(opts.model, { offline: opts.offline ?? false }), opts.model);
  }

  let why: string;
  try {
    return real(await resolveModel(DEFAULT_MODEL, { offline: true }), DEFAULT_MODEL);
  } catch (err) {
    why =
      err instanceof ModelNotFoundError
        ? 'not in the Hugging Face cache'
        : `not usable from the cache (${firstLine(err)})`;
  }
  if (!opts.offline) {
    const probeMs = opts.probeMs ?? 3000;
    if (await hubReachable(probeMs)) {
      try {
        opts.log?.(`Downloading ${DEFAULT_MODEL} from the Hugging Face Hub...`);
        return real(await resolveModel(DEFAULT_MODEL, {}), DEFAULT_MODEL);
      } catch (err) {
        why += `; download failed (${firstLine(err)})`;
      }
    } else {
      why += `; the Hub did not answer within ${probeMs} ms`;
    }
  } else {
    why += '; offline mode';
  }
  const source = await syntheticModel('minilm-l6', dtype, opts.cacheDir);
  return {
    source,
    id: DEFAULT_MODEL,
    synthetic: true,
    note:
      `the real model could not be loaded (${why}), so this run used seeded random weights of the exact ` +
      `MiniLM-L6 shape with the real vocabulary, stored ${dtype}: speed figures hold, scores are meaningless`,
  };
}

function firstLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return (m.split('\n')[0] ?? '').slice(0, 160);
}

/**
 * A copy of a model folder whose float32 safetensors weights are stored as float16 / bfloat16 (the
 * other files copied as they are), made once into the cache. Lets the "16-bit stored weights"
 * scenario run on the real model, whose published weights are float32.
 */
export function storedCopy(
  files: ModelFiles,
  dtype: 'float16' | 'bfloat16',
  cacheDir = syntheticCacheDir(),
): string {
  if (files.weights.length !== 1) {
    throw new InputError(
      `A ${dtype} copy needs a single model.safetensors; this model has ${files.weights.length} shards.`,
    );
  }
  const tag = `${files.id}@${files.revision ?? 'local'}`.replace(/[^A-Za-z0-9_.@-]+/g, '--');
  const dir = join(cacheDir, `stored-${dtype}-${tag}`);
  if (existsSync(join(dir, '.complete'))) return dir;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { recursive: true });
  try {
    for (const name of readdirSync(files.dir)) {
      const src = join(files.dir, name);
      if (name.endsWith('.safetensors') || !statSync(src).isFile()) continue;
      copyFileSync(src, join(tmp, name));
    }
    writeFileSync(
      join(tmp, 'model.safetensors'),
      convertSafetensors(readFileSync(files.weights[0] as string), dtype),
    );
    writeFileSync(join(tmp, '.complete'), '');
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  return dir;
}

/** Re-encodes every F32 tensor of a safetensors file (the bench's own synthetic one) as F16 / BF16; other tensors are kept. */
export function convertSafetensors(buf: Buffer, dtype: 'float16' | 'bfloat16'): Buffer {
  const { entries, dataStart } = parseSafetensorsHeader(buf, 'synthetic model');
  const data = buf.subarray(dataStart);
  const tag = dtype === 'float16' ? 'F16' : 'BF16';
  const conv = dtype === 'float16' ? f32ToF16 : f32ToBf16;
  const tensors: [string, StoredTensor][] = [];
  for (const [name, t] of entries) {
    const bytes = data.subarray(t.data_offsets[0], t.data_offsets[1]);
    if (t.dtype !== 'F32') {
      tensors.push([name, { dtype: t.dtype, shape: t.shape, bytes }]);
      continue;
    }
    const n = bytes.length / 4;
    const out = Buffer.alloc(n * 2);
    for (let i = 0; i < n; i++) out.writeUInt16LE(conv(bytes.readFloatLE(i * 4)), i * 2);
    tensors.push([name, { dtype: tag, shape: t.shape, bytes: out }]);
  }
  return Buffer.concat(safetensorsChunks(tensors));
}

/** The safetensors tensor types a report names, as the library's dtype words. */
const DTYPE_WORDS: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/**
 * How a model folder's weights are really stored, from its safetensors headers: the floating-point
 * type holding the most elements, followed by any others ("float16 (+ float32)"); undefined when the
 * folder or its headers cannot be read (the caller then says what was asked for).
 */
export async function storedWeightsDtype(dir: string): Promise<string | undefined> {
  try {
    const files = await filesInFolder(dir, dir, undefined, undefined, undefined);
    const elements = new Map<string, number>();
    for (const path of files.weights) {
      for (const t of readSafetensorsHeader(path).entries.values() as Iterable<Partial<HeaderEntry>>) {
        const word = typeof t.dtype === 'string' ? DTYPE_WORDS[t.dtype] : undefined;
        if (!word || !Array.isArray(t.shape)) continue;
        const n = t.shape.reduce((a, b) => a * Number(b), 1);
        elements.set(word, (elements.get(word) ?? 0) + n);
      }
    }
    const [main, ...rest] = [...elements.entries()].sort((a, b) => b[1] - a[1]).map(([w]) => w);
    if (main === undefined) return undefined;
    return rest.length > 0 ? `${main} (+ ${rest.join(', ')})` : main;
  } catch {
    return undefined;
  }
}
