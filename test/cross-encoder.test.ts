/**
 * CrossEncoder end to end: the real addon (cpu engine) on synthetic models. Every expected score is a
 * pair scored ALONE (a batch of one); everything else must reproduce it bit for bit.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backends, CrossEncoder } from '../src/index';
import type { BatchMetrics, CallMetrics } from '../src/metrics';
import { native } from '../src/native';
import type { ModelFiles } from '../src/types';
import { msMarcoPairs } from '../src/workload';
import { rng } from './helpers/api-engine';
import { cleanupModels, pairPool, sameBits, syntheticModel, words } from './helpers/api-model';

type Pair = [string, string];
/** Every model compared with `alone` uses these (truncation at 128 tokens, so some pool pairs are cut). */
const BASE = { backend: 'cpu', maxLength: 128 } as const;

let files: ModelFiles;
let ce: CrossEncoder;
/** Each pool pair scored alone, raw logits. */
const pool = pairPool(42, 200);
let alone: Float32Array[];

async function scoreAlone(model: CrossEncoder, pairs: Pair[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const p of pairs) out.push(await model.predict([p], { activation: 'none' }));
  return out;
}

function concat(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.reduce((a, r) => a + r.length, 0));
  let o = 0;
  for (const r of rows) {
    out.set(r, o);
    o += r.length;
  }
  return out;
}

beforeAll(async () => {
  files = await syntheticModel('tiny', 3);
  ce = await CrossEncoder.load(files, BASE);
  alone = await scoreAlone(ce, pool);
});

afterAll(async () => {
  await ce?.dispose();
  cleanupModels();
});

