/**
 * Added-token matching in time linear in the text, whatever the tokens and the text are.
 *
 * `tokenizers` splits the raw text on added tokens leftmost-longest (aho-corasick, MatchKind::
 * LeftmostLongest): the match that starts first wins, and of those starting there the longest; the
 * scan goes on after it. We get the same from an Aho-Corasick automaton over the *reversed* tokens run
 * right to left: at position i the automaton's state is the longest reversed-token prefix that ends at
 * i, so "the longest token that starts at i" is one table lookup. The text is scanned in blocks (each
 * read once, plus the longest token's length of overlap), so finding every match costs O(text) and
 * the first match after `from` never looks further than the block that holds it.
 *
 * Most texts hold no added token at all, and a match can only start at a character that starts one
 * (BERT's all start with "[", XLM-R's with "<"): the scan jumps to the next such character first
 * (String indexOf when there are few of them, else a table), and reads no block when there is none.
 */

/** A token of tokenizer.json's added_tokens matched on the raw text. */
export interface AddedToken {
  content: string;
  id: number;
  /**
   * Swallow whitespace on the left / right of a match (Rust AddedToken.lstrip / rstrip). Without
   * effect on WordPiece ids (BertPreTokenizer drops that whitespace anyway); the families apply it.
   */
  lstrip: boolean;
  rstrip: boolean;
}

const BLOCK = 4096;
/** Up to this many distinct first characters, String indexOf (vectorised in V8) finds the next one. */
const FEW_FIRST = 4;

export class AddedTokenMatcher {
  /** Length, id and index (in the constructor's list) of the match `find` returned. */
  len = 0;
  id = -1;
  index = -1;

  private readonly maxLen: number;
  /** The code units that start a token: as strings when at most FEW_FIRST, else null (use firstMask). */
  private readonly firstChars: string[] | null;
  private readonly firstMask = new Uint8Array(0x10000);
  /** Root transitions, dense: -1 = stay at the root. */
  private readonly rootNext = new Int32Array(0x10000).fill(-1);
  /** Other transitions: key node * 0x10000 + code unit. */
  private readonly next = new Map<number, number>();
  private readonly fail: Int32Array;
  /** Longest token (length, index) that is a suffix of the node's string; 0 / -1 when none. */
  private readonly bestLen: Int32Array;
  private readonly bestIndex: Int32Array;
  private readonly tokenIds: Int32Array;
  // The current block: lens[i - blockStart] is the longest match starting at i (0 = none).
  private readonly lens = new Int32Array(BLOCK);
  private readonly ids = new Int32Array(BLOCK);
  private blockStart = 0;
  private blockEnd = 0;

  constructor(tokens: readonly AddedToken[]) {
    let nodes = 1;
    const termLen: number[] = [0];
    const termId: number[] = [-1];
    let maxLen = 0;
    this.tokenIds = Int32Array.from(tokens, (t) => t.id);
    for (const [index, t] of tokens.entries()) {
      const s = t.content;
      maxLen = Math.max(maxLen, s.length);
      let node = 0;
      for (let i = s.length - 1; i >= 0; i--) {
        const c = s.charCodeAt(i);
        let child = this.step(node, c);
        if (child < 0) {
          child = nodes++;
          termLen.push(0);
          termId.push(-1);
          if (node === 0) this.rootNext[c] = child;
          else this.next.set(node * 0x10000 + c, child);
        }
        node = child;
      }
      // The same content twice: the first one wins, as the first pattern does in aho-corasick.
      if (termLen[node] === 0) {
        termLen[node] = s.length;
        termId[node] = index;
      }
    }
    this.maxLen = maxLen;
    const first = new Set<string>();
    for (const t of tokens) {
      first.add(t.content[0] as string);
      this.firstMask[t.content.charCodeAt(0)] = 1;
    }
    this.firstChars = first.size <= FEW_FIRST ? [...first] : null;
    this.fail = new Int32Array(nodes);
    this.bestLen = Int32Array.from(termLen);
    this.bestIndex = Int32Array.from(termId);
    this.buildFailureLinks(nodes);
  }

  /** Forget the cached block: call before scanning another text. */
  reset(): void {
    this.blockStart = 0;
    this.blockEnd = 0;
  }

