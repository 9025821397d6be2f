/**
 * What every tokenizer model (WordPiece, Unigram, byte-level BPE) gives the pair assembly in
 * src/tokenizer.ts: ids of one text appended to a growable Int32Array.
 */
import type { TemplatePiece } from './pair';

/** A growable Int32Array used as an output stream of ids. */
export class IdBuffer {
  data: Int32Array;
  length = 0;
  constructor(capacity = 1024) {
    this.data = new Int32Array(capacity);
  }
  reset(): this {
    this.length = 0;
    return this;
  }
  reserve(extra: number): Int32Array {
    const need = this.length + extra;
    if (need > this.data.length) {
      const next = new Int32Array(Math.max(need, this.data.length * 2));
      next.set(this.data.subarray(0, this.length));
      this.data = next;
    }
    return this.data;
  }
}

/** Text -> ids of one family (no special tokens): the part of a tokenizer that differs by model. */
export interface TextCore {
  /**
   * Appends the ids of `text` to `out` and returns how many were appended: all of them, or - once at
   * least `limit` exist - the ids up to the end of the pre-token that reached `limit` (the rest of
   * the text is then not looked at), which is what `tokenizers` 0.23 does when truncation is on.
   * `readLimit` (code units), when the core honours one, bounds how much of the text is read.
   */
  encode(text: string, out: IdBuffer, limit: number, readLimit?: number): number;
  /** Whether the last encode() stopped reading at its read limit (text past it was not looked at). */
  readonly capped: boolean;
}

/** What a tokenizer file's reader (./config.ts, ./families.ts) hands the Tokenizer class. */
export interface TokenizerParts {
  kind: 'wordpiece' | 'unigram' | 'bpe';
  core: TextCore;
  pairTemplate: TemplatePiece[];
  /** tokenizer_config.json's model_max_length; Infinity when absent or HF's "no limit" sentinel. */
  modelMaxLength: number;
  /** 1 + the largest id the tokenizer can emit (vocabulary, added tokens, template specials). */
  vocabSize: number;
  /** Which token has that largest id, for error messages. */
  largestIdToken: string;
  clsId: number;
  sepId: number;
  /** The padding / unknown token's id; -1 when the tokenizer has none. */
  padId: number;
  unkId: number;
}
