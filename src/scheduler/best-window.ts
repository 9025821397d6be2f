/**
 * Chunk mode's policy (`longDocuments: 'chunk'`): a pair split into windows keeps the window with the
 * highest first logit (before activation); ties go to the earlier window, so the choice never depends
 * on which batch a window rode in. With one window per pair (truncation) it keeps that window.
 */

/**
 * Offers window `window` of pair `pair`, whose logits are `row[rowAt .. rowAt + L)`, to the pair's slot
 * of `logits` (pairs x L); `best` holds each pair's kept window (-1: none yet).
 */
export function offerWindow(
  logits: Float32Array,
  best: Int32Array,
  pair: number,
  window: number,
  row: Float32Array,
  rowAt: number,
  L: number,
): void {
  const kept = best[pair] as number;
  const first = row[rowAt] as number;
  const current = logits[pair * L] as number;
  if (kept < 0 || first > current || (first === current && window < kept)) {
    for (let k = 0; k < L; k++) logits[pair * L + k] = row[rowAt + k] as number;
    best[pair] = window;
  }
}