  /**
   * Start of the leftmost-longest match that starts in text[from, limit) and ends by `end`, or -1.
   * Calls for one text must come with `from` not decreasing and the same `end` (reset() in between).
   */
  find(text: string, from: number, end: number, limit = end): number {
    let a = from;
    while (a < limit) {
      if (a < this.blockStart || a >= this.blockEnd) {
        a = this.nextStart(text, a, limit);
        if (a < 0) return -1;
        this.scanBlock(text, a, end);
      }
      const lens = this.lens;
      const base = this.blockStart;
      const stop = Math.min(this.blockEnd, limit);
      for (let i = a; i < stop; i++) {
        const l = lens[i - base] as number;
        if (l > 0) {
          const index = this.ids[i - base] as number;
          this.len = l;
          this.index = index;
          this.id = this.tokenIds[index] as number;
          return i;
        }
      }
      a = this.blockEnd;
    }
    return -1;
  }

  /** The first index in [a, end) whose character starts a token, or -1. */
  private nextStart(text: string, a: number, end: number): number {
    const chars = this.firstChars;
    if (chars === null) {
      const mask = this.firstMask;
      for (let i = a; i < end; i++) if (mask[text.charCodeAt(i)] === 1) return i;
      return -1;
    }
    // Search [a, end) only: past `end` the text may be megabytes that are never read. A slice of a
    // flat string shares its characters (no copy).
    const whole = end === text.length;
    const s = whole ? text : text.slice(a, end);
    const off = whole ? a : 0;
    let best = -1;
    for (const c of chars) {
      const i = s.indexOf(c, off);
      if (i >= 0 && (best < 0 || i < best)) best = i;
    }
    return best < 0 ? -1 : best - off + a;
  }

  /** Fills lens / ids for [a, b) by a right-to-left pass over [a, b + maxLen - 1). */
  private scanBlock(text: string, a: number, end: number): void {
    const b = Math.min(end, a + BLOCK);
    const e = Math.min(end, b + this.maxLen - 1);
    const rootNext = this.rootNext;
    const lens = this.lens;
    const ids = this.ids;
    let s = 0;
    for (let i = e - 1; i >= a; i--) {
      const c = text.charCodeAt(i);
      if (s === 0) {
        s = rootNext[c] as number;
        if (s < 0) {
          s = 0;
          if (i < b) lens[i - a] = 0;
          continue;
        }
      } else {
        s = this.transition(s, c);
      }
      if (i < b) {
        lens[i - a] = this.bestLen[s] as number;
        ids[i - a] = this.bestIndex[s] as number;
      }
    }
    this.blockStart = a;
    this.blockEnd = b;
  }

  /** Aho-Corasick goto with failure links (amortised O(1) per character). */
  private transition(node: number, c: number): number {
    let s = node;
    for (;;) {
      const t = this.step(s, c);
      if (t >= 0) return t;
      if (s === 0) return 0;
      s = this.fail[s] as number;
    }
  }

  private step(node: number, c: number): number {
    if (node === 0) return this.rootNext[c] as number;
    return this.next.get(node * 0x10000 + c) ?? -1;
  }

  private buildFailureLinks(nodes: number): void {
    // Children lists, for a breadth-first walk.
    const kids: Array<Array<[number, number]>> = Array.from({ length: nodes }, () => []);
    for (let c = 0; c < 0x10000; c++) {
      const t = this.rootNext[c] as number;
      if (t >= 0) kids[0]?.push([c, t]);
    }
    for (const [key, child] of this.next) kids[Math.floor(key / 0x10000)]?.push([key % 0x10000, child]);
    const queue: number[] = [0];
    for (let q = 0; q < queue.length; q++) {
      const node = queue[q] as number;
      for (const [c, child] of kids[node] ?? []) {
        this.fail[child] = node === 0 ? 0 : this.transition(this.fail[node] as number, c);
        if (this.bestLen[child] === 0) {
          const f = this.fail[child] as number;
          this.bestLen[child] = this.bestLen[f] as number;
          this.bestIndex[child] = this.bestIndex[f] as number;
        }
        queue.push(child);
      }
    }
  }
}
