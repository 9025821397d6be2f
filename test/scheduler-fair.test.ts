/**
 * Issue 15's scheduler mechanisms against the in-test engine (test/helpers/api-engine.ts), which records
 * what reaches it: request-fair batching (FIFO by call), priorities, deadlines, an aborted call's
 * pairs that never reach the engine, and which running batches the scheduler asks the engine to
 * cancel. test/scheduler-cancel.test.ts checks the cancellations on the real addon.
 */
import { describe, expect, it } from 'vitest';
import { DeadlineError, EngineError } from '../src/errors';
import type { ForwardResult } from '../src/native';
import { type PairEncoder, Scheduler, type SchedulerOptions } from '../src/scheduler';
import { encodeChars, randomText, referenceLogits, rng, TestEngine } from './helpers/api-engine';

type Pair = readonly [string, string];
const MAX_LEN = 64;
const encode: PairEncoder = (q, d) => [encodeChars(q, d, MAX_LEN)];

function expected(pairs: readonly Pair[]): Float32Array {
  const out = new Float32Array(pairs.length);
  pairs.forEach(([q, d], i) => {
    const s = encodeChars(q, d, MAX_LEN);
    out.set(referenceLogits(s.ids, s.typeIds, 1), i);
  });
  return out;
}

/** TestEngine that also records, per batch, the first query character of each sequence (a call's tag). */
class TaggingEngine extends TestEngine {
  readonly tags: string[][] = [];
  override forward(tokens: Int32Array, typeIds: Int32Array, offsets: Int32Array): Promise<ForwardResult> {
    const tags: string[] = [];
    for (let i = 0; i + 1 < offsets.length; i++) {
      tags.push(String.fromCodePoint(tokens[(offsets[i] as number) + 1] as number));
    }
    this.tags.push(tags);
    return super.forward(tokens, typeIds, offsets);
  }
  /** Sequences of the call tagged `tag` that reached the engine. */
  count(tag: string): number {
    return this.tags.flat().filter((t) => t === tag).length;
  }
}

/** `n` pairs whose query starts with `tag`; documents of random length (as MS MARCO's vary). */
function tagged(tag: string, n: number, r: () => number): Pair[] {
  return Array.from({ length: n }, () => [`${tag}${randomText(r, 1, 6)}`, randomText(r, 5, 55)] as const);
}

function make(engine: TestEngine, o: Partial<SchedulerOptions> = {}) {
  return new Scheduler({ engine, encode, numLabels: 1, ...o });
}

const tick = () => new Promise((r) => setImmediate(r));

describe('request-fair batching', () => {
  /** 24 calls of 8 pairs at once; per call, how many batches the engine had finished when it resolved. */
  async function burst(o: Partial<SchedulerOptions>) {
    const engine = new TestEngine({ delayMs: 1 });
    const s = make(engine, { maxBatchSize: 16, ...o });
    const r = rng(3);
    const calls = Array.from({ length: 24 }, () => tagged('q', 8, r));
    const doneAt: number[] = [];
    const order: number[] = [];
    await Promise.all(
      calls.map((c, i) =>
        s.submit(c).then((res) => {
          expect(res.logits).toEqual(expected(c));
          doneAt[i] = engine.batches.length;
          order.push(i);
        }),
      ),
    );
    await s.dispose();
    const batches = engine.batches.length;
    return { order, meanDone: doneAt.reduce((a, b) => a + b, 0) / calls.length, batches };
  }

  it('by default equal calls complete in arrival order, the mean call after about half the batches', async () => {
    const fair = await burst({});
    expect(fair.order).toEqual(Array.from({ length: 24 }, (_, i) => i));
    // FIFO: call i completes with batch ceil(8(i+1)/16), so the mean is ~(N+1)/2 of the N batches.
    expect(fair.batches).toBe(12);
    expect(fair.meanDone).toBeLessThanOrEqual(0.6 * fair.batches);
  });

  it('sortWindow > 0 keeps the previous length-sorted policy, where most calls wait for most batches', async () => {
    const fair = await burst({});
    const sorted = await burst({ sortWindow: 1024 });
    expect(sorted.meanDone).toBeGreaterThan(0.8 * sorted.batches);
    expect(sorted.meanDone).toBeGreaterThan(1.3 * fair.meanDone);
  });
});

describe('priorities', () => {
  it("'high' calls are batched before 'normal' ones, 'normal' before 'low', arrival order within each", async () => {
    const engine = new TaggingEngine({ delayMs: 10 });
    const s = make(engine, { maxBatchSize: 4, pipelineDepth: 1 });
    const r = rng(5);
    const blocker = s.submit(tagged('B', 4, r));
    await tick(); // the blocker is in the engine: what follows waits in the queue together
    const calls: Array<[string, 'high' | 'normal' | 'low']> = [
      ['l', 'low'],
      ['n', 'normal'],
      ['h', 'high'],
      ['m', 'normal'],
      ['i', 'high'],
    ];
    const ps = calls.map(([tag, priority]) => {
      const pairs = tagged(tag, 4, r);
      return s.submit(pairs, { priority }).then((res) => expect(res.logits).toEqual(expected(pairs)));
    });
    await Promise.all([blocker, ...ps]);
    expect(engine.tags.map((b) => [...new Set(b)].join(''))).toEqual(['B', 'h', 'i', 'n', 'm', 'l']);
    await s.dispose();
  });
});

