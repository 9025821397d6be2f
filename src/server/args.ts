/** `mlx-rerank serve` flags -> ServeOptions, with the defaults documented in docs/server.md. */
import { parseArgs } from 'node:util';
import type { LoadOptions } from '../cross-encoder';
import { checkEngineTuning, ENGINE_OPTIONS } from '../engine-options';
import { InputError } from '../errors';
import { LIMITS } from '../scheduler/limits';
import type { EngineTuning } from '../types';
import { flagInt, flagOneOf } from '../validate';
import type { ServeOptions } from './index';

type TuningKey = keyof EngineTuning;

/** An engine option's flag: its name in kebab case (kernelCacheDir -> --kernel-cache-dir). */
function tuningFlag(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** One string flag per option declared in ENGINE_OPTIONS: a new option needs no CLI edit. */
const TUNING_FLAGS = Object.fromEntries(
  Object.keys(ENGINE_OPTIONS).map((k) => [tuningFlag(k), { type: 'string' as const }]),
) as Record<string, { type: 'string' }>;

const BOOLEAN_VALUES = ['1', '0', 'true', 'false'] as const;

/** What a tuning flag takes, in the help's words. */
function tuningValues(key: TuningKey): string {
  const kind = ENGINE_OPTIONS[key].kind;
  if ('oneOf' in kind) return kind.oneOf.join('|');
  if ('boolean' in kind) return '0|1';
  if ('folder' in kind) return 'DIR|none';
  return 'N';
}

/** The help lines of the engine tuning flags, made from ENGINE_OPTIONS (docs/engine-options.md). */
export const ENGINE_TUNING_USAGE = [
  'Engine tuning, for measuring (docs/engine-options.md; each also settable by its environment variable):',
  ...(Object.keys(ENGINE_OPTIONS) as TuningKey[]).map((k) => {
    const d = ENGINE_OPTIONS[k];
    return `  --${tuningFlag(k)} ${tuningValues(k)}   ${d.engine} engine; default ${d.default} (${d.env})`;
  }),
  '',
].join('\n');

export const SERVE_USAGE = `Usage: mlx-rerank serve --model ID|DIR|synthetic[:tiny] [options]

Serves one model over HTTP: Text Embeddings Inference (POST /rerank, /predict, GET /info, /health),
Cohere/Jina (POST /v1/rerank, /v2/rerank), GET /metrics (Prometheus), GET /openapi.json, and a live
dashboard at GET /. See docs/server.md.

Model and engine (as mlx-rerank bench):
  --model ID|DIR|synthetic[:tiny]   the model (required)
  --backend auto|cpu|mlx   (default auto)     --device auto|gpu|cpu (default auto)
  --dtype float32|float16|bfloat16|int8       --threads N (cpu engine; default: cores / workers)
  --tokenizer-threads N   tokenizer worker threads, 0..64 (0: on the JS thread; default: the library's)
  --engine-replicas N     engines of the model sharing the batches, 1..8 (default 1; see docs/latency-gpu.md)
  --max-batch-tokens N --max-batch-size N --max-wait-ms N   scheduler limits (library defaults)
  --early-batch-tokens N  an idle engine starts on this many tokenized tokens of a call (GPU default 16384)
  --max-queue-pairs N   pairs waiting at most; beyond: 429 with Retry-After (default 100000)
  --max-length N        tokens per pair at most (default: the model's)
  --offline             never touch the network
${ENGINE_TUNING_USAGE}
HTTP:
  --host H              address to listen on (default 127.0.0.1; 0.0.0.0 in a container)
  --port N              (default 8080; 0 picks a free port, printed on stdout)
  --api-key KEY         require "Authorization: Bearer KEY" (repeatable; or env MLX_RERANK_API_KEY)
  --max-body-bytes N    request body limit, 413 beyond (default 2000000)
  --max-documents N     documents or pairs per request, 422 beyond (default 1000)
  --no-auto-truncate    a pair longer than the model takes is a 422 unless the request says truncate
  --cors-origin ORIGIN  allow browser calls from ORIGIN ('*' for any; repeatable; default: CORS off)
  --workers N           N engines (processes) behind one port (default 1)
  --shutdown-timeout S  on SIGTERM/SIGINT, seconds to finish queued work before giving up (default 30)
  --log-level L         fatal|error|warn|info|debug|trace|silent (default info; JSON lines on stdout)
`;

/** The model, engine and scheduler flags `serve` shares with `mlx-rerank bench` (src/cli.ts). */
export const ENGINE_FLAGS = {
  model: { type: 'string' },
  backend: { type: 'string' },
  device: { type: 'string' },
  dtype: { type: 'string' },
  threads: { type: 'string' },
  'tokenizer-threads': { type: 'string' },
  'engine-replicas': { type: 'string' },
  'max-batch-tokens': { type: 'string' },
  'max-batch-size': { type: 'string' },
  'max-wait-ms': { type: 'string' },
  'early-batch-tokens': { type: 'string' },
  offline: { type: 'boolean' },
  ...TUNING_FLAGS,
} as const;

/** One tuning flag's string as the option's value, checked; errors name the flag. */
function tuningValue(key: TuningKey, flag: string, raw: string): string | number | boolean {
  const kind = ENGINE_OPTIONS[key].kind;
  if ('oneOf' in kind) return flagOneOf(flag, raw, kind.oneOf);
  if ('boolean' in kind) {
    const b = flagOneOf(flag, raw, BOOLEAN_VALUES);
    return b === '1' || b === 'true';
  }
  if ('range' in kind) return flagInt(flag, raw, kind.range.min, kind.range.max) as number;
  try {
    return checkEngineTuning({ [key]: raw })[key] as string;
  } catch (err) {
    throw new InputError(`--${flag} takes an absolute folder path or 'none', got "${raw}".`, { cause: err });
  }
}

/**
 * The load options both commands take beyond the scheduler's: `tokenizerThreads`, `engineReplicas` and
 * `engine` (the tuning flags given), from parseArgs' values; unset flags leave the library's defaults.
 */
export function loadTuningFlags(v: Record<string, string | boolean | string[] | undefined>): {
  tokenizerThreads?: number;
  engineReplicas?: number;
  engine?: EngineTuning;
} {
  const tokenizerThreads = flagInt('tokenizer-threads', v['tokenizer-threads'] as string | undefined, 0, 64);
  const engineReplicas = flagInt('engine-replicas', v['engine-replicas'] as string | undefined, 1, 8);
  const engine: Record<string, unknown> = {};
  for (const key of Object.keys(ENGINE_OPTIONS) as TuningKey[]) {
    const flag = tuningFlag(key);
    const raw = v[flag];
    if (typeof raw === 'string') engine[key] = tuningValue(key, flag, raw);
  }
  return {
    ...(tokenizerThreads !== undefined && { tokenizerThreads }),
    ...(engineReplicas !== undefined && { engineReplicas }),
    ...(Object.keys(engine).length > 0 && { engine: engine as EngineTuning }),
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function parseServe(argv: string[], env: NodeJS.ProcessEnv = process.env): ServeOptions {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      ...ENGINE_FLAGS,
      'max-queue-pairs': { type: 'string' },
      'max-length': { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string', multiple: true },
      'max-body-bytes': { type: 'string' },
      'max-documents': { type: 'string' },
      'no-auto-truncate': { type: 'boolean' },
      'cors-origin': { type: 'string', multiple: true },
      workers: { type: 'string' },
      'shutdown-timeout': { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  if (!v.model) throw new InputError('--model is required (a Hugging Face id, a folder, or synthetic:tiny).');
  const port = flagInt('port', v.port, 0, 65535) ?? 8080;
  const apiKeys = [...(v['api-key'] ?? []), ...(env.MLX_RERANK_API_KEY ? [env.MLX_RERANK_API_KEY] : [])];
  if (apiKeys.some((k) => k.length < 8)) throw new InputError('An API key must have at least 8 characters.');
  const threads = flagInt('threads', v.threads, 1);
  const maxBatchTokens = flagInt('max-batch-tokens', v['max-batch-tokens'], 1);
  const maxBatchSize = flagInt('max-batch-size', v['max-batch-size'], 1);
  const maxWaitMs = flagInt('max-wait-ms', v['max-wait-ms'], 0);
  const earlyBatchTokens = flagInt(
    'early-batch-tokens',
    v['early-batch-tokens'],
    0,
    LIMITS.earlyBatchTokens.max,
  );
  const maxQueuePairs = flagInt('max-queue-pairs', v['max-queue-pairs'], 1);
  const maxLength = flagInt('max-length', v['max-length'], 4);
  const backend = flagOneOf('backend', v.backend, ['auto', 'cpu', 'mlx'] as const);
  const device = flagOneOf('device', v.device, ['auto', 'gpu', 'cpu'] as const);
  const dtype = flagOneOf('dtype', v.dtype, ['float32', 'float16', 'bfloat16', 'int8'] as const);
  const load: LoadOptions = {
    ...(backend && { backend }),
    ...(device && { device }),
    ...(dtype && { dtype }),
    ...(threads !== undefined && { threads }),
    ...(maxBatchTokens !== undefined && { maxBatchTokens }),
    ...(maxBatchSize !== undefined && { maxBatchSize }),
    ...(maxWaitMs !== undefined && { maxWaitMs }),
    ...(earlyBatchTokens !== undefined && { earlyBatchTokens }),
    ...(maxQueuePairs !== undefined && { maxQueuePairs }),
    ...(maxLength !== undefined && { maxLength }),
    ...(v.offline && { offline: true }),
    ...loadTuningFlags(v),
  };
  return {
    model: v.model,
    load,
    offline: v.offline ?? false,
    host: v.host ?? '127.0.0.1',
    port,
    apiKeys,
    maxBodyBytes: flagInt('max-body-bytes', v['max-body-bytes'], 1) ?? 2_000_000,
    maxDocuments: flagInt('max-documents', v['max-documents'], 1) ?? 1000,
    autoTruncate: !v['no-auto-truncate'],
    corsOrigins: v['cors-origin'] ?? [],
    workers: flagInt('workers', v.workers, 1) ?? 1,
    shutdownTimeoutMs: (flagInt('shutdown-timeout', v['shutdown-timeout'], 0) ?? 30) * 1000,
    logLevel: flagOneOf('log-level', v['log-level'], LOG_LEVELS) ?? 'info',
  };
}
