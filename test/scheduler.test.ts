/**
 * Queue logic of the scheduler against an in-test engine with real (per-pair) arithmetic; the
 * CrossEncoder tests run the same behaviours end to end on the real addon.
 */

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { BatchMetrics } from '../src/metrics';
import { percentile, summarize } from '../src/metrics';
import { balancedCuts, type PairEncoder, Scheduler, type SchedulerOptions } from '../src/scheduler';
import {
  encodeCharChunks,
  encodeChars,
  POISON,
  randomText,
  referenceLogits,
  rng,
  TestEngine,
} from './helpers/api-engine';

type Pair = readonly [string, string];
const MAX_LEN = 64;
const encode: PairEncoder = (q, d) => [encodeChars(q, d, MAX_LEN)];

function expected(pairs: readonly Pair[], numLabels = 1): Float32Array {
  const out = new Float32Array(pairs.length * numLabels);
  pairs.forEach(([q, d], i) => {
    const s = encodeChars(q, d, MAX_LEN);
    out.set(referenceLogits(s.ids, s.typeIds, numLabels), i * numLabels);
  });
  return out;
}

function randomPairs(r: () => number, n: number): Pair[] {
  return Array.from({ length: n }, () => [randomText(r, 1, 8), randomText(r, 0, 70)] as const);
}

function make(engine: TestEngine, o: Partial<SchedulerOptions> = {}) {
  const batches: BatchMetrics[] = [];
  const s = new Scheduler({
    engine,
    encode,
    numLabels: engine.numLabels,
    onBatch: (b) => batches.push(b),
    ...o,
  });
  return { s, batches };
}

