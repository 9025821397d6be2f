/**
 * BERT WordPiece tokenization for query/document pairs, id for id the same as Hugging Face's
 * BertTokenizerFast (the Rust `tokenizers` library), written straight into typed arrays.
 *
 * Truncation follows `tokenizers/src/utils/truncation.rs`:
 *  - longest_first (default): with n1 <= n2 the two lengths and B = maxLength - 3 the room left by
 *    [CLS] / [SEP] / [SEP]: nothing happens if n1 + n2 <= B; otherwise the shorter keeps n1 and the longer
 *    gets max(n1, B - n1) when n1 <= B; if that still overflows (both longer than B / 2) the shorter gets
 *    floor(B / 2) and the longer ceil(B / 2) (on equal lengths the document gets the extra token).
 *    "Longer" compares lengths counted only up to the word that reaches maxLength tokens, because
 *    tokenizers 0.23 stops encoding each sequence there. A query longer than the room is cut too,
 *    never an error.
 *  - only_second: only the document is cut. When the query leaves no room for at least one document
 *    token (query >= B and the pair overflows), Hugging Face raises "Sequence to truncate too short to
 *    respect the provided max_length"; we throw an InputError saying the same.
 *
 * Only as many tokens as the truncation can keep are computed: a document of several MB costs about
 * as much as one of maxLength tokens.
 *
 * Inputs: non-strings are an InputError. Lone surrogates (JS strings may hold them; Python/Rust strings
 * cannot) are read as U+FFFD, which BertNormalizer's clean_text then removes: the result equals Hugging
 * Face's for the string with each lone surrogate replaced by U+FFFD (what any UTF-8 encoding of it gives).
 */
import { readFile, stat } from 'node:fs/promises';
import { InputError, TokenizerError } from './errors';
import {
  specFromTokenizerJson,
  specFromVocab,
  type TemplatePiece,
  type TokenizerSpec,
} from './tokenizer/config';
import { IdBuffer, MAX_READ, WordPieceCore } from './tokenizer/wordpiece';
import type { ModelSpec } from './types';

/** Chunk mode scores at most this many tokens of a document (about 64 windows at maxLength 512). */
export const MAX_CHUNK_TOKENS = 1 << 15;

export type Truncation = 'longest_first' | 'only_second';
export interface EncodeOptions {
  maxLength: number;
  truncation?: Truncation; // default longest_first
}
export interface Encoded {
  ids: Int32Array;
  typeIds: Int32Array;
  truncated: boolean;
}
export interface EncodedBatch {
  tokens: Int32Array;
  typeIds: Int32Array;
  offsets: Int32Array;
  truncated: number;
}

type Json = Record<string, unknown>;

export class Tokenizer {
  /** tokenizer_config.json's model_max_length; Infinity when absent or HF's "no limit" sentinel. */
  readonly modelMaxLength: number;
  /** 1 + the largest id the tokenizer can emit: the embedding rows the model needs. */
  readonly vocabSize: number;
  /** 1 + the largest token type id of the pair template: the type embedding rows the model needs. */
  readonly typeVocabSize: number;
  /** Tokens of the pair template around the query and the document ([CLS], [SEP], [SEP]: 3). */
  readonly numSpecialTokens: number;
  readonly clsId: number;
  readonly sepId: number;
  readonly padId: number;
  readonly unkId: number;

  private readonly core: WordPieceCore;
  private readonly template: readonly TemplatePiece[];
  private readonly numSpecial: number;
  private readonly largestIdToken: string;
  private readonly qBuf = new IdBuffer();
  private readonly dBuf = new IdBuffer();
  private readonly scratch = new IdBuffer();
  private readonly outTokens = new IdBuffer(1 << 14);
  private readonly outTypes = new IdBuffer(1 << 14);

