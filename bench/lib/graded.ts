/**
 * How well scores follow graded relevance labels (src/workload.ts gradedPairs: the fraction of a query's
 * words a passage holds), per query: Spearman and NDCG@10. What shows a trained model learned the task,
 * beside the agreement of each dtype with float32 (ranking.ts).
 */
import { spearman } from './ranking';

/** NDCG@k with gain 2^label - 1 (labels 0..1); ties in the scores keep the candidates' order. */
export function ndcg(scores: readonly number[], labels: readonly number[], k = 10): number {
  const dcg = (order: number[]) =>
    order.slice(0, k).reduce((s, i, r) => s + (2 ** (labels[i] as number) - 1) / Math.log2(r + 2), 0);
  const byDesc = (v: readonly number[]) => [...v.keys()].sort((a, b) => (v[b] as number) - (v[a] as number));
  const ideal = dcg(byDesc(labels));
  return ideal > 0 ? dcg(byDesc(scores)) / ideal : 1;
}

export interface LabelQuality {
  /** Mean per-query Spearman of the scores against the labels. */
  spearman: number;
  /** Mean per-query NDCG@10. */
  ndcg10: number;
}

export function labelQuality(
  scores: ArrayLike<number>,
  labels: readonly number[],
  perQuery: number,
): LabelQuality {
  if (scores.length !== labels.length || scores.length % perQuery !== 0)
    throw new RangeError('labelQuality: scores and labels must hold the same whole number of queries');
  const queries = scores.length / perQuery;
  let rho = 0;
  let nd = 0;
  for (let q = 0; q < queries; q++) {
    const s = Array.from({ length: perQuery }, (_, i) => scores[q * perQuery + i] as number);
    const l = labels.slice(q * perQuery, (q + 1) * perQuery);
    const r = spearman(s, l);
    rho += Number.isNaN(r) ? 0 : r;
    nd += ndcg(s, l);
  }
  return { spearman: rho / queries, ndcg10: nd / queries };
}
