/**
 * Issue 15 end to end on the real addon (cpu engine, tiny synthetic model): an aborted or disposed
 * call's pairs that were not yet in the engine never reach it (every batch the engine computes is
 * reported through onBatch), and predict/rank take `priority` and `deadlineMs`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BatchMetrics, CrossEncoder, DeadlineError, type ModelFiles } from '../src/index';
import { cleanupModels, pairPool, syntheticModel } from './helpers/api-model';

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
