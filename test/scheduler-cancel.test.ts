/**
 * Issue 15 end to end on the real addon (cpu engine, tiny synthetic model): an aborted or disposed
 * call's pairs that were not yet in the engine never reach it (every batch the engine computes is
 * reported through onBatch), a running batch left with no live call stops at a layer boundary while
 * one holding a live call's pair never does, and predict/rank take `priority` and `deadlineMs`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BatchMetrics, CrossEncoder, DeadlineError, type ModelFiles } from '../src/index';
import { loadModelSpec } from '../src/model';
import { type ForwardResult, type NativeEngine, native } from '../src/native';
import { type PairEncoder, Scheduler, type SchedulerEngine } from '../src/scheduler';
import { encodeChars, randomText, rng } from './helpers/api-engine';
import { cleanupModels, pairPool, sameBits, syntheticModel } from './helpers/api-model';

let files: ModelFiles;
/** Batches of tens of ms (more than tokenizing a call takes), so a queue forms behind the engine. */
let slow: ModelFiles;
const BASE = { backend: 'cpu', maxLength: 64, warmup: false, maxBatchSize: 8 } as const;

beforeAll(async () => {
  files = await syntheticModel('tiny', 4);
  slow = await syntheticModel({ hiddenSize: 256, numLayers: 4, numHeads: 4, intermediateSize: 1024 }, 4);
});

afterAll(() => cleanupModels());

describe('cancellation on the cpu engine', () => {
  it("an aborted call's pairs not yet in the engine never reach it; a call after it gets one batch", async () => {
    const batches: BatchMetrics[] = [];
    const ac = new AbortController();
    const ce = await CrossEncoder.load(slow, {
      ...BASE,
      onBatch: (b) => {
        batches.push(b);
        ac.abort();
      },
    });
    const pairs = pairPool(1, 40);
    const big = ce.predict(pairs, { signal: ac.signal });
    await expect(big).rejects.toMatchObject({ code: 'E_ABORTED' });
    const one = pairs[0] as [string, string];
    const alone = await ce.predict([one]);
    // The engine computed the batch running when the abort came, then only the 1-pair call.
    expect(batches.map((b) => b.pairs)).toEqual([8, 1]);
    expect(ce.stats().pairs).toBe(9);
    const fresh = await CrossEncoder.load(slow, { ...BASE });
    expect(await fresh.predict([one])).toEqual(alone);
    await fresh.dispose();
    await ce.dispose();
  });

  it("dispose() while a batch runs: the queue's other pairs never reach the engine", async () => {
    const batches: BatchMetrics[] = [];
    let disposing: Promise<void> | undefined;
    const ce = await CrossEncoder.load(slow, {
      ...BASE,
      onBatch: (b) => {
        batches.push(b);
        disposing ??= ce.dispose();
      },
    });
    const calls = Array.from({ length: 10 }, (_, i) => ce.predict(pairPool(10 + i, 8)));
    const settled = await Promise.allSettled(calls);
    await disposing;
    expect(batches.length).toBe(1);
    // onBatch runs before the batch's call resolves, so dispose() rejects all ten.
    for (const s of settled) expect(s).toMatchObject({ status: 'rejected', reason: { code: 'E_DISPOSED' } });
  });
});

describe('priority and deadlineMs on predict and rank', () => {
  it('a high-priority call made behind queued normal ones is computed before them', async () => {
    const ce = await CrossEncoder.load(files, { ...BASE });
    const order: string[] = [];
    const normal = Array.from({ length: 6 }, (_, i) =>
      ce.predict(pairPool(20 + i, 8)).then(() => order.push(`n${i}`)),
    );
    const high = ce.rank('query', ['a b c', 'd e f'], { priority: 'high' }).then(() => order.push('high'));
    await Promise.all([...normal, high]);
    // The first batch (n0) may be running already; the high call goes next.
    expect(order.indexOf('high')).toBeLessThanOrEqual(1);
    await ce.dispose();
  });

  it('deadlineMs: a spent budget rejects with DeadlineError and computes nothing; bad values are InputErrors', async () => {
    const batches: BatchMetrics[] = [];
    const ce = await CrossEncoder.load(files, { ...BASE, onBatch: (b) => batches.push(b) });
    await expect(ce.predict(pairPool(30, 5), { deadlineMs: 0 })).rejects.toBeInstanceOf(DeadlineError);
    await expect(ce.rank('q', ['a', 'b'], { deadlineMs: 0 })).rejects.toMatchObject({ code: 'E_DEADLINE' });
    expect(batches.length).toBe(0);
    expect((await ce.predict(pairPool(31, 3), { deadlineMs: 60_000 })).length).toBe(3);
    for (const bad of [-1, Number.NaN, '5', 2 ** 31]) {
      await expect(ce.predict(pairPool(32, 1), { deadlineMs: bad as number })).rejects.toMatchObject({
        code: 'E_INPUT',
        message: expect.stringMatching(/deadlineMs/),
      });
    }
    for (const bad of ['urgent', 1, null]) {
      await expect(ce.rank('q', ['a'], { priority: bad as 'high' })).rejects.toMatchObject({
        code: 'E_INPUT',
        message: expect.stringMatching(/priority/),
      });
    }
    await ce.dispose();
  });
});

