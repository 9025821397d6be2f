/**
 * Query/document pair tokenization for every supported family, id for id the same as the Python fast
 * tokenizer that sentence-transformers 6 loads (transformers 5, Hugging Face `tokenizers` 0.23),
 * written straight into typed arrays. One class over three text cores, chosen by tokenizer.json's
 * `model.type` (docs/tokenizers.md):
 *  - WordPiece (BERT, MiniLM, ELECTRA): ./tokenizer/wordpiece.ts, read by ./tokenizer/config.ts from
 *    tokenizer.json or vocab.txt;
 *  - Unigram (XLM-RoBERTa, CamemBERT) and byte-level BPE (ModernBERT): ./tokenizer/families.ts.
 * The pair template and truncation (longest_first / only_second) are ./tokenizer/pair.ts, the same for all.
 *
 * Only as many tokens as the truncation can keep are computed: a document of several MB costs about
 * as much as one of maxLength tokens.
 *
 * Inputs: non-strings are an InputError. Lone surrogates (JS strings may hold them; Python/Rust strings
 * cannot) are read as U+FFFD: the result equals Hugging Face's for the string with each lone surrogate
 * replaced by U+FFFD (what any UTF-8 encoding of it gives).
 */
import { InputError, TokenizerError } from './errors';
import { specFromTokenizerJson, specFromVocab, type TokenizerSpec } from './tokenizer/config';
import { familyFromTokenizerJson, type UnigramReading } from './tokenizer/families';
import { IdBuffer, type TextCore, type TokenizerParts } from './tokenizer/ids';
import {
  chunkOptions,
  fail,
  keptLengths,
  pairOptions,
  specialCount,
  type TemplatePiece,
  type Truncation,
  writeTemplate,
} from './tokenizer/pair';
import { MAX_READ, WordPieceCore } from './tokenizer/wordpiece';
import type { ModelSpec } from './types';
import {
  checkOneOf,
  checkString,
  describe,
  isObject,
  readJsonFile,
  readOptions,
  readTextFile,
} from './validate';

export type { UnigramReading } from './tokenizer/families';
export type { Truncation } from './tokenizer/pair';

/** Chunk mode scores at most this many tokens of a document (about 64 windows at maxLength 512). */
export const MAX_CHUNK_TOKENS = 1 << 15;

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
export interface TokenizerOptions {
  /**
   * How an XLM-RoBERTa / CamemBERT tokenizer.json is read (other tokenizers ignore it): 'transformers'
   * (default) as transformers 5 rebuilds it, which is what sentence-transformers 6 scores with;
   * 'file' as written (what `tokenizers`, Text Embeddings Inference and transformers 4 give). They
   * differ on whitespace at the ends of a text and next to special-token strings: docs/tokenizers.md.
   */
  reading?: UnigramReading;
}
export interface TokenizerFiles {
  tokenizerJson?: string;
  vocabTxt?: string;
  tokenizerConfig?: string;
  specialTokensMap?: string;
}

type Json = Record<string, unknown>;
const OPTION_KEYS = { reading: true } as const;
const READINGS = ['transformers', 'file'] as const;

export class Tokenizer {
  /** The model in tokenizer.json (vocab.txt: WordPiece). */
  readonly kind: TokenizerParts['kind'];
  /** tokenizer_config.json's model_max_length; Infinity when absent or HF's "no limit" sentinel. */
  readonly modelMaxLength: number;
  /** 1 + the largest id the tokenizer can emit: the embedding rows the model needs. */
  readonly vocabSize: number;
  /** 1 + the largest token type id of the pair template: the type embedding rows the model needs. */
  readonly typeVocabSize: number;
  /** Ids of the pair template around the query and the document (BERT: [CLS] [SEP] [SEP], 3; XLM-R: 4). */
  readonly numSpecialTokens: number;
  /** The template's first special token (<s> / [CLS]) and the one after the query (</s> / [SEP]). */
  readonly clsId: number;
  readonly sepId: number;
  /** The padding / unknown token's id; -1 when the tokenizer has none. */
  readonly padId: number;
  readonly unkId: number;

  private readonly core: TextCore;
  private readonly template: readonly TemplatePiece[];
  private readonly numSpecial: number;
  private readonly largestIdToken: string;
  private readonly qBuf = new IdBuffer();
  private readonly dBuf = new IdBuffer();
  private readonly scratch = new IdBuffer();
  private readonly outTokens = new IdBuffer(1 << 14);
  private readonly outTypes = new IdBuffer(1 << 14);

