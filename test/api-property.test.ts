/**
 * Property (issue 13, "must show"): predict / rank with random mixes of callers that mutate, shrink,
 * freeze, proxy or throw from their inputs at random moments, alongside honest callers, on the real cpu
 * engine. Whatever they do: no crash, no unhandled rejection, every promise settles within a bound,
 * and every call that was readable when made gets bit for bit the scores of its pairs scored alone
 * (honest callers included); a call whose input threw while being read rejects with InputError.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CrossEncoder, InputError, type RankResult } from '../src/index';
import { cleanupModels, pairPool, sameBits, syntheticModel } from './helpers/api-model';

type Pair = [string, string];
const pool = pairPool(19, 30, 60);
const JUNK: unknown[] = [42, null, undefined, ['x'], {}, 'str', [1, 2]];
let models: CrossEncoder[];
let alone: number[];

const KINDS = ['honest', 'frozen', 'mutate', 'shrink', 'proxy', 'trap', 'rank', 'rankMutate'] as const;
type Kind = (typeof KINDS)[number];

const callerArb = fc.record({
  kind: fc.constantFrom(...KINDS),
  idx: fc.array(fc.nat(pool.length - 1), { minLength: 1, maxLength: 12 }),
  /** Macrotasks to wait before the caller misbehaves (0: right after the call returns). */
  ticks: fc.nat(4),
  /** Which read of the trapped element throws (1: the library's own, during the call). */
  throwOnRead: fc.integer({ min: 1, max: 3 }),
  junk: fc.nat(JUNK.length - 1),
  pick: fc.nat(1000),
});
type Caller = typeof callerArb extends fc.Arbitrary<infer T> ? T : never;

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`a call did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** The pairs a caller hands over, booby-trapped as its kind says. */
function inputOf(c: Caller): { pairs: unknown; after: () => void } {
  const pairs: unknown[] = c.idx.map((i) => [...(pool[i] as Pair)]);
  const at = c.pick % pairs.length;
  const junk = JUNK[c.junk];
  switch (c.kind) {
    case 'frozen':
      for (const p of pairs) Object.freeze(p);
      return { pairs: Object.freeze(pairs), after: () => undefined };
    case 'mutate':
      return {
        pairs,
        after: () => {
          (pairs[(at + 1) % pairs.length] as unknown[]).splice(0, 2, junk);
          pairs[at] = junk;
        },
      };
    case 'shrink':
      return {
        pairs,
        after: () => {
          pairs.length = c.pick % pairs.length;
        },
      };
    case 'proxy': {
      let reads = 0;
      // The first read of each index is honest; every later one answers junk, or throws.
      const seen = new Set<string>();
      const proxy = new Proxy(pairs, {
        get(t, k, r) {
          if (typeof k === 'string' && /^\d+$/.test(k)) {
            if (seen.has(k)) {
              if (reads++ % 2) throw new Error('proxy trap');
              return junk;
            }
            seen.add(k);
          }
          return Reflect.get(t, k, r);
        },
      });
      return { pairs: proxy, after: () => undefined };
    }
    case 'trap': {
      let reads = 0;
      const value = pairs[at];
      Object.defineProperty(pairs, at, {
        get() {
          if (++reads === c.throwOnRead) throw new Error(`trap on read ${reads}`);
          return value;
        },
      });
      // Reads after the call (a second, a third) may throw: they must never happen.
      return { pairs, after: () => undefined };
    }
    default:
      return { pairs, after: () => undefined };
  }
}

async function runCaller(model: CrossEncoder, c: Caller): Promise<void> {
  const query = pool[c.idx[0] as number]?.[0] as string;
  if (c.kind === 'rank' || c.kind === 'rankMutate') {
    const docs = c.idx.map((i) => pool[i]?.[1] as string);
    const given = [...docs];
    const p = model.rank(query, given, { activation: 'none', returnDocuments: true });
    if (c.kind === 'rankMutate') {
      await ticks(c.ticks);
      (given as unknown[])[c.pick % given.length] = JUNK[c.junk];
      given.length = c.pick % given.length;
    }
    const ranked = await p;
    // Scores of the documents against this query, each scored alone (by predict, one pair a call).
    const own: number[] = [];
    for (const d of docs) own.push(await model.predict([query, d], { activation: 'none' }));
    const want: RankResult[] = docs
      .map((d, index) => ({ index, score: own[index] as number, document: d }))
      .sort((a, b) => b.score - a.score || a.index - b.index);
    expect(ranked).toEqual(want);
    return;
  }
  const { pairs, after } = inputOf(c);
  const p = model.predict(pairs as Pair[], { activation: 'none' });
  p.catch(() => undefined); // checked below; must not count as unhandled while the caller misbehaves
  await ticks(c.ticks);
  after();
  if (c.kind === 'trap' && c.throwOnRead === 1) {
    await expect(p).rejects.toBeInstanceOf(InputError);
    return;
  }
  const got = await p;
  expect(sameBits(got, Float32Array.from(c.idx.map((i) => alone[i] as number)))).toBe(true);
}

const problems: unknown[] = [];
const onProblem = (e: unknown) => problems.push(e);

beforeAll(async () => {
  process.on('unhandledRejection', onProblem);
  process.on('uncaughtException', onProblem);
  const files = await syntheticModel('tiny', 12);
  models = [
    await CrossEncoder.load(files, { backend: 'cpu', maxLength: 64 }),
    await CrossEncoder.load(files, {
      backend: 'cpu',
      maxLength: 64,
      maxBatchSize: 5,
      sortWindow: 0,
      warmup: false,
    }),
  ];
  alone = [];
  for (const p of pool) alone.push(await (models[0] as CrossEncoder).predict(p, { activation: 'none' }));
});

afterAll(async () => {
  process.off('unhandledRejection', onProblem);
  process.off('uncaughtException', onProblem);
  await Promise.all((models ?? []).map((m) => m.dispose()));
  cleanupModels();
});

describe('hostile callers among honest ones', () => {
  it('property: no crash, no hang, honest results bit-identical to scoring alone', async () => {
    const kindsSeen = new Set<Kind>();
    await fc.assert(
      fc.asyncProperty(
        fc.nat(1),
        fc.array(callerArb, { minLength: 2, maxLength: 10 }),
        async (m, callers) => {
          const model = models[m] as CrossEncoder;
          for (const c of callers) kindsSeen.add(c.kind);
          await within(Promise.all(callers.map((c) => runCaller(model, c))), 15_000);
          expect(model.stats().queueDepth).toBe(0);
        },
      ),
      { numRuns: 100, seed: 20261129 },
    );
    await new Promise((r) => setImmediate(r));
    expect(problems).toEqual([]);
    expect([...kindsSeen].sort()).toEqual([...KINDS].sort());
  }, 60_000);
});