describe('CrossEncoder API', () => {
  it('loads the synthetic model on the cpu engine and says what it runs', () => {
    expect(ce.info).toMatchObject({ backend: 'cpu', device: 'cpu', dtype: 'float32', synthetic: true });
    expect(ce.info.maxLength).toBeLessThanOrEqual(ce.info.spec.maxPositions);
    expect(ce.info.spec.numLabels).toBe(1);
    expect(ce.info.activation).toBe('sigmoid');
  });

  it("picks the backend: 'auto' is mlx only with a GPU; unavailable choices give E_BACKEND_UNAVAILABLE", async () => {
    const b = backends();
    expect(b.cpu.available).toBe(true);
    const mlxGpu = b.mlx.available && (b.mlx.devices ?? []).includes('gpu');
    const auto = await CrossEncoder.load(files, { maxLength: 128, warmup: false });
    expect(auto.info.backend).toBe(mlxGpu ? 'mlx' : 'cpu');
    await auto.dispose();
    await expect(CrossEncoder.load(files, { backend: 'cpu', device: 'gpu' })).rejects.toMatchObject({
      code: 'E_BACKEND_UNAVAILABLE',
    });
    if (!b.mlx.available) {
      await expect(CrossEncoder.load(files, { backend: 'mlx' })).rejects.toThrow(
        /mlx engine is not available/,
      );
    }
    if (!mlxGpu) {
      await expect(CrossEncoder.load(files, { device: 'gpu' })).rejects.toMatchObject({
        code: 'E_BACKEND_UNAVAILABLE',
      });
    }
    await expect(CrossEncoder.load(files, { ...BASE, maxBatchSize: 0 })).rejects.toThrow(
      /maxBatchSize must be/,
    );
    await expect(CrossEncoder.load(files, { ...BASE, maxLength: 100_000 })).rejects.toMatchObject({
      code: 'E_INPUT',
    });
    await expect(
      CrossEncoder.load(files, { ...BASE, longDocuments: 'chunk', chunkStride: 80 }),
    ).rejects.toThrow(/chunkStride/);
  });

  it('predict: a single pair gives a number, a list a Float32Array in input order, [] an empty array', async () => {
    const raw = alone.map((r) => r[0] as number);
    const one = await ce.predict(pool[5] as Pair, { activation: 'none' });
    expect(one).toBe(raw[5]);
    const list = await ce.predict(pool.slice(0, 50), { activation: 'none' });
    expect(sameBits(list, Float32Array.from(raw.slice(0, 50)))).toBe(true);
    const reversed = await ce.predict(pool.slice(0, 50).reverse(), { activation: 'none' });
    expect(sameBits(reversed, Float32Array.from(raw.slice(0, 50).reverse()))).toBe(true);
    const empty = await ce.predict([]);
    expect(empty).toBeInstanceOf(Float32Array);
    expect(empty.length).toBe(0);
    // Logits vary across pairs (else order checks would prove nothing).
    expect(new Set(raw).size).toBeGreaterThan(150);
  });

  it('activations are computed in float32 from the logits', async () => {
    const pairs = pool.slice(0, 20);
    const raw = await ce.predict(pairs, { activation: 'none' });
    const sig = await ce.predict(pairs);
    const soft = await ce.predict(pairs, { activation: 'softmax' });
    for (let i = 0; i < pairs.length; i++) {
      expect(sig[i]).toBe(Math.fround(1 / (1 + Math.exp(-(raw[i] as number)))));
      expect(soft[i]).toBe(1); // softmax over a single label
    }
    await expect(ce.predict(pairs, { activation: 'relu' as never })).rejects.toMatchObject({
      code: 'E_INPUT',
    });
  });

  it('rank sorts best first, ties by lower index, honours topK and returnDocuments', async () => {
    const query = 'what is the population of the city';
    const docs = pool.slice(0, 30).map((p) => p[1]);
    docs.push(docs[3] as string, docs[3] as string); // exact ties
    const scores = await ce.predict(
      docs.map((d) => [query, d] as Pair),
      { activation: 'sigmoid' },
    );
    const ranked = await ce.rank(query, docs, { returnDocuments: true });
    expect(ranked.length).toBe(docs.length);
    const expectOrder = docs
      .map((_, i) => i)
      .sort((a, b) => (scores[b] as number) - (scores[a] as number) || a - b);
    expect(ranked.map((r) => r.index)).toEqual(expectOrder);
    for (const r of ranked) {
      expect(r.score).toBe(scores[r.index]);
      expect(r.document).toBe(docs[r.index]);
    }
    const tie = ranked.filter((r) => docs[r.index] === docs[3]).map((r) => r.index);
    expect(tie).toEqual([3, 30, 31]);
    const top = await ce.rank(query, docs, { topK: 3 });
    expect(top).toEqual(ranked.slice(0, 3).map(({ index, score }) => ({ index, score })));
    expect(await ce.rank(query, [])).toEqual([]);
  });

  it("per-call metrics add up and reach onMetrics and the 'call' event", async () => {
    const seen: CallMetrics[] = [];
    const onCall = (m: CallMetrics) => seen.push(m);
    ce.on('call', onCall);
    let own: CallMetrics | undefined;
    await ce.predict(pool.slice(0, 64), {
      onMetrics: (m) => {
        own = m;
      },
    });
    ce.off('call', onCall);
    await ce.predict(pool.slice(0, 2));
    expect(seen.length).toBe(1);
    expect(own).toBe(seen[0]);
    const m = own as CallMetrics;
    expect(m.pairs).toBe(64);
    expect(m.sequences).toBe(64);
    expect(m.tokenizeMs).toBeGreaterThan(0);
    expect(m.inferenceMs).toBeGreaterThan(0);
    expect(m.tokenizeMs + m.queueWaitMs + m.inferenceMs).toBeCloseTo(m.totalMs, 6);
  });

  it('stats() reports totals, percentiles, queue depth, memory and busy %', async () => {
    const st = ce.stats();
    expect(st.calls).toBeGreaterThan(200);
    expect(st.pairs).toBeGreaterThanOrEqual(st.calls);
    expect(st.tokens).toBeGreaterThan(0);
    expect(st.computedSlots).toBeGreaterThanOrEqual(st.tokens);
    expect(st.truncatedPairs).toBeGreaterThan(0); // the pool has documents over maxLength
    expect(st.callLatencyMs.p50).toBeLessThanOrEqual(st.callLatencyMs.p99);
    expect(st.batchInferenceMs.count).toBe(Math.min(st.batches, 10_000));
    expect(st.queueDepth).toBe(0);
    expect(st.memory.activeBytes).toBeGreaterThan(0);
    expect(st.busyPct).toBeGreaterThan(0);
    expect(st.busyPct).toBeLessThanOrEqual(100);
  });
});