  private constructor(spec: TokenizerSpec) {
    this.core = new WordPieceCore(spec.core);
    this.template = spec.pairTemplate;
    this.numSpecial = spec.pairTemplate.reduce((n, p) => n + (p.kind === 'special' ? p.ids.length : 0), 0);
    this.modelMaxLength = spec.modelMaxLength;
    this.vocabSize = spec.vocabSize;
    this.largestIdToken = spec.largestIdToken;
    this.typeVocabSize = 1 + spec.pairTemplate.reduce((m, p) => Math.max(m, p.typeId), 0);
    this.numSpecialTokens = this.numSpecial;
    this.clsId = spec.clsId;
    this.sepId = spec.sepId;
    this.padId = spec.padId;
    this.unkId = spec.unkId;
  }

  /**
   * Loads from file paths: tokenizer.json when given (tokenizer_config.json then adjusts it as
   * BertTokenizerFast does), else vocab.txt + tokenizer_config.json. special_tokens_map.json overrides
   * the config's special tokens, as in transformers.
   */
  static async fromFiles(files: {
    tokenizerJson?: string;
    vocabTxt?: string;
    tokenizerConfig?: string;
    specialTokensMap?: string;
  }): Promise<Tokenizer> {
    let config: Json | undefined;
    if (files.tokenizerConfig !== undefined) config = await readJsonObject(files.tokenizerConfig);
    if (files.specialTokensMap !== undefined) {
      config = { ...(config ?? {}), ...(await readJsonObject(files.specialTokensMap)) };
    }
    if (files.tokenizerJson !== undefined) {
      const json = await readJson(files.tokenizerJson, TOKENIZER_FILE_LIMITS.tokenizerJson);
      return new Tokenizer(specFromTokenizerJson(json, config, files.tokenizerJson));
    }
    if (files.vocabTxt !== undefined) {
      return new Tokenizer(
        specFromVocab(
          await readText(files.vocabTxt, 'vocab.txt', TOKENIZER_FILE_LIMITS.vocabTxt),
          config ?? {},
          files.vocabTxt,
        ),
      );
    }
    throw new TokenizerError(
      'No tokenizer files: give tokenizer.json, or vocab.txt with tokenizer_config.json.',
    );
  }

  /** From a parsed tokenizer.json. */
  static fromTokenizerJson(json: unknown): Tokenizer {
    return new Tokenizer(specFromTokenizerJson(json));
  }

  /** From vocab.txt (its text, or its lines) and tokenizer_config.json (+ special_tokens_map.json) values. */
  static fromVocab(vocab: string[] | string, config?: Record<string, unknown>): Tokenizer {
    if (config !== undefined && (typeof config !== 'object' || config === null || Array.isArray(config))) {
      throw new TokenizerError('tokenizer config must be an object (the parsed tokenizer_config.json)');
    }
    return new Tokenizer(specFromVocab(vocab, config ?? {}));
  }

  /** WordPiece ids of one text, no specials. */
  tokenize(text: string): Int32Array {
    checkString(text, 'text');
    const n = this.core.encode(text, this.scratch.reset(), Number.POSITIVE_INFINITY);
    const ids = this.scratch.data.slice(0, n);
    if (this.scratch.data.length > 1 << 18) this.scratch.data = new Int32Array(1024); // don't pin MBs
    return ids;
  }

  /** [CLS] q [SEP] d [SEP], type ids 0/1, truncated to maxLength with HF semantics. */
  encodePair(query: string, document: string, opts: EncodeOptions): Encoded {
    const { budget, onlySecond } = this.options(opts);
    checkString(query, 'query');
    checkString(document, 'document');
    const [nq, nd, truncated] = this.encodeLengths(query, document, budget, onlySecond, '');
    const total = nq + nd + this.numSpecial;
    const ids = new Int32Array(total);
    const typeIds = new Int32Array(total);
    this.writePair(ids, typeIds, 0, nq, nd);
    return { ids, typeIds, truncated };
  }

