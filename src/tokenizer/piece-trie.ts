/**
 * The Unigram pieces as a trie over UTF-16 code units, laid out for Viterbi's walks: a word of n code
 * units takes up to n walks down the trie, one a start position, and with a pretrained vocabulary
 * (XLM-R's 250,002 pieces, ~1.7M nodes) nearly every step is a load from memory the core's caches do
 * not hold. So a step should touch one cache line:
 *
 *  - nodes are stored depth first in one Int32Array, each as one record: piece id (-1: none), child
 *    count, the piece's score (a float64, only when there is a piece), the children's code units in
 *    ascending order (two a int) and their record offsets. A node's first child's record directly
 *    follows it, and a small subtree sits in a few consecutive lines;
 *  - the root and the nodes with the most children (`▁` of a Metaspace vocabulary has thousands)
 *    get a direct table of 65,536 offsets instead of a search.
 *
 * Built from the pieces sorted by code units, in time linear in their total length (after the sort).
 */

/** Nodes with at least this many children get a direct table (at most MAX_DENSE of them, largest first). */
const DENSE_MIN_CHILDREN = 256;
const MAX_DENSE = 16;
const LINEAR_SEARCH = 8;

export class PieceTrie {
  /** Records (offsets are indexes into it; the root is at 0). */
  private pool: Int32Array;
  /** The same memory as code units (a record's children's units). */
  private units: Uint16Array;
  /** The same memory as float64 (a record's score: records start at even offsets). */
  private scores: Float64Array;
  /** 65,536 child offsets (-1: none) per dense node; a dense node's count field is -1 - its table index. */
  private readonly dense: Int32Array;
  private used = 0;

  /** pieces[i] is piece id i; a repeated piece maps to its last id and that id's score (as `tokenizers`). */
  constructor(pieces: readonly string[], scores: Float64Array) {
    const last = new Map<string, number>();
    for (let i = 0; i < pieces.length; i++) last.set(pieces[i] as string, i);
    // The default sort compares UTF-16 code units, natively (a comparator function costs 10x).
    const keys = Array.from(last.keys()).sort();
    const ids = keys.map((k) => last.get(k) as number);
    let chars = 0;
    for (const k of keys) chars += k.length;
    this.pool = new Int32Array(Math.max(64, 2 * chars + 8 * keys.length + 64));
    this.units = new Uint16Array(this.pool.buffer);
    this.scores = new Float64Array(this.pool.buffer);
    const big: Array<[number, number]> = []; // [offset, children] of nodes that may get a table
    this.build(keys, ids, scores, 0, keys.length, 0, big);
    // Trim, then give the root and the largest nodes their direct tables.
    this.pool = this.pool.slice(0, this.used + (this.used & 1));
    this.units = new Uint16Array(this.pool.buffer);
    this.scores = new Float64Array(this.pool.buffer);
    // Table 0 is the root's; then the nodes with the most children.
    const others = big.filter(([o, k]) => o !== 0 && k >= DENSE_MIN_CHILDREN);
    others.sort((x, y) => y[1] - x[1] || x[0] - y[0]);
    const dense: Array<[number, number]> = [[0, this.pool[1] as number], ...others.slice(0, MAX_DENSE - 1)];
    this.dense = new Int32Array(dense.length * 65536).fill(-1);
    dense.forEach(([o, k], t) => {
      const { unitAt, childAt } = this.layout(o, k);
      for (let i = 0; i < k; i++) {
        this.dense[t * 65536 + (this.units[unitAt + i] as number)] = this.pool[childAt + i] as number;
      }
      this.pool[o + 1] = -1 - t;
    });
  }

  /** The piece id at a node (-1: none). */
  pieceAt(node: number): number {
    return this.pool[node] as number;
  }

  /** The score of the piece at a node that has one. */
  scoreAt(node: number): number {
    return this.scores[(node >> 1) + 1] as number;
  }

  /** The root's child for a code unit (-1: none). */
  rootChild(unit: number): number {
    return this.dense[unit] as number;
  }

