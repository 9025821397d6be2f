/**
 * Callers that change, shrink or booby-trap their arrays after (or while) handing them to predict /
 * rank (issue 13, items 3 and 4). The library reads each pair once, synchronously, into its own arrays:
 * what the caller does afterwards must not reach the queue, crash the process, or hang a call. Every
 * expected score is the pair scored alone on the real cpu engine.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossEncoder, InputError } from '../src/index';
import { cleanupModels, pairPool, sameBits, syntheticModel } from './helpers/api-model';

type Pair = [string, string];
const pool = pairPool(7, 24, 40);
let ce: CrossEncoder;
let alone: number[];

/** Rejects when `p` has not settled within `ms` (a hang is a failure, not a stuck test run). */
function within<T>(p: Promise<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

const expected = (idx: number[]) => Float32Array.from(idx.map((i) => alone[i] as number));

beforeAll(async () => {
  ce = await CrossEncoder.load(await syntheticModel('tiny', 4), { backend: 'cpu', maxLength: 64 });
  alone = [];
  for (const p of pool) alone.push(await ce.predict(p, { activation: 'none' }));
});

afterAll(async () => {
  await ce?.dispose();
  cleanupModels();
});

describe('predict reads the pairs once, when called', () => {
  it('a pair replaced by a number after the call: the call scores what it was given', async () => {
    const pairs: unknown[] = pool.slice(0, 6).map((p) => [...p]);
    const p = ce.predict(pairs as Pair[], { activation: 'none' });
    pairs[2] = 42;
    (pairs[3] as unknown[])[1] = 7;
    expect(sameBits(await within(p), expected([0, 1, 2, 3, 4, 5]))).toBe(true);
  });

  it('an array shortened to nothing after the call still settles with its results (no hang)', async () => {
    const pairs = pool.slice(0, 5);
    const p = ce.predict(pairs, { activation: 'none' });
    pairs.length = 0;
    expect(sameBits(await within(p), expected([0, 1, 2, 3, 4]))).toBe(true);
    expect(ce.stats().queueDepth).toBe(0);
  });

  it('a getter that throws on its second read, and a Proxy whose elements change, are read once', async () => {
    const trapped = pool.slice(0, 4) as unknown[];
    let reads = 0;
    Object.defineProperty(trapped, 1, {
      get() {
        if (reads++ > 0) throw new Error('second read');
        return pool[1];
      },
    });
    let n = 0;
    const shifting = new Proxy(pool.slice(0, 4), {
      get(target, key, receiver) {
        // Index reads answer with a different pair each time.
        if (typeof key === 'string' && /^\d+$/.test(key)) return pool[(Number(key) + 4 * n++) % pool.length];
        return Reflect.get(target, key, receiver);
      },
    });
    const a = ce.predict(trapped as Pair[], { activation: 'none' });
    const b = ce.predict(shifting, { activation: 'none' });
    expect(sameBits(await within(a), expected([0, 1, 2, 3]))).toBe(true);
    // The Proxy's first answers, in order, are what was scored.
    expect(sameBits(await within(b), expected([0, 5, 10, 15]))).toBe(true);
    expect(reads).toBe(1);
  });

  it('a getter or Proxy trap that throws during the call rejects it with InputError (not a throw)', async () => {
    const trapped = pool.slice(0, 3) as unknown[];
    Object.defineProperty(trapped, 2, {
      get() {
        throw new Error('no access');
      },
    });
    const revoked = Proxy.revocable(pool.slice(0, 3), {});
    revoked.revoke();
    const lying = new Proxy(pool.slice(0, 3), {
      get: (t, k, r) => (k === 'length' ? 1e300 : Reflect.get(t, k, r)),
    });
    for (const bad of [trapped, revoked.proxy, lying]) {
      let p: Promise<unknown> | undefined;
      expect(() => {
        p = ce.predict(bad as Pair[]);
      }).not.toThrow();
      await expect(within(p as Promise<unknown>)).rejects.toBeInstanceOf(InputError);
    }
    const badPair = ['q', 'd'] as unknown[];
    Object.defineProperty(badPair, 0, {
      get() {
        throw new Error('pair trap');
      },
    });
    await expect(ce.predict([pool[0] as Pair, badPair as Pair])).rejects.toThrow(
      /pairs could not be read.*pair trap/,
    );
    const badOptions = new Proxy(
      {},
      {
        ownKeys() {
          throw new Error('options trap');
        },
      },
    );
    await expect(ce.predict(pool.slice(0, 2), badOptions)).rejects.toBeInstanceOf(InputError);
  });

  it('rank: documents changed or emptied after the call rank what was given, texts included', async () => {
    const query = pool[0]?.[0] as string;
    const docs = pool.slice(0, 8).map((p) => p[1]);
    const honest = await ce.rank(query, [...docs], { returnDocuments: true });
    const mutable: unknown[] = [...docs];
    const p = ce.rank(query, mutable as string[], { returnDocuments: true });
    mutable[0] = 99;
    mutable.length = 1;
    expect(await within(p)).toEqual(honest);
  });

  it('dispose() settles every call it knows of, queued, in the engine or emptied by its caller, at once', async () => {
    const doomed = await CrossEncoder.load(await syntheticModel('tiny', 4), {
      backend: 'cpu',
      maxLength: 64,
      maxBatchSize: 4,
      warmup: false,
    });
    // One caller empties its array after the call: its call is still known, and settled.
    const shrunk = pool.slice(0, 6);
    const calls = [doomed.predict(shrunk)];
    shrunk.length = 0;
    for (let k = 0; k < 12; k++) calls.push(doomed.predict(pool.slice(k, k + 8)));
    for (const c of calls) c.catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    const disposing = doomed.dispose();
    const settled = await within(Promise.allSettled(calls));
    await within(disposing);
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      expect((s as PromiseRejectedResult).reason).toMatchObject({ code: 'E_DISPOSED' });
    }
  });
});