  /** Many pairs straight into one packed batch (typed arrays, no per-token JS arrays). */
  encodePairs(pairs: ReadonlyArray<readonly [string, string]>, opts: EncodeOptions): EncodedBatch {
    const { budget, onlySecond } = this.options(opts);
    if (!Array.isArray(pairs))
      throw new InputError(`pairs must be an array of [query, document], got ${describe(pairs)}`);
    const offsets = new Int32Array(pairs.length + 1);
    const tok = this.outTokens.reset();
    const typ = this.outTypes.reset();
    let truncatedCount = 0;
    for (let i = 0; i < pairs.length; i++) {
      const pair = pairs[i];
      if (!Array.isArray(pair) || pair.length < 2) {
        throw new InputError(`pairs[${i}] must be a [query, document] array, got ${describe(pair)}`);
      }
      const q: unknown = pair[0];
      const d: unknown = pair[1];
      checkString(q, `pairs[${i}][0] (query)`);
      checkString(d, `pairs[${i}][1] (document)`);
      const [nq, nd, truncated] = this.encodeLengths(q, d, budget, onlySecond, `pairs[${i}]: `);
      if (truncated) truncatedCount++;
      const total = nq + nd + this.numSpecial;
      tok.reserve(total);
      typ.reserve(total);
      this.writePair(tok.data, typ.data, tok.length, nq, nd);
      tok.length += total;
      typ.length += total;
      offsets[i + 1] = tok.length;
    }
    return {
      tokens: tok.data.slice(0, tok.length),
      typeIds: typ.data.slice(0, typ.length),
      offsets,
      truncated: truncatedCount,
    };
  }

  /**
   * Long documents: overlapping windows of the document that each fit with the query. Each window has
   * W = maxLength - 3 - queryLength document tokens and starts `W - stride` tokens after the previous
   * one (Hugging Face's overflowing tokens with stride); the last window ends at the document's end.
   * When the query leaves no more than `stride` tokens of room, it is cut to floor((maxLength - 3) / 2)
   * tokens first (as longest_first would). `truncated` is true when the query was cut or the document
   * needed more than one window. An empty document gives one window with no document tokens.
   */
  encodeChunks(query: string, document: string, opts: { maxLength: number; stride: number }): Encoded[] {
    if (typeof opts !== 'object' || opts === null)
      throw new InputError('options must be { maxLength, stride }');
    const { maxLength, stride } = opts;
    if (!Number.isInteger(maxLength) || maxLength < this.numSpecial + 1) {
      throw new InputError(
        `maxLength must be an integer >= ${this.numSpecial + 1} for chunking, got ${describe(maxLength)}`,
      );
    }
    if (!Number.isInteger(stride) || stride < 0) {
      throw new InputError(`stride must be a non-negative integer, got ${describe(stride)}`);
    }
    checkString(query, 'query');
    checkString(document, 'document');
    const budget = maxLength - this.numSpecial;
    let nq = this.core.encode(query, this.qBuf.reset(), budget + 1);
    let queryCut = this.core.capped;
    if (budget - nq <= stride) {
      nq = Math.min(nq, Math.floor(budget / 2));
      queryCut = true;
    }
    const room = budget - nq;
    if (room <= stride) {
      throw new InputError(
        `stride (${stride}) must be smaller than the document room of each chunk (${room} tokens with maxLength ${maxLength}); use a smaller stride or a larger maxLength`,
      );
    }
    const docBuf = new IdBuffer(); // the whole document: local, so a huge one is not kept alive
    // Chunking needs all of the document, up to MAX_CHUNK_TOKENS tokens or MAX_READ code units
    // (the rest is not scored): what one call may cost stays bounded.
    let nd = this.core.encode(document, docBuf, MAX_CHUNK_TOKENS, MAX_READ);
    const docCapped = this.core.capped || nd >= MAX_CHUNK_TOKENS;
    nd = Math.min(nd, MAX_CHUNK_TOKENS);
    const qIds = this.qBuf.data;
    const dIds = docBuf.data;
    const chunks: Encoded[] = [];
    const truncated = queryCut || docCapped || nd > room;
    for (let start = 0; ; start += room - stride) {
      const end = Math.min(start + room, nd);
      const total = nq + (end - start) + this.numSpecial;
      const ids = new Int32Array(total);
      const typeIds = new Int32Array(total);
      this.writeTemplate(ids, typeIds, 0, qIds, 0, nq, dIds, start, end - start);
      chunks.push({ ids, typeIds, truncated });
      if (end >= nd) break;
    }
    return chunks;
  }