  /** The child of `node` for a code unit (-1: none). */
  child(node: number, unit: number): number {
    const pool = this.pool;
    const k = pool[node + 1] as number;
    if (k < 0) return this.dense[(-1 - k) * 65536 + unit] as number;
    const head = (pool[node] as number) >= 0 ? node + 4 : node + 2;
    const units = this.units;
    const unitAt = 2 * head;
    const childAt = head + ((k + 1) >> 1);
    if (k <= LINEAR_SEARCH) {
      for (let i = 0; i < k; i++) {
        const u = units[unitAt + i] as number;
        if (u === unit) return pool[childAt + i] as number;
        if (u > unit) return -1;
      }
      return -1;
    }
    let lo = 0;
    let hi = k;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((units[unitAt + mid] as number) < unit) lo = mid + 1;
      else hi = mid;
    }
    return lo < k && units[unitAt + lo] === unit ? (pool[childAt + lo] as number) : -1;
  }

  /** The id of a whole piece, or -1. */
  lookup(piece: string): number {
    let node = 0;
    for (let i = 0; i < piece.length && node >= 0; i++) node = this.child(node, piece.charCodeAt(i));
    return node < 0 ? -1 : this.pieceAt(node);
  }

  /** Where a record's code units (in `units`) and child offsets (in `pool`) start. */
  private layout(node: number, k: number): { unitAt: number; childAt: number } {
    const head = (this.pool[node] as number) >= 0 ? node + 4 : node + 2;
    return { unitAt: 2 * head, childAt: head + ((k + 1) >> 1) };
  }

  /**
   * Writes the node of the prefix of length d that keys[lo, hi) share (sorted), then its subtrees
   * depth first; returns its offset.
   */
  private build(
    keys: readonly string[],
    ids: readonly number[],
    scores: Float64Array,
    lo: number,
    hi: number,
    d: number,
    big: Array<[number, number]>,
  ): number {
    let first = lo;
    let id = -1;
    if (first < hi && (keys[first] as string).length === d) id = ids[first++] as number;
    let k = 0;
    for (let g = first; g < hi; k++) g = this.groupEnd(keys, g, hi, d);
    const head = id >= 0 ? 4 : 2;
    const size = head + ((k + 1) >> 1) + k;
    const node = this.alloc(size);
    const pool = this.pool;
    pool[node] = id;
    pool[node + 1] = k;
    if (id >= 0) this.scores[(node >> 1) + 1] = scores[id] as number;
    if (k >= DENSE_MIN_CHILDREN || node === 0) big.push([node, k]);
    const unitAt = 2 * (node + head);
    const childAt = node + head + ((k + 1) >> 1);
    let i = 0;
    for (let g = first; g < hi; i++) {
      const e = this.groupEnd(keys, g, hi, d);
      this.units[unitAt + i] = (keys[g] as string).charCodeAt(d);
      const child = this.build(keys, ids, scores, g, e, d + 1, big);
      this.pool[childAt + i] = child; // this.pool may have grown meanwhile
      g = e;
    }
    return node;
  }

  /** The end of the run of keys from g on that share code unit d. */
  private groupEnd(keys: readonly string[], g: number, hi: number, d: number): number {
    const u = (keys[g] as string).charCodeAt(d);
    let e = g + 1;
    while (e < hi && (keys[e] as string).charCodeAt(d) === u) e++;
    return e;
  }

  /** `size` ints at the end of the pool, from an even offset (so a score is aligned). */
  private alloc(size: number): number {
    const at = this.used + (this.used & 1);
    if (at + size + 1 > this.pool.length) {
      const grown = new Int32Array(Math.max(at + size + 2 + ((at + size) & 1), this.pool.length * 2));
      grown.set(this.pool.subarray(0, this.used));
      this.pool = grown;
      this.units = new Uint16Array(grown.buffer);
      this.scores = new Float64Array(grown.buffer);
    }
    this.used = at + size;
    return at;
  }
}
