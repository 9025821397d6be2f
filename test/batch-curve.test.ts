/**
 * The batch size from the engine's cost curve (issue 15): the choice rule on curves measured for
 * docs/latency.md, the measurement on an injected cost curve and clock (deterministic: what it tries,
 * when it stops, that it stays within the caps and the budget), and load's warm-up on the real addon.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossEncoder, type ModelFiles } from '../src/index';
import { type CurvePoint, MIN_BATCH_MS, measureCurve, pickBatchTokens } from '../src/scheduler/batch-curve';
import { cleanupModels, syntheticModel } from './helpers/api-model';

/** A curve from pairs/s figures at a fixed pair length (only the ratios matter). */
const fromRates = (rates: Array<[number, number]>): CurvePoint[] =>
  rates.map(([size, pairsPerS]) => ({
    size,
    tokens: size,
    pairs: size / 96,
    ms: size / pairsPerS,
    candidate: true,
  }));

describe('pickBatchTokens', () => {
  it('picks what docs/latency.md picked by hand from the same measurements', () => {
    // MiniLM-L6 at load ~18 (the cpu default's table): peak 7.2 at 2048, nothing else within 5%.
    expect(
      pickBatchTokens(
        fromRates([
          [512, 5.0],
          [1024, 6.1],
          [2048, 7.2],
          [4096, 5.4],
          [8192, 4.8],
        ]),
      ),
    ).toBe(2048);
    // The same at load ~4: peak 24.4 at 1024; 512's 22.3 is 8.6% below it, so 1024.
    expect(
      pickBatchTokens(
        fromRates([
          [512, 22.3],
          [1024, 24.4],
          [2048, 21.7],
          [4096, 19.1],
          [8192, 21.9],
          [16384, 18.8],
        ]),
      ),
    ).toBe(1024);
  });

  it('takes the smallest size within the tolerance, and nothing from an empty curve', () => {
    const flat = fromRates([
      [256, 96],
      [512, 100],
      [1024, 99],
    ]);
    expect(pickBatchTokens(flat)).toBe(256); // 96 >= 0.95 * 100
    expect(pickBatchTokens(flat, 0.01)).toBe(512);
    expect(pickBatchTokens([])).toBeUndefined();
  });
});

/**
 * An engine whose batch of n tokens costs `cost(n)` ms on a fake clock: the measurement sees exactly
 * this curve, and every batch it sends is recorded and checked for validity.
 */
function fakeEngine(cost: (tokens: number) => number, vocabSize = 100, typeVocabSize = 2) {
  let clock = 0;
  const batches: Array<{ tokens: number; pairs: number }> = [];
  const forward = async (tokens: Int32Array, typeIds: Int32Array, offsets: Int32Array) => {
    expect(offsets[0]).toBe(0);
    expect(offsets.at(-1)).toBe(tokens.length);
    expect(typeIds.length).toBe(tokens.length);
    expect(tokens.every((t) => t >= 0 && t < vocabSize)).toBe(true);
    expect(typeIds.every((t) => t >= 0 && t < typeVocabSize)).toBe(true);
    batches.push({ tokens: tokens.length, pairs: offsets.length - 1 });
    clock += cost(tokens.length);
  };
  return { forward, now: () => clock, batches, vocabSize, typeVocabSize };
}

// Throughput rises while the 20 ms fixed cost shows, then is flat at 100 tokens/ms from 2000 tokens on.
const knee = (n: number) => Math.max(20, n / 100);

