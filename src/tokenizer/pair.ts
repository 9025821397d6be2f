/**
 * The part of pair tokenization that every family shares: the post-processor's pair template
 * (TemplateProcessing, BertProcessing, RobertaProcessing) and truncation, as Hugging Face `tokenizers`
 * (0.23, what transformers 5 runs) does them. src/tokenizer.ts applies it to the ids of any TextCore.
 *
 * Truncation follows `tokenizers/src/utils/truncation.rs`, with B the room the template leaves:
 *  - longest_first (default): with n1 <= n2 the two lengths, nothing happens if n1 + n2 <= B;
 *    otherwise the shorter keeps n1 and the longer gets max(n1, B - n1) when n1 <= B; if that still
 *    overflows (both longer than B / 2) the shorter gets floor(B / 2) and the longer ceil(B / 2) (on
 *    equal lengths the document gets the extra token). "Longer" compares lengths counted only up to
 *    the pre-token that reaches maxLength tokens, because tokenizers 0.23 stops encoding each sequence
 *    there. A query longer than the room is cut too, never an error.
 *  - only_second: only the document is cut. When the query leaves no room for at least one document
 *    token, Hugging Face raises "Sequence to truncate too short to respect the provided max_length";
 *    we throw an InputError saying the same.
 */
import { InputError, TokenizerError } from '../errors';
import { describe, isObject } from '../validate';

/** One piece of the pair template: a special token's ids, or sequence A (query) / B (document). */
export type TemplatePiece =
  | { kind: 'special'; ids: number[]; typeId: number }
  | { kind: 'A' | 'B'; typeId: number };

export type Truncation = 'longest_first' | 'only_second';

const MAX_ID = 0x7fffffff;

export function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_ID;
}

/** A TokenizerError that names the file (or object) and what in it is wrong. */
export function fail(where: string, message: string): never {
  throw new TokenizerError(`${where}: ${message}`);
}

/** BERT's pair template: [CLS] A [SEP] B [SEP] with type ids 0 0 0 1 1. */
export function bertTemplate(clsId: number, sepId: number): TemplatePiece[] {
  return [
    { kind: 'special', ids: [clsId], typeId: 0 },
    { kind: 'A', typeId: 0 },
    { kind: 'special', ids: [sepId], typeId: 0 },
    { kind: 'B', typeId: 1 },
    { kind: 'special', ids: [sepId], typeId: 1 },
  ];
}

/** `tokenizers`' RobertaProcessing: <s> A </s> </s> B </s>, every type id 0 (RoBERTa has one type). */
function robertaTemplate(clsId: number, sepId: number): TemplatePiece[] {
  return [
    { kind: 'special', ids: [clsId], typeId: 0 },
    { kind: 'A', typeId: 0 },
    { kind: 'special', ids: [sepId, sepId], typeId: 0 },
    { kind: 'B', typeId: 0 },
    { kind: 'special', ids: [sepId], typeId: 0 },
  ];
}

/** The pair template of tokenizer.json's "post_processor". */
export function parsePairTemplate(pp: unknown, where: string): TemplatePiece[] {
  if (!isObject(pp)) {
    fail(
      where,
      '"post_processor" is missing; a cross-encoder tokenizer needs the template that puts the special tokens around the query and the document',
    );
  }
  if (pp.type === 'BertProcessing' || pp.type === 'RobertaProcessing') {
    const { cls, sep } = pp;
    if (!Array.isArray(cls) || !isId(cls[1]) || !Array.isArray(sep) || !isId(sep[1])) {
      fail(where, `${pp.type} needs "cls" and "sep" as [token, id]`);
    }
    return pp.type === 'BertProcessing' ? bertTemplate(cls[1], sep[1]) : robertaTemplate(cls[1], sep[1]);
  }
  if (pp.type !== 'TemplateProcessing') {
    fail(
      where,
      `post_processor type ${JSON.stringify(pp.type)} is not supported (TemplateProcessing, BertProcessing or RobertaProcessing)`,
    );
  }
  const specials = isObject(pp.special_tokens) ? pp.special_tokens : {};
  if (!Array.isArray(pp.pair)) fail(where, 'TemplateProcessing needs a "pair" template');
  const pieces: TemplatePiece[] = [];
  for (const item of pp.pair) {
    if (isObject(item) && isObject(item.Sequence)) {
      const { id, type_id } = item.Sequence;
      if ((id !== 'A' && id !== 'B') || !isId(type_id))
        fail(where, `bad Sequence item ${JSON.stringify(item)}`);
      pieces.push({ kind: id, typeId: type_id });
    } else if (isObject(item) && isObject(item.SpecialToken)) {
      const { id, type_id } = item.SpecialToken;
      const st = typeof id === 'string' && Object.hasOwn(specials, id) ? specials[id] : undefined;
      if (!isObject(st) || !Array.isArray(st.ids) || !st.ids.every(isId) || !isId(type_id)) {
        fail(
          where,
          `special token ${JSON.stringify(id)} of the pair template has no ids in "special_tokens"`,
        );
      }
      pieces.push({ kind: 'special', ids: st.ids as number[], typeId: type_id });
    } else {
      fail(where, `bad pair template item ${JSON.stringify(item)}`);
    }
  }
  const a = pieces.filter((p) => p.kind === 'A').length;
  const b = pieces.filter((p) => p.kind === 'B').length;
  if (a !== 1 || b !== 1) fail(where, 'the pair template must contain $A and $B exactly once');
  return pieces;
}

