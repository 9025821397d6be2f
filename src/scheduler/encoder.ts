/**
 * How a pair becomes the sequences the engine scores, as plain data (`EncoderSpec`), so that the JS
 * thread and every tokenizer worker (src/tokenizer-worker.ts) build the very same PairEncoder from it.
 */
import type { Tokenizer, Truncation } from '../tokenizer';
import type { PairEncoder, Segment } from './calls';

/** What CrossEncoder.load decided about truncation and long documents; structured-cloneable. */
export interface EncoderSpec {
  mode: 'truncate' | 'chunk';
  maxLength: number;
  truncation: Truncation | undefined;
  /** 'chunk' mode: tokens shared by consecutive windows. */
  stride: number;
}

export function makeEncoder(tokenizer: Tokenizer, spec: EncoderSpec): PairEncoder {
  const { maxLength, stride } = spec;
  if (spec.mode === 'chunk') {
    return (q, d) => tokenizer.encodeChunks(q, d, { maxLength, stride }) as Segment[];
  }
  const opts = { maxLength, ...(spec.truncation !== undefined && { truncation: spec.truncation }) };
  return (q, d) => [tokenizer.encodePair(q, d, opts)];
}

/** Pairs every encoder must agree on: special characters, a long document (truncation, windows). */
const PROBE: ReadonlyArray<readonly [string, string]> = [
  ['what is a cat', 'A cat is a small domesticated carnivorous mammal. Ünïcödé 日本語 😀 [SEP] </s>'],
  ['probe', 'lorem ipsum dolor sit amet '.repeat(200)],
];

/**
 * A tokenizer and encoder's identity: their public figures and the ids they give PROBE. A worker that
 * read tokenizer files changed since the JS thread read them gets another fingerprint and is refused.
 */
export function fingerprint(tokenizer: Tokenizer, encode: PairEncoder): string {
  const t = tokenizer;
  const figures = [t.kind, t.vocabSize, t.typeVocabSize, t.numSpecialTokens, t.clsId, t.sepId, t.padId];
  const ids = PROBE.map(([q, d]) => encode(q, d).map((s) => [...s.ids, -1, ...s.typeIds].join(',')));
  return JSON.stringify([figures, t.unkId, String(t.modelMaxLength), ids]);
}