describe('Scheduler: results and batch formation', () => {
  it('scatters every pair of many concurrent calls back to its caller in input order', async () => {
    const engine = new TestEngine({ numLabels: 3, delayMs: 1 });
    const { s, batches } = make(engine, { maxBatchSize: 40, maxBatchTokens: 1500 });
    const r = rng(1);
    const calls = Array.from({ length: 60 }, () => randomPairs(r, 1 + Math.floor(r() * 30)));
    const results = await Promise.all(calls.map((c) => s.submit(c)));
    results.forEach((res, i) => {
      expect(res.logits).toEqual(expected(calls[i] as Pair[], 3));
      expect(res.metrics.pairs).toBe((calls[i] as Pair[]).length);
    });
    const total = calls.reduce((a, c) => a + c.length, 0);
    expect(batches.reduce((a, b) => a + b.pairs, 0)).toBe(total);
    // Concurrent callers share batches: fewer batches than calls, and nearly all of them full.
    expect(batches.length).toBeLessThan(calls.length);
    // Few batches: close to the fewest the limits allow.
    const tokens = batches.reduce((a, b) => a + b.tokens, 0);
    const fewest = Math.max(Math.ceil(tokens / 1500), Math.ceil(total / 40));
    console.log(`batches ${batches.length}, fewest possible ${fewest}`);
    expect(batches.length).toBeLessThanOrEqual(Math.ceil(fewest * 1.25));
    for (const b of batches) {
      expect(b.pairs).toBeLessThanOrEqual(40);
      expect(b.tokens).toBeLessThanOrEqual(1500);
    }
    expect(engine.maxInFlight).toBeLessThanOrEqual(2);
    const st = s.stats();
    expect(st.calls).toBe(60);
    expect(st.pairs).toBe(total);
    expect(st.batches).toBe(batches.length);
    expect(st.queueDepth).toBe(0);
    await s.dispose();
  });

  it('hands batch N+1 to the engine before batch N is back (tokenizing and packing overlap inference)', async () => {
    const engine = new TestEngine({ delayMs: 10 });
    const { s, batches } = make(engine, { maxBatchSize: 16 });
    const r = rng(2);
    const pairs = randomPairs(r, 16 * 6);
    expect((await s.submit(pairs)).logits).toEqual(expected(pairs));
    expect(batches.length).toBe(6);
    for (let i = 0; i + 1 < batches.length; i++) {
      const [a, b] = [batches[i] as BatchMetrics, batches[i + 1] as BatchMetrics];
      expect(b.startedAt).toBeLessThan(a.endedAt);
    }
    expect(engine.maxInFlight).toBe(2);
    await s.dispose();
  });

  it('puts a sequence longer than maxBatchTokens in a batch of its own instead of refusing it', async () => {
    const engine = new TestEngine();
    const { s, batches } = make(engine, { maxBatchTokens: 10 });
    const pairs: Pair[] = [
      ['q', 'x'.repeat(40)],
      ['q', 'ab'],
      ['q', 'cd'],
    ];
    const res = await s.submit(pairs);
    expect(res.logits).toEqual(expected(pairs));
    const long = batches.find((b) => b.maxLength === 44);
    expect(long?.pairs).toBe(1);
    await s.dispose();
  });

  it('length-sorted windows pad less than arrival-order batches when the queue holds several batches', async () => {
    const r = rng(7);
    const calls = Array.from({ length: 8 }, () => randomPairs(r, 32));
    const waste = async (sortWindow: number) => {
      const engine = new TestEngine({ padToLongest: true, delayMs: 1 });
      const { s, batches } = make(engine, { maxBatchSize: 64, sortWindow });
      // A first call keeps the engine busy while the others queue up, as under load.
      const blocker = s.submit([['a', 'b']]);
      await new Promise((r) => setImmediate(r));
      const res = await Promise.all(calls.map((c) => s.submit(c)));
      await blocker;
      res.forEach((x, i) => {
        expect(x.logits).toEqual(expected(calls[i] as Pair[]));
      });
      const st = s.stats();
      // The engine here pads to the longest, so its measured padding equals paddingIfPadded.
      expect(st.paddingPct).toBeCloseTo(st.paddingIfPaddedPct, 9);
      const tokens = batches.reduce((a, b) => a + b.tokens, 0);
      const slots = batches.reduce((a, b) => a + b.pairs * b.maxLength, 0);
      expect(st.paddingIfPaddedPct).toBeCloseTo(100 * (1 - tokens / slots), 9);
      await s.dispose();
      return st.paddingIfPaddedPct;
    };
    const fifo = await waste(0);
    const sorted = await waste(1024);
    console.log(`paddingIfPadded: arrival order ${fifo.toFixed(1)}%, length-sorted ${sorted.toFixed(1)}%`);
    // 256 pairs of uniform lengths 5..81 in batches of 64: arrival order pads ~36%; four batches cut
    // at the length quartiles would pad ~18%, the least any split into four batches can do.
    expect(sorted).toBeLessThan(fifo * 0.6);
  });

  it('always puts the oldest waiting sequence in the next batch (no starvation of long pairs)', async () => {
    const engine = new TestEngine({ delayMs: 2 });
    const { s, batches } = make(engine, { maxBatchSize: 8 });
    const long: Pair[] = [['q', 'z'.repeat(60)]];
    const shorts = Array.from({ length: 20 }, (_, i) => [[`q${i}`, 'ab']] as Pair[]);
    const pLong = s.submit(long);
    const pShort = shorts.map((c) => s.submit(c));
    await Promise.all([pLong, ...pShort]);
    expect(batches[0]?.maxLength).toBe(64);
    await s.dispose();
  });

  it('maxWaitMs holds a small batch back so a caller arriving a little later shares it', async () => {
    const run = async (maxWaitMs: number) => {
      const engine = new TestEngine();
      const { s, batches } = make(engine, { maxWaitMs });
      const a = s.submit([['a', 'b']]);
      await new Promise((r) => setTimeout(r, 20));
      const b = s.submit([['c', 'd']]);
      await Promise.all([a, b]);
      await s.dispose();
      return batches.length;
    };
    expect(await run(0)).toBe(2);
    expect(await run(300)).toBe(1);
  });

  it('chunk mode keeps, per pair, the window with the highest first logit', async () => {
    const engine = new TestEngine({ numLabels: 2 });
    const chunk: PairEncoder = (q, d) => encodeCharChunks(q, d, 24, 4);
    const { s } = make(engine, { encode: chunk, maxBatchSize: 5 });
    const r = rng(3);
    const pairs = randomPairs(r, 40).map(([q, d]) => [q, d + randomText(r, 0, 80)] as const);
    const res = await s.submit(pairs);
    let multi = 0;
    pairs.forEach(([q, d], i) => {
      const windows = encodeCharChunks(q, d, 24, 4).map((w) => referenceLogits(w.ids, w.typeIds, 2));
      if (windows.length > 1) multi++;
      let best = windows[0] as Float32Array;
      for (const w of windows) if ((w[0] as number) > (best[0] as number)) best = w;
      expect(res.logits.subarray(i * 2, i * 2 + 2)).toEqual(best);
    });
    expect(multi).toBeGreaterThan(10);
    expect(res.metrics.sequences).toBeGreaterThan(pairs.length);
    await s.dispose();
  });
});

