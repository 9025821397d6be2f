/**
 * The mlx engine's batch layout (native/batch_plan.cpp), which every build compiles, through the
 * addon's test-only _planBatch: on random batches, each plan is a round trip (gather[scatter[t]] == t),
 * pads only with masked keys that point at their pair's [CLS] row, pads each pair to its length bucket
 * (fine) or splits the pairs at the cut that pads least (coarse), and rounds the dense layers' rows up
 * by at most 1/32. native/test/plan_check.cpp checks the same in engine_check (ASan, valgrind).
 */
import { describe, expect, it } from 'vitest';
import { native } from '../src/native';
import { seededRandom } from '../src/workload';

interface Plan {
  groups: { pairs: number; length: number; gather: Int32Array; keyValid: Uint8Array; padded: boolean }[];
  scatter: Int32Array;
  slots: number;
  rows: number;
}
const planBatch = (offsets: Int32Array, layout: 'fine' | 'coarse'): Plan =>
  (native() as unknown as { _planBatch(o: Int32Array, l: string): Plan })._planBatch(offsets, layout);

// The buckets as batch_plan.h states them: 20 lengths up to 512, then multiples of 128.
const BUCKETS = [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512];
const bucketOf = (len: number) => BUCKETS.find((b) => b >= len) ?? Math.ceil(len / 128) * 128;
const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(n));

function randomOffsets(seed: number): Int32Array {
  const r = seededRandom(seed);
  const maxLen = seed % 3 === 0 ? 1024 : 512;
  const pairs = 1 + Math.floor(r() * 40);
  const offsets = [0];
  for (let p = 0; p < pairs; p++) {
    const len = r() < 0.2 ? maxLen : 1 + Math.floor(r() ** 2 * (maxLen - 1));
    offsets.push((offsets.at(-1) as number) + len);
  }
  return Int32Array.from(offsets);
}

// Least slots over splitting the bucket-sorted pairs into one or two power-of-two groups, cut between
// two bucket lengths.
function bestCoarseSlots(buckets: number[]): number {
  const b = [...buckets].sort((x, y) => x - y);
  const cost = (i: number, j: number) => (j > i ? pow2(j - i) * (b[j - 1] as number) : 0);
  let best = cost(0, b.length);
  for (let cut = 1; cut < b.length; cut++)
    if (b[cut] !== b[cut - 1]) best = Math.min(best, cost(0, cut) + cost(cut, b.length));
  return best;
}

// The properties a plan breaks, by name (none: a good plan). Plain loops: millions of slots.
function planProblems(offsets: Int32Array, layout: 'fine' | 'coarse'): string[] {
  const problems = new Set<string>();
  const check = (ok: boolean, what: string) => {
    if (!ok) problems.add(what);
  };
  const plan = planBatch(offsets, layout);
  const T = offsets.at(-1) as number;
  const lengths = Array.from(
    { length: offsets.length - 1 },
    (_, p) => (offsets[p + 1] as number) - (offsets[p] as number),
  );
  const starts = new Set(Array.from(offsets.subarray(0, -1)));
  const gather: number[] = [];
  const valid: number[] = [];
  for (const g of plan.groups) {
    check(g.gather.length === g.pairs * g.length, 'gather is pairs x length');
    check(bucketOf(g.length) === g.length, 'group length is a bucket');
    let padded = false;
    for (let q = 0; q < g.pairs; q++) {
      const row = q * g.length;
      // Every row starts at a pair's [CLS] (a coarse filler pair: token 0, its one valid key).
      const cls = g.gather[row] as number;
      check(starts.has(cls), "a row starts at a pair's [CLS]");
      let real = 0;
      for (let t = 0; t < g.length; t++) {
        const ok = g.keyValid[row + t] ? g.gather[row + t] === cls + t : g.gather[row + t] === cls;
        check(ok, "real keys are the pair's tokens in order, padding points at its [CLS]");
        real += g.keyValid[row + t] as number;
      }
      padded ||= real < g.length;
      if (layout === 'fine') check(g.length === bucketOf(real), 'fine: a pair in its own bucket');
      else check(bucketOf(real) <= g.length, 'coarse: a pair fits its group');
    }
    check(g.padded === padded, 'padded says whether a key is masked');
    for (const v of g.gather) gather.push(v);
    for (const v of g.keyValid) valid.push(v);
  }
  check(plan.slots === gather.length, 'slots is the sum of the groups');
  check(plan.scatter.length === T, 'one scatter row per token');
  const seen = new Set<number>();
  plan.scatter.forEach((row, t) => {
    check(gather[row] === t, 'gather[scatter[t]] == t');
    check(valid[row] === 1, 'a real token is a valid key');
    seen.add(row);
  });
  check(seen.size === T, 'one slot per token');
  if (layout === 'fine') {
    const buckets = [...new Set(lengths.map(bucketOf))].sort((a, b) => a - b);
    check(plan.groups.map((g) => g.length).join() === buckets.join(), 'fine: one group per bucket, in order');
    check(
      plan.slots === lengths.reduce((a, l) => a + bucketOf(l), 0),
      'fine: each pair padded to its bucket',
    );
  } else {
    check(plan.groups.length <= 2, 'coarse: at most two groups');
    check(
      plan.groups.every((g) => g.pairs === pow2(g.pairs)),
      'coarse: pair counts are powers of two',
    );
    check(plan.slots === bestCoarseSlots(lengths.map(bucketOf)), 'coarse: the cut that pads least');
  }
  check(plan.rows >= T && plan.rows - T <= Math.max(15, T / 32), 'dense rows pad by at most 1/32');
  return [...problems];
}

describe('the mlx batch layout (every build)', () => {
  it('fine and coarse plans of random batches are round trips onto bucket-padded groups', () => {
    for (let seed = 1; seed <= 60; seed++) {
      const offsets = randomOffsets(seed);
      expect(planProblems(offsets, 'fine'), `seed ${seed}`).toEqual([]);
      expect(planProblems(offsets, 'coarse'), `seed ${seed}`).toEqual([]);
    }
  });

  it('a batch of one pair at every length up to 600 pads it to its bucket', () => {
    for (let len = 1; len <= 600; len++) {
      const plan = planBatch(Int32Array.from([0, len]), 'fine');
      expect(plan.groups.map((g) => [g.pairs, g.length, g.padded])).toEqual([
        [1, bucketOf(len), len < bucketOf(len)],
      ]);
    }
  });

  it('rejects offsets that are not a batch, with E_INPUT', () => {
    for (const bad of [[], [1, 2], [0, 0], [0, 5, 3], [0, 5000]]) {
      expect(() => planBatch(Int32Array.from(bad), 'fine')).toThrow(
        expect.objectContaining({ code: 'E_INPUT' }),
      );
    }
    expect(() => planBatch(Int32Array.from([0, 4]), 'varlen' as 'fine')).toThrow(/layout/);
  });
});