  /** See assertTokenizerFitsModel. */
  assertFits(model: ModelShape): void {
    const fix =
      'the tokenizer files do not belong to this model (or its config.json is wrong): use the tokenizer published with the model';
    if (this.vocabSize > model.vocabSize) {
      throw new TokenizerError(
        `The tokenizer can emit id ${this.vocabSize - 1} (${JSON.stringify(this.largestIdToken)}), but the model's vocab_size is ${model.vocabSize}: ids from ${model.vocabSize} on have no embedding row; ${fix}.`,
      );
    }
    if (this.typeVocabSize > model.typeVocabSize) {
      throw new TokenizerError(
        `The tokenizer's pair template uses token type id ${this.typeVocabSize - 1}, but the model's type_vocab_size is ${model.typeVocabSize}; ${fix}.`,
      );
    }
    const need = this.numSpecial + 2;
    if (this.modelMaxLength < need) {
      throw new TokenizerError(
        `The tokenizer's model_max_length ${this.modelMaxLength} leaves no room for a pair: the template adds ${this.numSpecial} special tokens, so a query and a document of one token each need ${need}; fix model_max_length in tokenizer_config.json (BERT models use 512).`,
      );
    }
    if (model.maxPositions < need) {
      throw new TokenizerError(
        `The model's max_position_embeddings ${model.maxPositions} leaves no room for a pair: the tokenizer's template adds ${this.numSpecial} special tokens, so a query and a document of one token each need ${need}; the config.json is wrong or the model is not a cross-encoder.`,
      );
    }
    // A model_max_length above max_position_embeddings is not an error: CrossEncoder.load uses the
    // smaller of the two as the default maxLength (and refuses an explicit maxLength above it).
  }

  // ------------------------------------------------------------------------------ internals

  private options(opts: EncodeOptions): { budget: number; onlySecond: boolean } {
    if (typeof opts !== 'object' || opts === null)
      throw new InputError('options must be { maxLength, truncation? }');
    const { maxLength, truncation } = opts;
    const ok =
      maxLength === Number.POSITIVE_INFINITY || (Number.isInteger(maxLength) && maxLength >= this.numSpecial);
    if (!ok) {
      throw new InputError(
        `maxLength must be an integer >= ${this.numSpecial} (room for [CLS] and two [SEP]) or Infinity, got ${describe(maxLength)}`,
      );
    }
    if (truncation !== undefined && truncation !== 'longest_first' && truncation !== 'only_second') {
      throw new InputError(
        `truncation must be 'longest_first' or 'only_second', got ${describe(truncation)}`,
      );
    }
    return { budget: maxLength - this.numSpecial, onlySecond: truncation === 'only_second' };
  }