describe('measureCurve (injected cost curve and clock)', () => {
  it('measures doubling sizes until two doublings buy nothing, then picks the knee', async () => {
    const f = fakeEngine(knee);
    const r = await measureCurve(f.forward, { ...f, pairLength: 64, maxPairs: 1000, budgetMs: 1e9 });
    expect(r.curve.map((p) => p.size)).toEqual([256, 512, 1024, 2048, 4096, 8192]);
    expect(r.stopped).toBe('flat');
    expect(r.chosen).toBe(2048);
    // Five runs per size (each cheap against the budget), whole pairs of 64 tokens, none past the 8192 point.
    expect(f.batches.length).toBe(30);
    expect(f.batches.every((b) => b.tokens === b.pairs * 64)).toBe(true);
    for (const p of r.curve) expect(p.ms).toBeCloseTo(knee(p.tokens), 9);
  });

  it('the best run of each size counts', async () => {
    let calls = 0;
    const f = fakeEngine((n) => (calls++ % 2 === 0 ? 10 * knee(n) : knee(n))); // every first run slow
    const r = await measureCurve(f.forward, { ...f, pairLength: 64, maxPairs: 1000, budgetMs: 1e9 });
    for (const p of r.curve) expect(p.ms).toBeCloseTo(knee(p.tokens), 9);
    expect(r.chosen).toBe(2048);
  });

  it('never starts a size that would overrun the budget', async () => {
    const f = fakeEngine((n) => n / 10); // no fixed cost: 25.6 ms for 256 tokens, doubling
    const r = await measureCurve(f.forward, { ...f, pairLength: 64, maxPairs: 1000, budgetMs: 300 });
    expect(r.stopped).toBe('budget');
    // Two runs a size (each > 5% of the budget). 256: 2 x 25.6; 512: 2 x 51.2 (153.6 in all); 1024
    // would take 204.8 more, predicted 1.25 x that.
    expect(r.curve.map((p) => p.size)).toEqual([256, 512]);
    expect(f.batches.length).toBe(4);
    expect(r.ms).toBeLessThanOrEqual(300);
    expect(r.chosen).toBe(256); // per-token cost constant: the smallest is as fast
  });

  it('below minTokens only sizes whose batch takes minBatchMs are candidates', async () => {
    // A fast model, flat from 500 tokens on: 256-1024 take < 50 ms, so 2048 (the engine's figure) it is.
    const flat = fakeEngine((n) => Math.max(5, n / 100));
    const r = await measureCurve(flat.forward, {
      ...flat,
      pairLength: 64,
      maxPairs: 1000,
      minTokens: 2048,
      budgetMs: 1e9,
    });
    expect(r.curve.map((p) => [p.size, p.candidate])).toEqual([
      [256, false],
      [512, false],
      [1024, false],
      [2048, true],
      [4096, true],
      [8192, true],
    ]);
    expect([r.chosen, r.stopped]).toEqual([2048, 'flat']);
    // A 40 ms fixed cost: throughput still rises past 2048 (33.9, 50.6, 67.2, 80.4 tokens/ms), and 16384
    // is the only size within 5% of the peak.
    const rising = fakeEngine((n) => 40 + n / 100);
    const up = await measureCurve(rising.forward, {
      ...rising,
      pairLength: 64,
      maxPairs: 1000,
      minTokens: 2048,
      budgetMs: 1e9,
    });
    expect([up.chosen, up.stopped]).toEqual([16384, 'end']);
    // A slow model (no fixed cost, flat): from 512 tokens (51.2 ms) the batches are candidates, and 512
    // is chosen below the engine's figure, its next doubling measured and no faster.
    const slow = fakeEngine((n) => n / 10);
    const opts = { pairLength: 64, maxPairs: 1000, minTokens: 2048 };
    const low = await measureCurve(slow.forward, { ...slow, ...opts, budgetMs: 1000 });
    expect(low.curve.map((p) => [p.size, p.candidate])).toEqual([
      [256, false],
      [512, true],
      [1024, true],
      [2048, true],
    ]);
    expect([low.chosen, low.stopped]).toEqual([512, 'flat']);
    // The same with a 300 ms budget: 1024 would overrun it, so 512 is unconfirmed and nothing is chosen.
    const short = fakeEngine((n) => n / 10);
    const unsure = await measureCurve(short.forward, { ...short, ...opts, budgetMs: 300 });
    expect(unsure.curve.map((p) => [p.size, p.candidate])).toEqual([
      [256, false],
      [512, true],
    ]);
    expect([unsure.chosen, unsure.stopped]).toEqual([undefined, 'budget']);
    // With a budget that stops before any candidate, nothing is chosen.
    const slower = fakeEngine((n) => n / 10);
    const none = await measureCurve(slower.forward, {
      ...slower,
      pairLength: 64,
      maxPairs: 1000,
      minTokens: 2048,
      budgetMs: 100,
    });
    expect([none.curve.length, none.chosen, none.stopped]).toEqual([1, undefined, 'budget']);
  });

  it('stays within the caps: no batch over maxPairs, sizes from the list only', async () => {
    const f = fakeEngine((n) => 5 + n / 1000);
    const r = await measureCurve(f.forward, {
      ...f,
      pairLength: 96,
      maxPairs: 10,
      sizes: [64, 512, 1024, 2048],
      budgetMs: 1e9,
    });
    // 64 tokens hold no 96-token pair; 2048 would be 21 pairs.
    expect(r.curve.map((p) => p.size)).toEqual([512, 1024]);
    expect(Math.max(...f.batches.map((b) => b.pairs))).toBeLessThanOrEqual(10);
    expect([512, 1024]).toContain(r.chosen);
    expect(r.stopped).toBe('end');
  });

  it('stops when the signal aborts, with its reason', async () => {
    const ac = new AbortController();
    const f = fakeEngine(knee);
    const forward = async (t: Int32Array, ty: Int32Array, o: Int32Array) => {
      await f.forward(t, ty, o);
      if (f.batches.length === 7) ac.abort(new Error('stop here'));
    };
    const p = measureCurve(forward, { ...f, pairLength: 64, maxPairs: 1000, signal: ac.signal });
    await expect(p).rejects.toThrow('stop here');
    expect(f.batches.length).toBe(7);
  });
});

