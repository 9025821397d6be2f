/**
 * The engines' tuning options (LoadOptions.engine, and loadEngine's options), declared once: each
 * one's type and range, its default, the engine that reads it, what it is for, and the environment
 * variable that may set it. The engines read nothing from the environment: `withEnvTuning` (called by
 * src/native.ts for every load, backends() and the GEMM probe) is the one place that does, and an
 * option the caller passes wins over its variable. docs/engine-options.md lists them.
 */

import { isAbsolute } from 'node:path';
import { InputError } from './errors';
import type { EngineTuning } from './types';
import { checkBoolean, checkNumber, checkOneOf, describe, int, type Range, readOptions } from './validate';

type Kind = { oneOf: readonly string[] } | { boolean: true } | { range: Range } | { folder: true };

export interface EngineOptionDecl {
  kind: Kind;
  /** The engine that reads it. */
  engine: 'cpu' | 'mlx';
  /** What applies when it is unset, in words (some defaults depend on the device). */
  default: string;
  /** The environment variable that sets it when the caller does not. */
  env: string;
  /** What it is for. */
  doc: string;
}

export const ENGINE_OPTIONS: { readonly [K in keyof EngineTuning]-?: EngineOptionDecl } = {
  cpuIsa: {
    kind: { oneOf: ['avx512', 'avxvnni', 'avx2', 'scalar', 'amx', 'avx512f'] },
    engine: 'cpu',
    default: 'the best this CPU has',
    env: 'MLX_RERANK_CPU_ISA',
    doc: "caps the kernels' instruction sets (amx: everything; avx512: no AMX; avx512f: AVX-512 without BF16, VNNI or AMX; avxvnni: no AVX-512; avx2: no AVX-512, no VNNI), to compare them or to run under valgrind",
  },
  attention: {
    kind: { oneOf: ['varlen', 'flash', 'coarse', 'fine'] },
    engine: 'mlx',
    default: 'varlen on CUDA GPUs, coarse on other GPUs, fine on CPUs',
    env: 'MLX_RERANK_ATTENTION',
    doc: 'the attention layout (docs/architecture.md), to compare layouts or run the GPU ones on a CPU; varlen exists on CUDA only and falls back to coarse elsewhere; flash is varlen with the tensor-core kernel (float16/bfloat16, head size a multiple of 16 up to 128, compute capability 8.0+; else plain varlen)',
  },
  rowBuckets: {
    kind: { boolean: true },
    engine: 'mlx',
    default: 'on for GPUs, off for CPUs',
    env: 'MLX_RERANK_ROW_BUCKETS',
    doc: "rounds the dense layers' token rows up to row buckets (at most 3.1% padding, few shapes)",
  },
  warmupRows: {
    kind: { range: int(0, 1 << 24) },
    engine: 'mlx',
    default: '16384 (a quarter of the GPU batch limit: docs/latency-gpu.md, cold start)',
    env: 'MLX_RERANK_WARMUP_ROWS',
    doc: 'on a GPU, warm-up visits every row bucket up to this many token rows; fewer warm up faster, and a batch beyond them meets cold shapes',
  },
  warmupDepth: {
    kind: { range: int(1, 8) },
    engine: 'mlx',
    default: '2',
    env: 'MLX_RERANK_WARMUP_DEPTH',
    doc: "on a GPU, the row-bucket warm-up's forwards in flight at once: with 2 the host meets the next bucket's shapes while the GPU computes the last; 1 waits for each (the steady state is the same either way)",
  },
  cpuCompile: {
    kind: { boolean: true },
    engine: 'mlx',
    default: 'false',
    env: 'MLX_RERANK_CPU_COMPILE',
    doc: 'uses mx::compile on a CPU device too (it does not pay for BERT shapes and needs a C++ compiler at run time; for measuring)',
  },
  cancelRows: {
    kind: { range: int(0, 1 << 24) },
    engine: 'mlx',
    default: '8192',
    env: 'MLX_RERANK_CANCEL_ROWS',
    doc: 'batches of at least this many tokens are evaluated a layer at a time, so that a batch whose calls were all aborted stops at the next layer; smaller ones run as one graph',
  },
  fusedKernels: {
    kind: { boolean: true },
    engine: 'mlx',
    default: 'on for CUDA GPUs with float16/bfloat16, off elsewhere',
    env: 'MLX_RERANK_FUSED_KERNELS',
    doc: 'on CUDA: per-forward inputs and the weights in device memory (not managed memory), the embeddings (gathers + LayerNorm) as one kernel, and residual + bias + LayerNorm as one kernel after each post-norm block; off: the plain MLX graph, to compare or as an escape hatch. Has no effect on other devices',
  },
  startAhead: {
    kind: { boolean: true },
    engine: 'mlx',
    default: 'on for GPUs, off for CPUs',
    env: 'MLX_RERANK_START_AHEAD',
    doc: "the engine thread builds the next queued batch and queues it on the device before it waits for the current batch's result, so that the host's ~1-2 ms of graph building per forward overlaps the device's work; off: one batch at a time, to compare",
  },
  kernelCacheDir: {
    kind: { folder: true },
    engine: 'mlx',
    default:
      '$XDG_CACHE_HOME/mlx-rerank/mlx-kernels (~/.cache/... without it); an explicit MLX_PTX_CACHE_DIR wins',
    env: 'MLX_RERANK_KERNEL_CACHE_DIR',
    doc: "on CUDA, the folder (absolute path) where MLX keeps the kernels it compiles, so that the next process loads them instead of compiling; 'none' = MLX's default (/tmp/mlx/<version>/ptx). Process-wide: the first mlx engine's value holds (src/kernel-cache.ts)",
  },
};

