/**
 * Fields that every kind of tokenizer file has, read and checked the same way (untrusted input):
 * entry-count limits, special-token names, model_max_length, added tokens, the largest id.
 */
import { isObject } from '../validate';
import type { AddedToken } from './added-tokens';
import { fail, type TemplatePiece } from './pair';

type Json = Record<string, unknown>;

/** transformers' VERY_LARGE_INTEGER (int(1e30)) and similar sentinels mean "no limit". */
const HUGE_MAX_LENGTH = 1e18;
/**
 * Entry counts checked before anything is built from them (a hostile file must not cost seconds and
 * GBs before it is refused). Generous for every real vocabulary: WordPiece ones have 20k-250k entries.
 */
export const TOKENIZER_LIMITS = {
  /** Vocabulary entries (tokenizer.json model.vocab, or vocab.txt lines). */
  vocabEntries: 1 << 20,
  /** Added tokens (tokenizer.json added_tokens, or tokenizer_config.json added_tokens_decoder). */
  addedTokens: 1 << 16,
  /** Length of one added token, in UTF-16 code units. */
  addedTokenLength: 1024,
  /** BPE merges (model.merges): counted, so that a huge list is refused before anything else. */
  merges: 1 << 21,
} as const;

export function optBool(obj: Json, key: string, where: string, dflt: boolean): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') fail(where, `"${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

const LONE = '[\\ud800-\\udbff](?![\\udc00-\\udfff])|(?<![\\ud800-\\udbff])[\\udc00-\\udfff]';
/** A surrogate without its other half: `.test` for one, LONE_SURROGATES to replace them all. */
export const LONE_SURROGATE = new RegExp(LONE);
export const LONE_SURROGATES = new RegExp(LONE, 'g');

/** A special token given as "[CLS]" or as {"content": "[CLS]", ...} (AddedToken in JSON). */
export function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

export function modelMaxLengthOf(v: unknown, where: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !(v > 0))
    fail(where, `"model_max_length" must be a positive number, got ${v}`);
  return v >= HUGE_MAX_LENGTH || !Number.isFinite(v) ? Number.POSITIVE_INFINITY : Math.floor(v);
}

/** Own keys of an object, counting no further than limit + 1. */
export function countKeys(obj: Json, limit: number): number {
  let n = 0;
  for (const k in obj) {
    if (Object.hasOwn(obj, k) && ++n > limit) break;
  }
  return n;
}

export function checkCount(n: number, min: number, max: number, what: string, where: string): void {
  if (n < min || n > max) {
    fail(
      where,
      n > max
        ? `more than ${max} ${what}: refused as too large for a BERT tokenizer (the file is corrupt or hostile)`
        : `no ${what}`,
    );
  }
}

/**
 * One added token (tokenizer.json's added_tokens, tokenizer_config.json's added_tokens_decoder).
 * `normalized: true` tokens (matched after normalization) are refused unless `allowNormalized`.
 */
export function addedTokenOf(
  v: unknown,
  id: number,
  where: string,
  allowNormalized = false,
): AddedToken & { normalized: boolean } {
  if (!isObject(v) || typeof v.content !== 'string' || v.content.length === 0) {
    fail(where, `added token ${id} must have a non-empty "content" string`);
  }
  const content = v.content;
  if (content.length > TOKENIZER_LIMITS.addedTokenLength) {
    fail(
      where,
      `added token ${id} is ${content.length} code units long (at most ${TOKENIZER_LIMITS.addedTokenLength})`,
    );
  }
  if (optBool(v, 'single_word', where, false)) {
    fail(where, `added token ${JSON.stringify(content)} has single_word: true, which is not supported`);
  }
  const special = optBool(v, 'special', where, false);
  const normalized = optBool(v, 'normalized', where, !special);
  if (normalized && !allowNormalized) {
    fail(
      where,
      `added token ${JSON.stringify(content)} has normalized: true (matched after normalization), which is not supported; only tokens matched on the raw text (normalized: false, as BERT's special tokens are) can be used`,
    );
  }
  return {
    content,
    id,
    lstrip: optBool(v, 'lstrip', where, false),
    rstrip: optBool(v, 'rstrip', where, false),
    normalized,
  };
}

export interface SpecialNames {
  cls: string;
  sep: string;
  pad: string;
  unk: string;
  mask: string;
}

export function specialNames(config: Json, dflt: SpecialNames): SpecialNames {
  return {
    cls: tokenString(config.cls_token) ?? dflt.cls,
    sep: tokenString(config.sep_token) ?? dflt.sep,
    pad: tokenString(config.pad_token) ?? dflt.pad,
    unk: tokenString(config.unk_token) ?? dflt.unk,
    mask: tokenString(config.mask_token) ?? dflt.mask,
  };
}

export function idOf(
  name: string,
  role: string,
  vocab: ReadonlyMap<string, number>,
  added: readonly AddedToken[],
  where: string,
): number {
  const a = added.find((t) => t.content === name);
  const id = a?.id ?? vocab.get(name);
  if (id === undefined) {
    fail(
      where,
      `the ${role} token ${JSON.stringify(name)} is not in the vocabulary; the file is incomplete or not a BERT tokenizer`,
    );
  }
  return id;
}

/** The largest id the tokenizer can emit and its token (vocabulary, added tokens, pair template). */
export function largestId(
  vocab: Iterable<readonly [string, number]>,
  added: readonly AddedToken[],
  template: readonly TemplatePiece[],
): { vocabSize: number; largestIdToken: string } {
  let m = -1;
  let token = '';
  for (const [t, id] of vocab) {
    if (id > m) {
      m = id;
      token = t;
    }
  }
  for (const t of added) {
    if (t.id > m) {
      m = t.id;
      token = t.content;
    }
  }
  for (const p of template) {
    if (p.kind !== 'special') continue;
    for (const id of p.ids) {
      if (id > m) {
        m = id;
        token = `(special token of the pair template, id ${id})`;
      }
    }
  }
  return { vocabSize: m + 1, largestIdToken: token };
}
