/**
 * How steadily the machine runs short bursts of work: the background a latency tail is read against.
 *
 * A p99 latency is only as steady as the CPU under it. On a shared virtual machine the host can take
 * the virtual CPUs away or slow them (other tenants, power management) for milliseconds at a time; a
 * reranker's request is mostly CPU work (tokenizing, building and launching the GPU graph), so it
 * slows with them, and so does every other framework (PyTorch included). This probe measures that
 * outside any engine: the JS thread sleeps 0.5 ms, then runs a fixed 0.1 ms integer loop, over and
 * over, and counts the loops that ran more than 1.5x slower than the fastest. A quiet machine stays
 * under 1% (the lent H100 VMs: 0.2-1.3%, and 25% on an unsteady one with nothing else running).
 */
import { readFileSync } from 'node:fs';
import { percentileSorted } from './stats';

export interface Jitter {
  /** Work units timed. */
  units: number;
  /** Percentage of units that took more than 1.5x the fastest unit. */
  slowPct: number;
  /** 99th percentile of unit time (the bench's percentile) / fastest unit time. */
  p99Ratio: number;
  /** Percentage of all CPUs' time the hypervisor gave to others while the probe ran (Linux `steal`), if readable. */
  stealPct?: number;
}

/** A report should flag the machine above this share of slowed units. */
export const NOISY_SLOW_PCT = 5;

const SLOW = 1.5;
const SLEEP_MS = 0.5;

// One unit: a fixed integer recurrence, returning its result so that it cannot be optimized away.
function unit(steps: number, seed: number): number {
  let x = seed | 0;
  for (let i = 0; i < steps; i++) x = (Math.imul(x, 1664525) + 1013904223) | 0;
  return x;
}

// Sized once so that a unit takes about 0.1 ms on this machine (its fastest run).
function calibrate(): number {
  let steps = 1000;
  for (;;) {
    let best = Number.POSITIVE_INFINITY;
    for (let k = 0; k < 20; k++) {
      const t = performance.now();
      unit(steps, k);
      best = Math.min(best, performance.now() - t);
    }
    if (best >= 0.1 || steps >= 1 << 26) return steps;
    steps = best > 0.01 ? Math.ceil((steps * 0.1) / best) : steps * 8;
  }
}

// Total and steal jiffies of all CPUs (Linux /proc/stat), or undefined elsewhere.
function cpuTimes(): { total: number; steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    if (!line.startsWith('cpu ')) return undefined;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    return { total: v.reduce((a, b) => a + b, 0), steal: v[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/** Runs the probe for about `ms` milliseconds on the calling (JS) thread, which it blocks. */
export function measureJitter(ms = 1000): Jitter {
  const steps = calibrate();
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const times: number[] = [];
  let sink = 0;
  const cpu0 = cpuTimes();
  const end = performance.now() + ms;
  while (performance.now() < end) {
    Atomics.wait(sleeper, 0, 0, SLEEP_MS);
    const t = performance.now();
    sink ^= unit(steps, times.length);
    times.push(performance.now() - t);
  }
  const cpu1 = cpuTimes();
  if (sink === 0.5) times.push(0); // never true: keeps `sink` alive
  const jitter = summarizeUnits(times);
  if (cpu0 && cpu1 && cpu1.total > cpu0.total)
    jitter.stealPct = (100 * (cpu1.steal - cpu0.steal)) / (cpu1.total - cpu0.total);
  return jitter;
}

/** The statistics of unit times (ms): slow = more than 1.5x the fastest. */
export function summarizeUnits(times: readonly number[]): Jitter {
  const sorted = Float64Array.from(times).sort();
  const fastest = sorted[0] ?? 0;
  const slow = fastest > 0 ? times.filter((t) => t > SLOW * fastest).length : 0;
  const p99 = sorted.length ? percentileSorted(sorted, 99) : 0;
  return {
    units: times.length,
    slowPct: times.length ? (100 * slow) / times.length : 0,
    p99Ratio: fastest > 0 ? p99 / fastest : 1,
  };
}
