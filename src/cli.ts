#!/usr/bin/env node
/**
 * The `mlx-rerank` command line: `bench` measures this machine (src/bench), `serve` answers over HTTP
 * (src/server), `synth` writes a synthetic model (src/synth.ts). A bare `mlx-rerank` prints the usage
 * (exit 0: asking for it is not an error); bad arguments print what was wrong and exit 2; failures exit 1.
 */
import { parseArgs } from 'node:util';
import { type BenchOptions, packageVersion, runScenarios } from './bench/bench';
import { customScenario, type EngineSpec, type ScenarioSpec, STANDARD_SCENARIOS } from './bench/scenarios';
import { pickBackend } from './cross-encoder';
import { InputError, MlxRerankError } from './errors';
import { LIMITS } from './scheduler/limits';
import { ENGINE_FLAGS, ENGINE_TUNING_USAGE, loadTuningFlags, parseServe, SERVE_USAGE } from './server/args';
import { synthCli } from './synth';
import type { Backend, DeviceKind, DType } from './types';
import { flagInt, flagInts, flagOneOf } from './validate';

const USAGE = `Usage: mlx-rerank <command> [options]

Commands:
  bench     measure latency, throughput and padding; write results/NN_<scenario>.md/.json/.svg
  serve     serve a model over HTTP (TEI- and Cohere-compatible APIs, metrics, live dashboard)
  synth     write a synthetic model folder

Run "mlx-rerank <command> --help" for a command's options.
  --version   print the version       --help   print this
`;

const BENCH_USAGE = `Usage: mlx-rerank bench [options]

Measures latency, throughput and padding; writes results/NN_<scenario>.md/.json/.svg.

Options:
  --model ID|DIR|synthetic[:tiny]  model (default: cross-encoder/ms-marco-MiniLM-L-6-v2 if it can be
                                   loaded, else a synthetic model of the same shape; the report says so)
  --backend LIST       cpu, mlx or auto (default auto: mlx on a GPU when available, else cpu); a list
                       such as cpu,mlx compares engines in one report
  --device D           auto | gpu | cpu (default auto)
  --dtype LIST         engine arithmetic: float32, float16, bfloat16, int8 (default: the engine's own;
                       the cpu engine: float32 (default), bfloat16 or int8)
  --weights DTYPE      how the weights are stored: float32 (as published), float16 or bfloat16
                       (a converted copy is cached)
  --batch LIST         pairs per request (default 32), e.g. 8,32,128
  --concurrency LIST   concurrent clients (default 1), e.g. 1,4,16; every batch x concurrency runs
  --pairs N            pairs per configuration (default 3200)
  --pairs-file FILE    JSONL {"query","document"} or TSV query<TAB>document (default: the seeded
                       MS MARCO-like workload)
  --seed N             workload seed (default 42)
  --scenarios          run the standard scenarios 01-04 and write results/index.md
  --scenario LIST      run some standard scenarios, e.g. 01,03
  --name NAME --id NN  file name parts of a custom run (default from the engine)
  --out DIR            where reports go (default results)
  --sample-ms N        time-series interval (default 500)
  --max-seconds N      time budget per configuration: no new request after N s (default 200, 0 = none);
                       a configuration cut short says so in the report
  --warmup-requests N  requests sent before each configuration, not counted (default 20, 2 s at most)
  --max-batch-tokens N --max-batch-size N --max-wait-ms N --threads N   scheduler and engine options
  --early-batch-tokens N  an idle engine starts on this many tokenized tokens of a call (GPU default 16384)
  --tokenizer-threads N  tokenizer worker threads, 0..64 (0: on the JS thread; default: the library's);
                       the report says how many ran
  --engine-replicas N  engines of the model sharing the batches, 1..8 (default 1)
  --offline            never touch the network
  --no-ablation        skip the short extra run with length sorting off (padding comparison)
  --progress MODE      auto (bar on a TTY, lines otherwise) | plain | none
${ENGINE_TUNING_USAGE}`;

/**
 * 'auto' as CrossEncoder.load resolves it. When the device asks for an engine this install lacks (gpu
 * without mlx), the bench still runs that engine so that its report says why it could not.
 */
function autoBackend(device: DeviceKind): Backend {
  try {
    return pickBackend('auto', device);
  } catch {
    return 'mlx';
  }
}