  private constructor(parts: TokenizerParts) {
    this.kind = parts.kind;
    this.core = parts.core;
    this.template = parts.pairTemplate;
    this.numSpecial = specialCount(parts.pairTemplate);
    this.modelMaxLength = parts.modelMaxLength;
    this.vocabSize = parts.vocabSize;
    this.largestIdToken = parts.largestIdToken;
    this.typeVocabSize = 1 + parts.pairTemplate.reduce((m, p) => Math.max(m, p.typeId), 0);
    this.numSpecialTokens = this.numSpecial;
    this.clsId = parts.clsId;
    this.sepId = parts.sepId;
    this.padId = parts.padId;
    this.unkId = parts.unkId;
  }

  private static wordPiece(spec: TokenizerSpec): Tokenizer {
    return new Tokenizer({ ...spec, kind: 'wordpiece', core: new WordPieceCore(spec.core) });
  }

  /**
   * Loads from file paths: tokenizer.json when given (WordPiece, Unigram or BPE by its model.type;
   * tokenizer_config.json then adjusts it as transformers does), else vocab.txt + tokenizer_config.json
   * (WordPiece). special_tokens_map.json overrides the config's special tokens, as in transformers.
   */
  static async fromFiles(files: TokenizerFiles, options?: TokenizerOptions): Promise<Tokenizer> {
    const o = tokenizerOptions(options);
    let config: Json | undefined;
    if (files.tokenizerConfig !== undefined) config = await readJsonObject(files.tokenizerConfig);
    if (files.specialTokensMap !== undefined) {
      config = { ...(config ?? {}), ...(await readJsonObject(files.specialTokensMap)) };
    }
    if (files.tokenizerJson !== undefined) {
      const limit = TOKENIZER_FILE_LIMITS.tokenizerJson;
      const json = await readJsonFile(files.tokenizerJson, 'tokenizer.json', limit, TokenizerError);
      return Tokenizer.build(json, config, o, files.tokenizerJson);
    }
    if (files.vocabTxt !== undefined) {
      const text = await readTextFile(
        files.vocabTxt,
        'vocab.txt',
        TOKENIZER_FILE_LIMITS.vocabTxt,
        TokenizerError,
      );
      return Tokenizer.wordPiece(specFromVocab(text, config ?? {}, files.vocabTxt));
    }
    throw new TokenizerError(
      'No tokenizer files: give tokenizer.json, or vocab.txt with tokenizer_config.json.',
    );
  }

  /**
   * From a parsed tokenizer.json and, optionally, tokenizer_config.json (+ special_tokens_map.json)
   * values: WordPiece, Unigram or BPE by `model.type`.
   */
  static fromTokenizerJson(json: unknown, config?: Json, options?: TokenizerOptions): Tokenizer {
    if (config !== undefined && !isObject(config)) {
      throw new TokenizerError('tokenizer config must be an object (the parsed tokenizer_config.json)');
    }
    return Tokenizer.build(json, config, tokenizerOptions(options), 'tokenizer.json');
  }

  /** From vocab.txt (its text, or its lines) and tokenizer_config.json (+ special_tokens_map.json) values. */
  static fromVocab(vocab: string[] | string, config?: Json): Tokenizer {
    if (config !== undefined && !isObject(config)) {
      throw new TokenizerError('tokenizer config must be an object (the parsed tokenizer_config.json)');
    }
    return Tokenizer.wordPiece(specFromVocab(vocab, config ?? {}));
  }

  private static build(
    json: unknown,
    config: Json | undefined,
    o: TokenizerOptions,
    where: string,
  ): Tokenizer {
    if (!isObject(json)) fail(where, 'expected a JSON object');
    if (!isObject(json.model)) fail(where, '"model" is missing');
    const type = json.model.type;
    if (type === 'WordPiece') return Tokenizer.wordPiece(specFromTokenizerJson(json, config, where));
    if (type === 'Unigram' || type === 'BPE') {
      return new Tokenizer(familyFromTokenizerJson(json, config ?? {}, o.reading ?? 'transformers', where));
    }
    fail(
      where,
      `model type ${JSON.stringify(type)} is not supported: mlx-rerank reads WordPiece (BERT, MiniLM, ELECTRA), Unigram (XLM-RoBERTa, CamemBERT) and BPE (ModernBERT) tokenizers; use a model with one of those, or a tokenizer.json that transformers wrote for it`,
    );
  }