describe('results do not depend on batching', () => {
  it('property: random concurrent calls, sizes, limits and aborts reproduce the scores of pairs alone', async () => {
    const variants = [
      ce,
      await CrossEncoder.load(files, { ...BASE, maxBatchSize: 7, sortWindow: 0, warmup: false }),
      await CrossEncoder.load(files, { ...BASE, maxBatchTokens: 300, maxWaitMs: 2, warmup: false }),
    ];
    const callArb = fc.record({
      idx: fc.array(fc.nat(pool.length - 1), { maxLength: 40 }),
      abortAfter: fc.option(fc.nat(3), { nil: undefined }),
    });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.nat(variants.length - 1),
          fc.array(callArb, { minLength: 1, maxLength: 16 }),
          async (v, calls) => {
            const model = variants[v] as CrossEncoder;
            const promises = calls.map(async ({ idx, abortAfter }) => {
              const ac = new AbortController();
              const p = model.predict(
                idx.map((i) => pool[i] as Pair),
                { activation: 'none', signal: ac.signal },
              );
              p.catch(() => undefined); // settled below; an abort must not count as unhandled meanwhile
              if (abortAfter !== undefined) {
                for (let t = 0; t < abortAfter; t++) await new Promise((r) => setImmediate(r));
                ac.abort();
              }
              return p;
            });
            const settled = await Promise.allSettled(promises);
            settled.forEach((s, c) => {
              const call = calls[c] as (typeof calls)[number];
              if (s.status === 'rejected') {
                expect(call.abortAfter).not.toBeUndefined();
                expect(s.reason).toMatchObject({ code: 'E_ABORTED' });
                return;
              }
              expect(sameBits(s.value, concat(call.idx.map((i) => alone[i] as Float32Array)))).toBe(true);
            });
          },
        ),
        { numRuns: 30, seed: 20261127 },
      );
    } finally {
      await Promise.all(variants.slice(1).map((m) => m.dispose()));
    }
  });

  it('1,000 concurrent predict and rank calls of mixed sizes all resolve with the right results in order', async () => {
    const r = rng(77);
    const queries = pool.slice(0, 10).map((p) => p[0]);
    const docs = pool.slice(10, 40).map((p) => p[1]);
    const rankAlone: Float32Array[][] = [];
    for (const q of queries)
      rankAlone.push(
        await scoreAlone(
          ce,
          docs.map((d) => [q, d] as Pair),
        ),
      );
    const sigmoid = (x: number) => Math.fround(1 / (1 + Math.exp(-x)));
    const batches: BatchMetrics[] = [];
    const onBatch = (b: BatchMetrics) => batches.push(b);
    ce.on('batch', onBatch);
    const jobs = Array.from({ length: 1000 }, (_, k) => {
      const n = 1 + Math.floor(r() * 24);
      if (k % 2 === 0) {
        const idx = Array.from({ length: n }, () => Math.floor(r() * pool.length));
        return {
          check: ce
            .predict(
              idx.map((i) => pool[i] as Pair),
              { activation: 'none' },
            )
            .then((got) => sameBits(got, concat(idx.map((i) => alone[i] as Float32Array)))),
        };
      }
      const q = Math.floor(r() * queries.length);
      const di = Array.from({ length: n }, () => Math.floor(r() * docs.length));
      return {
        check: ce
          .rank(
            queries[q] as string,
            di.map((i) => docs[i] as string),
          )
          .then((ranked) => {
            const exp = di.map((d, i) => ({
              i,
              s: sigmoid((rankAlone[q] as Float32Array[])[d]?.[0] as number),
            }));
            exp.sort((a, b) => b.s - a.s || a.i - b.i);
            return (
              ranked.every((x, j) => x.index === exp[j]?.i && x.score === exp[j]?.s) && ranked.length === n
            );
          }),
      };
    });
    const ok = await Promise.all(jobs.map((j) => j.check));
    ce.off('batch', onBatch);
    expect(ok.filter((x) => !x).length).toBe(0);
    // Callers shared batches.
    expect(batches.length).toBeLessThan(500);
    // Each batch's time on the engine thread lies inside its round trip from the JS thread, both on
    // performance.now()'s clock (the engine's steady clock moved onto it at load).
    const outside = batches.filter((b) => {
      const t = b.engineTimes;
      return !t || !(b.startedAt <= t.beganAt && t.beganAt <= t.endedAt && t.endedAt <= b.endedAt);
    });
    expect(outside.map((b) => [b.startedAt, b.engineTimes, b.endedAt])).toEqual([]);
  });
});

