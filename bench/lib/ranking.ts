/**
 * Ranking agreement of a scorer with a reference on query-grouped pairs: the figures the cpu dtypes and
 * transformers.js are compared by (bench/engine-cpu.ts). Scores are one logit per pair, `perQuery`
 * consecutive pairs per query.
 */
import { pearson } from '../../src/bench/stats';

/** Average ranks (ties share the mean of their positions), 1-based. */
export function ranks(xs: readonly number[]): number[] {
  const order = xs.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(xs.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]?.[0] === order[i]?.[0]) j++;
    for (let k = i; k <= j; k++) r[order[k]?.[1] as number] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

/** Spearman's rho: Pearson's r of the ranks. */
export const spearman = (a: readonly number[], b: readonly number[]): number => pearson(ranks(a), ranks(b));

function topSet(xs: readonly number[], k: number): Set<number> {
  return new Set(
    xs
      .map((v, i) => [v, i] as const)
      .sort((a, b) => b[0] - a[0])
      .slice(0, k)
      .map((e) => e[1]),
  );
}

export interface Agreement {
  /** Mean and lowest per-query Spearman of the scores against the reference's. */
  spearmanMean: number;
  spearmanMin: number;
  /** Fraction of queries whose top-k set (k = 3) is the reference's. */
  topKSame: number;
  /** Largest |score - reference| over all pairs. */
  maxAbsError: number;
}

export function agreement(
  scores: ArrayLike<number>,
  reference: ArrayLike<number>,
  perQuery: number,
  k = 3,
): Agreement {
  if (scores.length !== reference.length || scores.length % perQuery !== 0)
    throw new RangeError('agreement: scores and reference must hold the same whole number of queries');
  let sum = 0;
  let min = Number.POSITIVE_INFINITY;
  let same = 0;
  let maxAbsError = 0;
  const queries = scores.length / perQuery;
  for (let q = 0; q < queries; q++) {
    const a = Array.from({ length: perQuery }, (_, i) => scores[q * perQuery + i] as number);
    const b = Array.from({ length: perQuery }, (_, i) => reference[q * perQuery + i] as number);
    const rho = spearman(a, b);
    sum += rho;
    min = Math.min(min, rho);
    const ta = topSet(a, k);
    if ([...topSet(b, k)].every((i) => ta.has(i))) same++;
    for (let i = 0; i < perQuery; i++)
      maxAbsError = Math.max(maxAbsError, Math.abs((a[i] as number) - (b[i] as number)));
  }
  return { spearmanMean: sum / queries, spearmanMin: min, topKSame: same / queries, maxAbsError };
}
