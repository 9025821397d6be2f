/**
 * What the tokenizer benchmarks (bench/tokenizer.ts, bench/tokenizer-families.ts) share: their options,
 * the seeded MS MARCO-like pairs (src/workload.ts) cut into batches of 32 as the scheduler cuts them, a
 * tinybench run whose tasks are timed again in CPU time, and the table they print.
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { median } from '../../src/bench/stats';
import { msMarcoPairs } from '../../src/workload';

export const BATCH = 32;

export interface TokenizerWorkload {
  count: number;
  seed: number;
  maxLength: number;
  /** Milliseconds tinybench spends on each task. */
  timeMs: number;
  pairs: Array<[string, string]>;
  batches: Array<Array<[string, string]>>;
  /** The values of the caller's own string options (`extra`), default applied. */
  options: Record<string, string>;
}

/**
 * The workload from the command line: --pairs N (default 2048), --time MS, --seed S, --max-length L,
 * and the caller's own string options `extra` (name -> default).
 */
export function tokenizerWorkload(
  argv = process.argv.slice(2),
  extra: Record<string, string> = {},
): TokenizerWorkload {
  const own = Object.fromEntries(
    Object.entries(extra).map(([k, d]) => [k, { type: 'string' as const, default: d }]),
  );
  const { values } = parseArgs({
    args: argv,
    options: {
      pairs: { type: 'string', default: '2048' },
      time: { type: 'string', default: '2000' },
      seed: { type: 'string', default: '42' },
      'max-length': { type: 'string', default: '512' },
      ...own,
    },
  });
  const count = Number(values.pairs);
  const seed = Number(values.seed);
  const pairs = msMarcoPairs(count, seed);
  const batches: Array<Array<[string, string]>> = [];
  for (let i = 0; i < pairs.length; i += BATCH) batches.push(pairs.slice(i, i + BATCH));
  return {
    count,
    seed,
    maxLength: Number(values['max-length']),
    timeMs: Number(values.time),
    pairs,
    batches,
    options: Object.fromEntries(
      Object.keys(extra).map((k) => [k, String((values as Record<string, unknown>)[k])]),
    ),
  };
}

/** Tasks that each tokenize the whole workload once per call. */
export class TokenizerBench {
  private readonly bench: Bench;
  private readonly fns = new Map<string, () => unknown>();
  /** Tasks timed in CPU rounds only, after this many untimed passes. */
  private readonly cpuOnly = new Map<string, number>();
  private readonly order: string[] = [];
  private readonly cpuRate = new Map<string, number>();

  constructor(
    private readonly w: TokenizerWorkload,
    options: ConstructorParameters<typeof Bench>[0] = {},
  ) {
    this.bench = new Bench({ time: w.timeMs, ...options });
  }

  add(name: string, fn: () => unknown): void {
    this.fns.set(name, fn);
    this.order.push(name);
    this.bench.add(name, fn);
  }

  /**
   * A task that only the CPU rounds time, after `warmupPasses` untimed calls: for one whose passes
   * must not repeat (each takes new pairs), which tinybench's open-ended iterations would exhaust.
   */
  addCpuOnly(name: string, fn: () => unknown, warmupPasses: number): void {
    this.fns.set(name, fn);
    this.order.push(name);
    this.cpuOnly.set(name, warmupPasses);
  }

  /**
   * Runs tinybench, then each task `cpuRounds` more times for its pairs per CPU-second (this process,
   * all its threads; the median of the rounds): wall-clock rates suffer on a shared machine, CPU time less.
   */
  async run(cpuRounds: number): Promise<void> {
    await this.bench.run();
    for (const [name, fn] of this.fns) {
      for (let i = 0; i < (this.cpuOnly.get(name) ?? 0); i++) await fn();
      const rates: number[] = [];
      for (let r = 0; r < cpuRounds; r++) {
        const c0 = process.cpuUsage();
        await fn();
        const c = process.cpuUsage(c0);
        rates.push((this.w.count * 1e6) / (c.user + c.system));
      }
      this.cpuRate.set(name, median(rates));
    }
  }

  /** Prints the machine and `workload` line, then a table: pairs/s, ms per pass, ±%, pairs per CPU-second. */
  print(workload: string): void {
    const c = cpus();
    console.log(
      `machine: ${c[0]?.model.trim()} (${c.length} logical CPUs), node ${process.version}; workload: ${workload}`,
    );
    const rows = this.order.map((name) => {
      const cpu = Math.round(this.cpuRate.get(name) ?? 0).toLocaleString('en-US');
      const t = this.bench.getTask(name);
      if (t === undefined) return { task: name, 'pairs/s': '(CPU rounds only)', 'pairs per CPU-second': cpu };
      const r = t.result as unknown as { latency?: { mean: number; rme: number }; error?: unknown };
      if (r.error !== undefined || r.latency === undefined)
        return { task: t.name, 'pairs/s': `error: ${String(r.error)}` };
      return {
        task: t.name,
        'pairs/s': Math.round((this.w.count * 1000) / r.latency.mean).toLocaleString('en-US'),
        'ms per pass': r.latency.mean.toFixed(2),
        '±%': r.latency.rme.toFixed(1),
        'pairs per CPU-second': cpu,
      };
    });
    console.table(rows);
  }
}