const KEYS = Object.fromEntries(Object.keys(ENGINE_OPTIONS).map((k) => [k, true])) as {
  readonly [K in keyof EngineTuning]-?: true;
};

/** The environment table: variable -> option. */
export const ENGINE_ENV: Readonly<Record<string, keyof EngineTuning>> = Object.fromEntries(
  Object.entries(ENGINE_OPTIONS).map(([k, d]) => [d.env, k as keyof EngineTuning]),
);

/** A folder option: 'none', '' (both: MLX's default) or an absolute path. */
function checkFolder(name: string, v: unknown): string {
  const ok =
    typeof v === 'string' &&
    (v === '' || v === 'none' || (isAbsolute(v) && v.length <= 4096 && !v.includes('\0')));
  if (!ok) throw new InputError(`${name} must be an absolute folder path or 'none' (got ${describe(v)}).`);
  return v as string;
}

function checkValue(name: string, d: EngineOptionDecl, v: unknown): string | number | boolean {
  if ('oneOf' in d.kind) return checkOneOf(name, v, d.kind.oneOf);
  if ('folder' in d.kind) return checkFolder(name, v);
  if ('boolean' in d.kind) return checkBoolean(name, v);
  return checkNumber(name, v, d.kind.range);
}

/** Checks LoadOptions.engine: unknown names and bad values are InputErrors naming `engine.<name>`. */
export function checkEngineTuning(o: unknown): EngineTuning {
  const given = readOptions<EngineTuning>('engine', o, KEYS);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(given)) {
    out[k] = checkValue(`engine.${k}`, ENGINE_OPTIONS[k as keyof EngineTuning], v);
  }
  return out as EngineTuning;
}

/** The options set by environment variables (empty ones count as unset); a bad value names its variable. */
export function engineTuningFromEnv(env: NodeJS.ProcessEnv = process.env): EngineTuning {
  const out: Record<string, unknown> = {};
  for (const [variable, k] of Object.entries(ENGINE_ENV)) {
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    const d = ENGINE_OPTIONS[k];
    let v: unknown = raw;
    if ('boolean' in d.kind)
      v = raw === '1' || raw === 'true' ? true : raw === '0' || raw === 'false' ? false : raw;
    else if ('range' in d.kind) v = /^\d+$/.test(raw) ? Number(raw) : raw;
    try {
      out[k] = checkValue(variable, d, v);
    } catch (err) {
      const accepted = 'boolean' in d.kind ? ' (use 0 or 1)' : '';
      throw new InputError(`${(err as Error).message}${accepted} Unset it or fix its value.`, { cause: err });
    }
  }
  return out as EngineTuning;
}

/** `o` with the tuning options it leaves unset taken from the environment. */
export function withEnvTuning<T extends EngineTuning>(o: T, env: NodeJS.ProcessEnv = process.env): T {
  const fromEnv = engineTuningFromEnv(env);
  const out: Record<string, unknown> = { ...(o as Record<string, unknown>) };
  for (const [k, v] of Object.entries(fromEnv)) if (out[k] === undefined) out[k] = v;
  return out as T;
}