describe('errors: typed, and other callers still get their results', () => {
  const good = () => pool.slice(0, 40);
  const goodExpected = () => concat(alone.slice(0, 40));

  it('bad pairs reject E_INPUT with a message saying what was wrong', async () => {
    const bad: Array<[unknown, RegExp]> = [
      ['not an array', /pairs must be an array/],
      [null, /pairs must be an array.*null/],
      [
        [
          ['q', 'd'],
          ['q', 3],
        ],
        /pairs\[1\] must be a \[query, document\] pair of two strings.*number/,
      ],
      [[['q']], /pairs\[0\].*array of length 1|pairs\[0\].*\[string\]/],
      [[['q', 'd', 'e']], /pairs\[0\]/],
      [['q', 5], /pairs\[0\]/],
      [[{ 0: 'q', 1: 'd' }], /pairs\[0\].*object/],
    ];
    const other = ce.predict(good(), { activation: 'none' });
    for (const [input, msg] of bad) {
      const p = ce.predict(input as Pair[]);
      await expect(p).rejects.toMatchObject({ code: 'E_INPUT', name: 'InputError' });
      await expect(p).rejects.toThrow(msg);
    }
    await expect(ce.rank(3 as never, ['a'])).rejects.toMatchObject({ code: 'E_INPUT' });
    await expect(ce.rank('q', ['a', 4 as never])).rejects.toThrow(/documents\[1\] must be a string/);
    await expect(ce.rank('q', ['a'], { topK: -1 })).rejects.toThrow(/topK/);
    expect(sameBits(await other, goodExpected())).toBe(true);
  });

  it('queue full: too many pairs reject E_QUEUE_FULL at once; queued callers still resolve', async () => {
    const small = await CrossEncoder.load(files, { ...BASE, maxQueuePairs: 64, warmup: false });
    try {
      const huge = Array.from({ length: 100_000 }, (_, i) => pool[i % pool.length] as Pair);
      await expect(small.predict(huge)).rejects.toMatchObject({
        code: 'E_QUEUE_FULL',
        name: 'QueueFullError',
      });
      const first = small.predict(pool.slice(0, 60), { activation: 'none' });
      await expect(small.predict(pool.slice(0, 10))).rejects.toThrow(/maxQueuePairs \(64\)/);
      expect(sameBits(await first, concat(alone.slice(0, 60)))).toBe(true);
    } finally {
      await small.dispose();
    }
  });

  it('abort: a queued call rejects E_ABORTED at once, a running one drops its results, others resolve', async () => {
    const calls = Array.from({ length: 30 }, (_, k) => pool.slice(k * 5, k * 5 + 32));
    const controllers = calls.map(() => new AbortController());
    const started: number[] = [];
    const onBatch = (b: BatchMetrics) => started.push(b.id);
    ce.on('batch', onBatch);
    const ps = calls.map((c, k) => ce.predict(c, { activation: 'none', signal: controllers[k]?.signal }));
    const all = Promise.allSettled(ps);
    controllers[25]?.abort(); // still queued: the dispatcher has not run yet
    const depthAfterAbort = ce.stats().queueDepth;
    // Once the first batch is back, abort call 0 (its pairs ran) and call 12.
    while (started.length === 0) await new Promise((r) => setTimeout(r, 1));
    controllers[0]?.abort();
    controllers[12]?.abort();
    const settled = await all;
    ce.off('batch', onBatch);
    expect(depthAfterAbort).toBe(29 * 32);
    settled.forEach((s, k) => {
      if (k === 25) {
        expect(s.status).toBe('rejected');
        expect((s as PromiseRejectedResult).reason).toMatchObject({
          code: 'E_ABORTED',
          name: 'AbortedError',
        });
      } else if (k === 0 || k === 12) {
        // Either it had already resolved, or it rejected E_ABORTED.
        if (s.status === 'rejected') expect(s.reason).toMatchObject({ code: 'E_ABORTED' });
      } else {
        expect(s.status).toBe('fulfilled');
        const c = calls[k] as Pair[];
        const from = k * 5;
        expect(
          sameBits(
            (s as PromiseFulfilledResult<Float32Array>).value,
            concat(alone.slice(from, from + c.length)),
          ),
        ).toBe(true);
      }
    });
    await expect(ce.predict(good(), { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'E_ABORTED',
    });
  });

  it('dispose while calls are queued and running: E_DISPOSED, no hang, the engine released, others fine', async () => {
    const doomed = await CrossEncoder.load(files, { ...BASE, maxBatchSize: 16, warmup: false });
    let batches = 0;
    doomed.on('batch', () => batches++);
    const ps = Array.from({ length: 40 }, (_, k) =>
      doomed.predict(pool.slice(k, k + 32), { activation: 'none' }),
    );
    const other = ce.predict(good(), { activation: 'none' });
    const all = Promise.allSettled(ps);
    while (batches === 0) await new Promise((r) => setTimeout(r, 1));
    await doomed[Symbol.asyncDispose]();
    const settled = await all;
    const rejected = settled.filter((s) => s.status === 'rejected') as PromiseRejectedResult[];
    expect(rejected.length).toBeGreaterThan(20);
    for (const s of rejected) expect(s.reason).toMatchObject({ code: 'E_DISPOSED', name: 'DisposedError' });
    settled.forEach((s, k) => {
      if (s.status === 'fulfilled') expect(sameBits(s.value, concat(alone.slice(k, k + 32)))).toBe(true);
    });
    await expect(doomed.predict(good())).rejects.toMatchObject({ code: 'E_DISPOSED' });
    await doomed.dispose(); // idempotent
    expect(doomed.stats().memory.activeBytes).toBe(0);
    expect(sameBits(await other, goodExpected())).toBe(true);
  });
});

describe('long documents', () => {
  it("'chunk' scores overlapping windows and keeps each pair's best, as scoring each window alone does", async () => {
    const maxLength = 32;
    const stride = 8;
    const chunked = await CrossEncoder.load(files, {
      backend: 'cpu',
      longDocuments: 'chunk',
      maxLength,
      chunkStride: stride,
      warmup: false,
    });
    const engine = await native().loadEngine({
      backend: 'cpu',
      device: 'cpu',
      weights: files.weights,
      spec: chunked.info.spec,
    });
    try {
      const r = rng(5);
      const pairs: Pair[] = Array.from({ length: 12 }, () => [words(r, 2, 5), words(r, 5, 90)]);
      const got = await chunked.predict(pairs, { activation: 'none' });
      let multi = 0;
      for (let i = 0; i < pairs.length; i++) {
        const [q, d] = pairs[i] as Pair;
        const windows = chunked.tokenizer.encodeChunks(q, d, { maxLength, stride });
        if (windows.length > 1) multi++;
        let best = Number.NEGATIVE_INFINITY;
        for (const w of windows) {
          expect(w.ids.length).toBeLessThanOrEqual(maxLength);
          const res = await engine.forward(w.ids, w.typeIds, Int32Array.from([0, w.ids.length]));
          best = Math.max(best, res.logits[0] as number);
        }
        expect(got[i]).toBe(best);
      }
      expect(multi).toBeGreaterThan(6);
      // Truncation would have scored only the first window.
      expect(chunked.stats().sequences).toBeGreaterThan(pairs.length);
    } finally {
      await engine.dispose();
      await chunked.dispose();
    }
  });
});

describe('padding on the MS MARCO-like workload (32 pairs a request)', () => {
  it('engine padding <= 5% at concurrency 1 and 8; length-aware batches pad less if padded to the longest', async () => {
    const pairs = msMarcoPairs(1024, 11) as Pair[];
    const run = async (concurrency: number, sortWindow?: number) => {
      const m = await CrossEncoder.load(files, {
        backend: 'cpu',
        warmup: false,
        maxBatchTokens: 8192,
        ...(sortWindow !== undefined && { sortWindow }),
      });
      let next = 0;
      const client = async () => {
        while (next < pairs.length) {
          const start = next;
          next += 32;
          await m.predict(pairs.slice(start, start + 32));
        }
      };
      await Promise.all(Array.from({ length: concurrency }, client));
      const st = m.stats();
      await m.dispose();
      return st;
    };
    const c1 = await run(1);
    const c8 = await run(8, 1024); // the length-sorted policy (the default is arrival order, 0)
    const c8fifo = await run(8, 0);
    for (const st of [c1, c8, c8fifo]) {
      expect(st.pairs).toBe(pairs.length);
      expect(st.paddingPct).toBeLessThanOrEqual(5);
    }
    console.log(
      `padding (engine / if padded to longest): c1 ${c1.paddingPct.toFixed(2)}% / ${c1.paddingIfPaddedPct.toFixed(1)}%, ` +
        `c8 ${c8.paddingPct.toFixed(2)}% / ${c8.paddingIfPaddedPct.toFixed(1)}%, ` +
        `c8 arrival order ${c8fifo.paddingIfPaddedPct.toFixed(1)}%; mean batch c8 ${c8.batchSize.mean.toFixed(1)}`,
    );
    expect(c8.paddingIfPaddedPct).toBeLessThan(c8fifo.paddingIfPaddedPct);
  });
});

describe('event loop', () => {
  it('stays responsive (p99 delay < 20 ms) while the engine is saturated for ~10 s', async () => {
    // The tiny model on one engine thread: the engine is the bottleneck, yet it turns over many
    // batches a second, so the JS thread keeps tokenizing, packing and scattering all the while.
    const m = await CrossEncoder.load(files, { backend: 'cpu', threads: 1, maxBatchSize: 64 });
    try {
      const pairs = msMarcoPairs(512, 3) as Pair[];
      // The machine's own delay with the engine idle, to tell our stalls from a busy machine's.
      const idle = monitorEventLoopDelay({ resolution: 1 });
      idle.enable();
      await new Promise((r) => setTimeout(r, 1000));
      idle.disable();
      const h = monitorEventLoopDelay({ resolution: 1 });
      const t0 = performance.now();
      const before = m.stats();
      h.enable();
      let n = 0;
      const client = async () => {
        while (performance.now() - t0 < 10_000) {
          const start = (n++ * 32) % pairs.length;
          await m.predict(pairs.slice(start, start + 32));
        }
      };
      await Promise.all(Array.from({ length: 8 }, client));
      h.disable();
      const after = m.stats();
      const wall = performance.now() - t0;
      const busy = (100 * (after.totalInferenceMs - before.totalInferenceMs)) / wall;
      const p99 = h.percentile(99) / 1e6;
      console.log(
        `event loop delay p50 ${(h.percentile(50) / 1e6).toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ` +
          `${(h.max / 1e6).toFixed(2)} ms (idle machine: p99 ${(idle.percentile(99) / 1e6).toFixed(2)} ms); engine busy ${busy.toFixed(1)}% over ${(wall / 1000).toFixed(1)} s, ` +
          `${after.pairs - before.pairs} pairs in ${after.batches - before.batches} batches, JS tokenizing ` +
          `${(after.totalTokenizeMs - before.totalTokenizeMs).toFixed(0)} ms`,
      );
      expect(busy).toBeGreaterThan(80);
      expect(p99).toBeLessThan(20);
    } finally {
      await m.dispose();
    }
  }, 60_000);
});