export function parseBench(argv: string[]): { specs: ScenarioSpec[]; options: BenchOptions } {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      ...ENGINE_FLAGS,
      weights: { type: 'string' },
      batch: { type: 'string' },
      concurrency: { type: 'string' },
      pairs: { type: 'string' },
      'pairs-file': { type: 'string' },
      seed: { type: 'string' },
      scenarios: { type: 'boolean' },
      scenario: { type: 'string' },
      name: { type: 'string' },
      id: { type: 'string' },
      out: { type: 'string' },
      'sample-ms': { type: 'string' },
      'max-seconds': { type: 'string' },
      'warmup-requests': { type: 'string' },
      'no-ablation': { type: 'boolean' },
      progress: { type: 'string' },
    },
  });
  const batches = flagInts('batch', v.batch, [32]);
  const concurrencies = flagInts('concurrency', v.concurrency, [1]);
  let specs: ScenarioSpec[];
  if (v.scenarios || v.scenario) {
    const wanted = v.scenario?.split(',').map((s) => s.trim().padStart(2, '0'));
    specs = STANDARD_SCENARIOS.filter((s) => !wanted || wanted.includes(s.number) || wanted.includes(s.name));
    if (wanted && specs.length !== wanted.length) {
      throw new InputError(
        `--scenario takes numbers or names of ${STANDARD_SCENARIOS.map((s) => `${s.number} (${s.name})`).join(', ')}; got "${v.scenario}".`,
      );
    }
  } else {
    const device = flagOneOf('device', v.device ?? 'auto', ['auto', 'gpu', 'cpu'] as const);
    const backends = (v.backend ?? 'auto').split(',').map((b) => {
      const name = flagOneOf('backend', b.trim(), ['auto', 'cpu', 'mlx'] as const);
      return name === 'auto' ? autoBackend(device) : name;
    });
    const dtypes: Array<DType | undefined> = v.dtype
      ? v.dtype
          .split(',')
          .map((d) => flagOneOf('dtype', d.trim(), ['float32', 'float16', 'bfloat16', 'int8'] as const))
      : [undefined];
    const engines: EngineSpec[] = backends.flatMap((backend) =>
      dtypes.map((dtype) => ({
        backend,
        device: backend === 'cpu' && device === 'auto' ? 'cpu' : device,
        ...(dtype ? { dtype } : {}),
      })),
    );
    if (v.id !== undefined && !/^\d{1,3}$/.test(v.id))
      throw new InputError(`--id takes a number like 05, got "${v.id}".`);
    if (v.name !== undefined && !/^[A-Za-z0-9_.-]+$/.test(v.name)) {
      throw new InputError(`--name may hold letters, digits, "_", "-" and "." only, got "${v.name}".`);
    }
    const weights = flagOneOf('weights', v.weights, ['float32', 'float16', 'bfloat16'] as const);
    specs = [customScenario(engines, batches, concurrencies, v.name, v.id?.padStart(2, '0'), weights)];
  }
  if ((v.scenarios || v.scenario) && (v.batch || v.concurrency)) {
    specs = specs.map((s) => ({ ...s, batches, concurrencies }));
  }
  const maxWaitMs = flagInt('max-wait-ms', v['max-wait-ms'], 0);
  const earlyBatchTokens = flagInt(
    'early-batch-tokens',
    v['early-batch-tokens'],
    0,
    LIMITS.earlyBatchTokens.max,
  );
  const maxBatchTokens = flagInt('max-batch-tokens', v['max-batch-tokens'], 1);
  const maxBatchSize = flagInt('max-batch-size', v['max-batch-size'], 1);
  const threads = flagInt('threads', v.threads, 1);
  const options: BenchOptions = {
    pairs: flagInt('pairs', v.pairs, 1) ?? 3200,
    seed: flagInt('seed', v.seed, 0) ?? 42,
    out: v.out ?? 'results',
    sampleMs: flagInt('sample-ms', v['sample-ms'], 10) ?? 500,
    maxSeconds: flagInt('max-seconds', v['max-seconds'], 0) ?? 200,
    warmupRequests: flagInt('warmup-requests', v['warmup-requests'], 0) ?? 20,
    offline: v.offline ?? false,
    paddingAblation: !v['no-ablation'],
    progress: flagOneOf('progress', v.progress ?? 'auto', ['auto', 'plain', 'none'] as const),
    log: (line) => process.stderr.write(`${line}\n`),
    ...(v.model ? { model: v.model } : {}),
    ...(v['pairs-file'] ? { pairsFile: v['pairs-file'] } : {}),
    ...(maxWaitMs !== undefined ? { maxWaitMs } : {}),
    ...(earlyBatchTokens !== undefined ? { earlyBatchTokens } : {}),
    ...(maxBatchTokens ? { maxBatchTokens } : {}),
    ...(maxBatchSize ? { maxBatchSize } : {}),
    ...(threads ? { threads } : {}),
    ...loadTuningFlags(v),
  };
  return { specs, options };
}

/**
 * Runs a command's argument parser. A bad argument (an InputError, or parseArgs' own error for an
 * unknown flag) is printed with a pointer to the command's help: undefined, and the command exits 2.
 */
function parseCommand<T>(command: string, parse: () => T): T | undefined {
  try {
    return parse();
  } catch (err) {
    process.stderr.write(
      `mlx-rerank ${command}: ${(err as Error).message}\n\nRun "mlx-rerank ${command} --help" for the options.\n`,
    );
    return undefined;
  }
}

async function serveCommand(argv: string[]): Promise<number> {
  const options = parseCommand('serve', () => parseServe(argv));
  if (options === undefined) return 2;
  // Loaded only for `serve`: the other commands do not pay for the HTTP stack.
  const { runServe } = await import('./server/index');
  const code = await runServe(options);
  process.exit(code); // drained and released: nothing left worth waiting for (e.g. a stray socket)
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const help = rest.includes('--help') || rest.includes('-h');
  if (command === 'synth') return (await synthCli(rest)) ?? 0;
  if (command === 'serve') {
    if (help) process.stdout.write(SERVE_USAGE);
    return help ? 0 : serveCommand(rest);
  }
  if (command !== 'bench') {
    process.stderr.write(`mlx-rerank: unknown command "${command}".\n\n${USAGE}`);
    return 2;
  }
  if (help) {
    process.stdout.write(BENCH_USAGE);
    return 0;
  }
  const parsed = parseCommand('bench', () => parseBench(rest));
  if (parsed === undefined) return 2;
  const { written, results } = await runScenarios(parsed.specs, parsed.options);
  for (const path of written) process.stdout.write(`${path}\n`);
  if (!results.some((r) => r.runs.some((run) => run.configs.length > 0))) {
    process.stderr.write('mlx-rerank bench: no engine could run; the reports say why.\n');
    return 1;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const code = err instanceof MlxRerankError ? ` [${err.code}]` : '';
    process.stderr.write(`mlx-rerank: ${(err as Error)?.message ?? String(err)}${code}\n`);
    process.exitCode = err instanceof InputError ? 2 : 1;
  },
);