describe('mid-batch cancellation on the cpu engine (real addon)', () => {
  /** 8 layers, so a batch stopped at a layer boundary shows as fewer layers run. */
  const SHAPE = { hiddenSize: 128, numLayers: 8, numHeads: 2, intermediateSize: 512 };
  /** Every sequence is LEN tokens and a batch holds BATCH of them: one call of BATCH pairs is one batch. */
  const LEN = 128;
  const BATCH = 64;
  const encode: PairEncoder = (q, d) => [encodeChars(q, d, LEN)];
  let engine: NativeEngine;
  let numLayers = 0;
  let numLabels = 0;

  beforeAll(async () => {
    const m = await syntheticModel(SHAPE, 5);
    const spec = await loadModelSpec(m);
    numLayers = spec.numLayers;
    numLabels = spec.numLabels;
    engine = await native().loadEngine({ backend: 'cpu', device: 'cpu', weights: m.weights, spec });
  });
  afterAll(() => engine?.dispose());

  function pairsOf(seed: number, n: number): Array<[string, string]> {
    const r = rng(seed);
    return Array.from({ length: n }, (_, i) => [`q${i}`, randomText(r, 2 * LEN, 2 * LEN)]);
  }

  /** The real engine as the scheduler sees it, recording each batch's result and wall time. */
  function recording() {
    const results: Array<{ r: ForwardResult; ms: number }> = [];
    let started = () => {};
    const firstStart = new Promise<void>((resolve) => {
      started = resolve;
    });
    const e: SchedulerEngine = {
      forward: (t, ty, o, id) => {
        const t0 = performance.now();
        started();
        return engine.forward(t, ty, o, id).then((r) => {
          results.push({ r, ms: performance.now() - t0 });
          return r;
        });
      },
      cancel: (id) => engine.cancel(id),
      memory: () => engine.memory(),
      dispose: async () => {},
    };
    const s = new Scheduler({
      engine: e,
      encode,
      numLabels,
      maxBatchSize: BATCH,
      maxBatchTokens: BATCH * LEN,
    });
    return { s, results, firstStart };
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('a running batch whose only call is aborted stops at a layer boundary; a 1-pair call after it runs next', async () => {
    const big = pairsOf(1, BATCH);
    const one: Array<[string, string]> = [['query', 'a short document']];
    // The yardstick: the same batch, not cancelled, and the 1-pair call alone.
    const full = recording();
    await full.s.submit(big);
    const alone = await full.s.submit(one);
    await full.s.dispose();
    const fullMs = (full.results[0] as { ms: number }).ms;

    const run = recording();
    const ac = new AbortController();
    const call = run.s.submit(big, { signal: ac.signal });
    await run.firstStart;
    await sleep(fullMs / 5);
    ac.abort();
    const after = run.s.submit(one);
    await expect(call).rejects.toMatchObject({ code: 'E_ABORTED' });
    const got = await after;
    await run.s.dispose();
    const [stopped, next] = run.results.map((x) => x.r) as [ForwardResult, ForwardResult];
    expect(run.results.length).toBe(2);
    // Aborted about a fifth of the way in (after the whole batch's time / 5), it stopped at a layer
    // boundary: the addon's count of layers run, not a timing, says so.
    expect(stopped.cancelled).toBe(true);
    expect(stopped.layersRun).toBeLessThan(numLayers);
    expect(stopped.logits.length).toBe(0);
    expect(next.cancelled).toBe(false);
    expect(sameBits(got.logits, alone.logits)).toBe(true);
  });

  it("a batch still holding a live call's pair is never cancelled; that call's scores equal a solo run's", async () => {
    const kept = pairsOf(3, 4);
    const run = recording();
    const ac = new AbortController();
    const doomed = run.s.submit(pairsOf(2, BATCH - kept.length), { signal: ac.signal });
    const live = run.s.submit(kept);
    await run.firstStart;
    ac.abort();
    await expect(doomed).rejects.toMatchObject({ code: 'E_ABORTED' });
    const got = await live;
    await run.s.dispose();
    expect(run.results.map((x) => [x.r.cancelled, x.r.layersRun])).toEqual([[false, numLayers]]);
    const solo = recording();
    const alone = await solo.s.submit(kept);
    await solo.s.dispose();
    expect(sameBits(got.logits, alone.logits)).toBe(true);
  });

  it('cancel(batchId) on the addon: ids are checked; an unknown id cancels nothing', async () => {
    expect(engine.cancel(12345)).toBe(false);
    for (const bad of [Number.NaN, '1', undefined]) {
      expect(() => engine.cancel(bad as number)).toThrow(expect.objectContaining({ code: 'E_INPUT' }));
    }
    const t = new Int32Array([101, 5, 102]);
    await expect(
      engine.forward(t, new Int32Array(3), new Int32Array([0, 3]), Number.NaN),
    ).rejects.toMatchObject({
      code: 'E_INPUT',
    });
    const r = await engine.forward(t, new Int32Array(3), new Int32Array([0, 3]), 7);
    expect([r.cancelled, r.layersRun, r.logits.length]).toEqual([false, numLayers, numLabels]);
  });
});