describe('Scheduler: errors leave other callers unaffected', () => {
  it('rejects a call larger than maxQueuePairs, and a call that would overfill the queue, at once', async () => {
    const engine = new TestEngine({ delayMs: 15 });
    const { s } = make(engine, { maxQueuePairs: 100, maxBatchSize: 10 });
    const r = rng(5);
    await expect(s.submit(randomPairs(r, 101))).rejects.toMatchObject({ code: 'E_QUEUE_FULL' });
    const ok = randomPairs(r, 90);
    const p = s.submit(ok);
    expect(s.queueDepth).toBe(90);
    await expect(s.submit(randomPairs(r, 20))).rejects.toMatchObject({
      name: 'QueueFullError',
      code: 'E_QUEUE_FULL',
    });
    expect((await p).logits).toEqual(expected(ok));
    expect(s.queueDepth).toBe(0);
    // Room again once the queue drained.
    const again = randomPairs(r, 100);
    expect((await s.submit(again)).logits).toEqual(expected(again));
    await s.dispose();
  });

  it('an aborted call leaves the queue at once; in-flight sequences finish, the others are unaffected', async () => {
    const engine = new TestEngine({ delayMs: 20 });
    const { s } = make(engine, { maxBatchSize: 4 });
    const r = rng(9);
    const before = randomPairs(r, 4);
    const victim = randomPairs(r, 30);
    const after = randomPairs(r, 6);
    const ac = new AbortController();
    const p1 = s.submit(before);
    const p2 = s.submit(victim, ac.signal);
    const p3 = s.submit(after);
    // Let the first batches go into the engine, then abort while most of the victim still waits.
    await new Promise((res) => setTimeout(res, 5));
    const depth = s.queueDepth;
    ac.abort(new Error('client went away'));
    await expect(p2).rejects.toMatchObject({ code: 'E_ABORTED', name: 'AbortedError' });
    expect(s.queueDepth).toBeLessThan(depth);
    expect((await p1).logits).toEqual(expected(before));
    expect((await p3).logits).toEqual(expected(after));
    // The victim's pairs stopped going to the engine: fewer sequences computed than submitted.
    const computed = engine.batches.reduce((a, b) => a + b.offsets.length - 1, 0);
    expect(computed).toBeLessThan(before.length + victim.length + after.length);
    await expect(s.submit(after, AbortSignal.abort())).rejects.toMatchObject({ code: 'E_ABORTED' });
    await s.dispose();
  });

  it('dispose() rejects queued calls, lets the running batch finish, releases the engine once', async () => {
    const engine = new TestEngine({ delayMs: 30 });
    const { s } = make(engine, { maxBatchSize: 4 });
    const r = rng(11);
    const calls = Array.from({ length: 10 }, () => randomPairs(r, 4));
    const ps = calls.map((c) => s.submit(c));
    await new Promise((res) => setTimeout(res, 5));
    const d = s.dispose();
    const settled = await Promise.allSettled(ps);
    await d;
    await s.dispose();
    expect(engine.disposeCalls).toBe(1);
    expect(engine.inFlight).toBe(0);
    const rejected = settled.filter((x) => x.status === 'rejected');
    expect(rejected.length).toBe(10);
    for (const x of rejected)
      expect((x as PromiseRejectedResult).reason).toMatchObject({ code: 'E_DISPOSED' });
    await expect(s.submit(calls[0] as Pair[])).rejects.toMatchObject({ code: 'E_DISPOSED' });
    expect(s.stats().memory).toEqual({ activeBytes: 0, peakBytes: 0, cacheBytes: 0 });
  });

  it('an engine failure rejects only the calls in that batch, with the mapped typed error', async () => {
    const engine = new TestEngine();
    const { s } = make(engine, { maxBatchSize: 1 });
    const good = [
      ['a', 'b'],
      ['c', 'd'],
    ] as Pair[];
    const bad = [['x', `bad${String.fromCharCode(POISON)}`]] as Pair[];
    const [g, b] = await Promise.allSettled([s.submit(good), s.submit(bad)]);
    expect(b.status).toBe('rejected');
    expect((b as PromiseRejectedResult).reason).toMatchObject({ code: 'E_ENGINE', name: 'EngineError' });
    expect((g as PromiseFulfilledResult<{ logits: Float32Array }>).value.logits).toEqual(expected(good));
    await s.dispose();
  });

  it('a pair the tokenizer refuses rejects its call only', async () => {
    const engine = new TestEngine();
    const picky: PairEncoder = (q, d) => {
      if (q === 'boom') throw new Error('cannot tokenize');
      return encode(q, d);
    };
    const { s } = make(engine, { encode: picky });
    const good = [['a', 'b']] as Pair[];
    const [b, g] = await Promise.allSettled([
      s.submit([
        ['q', 'd'],
        ['boom', 'x'],
      ]),
      s.submit(good),
    ]);
    expect((b as PromiseRejectedResult).reason).toMatchObject({ code: 'E_INPUT' });
    expect((g as PromiseFulfilledResult<{ logits: Float32Array }>).value.logits).toEqual(expected(good));
    await s.dispose();
  });

  it('a metrics listener that throws does not break the queue', async () => {
    const engine = new TestEngine();
    const { s } = make(engine, {
      onBatch: () => {
        throw new Error('listener bug');
      },
    });
    const warned = new Promise((res) => process.once('warning', res));
    const pairs = [['a', 'b']] as Pair[];
    expect((await s.submit(pairs)).logits).toEqual(expected(pairs));
    expect(String(await warned)).toContain('listener bug');
    await s.dispose();
  });

  it('refuses bad limits with InputError', () => {
    const engine = new TestEngine();
    expect(() => make(engine, { maxBatchSize: 0 })).toThrow(/maxBatchSize/);
    expect(() => make(engine, { maxWaitMs: -1 })).toThrow(/maxWaitMs/);
    expect(() => make(engine, { sortWindow: 1.5 })).toThrow(/sortWindow/);
  });
});

