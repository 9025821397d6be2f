/**
 * The interim parity oracle: Hugging Face's Rust `tokenizers` (npm binding, dev dependency), the same
 * implementation transformers' BertTokenizerFast runs, fed a tokenizer.json built the way
 * transformers' BertConverter builds one from vocab.txt.
 */
import { createRequire } from 'node:module';
import { bertTokenizerJson as writeBertTokenizerJson } from '../../src/tokenizer/tokenizer-json';

const require = createRequire(import.meta.url);

export interface BertJsonOptions {
  lowercase: boolean;
  stripAccents?: boolean | null;
  handleChineseChars?: boolean;
}

/**
 * tokenizer.json content for a BERT WordPiece vocabulary (ids = positions), as BertConverter writes it:
 * the package's own writer (src/tokenizer/tokenizer-json.ts) with the converter's defaults.
 */
export function bertTokenizerJson(vocab: readonly string[], o: BertJsonOptions): Record<string, unknown> {
  return writeBertTokenizerJson(vocab, {
    lowercase: o.lowercase,
    stripAccents: o.stripAccents ?? null,
    chineseChars: o.handleChineseChars ?? true,
  });
}

interface RustEncoding {
  getIds(): number[];
  getTypeIds(): number[];
}
interface RustTokenizer {
  setTruncation(maxLength: number, options?: { strategy?: string }): void;
  disableTruncation(): void;
  encode(
    sentence: string,
    pair?: string | null,
    options?: { addSpecialTokens?: boolean },
  ): Promise<RustEncoding>;
}

/** The Rust tokenizer for a tokenizer.json object. */
export function rustTokenizer(json: Record<string, unknown>): RustTokenizer {
  const { Tokenizer } = require('tokenizers') as { Tokenizer: { fromString(s: string): RustTokenizer } };
  return Tokenizer.fromString(JSON.stringify(json));
}

/**
 * A cased vocabulary for tests: the uncased one plus capitalised and accented variants of its most
 * frequent words (the real bert-base-cased vocab is not available offline), so cased words, accents
 * and their WordPiece splits all occur.
 */
export function syntheticCasedVocab(uncased: readonly string[]): string[] {
  const out = [...uncased];
  const seen = new Set(uncased);
  const add = (t: string) => {
    if (!seen.has(t)) {
      seen.add(t);
      out.push(t);
    }
  };
  for (const w of uncased.slice(1996, 6000)) {
    if (!/^[a-z]{2,}$/.test(w)) continue;
    add(w.charAt(0).toUpperCase() + w.slice(1));
    if (w.length > 5) add(w.toUpperCase());
  }
  for (const t of [
    'é',
    '##é',
    'É',
    'café',
    'Café',
    'naïve',
    '##ï',
    'ß',
    '##ß',
    'İ',
    'Σ',
    'σ',
    'ς',
    '##ς',
    'ñ',
    '##ñ',
    'ü',
    '##ü',
  ])
    add(t);
  return out;
}

/** ids and type ids of each pair from the Rust tokenizer (truncation as currently set on it). */
export async function rustEncodePairs(
  t: RustTokenizer,
  pairs: ReadonlyArray<readonly [string, string]>,
): Promise<Array<{ ids: number[]; typeIds: number[] } | { error: string }>> {
  return Promise.all(
    pairs.map(([q, d]) =>
      t.encode(q, d).then(
        (e) => ({ ids: e.getIds(), typeIds: e.getTypeIds() }),
        (err: unknown) => ({ error: String(err) }),
      ),
    ),
  );
}