  /**
   * Tokenizes both texts (into qBuf / dBuf) as far as needed and returns the kept lengths.
   *
   * `tokenizers` (0.23, what transformers runs) stops encoding each sequence after the word that
   * reaches max_length tokens when truncation is on, before truncate_encodings compares the lengths;
   * so "the longer one" is decided on those counts, which also makes it enough for us to stop there.
   */
  private encodeLengths(
    q: string,
    d: string,
    budget: number,
    onlySecond: boolean,
    where: string,
  ): [number, number, boolean] {
    const cap = budget + this.numSpecial;
    const qn = this.core.encode(q, this.qBuf.reset(), cap);
    const qCapped = this.core.capped;
    const dn = this.core.encode(d, this.dBuf.reset(), cap);
    // Text past the read limit was not looked at: count that as truncation too.
    if (qn + dn <= budget) return [qn, dn, qCapped || this.core.capped];
    if (budget === 0) return [0, 0, true]; // Rust special-cases max_length 0 before any strategy
    if (onlySecond) {
      if (qn >= budget) {
        throw new InputError(
          `${where}the query has ${qn > budget ? `more than ${budget}` : budget} tokens, which leaves no room for the document within maxLength ${cap} with truncation 'only_second' (Hugging Face fails the same way); use 'longest_first' or a larger maxLength`,
        );
      }
      return [qn, budget - qn, true];
    }
    // truncate_encodings, LongestFirst: n1 is the shorter length, n2 the longer.
    const swap = qn > dn;
    let n1 = swap ? dn : qn;
    let n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
    if (n1 + n2 > budget) {
      n1 = Math.floor(budget / 2);
      n2 = n1 + (budget % 2);
    }
    return swap ? [n2, n1, true] : [n1, n2, true];
  }

  private writePair(ids: Int32Array, typeIds: Int32Array, at: number, nq: number, nd: number): void {
    this.writeTemplate(ids, typeIds, at, this.qBuf.data, 0, nq, this.dBuf.data, 0, nd);
  }

  private writeTemplate(
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
    for (const p of this.template) {
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
}

/** What of a model the tokenizer must fit: ModelSpec (src/model.ts) has these fields. */
export type ModelShape = Pick<ModelSpec, 'vocabSize' | 'typeVocabSize' | 'maxPositions'>;

/**
 * Refuses, with a TokenizerError (E_BAD_TOKENIZER) that names the mismatch, a tokenizer that does not
 * fit the model: an id the tokenizer can emit (vocabulary, added or special token) without an
 * embedding row (>= vocab_size), a pair-template token type id >= type_vocab_size, or a
 * model_max_length (or max_position_embeddings) too small for [CLS] q [SEP] d [SEP] with a token of
 * each. Such a model would otherwise load and then fail every batch that holds an affected pair.
 */
export function assertTokenizerFitsModel(tokenizer: Tokenizer, model: ModelShape): void {
  tokenizer.assertFits(model);
}

function checkString(v: unknown, what: string): asserts v is string {
  if (typeof v !== 'string') throw new InputError(`${what} must be a string, got ${describe(v)}`);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  return typeof v;
}

/**
 * Largest tokenizer files read, checked with stat before reading: tokenizer.json of the largest real
 * BERT vocabularies is 3 MB (of any tokenizer on the Hub: 20 MB); vocab.txt at most 2 MB.
 */
export const TOKENIZER_FILE_LIMITS = {
  tokenizerJson: 32 << 20,
  vocabTxt: 16 << 20,
  /** tokenizer_config.json and special_tokens_map.json. */
  config: 4 << 20,
} as const;

async function readText(path: string, what: string, maxBytes: number): Promise<string> {
  try {
    const { size } = await stat(path);
    if (size > maxBytes) {
      throw new TokenizerError(
        `${what} at ${path} is ${size} bytes, more than the ${maxBytes} a tokenizer file may have; the file is corrupt or not a tokenizer file.`,
      );
    }
    return await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof TokenizerError) throw err;
    throw new TokenizerError(`Cannot read ${what} at ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function readJson(path: string, maxBytes: number): Promise<unknown> {
  const text = await readText(path, 'tokenizer file', maxBytes);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new TokenizerError(`${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
}

async function readJsonObject(path: string): Promise<Json> {
  const v = await readJson(path, TOKENIZER_FILE_LIMITS.config);
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new TokenizerError(`${path}: expected a JSON object`);
  return v as Json;
}
