// gradedPairs (src/workload.ts): the graded ranking workload of issue 17's trained-model bench. Its labels
// are recomputed here from the text alone (an independent reading of the definition), and the structure a
// ranking evaluation relies on is checked: whole query groups, seeds reproducible and disjoint, prefixes
// stable (a bench of fewer queries scores the same first queries), labels spread over 0..1.
import { describe, expect, it } from 'vitest';
import { gradedPairs } from '../src/workload';

const STARTS = new Set([
  'what',
  'is',
  'how',
  'to',
  'many',
  'when',
  'did',
  'who',
  'where',
  'why',
  'does',
  'define',
]);
const clean = (w: string) => w.toLowerCase().replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '');

describe('gradedPairs', () => {
  const pairs = gradedPairs(60, 10, 7);

  it('groups each query with its passages and labels the fraction of its content words they hold', () => {
    expect(pairs).toHaveLength(600);
    for (let q = 0; q < 60; q++) {
      const group = pairs.slice(q * 10, q * 10 + 10);
      expect(new Set(group.map((p) => p.qid))).toEqual(new Set([q]));
      expect(new Set(group.map((p) => p.query)).size).toBe(1);
      const words = [...new Set((group[0]?.query ?? '').split(' ').map(clean))].filter(
        (w) => w && !STARTS.has(w),
      );
      for (const p of group) {
        const held = new Set(p.passage.split(' ').map(clean));
        const want = words.length === 0 ? 0 : words.filter((w) => held.has(w)).length / words.length;
        expect(p.label).toBeCloseTo(want, 12);
      }
    }
  });

  it('spreads the labels: every query group mostly has more than one grade, and 0 and 1 both occur', () => {
    const labels = pairs.map((p) => p.label);
    expect(Math.min(...labels)).toBe(0);
    expect(Math.max(...labels)).toBe(1);
    let varied = 0;
    for (let q = 0; q < 60; q++) if (new Set(labels.slice(q * 10, q * 10 + 10)).size > 2) varied++;
    expect(varied).toBeGreaterThan(50);
  });

  it('is reproducible, prefix-stable, and disjoint across seeds', () => {
    expect(gradedPairs(60, 10, 7)).toEqual(pairs);
    expect(gradedPairs(20, 10, 7)).toEqual(pairs.slice(0, 200));
    const other = new Set(gradedPairs(60, 10, 8).map((p) => p.passage));
    expect(pairs.filter((p) => other.has(p.passage))).toHaveLength(0);
  });
});