describe('Scheduler: memory', () => {
  // V8's gc(), without starting the test worker with --expose-gc.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const settle = () => new Promise<void>((res) => setImmediate(res));

  it('lets go of a finished call: nothing of it stays reachable from the queue', async () => {
    const engine = new TestEngine();
    const { s } = make(engine);
    // The pairs are made in helpers, so that no frame of this test holds one (an async function's
    // saved registers would).
    const one = async (text: string): Promise<WeakRef<Pair[]>> => {
      const pairs = [['q', text]] as Pair[];
      await s.submit(pairs);
      return new WeakRef(pairs);
    };
    const refs: WeakRef<Pair[]>[] = [];
    // One call after another (the queue drains each time), then several at once (it does not).
    for (let i = 0; i < 3; i++) refs.push(await one(`document ${i}`));
    refs.push(...(await Promise.all([0, 1, 2].map((i) => one(`together ${i}`)))));
    await settle(); // WeakRef targets are held until the job that made them ends
    gc();
    await settle();
    expect(refs.map((r) => r.deref() === undefined)).toEqual(refs.map(() => true));
    await s.dispose();
  });
});

describe('balancedCuts', () => {
  it('splits sorted lengths into contiguous batches within the limits, no more than greedy filling needs', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 600 }), { maxLength: 400 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 300 }),
        (raw, maxTokens, maxSize) => {
          const lengths = [...raw].sort((a, b) => a - b);
          const cuts = balancedCuts(lengths, maxTokens, maxSize);
          expect(cuts[0]).toBe(0);
          expect(cuts[cuts.length - 1]).toBe(lengths.length);
          let greedy = 0;
          let t = 0;
          let c = 0;
          for (const l of lengths) {
            if (c === 0 || c >= maxSize || t + l > maxTokens) {
              greedy++;
              t = 0;
              c = 0;
            }
            t += l;
            c++;
          }
          const groups = cuts.length - 1;
          expect(groups).toBeLessThanOrEqual(Math.max(1, greedy + 1));
          for (let g = 0; g < groups; g++) {
            const part = lengths.slice(cuts[g], cuts[g + 1]);
            if (lengths.length > 0) expect(part.length).toBeGreaterThan(0);
            if (part.length > 1) {
              expect(part.length).toBeLessThanOrEqual(maxSize);
              expect(part.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(maxTokens);
            }
          }
        },
      ),
      { numRuns: 300, seed: 42 },
    );
  });
});

describe('metrics', () => {
  it('percentiles interpolate between closest ranks like numpy', () => {
    const xs = [15, 20, 35, 40, 50];
    expect(percentile(xs, 0.5)).toBe(35);
    expect(percentile(xs, 0.9)).toBeCloseTo(46, 12); // numpy.percentile(xs, 90) == 46
    expect(percentile(xs, 0.99)).toBeCloseTo(49.6, 12);
    const s = summarize([3, 1, 2]);
    expect(s).toMatchObject({ count: 3, mean: 2, min: 1, max: 3, p50: 2 });
    expect(summarize([]).count).toBe(0);
  });
});