describe("load's warm-up measures the curve on the real engine (cpu)", () => {
  let files: ModelFiles;
  beforeAll(async () => {
    files = await syntheticModel('tiny', 5);
  });
  afterAll(() => cleanupModels());

  it('picks maxBatchTokens from the measured curve, within the time budget', async () => {
    const ce = await CrossEncoder.load(files, { backend: 'cpu', maxLength: 64 });
    try {
      const b = ce.info.batchTokens;
      if (b.source !== 'measured')
        throw new Error(`expected a measured batch size, got ${JSON.stringify(b)}`);
      expect(b.curve.length).toBeGreaterThan(0);
      expect(b.value).toBe(pickBatchTokens(b.curve.filter((p) => p.candidate)));
      expect(ce.limits.maxBatchTokens).toBe(b.value);
      expect(b.curve.every((p) => p.pairs <= ce.limits.maxBatchSize && p.tokens <= p.size)).toBe(true);
      // Below the engine's own figure only with batches long enough to hide the scheduler's per-batch work.
      const chosen = b.curve.find((p) => p.size === b.value) as CurvePoint;
      expect(b.value >= ce.info.engineLimits.maxBatchTokens || chosen.ms >= MIN_BATCH_MS).toBe(true);
      // 1.5 s budget, plus at most one batch's overrun of the estimate: generous on a loaded machine.
      expect(b.ms).toBeLessThan(10_000);
      // The scores are those of an engine that was never measured.
      const plain = await CrossEncoder.load(files, { backend: 'cpu', maxLength: 64, warmup: false });
      const pairs: Array<[string, string]> = [
        ['a cat', 'the cat sat'],
        ['a dog', 'rivers and music'],
      ];
      expect(Array.from(await ce.predict(pairs))).toEqual(Array.from(await plain.predict(pairs)));
      await plain.dispose();
    } finally {
      await ce.dispose();
    }
  });

  it("the caller's maxBatchTokens wins and nothing is measured; maxBatchSize caps what is tried", async () => {
    const set = await CrossEncoder.load(files, { backend: 'cpu', maxLength: 64, maxBatchTokens: 3000 });
    const few = await CrossEncoder.load(files, { backend: 'cpu', maxLength: 64, maxBatchSize: 40 });
    try {
      expect(set.info.batchTokens).toEqual({ value: 3000, source: 'caller' });
      expect(set.limits.maxBatchTokens).toBe(3000);
      const b = few.info.batchTokens;
      if (b.source !== 'measured')
        throw new Error(`expected a measured batch size, got ${JSON.stringify(b)}`);
      expect(Math.max(...b.curve.map((p) => p.pairs))).toBeLessThanOrEqual(40);
      expect(few.limits.maxBatchSize).toBe(40);
    } finally {
      await Promise.all([set.dispose(), few.dispose()]);
    }
  });
});