  /** Ids of one text, no specials. */
  tokenize(text: string): Int32Array {
    checkString('text', text);
    const n = this.core.encode(text, this.scratch.reset(), Number.POSITIVE_INFINITY);
    const ids = this.scratch.data.slice(0, n);
    if (this.scratch.data.length > 1 << 18) this.scratch.data = new Int32Array(1024); // don't pin MBs
    return ids;
  }

  /** The pair template around query and document (BERT: [CLS] q [SEP] d [SEP]), truncated to maxLength as HF does. */
  encodePair(query: string, document: string, opts: EncodeOptions): Encoded {
    const { budget, onlySecond } = pairOptions(opts, this.numSpecial);
    checkString('query', query);
    checkString('document', document);
    const [nq, nd, truncated] = this.encodeLengths(query, document, budget, onlySecond, '');
    const total = nq + nd + this.numSpecial;
    const ids = new Int32Array(total);
    const typeIds = new Int32Array(total);
    writeTemplate(this.template, ids, typeIds, 0, this.qBuf.data, 0, nq, this.dBuf.data, 0, nd);
    return { ids, typeIds, truncated };
  }

  /** Many pairs straight into one packed batch (typed arrays, no per-token JS arrays). */
  encodePairs(pairs: ReadonlyArray<readonly [string, string]>, opts: EncodeOptions): EncodedBatch {
    const { budget, onlySecond } = pairOptions(opts, this.numSpecial);
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
      const q = checkString(`pairs[${i}][0] (query)`, pair[0]);
      const d = checkString(`pairs[${i}][1] (document)`, pair[1]);
      const [nq, nd, truncated] = this.encodeLengths(q, d, budget, onlySecond, `pairs[${i}]: `);
      if (truncated) truncatedCount++;
      const total = nq + nd + this.numSpecial;
      tok.reserve(total);
      typ.reserve(total);
      writeTemplate(
        this.template,
        tok.data,
        typ.data,
        tok.length,
        this.qBuf.data,
        0,
        nq,
        this.dBuf.data,
        0,
        nd,
      );
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
   * W = maxLength - specials - queryLength document tokens and starts `W - stride` tokens after the
   * previous one (Hugging Face's overflowing tokens with stride); the last window ends at the
   * document's end. When the query leaves no more than `stride` tokens of room, it is cut to
   * floor((maxLength - specials) / 2) tokens first (as longest_first would). `truncated` is true when
   * the query was cut or the document needed more than one window. An empty document gives one
   * window with no document tokens.
   */
  encodeChunks(query: string, document: string, opts: { maxLength: number; stride: number }): Encoded[] {
    const { maxLength, stride } = chunkOptions(opts, this.numSpecial);
    checkString('query', query);
    checkString('document', document);
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
      writeTemplate(this.template, ids, typeIds, 0, qIds, 0, nq, dIds, start, end - start);
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

  /**
   * Tokenizes both texts (into qBuf / dBuf) as far as needed and returns the kept lengths and whether
   * anything was cut (text past a read limit was not looked at: that counts as truncation too).
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
    if (qn + dn <= budget) return [qn, dn, qCapped || this.core.capped];
    const [nq, nd] = keptLengths(qn, dn, budget, onlySecond, cap, where);
    return [nq, nd, true];
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

/** Checks Tokenizer options once: unknown keys and bad values are InputErrors. */
function tokenizerOptions(options: unknown): TokenizerOptions {
  const o = readOptions<TokenizerOptions>('Tokenizer', options, OPTION_KEYS);
  if (o.reading !== undefined) o.reading = checkOneOf('reading', o.reading, READINGS);
  return o;
}

/**
 * Largest tokenizer files read, checked with stat before reading: tokenizer.json of the largest real
 * BERT vocabularies is 3 MB, XLM-RoBERTa's 17 MB (of any tokenizer on the Hub: 20 MB); vocab.txt at
 * most 2 MB.
 */
export const TOKENIZER_FILE_LIMITS = {
  tokenizerJson: 32 << 20,
  vocabTxt: 16 << 20,
  /** tokenizer_config.json and special_tokens_map.json. */
  config: 4 << 20,
} as const;

async function readJsonObject(path: string): Promise<Json> {
  const v = await readJsonFile(path, 'tokenizer file', TOKENIZER_FILE_LIMITS.config, TokenizerError);
  if (!isObject(v)) throw new TokenizerError(`${path}: expected a JSON object`);
  return v;
}