describe('deadlines', () => {
  it('a call whose deadline passes before its pairs reach the engine fails with E_DEADLINE; none of them run', async () => {
    const engine = new TaggingEngine({ delayMs: 60 });
    const s = make(engine, { maxBatchSize: 4, pipelineDepth: 1 });
    const r = rng(6);
    const events: string[] = [];
    const blocker = s.submit(tagged('B', 8, r)).then(() => events.push('blocker done'));
    const late = s.submit(tagged('D', 4, r), { deadlineMs: 20 }).catch((e: unknown) => {
      events.push('deadline');
      return e;
    });
    const roomy = tagged('R', 4, r);
    const ok = s.submit(roomy, { deadlineMs: 60_000 });
    const err = await late;
    expect(err).toBeInstanceOf(DeadlineError);
    expect(err).toMatchObject({ code: 'E_DEADLINE', message: expect.stringMatching(/deadline \(20 ms\)/) });
    expect((await ok).logits).toEqual(expected(roomy));
    await blocker;
    // The timer failed it while the engine was still busy with the blocker, not when its turn came.
    expect(events).toEqual(['deadline', 'blocker done']);
    expect(engine.count('D')).toBe(0);
    expect(engine.count('R')).toBe(4);
    expect(s.stats().failedCalls).toBe(1);
    expect(s.queueDepth).toBe(0);
    await s.dispose();
  });

  it('a deadline already spent (0 ms) fails before the first batch forms, even with an idle engine', async () => {
    const engine = new TaggingEngine();
    const s = make(engine);
    await expect(s.submit(tagged('Z', 3, rng(8)), { deadlineMs: 0 })).rejects.toBeInstanceOf(DeadlineError);
    expect(engine.count('Z')).toBe(0);
    await s.dispose();
  });
});

describe('cancellation before the engine', () => {
  it("an aborted call's pairs that had not reached the engine never do; other calls are unaffected", async () => {
    const engine = new TaggingEngine({ delayMs: 5 });
    const ac = new AbortController();
    let first = true;
    const s = make(engine, {
      maxBatchSize: 10,
      pipelineDepth: 1,
      onBatch: () => {
        if (first) ac.abort();
        first = false;
      },
    });
    const r = rng(10);
    const victim = s.submit(tagged('V', 200, r), ac.signal);
    const after = tagged('A', 3, r);
    const p = s.submit(after);
    await expect(victim).rejects.toMatchObject({ code: 'E_ABORTED' });
    expect((await p).logits).toEqual(expected(after));
    // Only the batch that was running when the abort came held the victim's pairs.
    expect(engine.count('V')).toBe(10);
    await s.dispose();
  });
});

/**
 * TestEngine with cancel(batchId): records the ids forward() got and the ids cancelled, and resolves a
 * cancelled batch as the addon does (`cancelled: true`, no logits), or, with `cancelAll`, every batch
 * (an engine misbehaving).
 */
class CancellingEngine extends TaggingEngine {
  readonly ids: number[] = [];
  readonly cancels: number[] = [];
  cancelAll = false;
  override forward(t: Int32Array, ty: Int32Array, o: Int32Array, batchId?: number): Promise<ForwardResult> {
    const id = batchId ?? -1;
    this.ids.push(id);
    return super
      .forward(t, ty, o)
      .then((r) =>
        this.cancelAll || this.cancels.includes(id)
          ? { ...r, logits: new Float32Array(0), cancelled: true }
          : r,
      );
  }
  cancel(batchId: number): boolean {
    this.cancels.push(batchId);
    return true;
  }
}

describe('cancellation of running batches', () => {
  it('a batch in the engine is cancelled when its last live call is aborted, never while one is live', async () => {
    const engine = new CancellingEngine({ delayMs: 40 });
    const s = make(engine, { maxBatchSize: 8, pipelineDepth: 2 });
    const r = rng(11);
    const ac = { a: new AbortController(), b: new AbortController(), c: new AbortController() };
    // a and b share the first batch, c fills the second, d waits in the queue.
    const a = s.submit(tagged('a', 4, r), ac.a.signal);
    const b = s.submit(tagged('b', 4, r), ac.b.signal);
    const c = s.submit(tagged('c', 8, r), ac.c.signal);
    const dPairs = tagged('d', 8, r);
    const d = s.submit(dPairs);
    while (engine.ids.length < 2) await tick();
    const [first, second] = engine.ids as [number, number];
    expect(engine.tags.map((t) => t.join(''))).toEqual(['aaaabbbb', 'cccccccc']);
    ac.a.abort();
    expect(engine.cancels).toEqual([]); // b is still waiting on the first batch
    ac.c.abort();
    expect(engine.cancels).toEqual([second]);
    ac.b.abort();
    expect(engine.cancels).toEqual([second, first]);
    for (const p of [a, b, c]) await expect(p).rejects.toMatchObject({ code: 'E_ABORTED' });
    // d's batch went in after them and was never cancelled: its scores are right.
    expect((await d).logits).toEqual(expected(dPairs));
    expect(engine.cancels.length).toBe(2);
    expect(new Set(engine.ids).size).toBe(engine.ids.length);
    await s.dispose();
  });

  it('dispose() cancels the batches in the engine', async () => {
    const engine = new CancellingEngine({ delayMs: 40 });
    const s = make(engine, { maxBatchSize: 8, pipelineDepth: 2 });
    const calls = [s.submit(tagged('x', 8, rng(12))), s.submit(tagged('y', 8, rng(13)))];
    const settled = Promise.allSettled(calls);
    while (engine.ids.length < 2) await tick();
    await s.dispose();
    for (const p of await settled)
      expect(p).toMatchObject({ status: 'rejected', reason: { code: 'E_DISPOSED' } });
    expect(engine.cancels.sort()).toEqual([...engine.ids].sort());
  });

  it('a batch the engine reports cancelled while a call still waits on it fails that call (never hangs)', async () => {
    const engine = new CancellingEngine();
    engine.cancelAll = true;
    const s = make(engine);
    await expect(s.submit(tagged('z', 3, rng(14)))).rejects.toBeInstanceOf(EngineError);
    await s.dispose();
  });
});