/** Ids the template adds around the two sequences. */
export function specialCount(template: readonly TemplatePiece[]): number {
  return template.reduce((n, p) => n + (p.kind === 'special' ? p.ids.length : 0), 0);
}

/** The template's first special id (<s> / [CLS]) and the first one after A (</s> / [SEP]); -1 if none. */
export function templateIds(template: readonly TemplatePiece[]): { clsId: number; sepId: number } {
  const first = template[0];
  const afterA = template[template.findIndex((p) => p.kind === 'A') + 1];
  return {
    clsId: first?.kind === 'special' ? (first.ids[0] ?? -1) : -1,
    sepId: afterA?.kind === 'special' ? (afterA.ids[0] ?? -1) : -1,
  };
}

/** Reads { maxLength, truncation? }: the room left for the two sequences, and the strategy. */
export function pairOptions(opts: unknown, numSpecial: number): { budget: number; onlySecond: boolean } {
  if (!isObject(opts)) throw new InputError('options must be { maxLength, truncation? }');
  const { maxLength, truncation } = opts;
  const ok =
    maxLength === Number.POSITIVE_INFINITY ||
    (typeof maxLength === 'number' && Number.isInteger(maxLength) && maxLength >= numSpecial);
  if (!ok) {
    throw new InputError(
      `maxLength must be an integer >= ${numSpecial} (room for the template's special tokens) or Infinity, got ${describe(maxLength)}`,
    );
  }
  if (truncation !== undefined && truncation !== 'longest_first' && truncation !== 'only_second') {
    throw new InputError(`truncation must be 'longest_first' or 'only_second', got ${describe(truncation)}`);
  }
  return { budget: (maxLength as number) - numSpecial, onlySecond: truncation === 'only_second' };
}

/** Reads { maxLength, stride } of chunk mode. */
export function chunkOptions(opts: unknown, numSpecial: number): { maxLength: number; stride: number } {
  if (!isObject(opts)) throw new InputError('options must be { maxLength, stride }');
  const { maxLength, stride } = opts;
  if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < numSpecial + 1) {
    throw new InputError(
      `maxLength must be an integer >= ${numSpecial + 1} for chunking, got ${describe(maxLength)}`,
    );
  }
  if (typeof stride !== 'number' || !Number.isInteger(stride) || stride < 0) {
    throw new InputError(`stride must be a non-negative integer, got ${describe(stride)}`);
  }
  return { maxLength, stride };
}

/**
 * The kept lengths [query, document] of a pair whose sequences have qn and dn ids (counted as far as
 * the encoders went, see the head comment), for `budget` ids of room. Throws for only_second when the
 * query leaves no room (maxLength: for that message, which `where` prefixes).
 */
export function keptLengths(
  qn: number,
  dn: number,
  budget: number,
  onlySecond: boolean,
  maxLength: number,
  where: string,
): [number, number] {
  if (qn + dn <= budget) return [qn, dn];
  if (budget === 0) return [0, 0]; // Rust special-cases max_length 0 before any strategy
  if (onlySecond) {
    if (qn >= budget) {
      throw new InputError(
        `${where}the query has ${qn > budget ? `more than ${budget}` : budget} tokens, which leaves no room for the document within maxLength ${maxLength} with truncation 'only_second' (Hugging Face fails the same way); use 'longest_first' or a larger maxLength`,
      );
    }
    return [qn, budget - qn];
  }
  // truncate_encodings, LongestFirst: n1 is the shorter length, n2 the longer.
  const swap = qn > dn;
  let n1 = swap ? dn : qn;
  let n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
  if (n1 + n2 > budget) {
    n1 = Math.floor(budget / 2);
    n2 = n1 + (budget % 2);
  }
  return swap ? [n2, n1] : [n1, n2];
}

/** Writes the template with q[qStart, qStart + nq) as A and d[dStart, dStart + nd) as B at `at`. */
export function writeTemplate(
  template: readonly TemplatePiece[],
  ids: Int32Array,
  typeIds: Int32Array,
  at: number,
  q: Int32Array,
  qStart: number,
  nq: number,
  d: Int32Array,
  dStart: number,
  nd: number,
): void {
  let k = at;
  for (const p of template) {
    if (p.kind === 'special') {
      for (const id of p.ids) {
        ids[k] = id;
        typeIds[k++] = p.typeId;
      }
    } else {
      // Element by element: a subarray (and a tuple) per sequence was most of what encoding a pair
      // allocated, and the garbage collector's work grows with it.
      const a = p.kind === 'A';
      const src = a ? q : d;
      const s = a ? qStart : dStart;
      const n = a ? nq : nd;
      for (let i = 0; i < n; i++) ids[k + i] = src[s + i] as number;
      typeIds.fill(p.typeId, k, k + n);
      k += n;
    }
  }
}
