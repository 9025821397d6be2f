/**
 * The bench's golden statistics (test/fixtures/bench, written by make-stats-golden.py and
 * make-recorded-golden.py): a request log and the figures numpy computed from it.
 */
import { readFileSync } from 'node:fs';

export interface BenchGolden {
  latencyMs: number[];
  pairs: number[];
  latency: Record<string, number>;
  throughput: Record<string, number>;
  correlation: number;
  buckets: Array<{ count: number; avg: number; min: number; max: number }>;
}

export const BENCH_FIXTURES = new URL('../fixtures/bench/', import.meta.url);

export function benchGolden(name: string): BenchGolden {
  return JSON.parse(readFileSync(new URL(name, BENCH_FIXTURES), 'utf8')) as BenchGolden;
}
