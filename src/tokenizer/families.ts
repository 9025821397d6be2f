/**
 * Tokenizers of the families after BERT, from tokenizer.json (+ tokenizer_config.json), with the same
 * pair API and truncation semantics as the WordPiece `Tokenizer` (src/tokenizer.ts):
 *  - SentencePiece Unigram as XLM-RoBERTa / CamemBERT ship it (./unigram.ts, ./precompiled.ts);
 *  - byte-level BPE as ModernBERT ships it (./bpe.ts).
 *
 * A text is read in windows: added tokens are found in the window (leftmost-longest, lstrip/rstrip
 * as `tokenizers` applies them), and the text between them is cut only where the cut provably
 * changes no normalization or pre-token (the model's safeCut), so a document of many MB costs about
 * as much as the part that reaches maxLength tokens. Encoding stops after the pre-token that reaches
 * maxLength ids, as `tokenizers` 0.23 does (which decides which sequence longest_first calls longer).
 */
import { InputError, TokenizerError } from '../errors';
import type { Encoded, EncodedBatch, EncodeOptions } from '../tokenizer';
import { BytePairEncoder } from './bpe';
import type { TemplatePiece } from './config';
import { PrecompiledCharsmap } from './precompiled';
import { isRustWhitespace, type PrependScheme, UnigramPipeline } from './unigram';
import { IdBuffer } from './wordpiece';

/** How an XLM-RoBERTa tokenizer.json is read: see docs/tokenizers.md. */
export type UnigramReading = 'transformers' | 'file';

export interface FamilyOptions {
  /** Default 'transformers': what transformers 5 (sentence-transformers 6) builds; 'file': as written. */
  reading?: UnigramReading;
}

const MAX_ADDED_TOKENS = 100_000;
const MAX_ADDED_LENGTH = 1024;
const HUGE_MAX_LENGTH = 1e18;
/** Input read per window, in UTF-16 code units (grown when a window has no safe cut). */
const WINDOW = 4096;

type Json = Record<string, unknown>;

interface SegmentCore {
  safeCut(text: string, p: number): boolean;
  encode(text: string, start: number, end: number, atTextStart: boolean, out: IdBuffer, cap: number): void;
}

interface Added {
  content: string;
  id: number;
  lstrip: boolean;
  rstrip: boolean;
}

interface Match {
  start: number;
  end: number;
  id: number;
}

/** Leftmost-longest matching of a set of added tokens (what `tokenizers`' Aho-Corasick does). */
class AddedTokenSet {
  readonly size: number;
  constructor(private readonly tokens: readonly Added[]) {
    this.size = tokens.length;
  }

  /** The first match starting in [from, limit) (it may end past limit), with lstrip/rstrip applied. */
  find(text: string, from: number, limit: number): Match | undefined {
    let best: Added | undefined;
    let bestAt = limit;
    for (const t of this.tokens) {
      // Only this window is searched (a slice of a flat string shares its characters): the rest
      // of a long text may never be read.
      const end = limit + t.content.length - 1;
      let at: number;
      if (end >= text.length) at = text.indexOf(t.content, from);
      else {
        const rel = text.slice(from, end).indexOf(t.content);
        at = rel < 0 ? -1 : from + rel;
      }
      if (at < 0 || at >= limit) continue;
      if (at < bestAt || (at === bestAt && best !== undefined && t.content.length > best.content.length)) {
        best = t;
        bestAt = at;
      }
    }
    if (best === undefined) return undefined;
    let start = bestAt;
    let end = bestAt + best.content.length;
    if (best.lstrip) while (start > from && isRustWhitespace(text.charCodeAt(start - 1))) start--;
    if (best.rstrip) while (end < text.length && isRustWhitespace(text.charCodeAt(end))) end++;
    return { start, end, id: best.id };
  }
}

/** Text -> ids: added tokens (raw, then normalized ones), windows, the model core. */
class TextEncoder {
  constructor(
    private readonly core: SegmentCore,
    private readonly raw: AddedTokenSet,
    private readonly normalized: AddedTokenSet,
  ) {}

  /** Appends the ids of `text` to out (from out.length 0) and returns their count. */
  encode(text: string, out: IdBuffer, cap: number): number {
    // Lone surrogates read as U+FFFD (what any UTF-8 encoding of the JS string gives Python / Rust):
    // the models replace them where they meet them, in non-ASCII stretches only.
    const s = text;
    const n = s.length;
    let pos = 0;
    let window = WINDOW;
    while (pos < n && out.length < cap) {
      const limit = Math.min(n, pos + window);
      const m = this.raw.size > 0 ? this.raw.find(s, pos, limit) : undefined;
      if (m !== undefined) {
        this.segment(s, pos, m.start, out, cap);
        if (out.length >= cap) break;
        const data = out.reserve(1);
        data[out.length++] = m.id;
        pos = m.end;
        window = WINDOW;
        continue;
      }
      let cut = limit;
      if (limit < n) {
        while (cut > pos && !this.core.safeCut(s, cut)) cut--;
        if (cut === pos) {
          window *= 2; // one long stretch without a safe cut: read a larger window
          continue;
        }
      }
      this.segment(s, pos, cut, out, cap);
      pos = cut;
      window = WINDOW;
    }
    return out.length;
  }

  private segment(s: string, start: number, end: number, out: IdBuffer, cap: number): void {
    if (this.normalized.size === 0) {
      if (start < end) this.core.encode(s, start, end, start === 0, out, cap);
      return;
    }
    let pos = start;
    while (pos < end && out.length < cap) {
      const m = this.normalized.find(s, pos, end);
      if (m === undefined || m.end > end) {
        this.core.encode(s, pos, end, pos === 0, out, cap);
        return;
      }
      if (pos < m.start) this.core.encode(s, pos, m.start, pos === 0, out, cap);
      if (out.length >= cap) return;
      const data = out.reserve(1);
      data[out.length++] = m.id;
      pos = m.end;
    }
  }
}

/** A Unigram or byte-level BPE tokenizer with the WordPiece Tokenizer's pair API. */
export class FamilyTokenizer {
  readonly kind: 'unigram' | 'bpe';
  readonly modelMaxLength: number;
  readonly vocabSize: number;
  /** The template's first special token (<s> / [CLS]) and the one after the query (</s> / [SEP]). */
  readonly clsId: number;
  readonly sepId: number;
  /** tokenizer_config.json's pad_token / unk_token, or -1 when the tokenizer has none. */
  readonly padId: number;
  readonly unkId: number;
  private readonly text: TextEncoder;
  private readonly template: readonly TemplatePiece[];
  private readonly numSpecial: number;
  private readonly qBuf = new IdBuffer();
  private readonly dBuf = new IdBuffer();
  private readonly outTokens = new IdBuffer(1 << 14);
  private readonly outTypes = new IdBuffer(1 << 14);

  private constructor(parts: {
    kind: 'unigram' | 'bpe';
    text: TextEncoder;
    template: TemplatePiece[];
    modelMaxLength: number;
    vocabSize: number;
    idOf: (token: string) => number;
    config: Json;
  }) {
    this.kind = parts.kind;
    this.text = parts.text;
    this.template = parts.template;
    this.numSpecial = parts.template.reduce((n, p) => n + (p.kind === 'special' ? p.ids.length : 0), 0);
    this.modelMaxLength = parts.modelMaxLength;
    this.vocabSize = parts.vocabSize;
    const t = parts.template;
    const a = t.findIndex((p) => p.kind === 'A');
    const first = t[0];
    const afterA = t[a + 1];
    this.clsId = first?.kind === 'special' ? (first.ids[0] ?? -1) : -1;
    this.sepId = afterA?.kind === 'special' ? (afterA.ids[0] ?? -1) : -1;
    const named = (key: string, dflt: string) => {
      const v = parts.config[key];
      const name =
        typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : dflt;
      return parts.idOf(name);
    };
    const unigram = parts.kind === 'unigram';
    this.padId = named('pad_token', unigram ? '<pad>' : '[PAD]');
    this.unkId = named('unk_token', unigram ? '<unk>' : '[UNK]');
  }

  /** Whether tokenizer.json holds a model this class reads (Unigram or BPE). */
  static handles(json: unknown): boolean {
    if (!isObject(json) || !isObject(json.model)) return false;
    return json.model.type === 'Unigram' || json.model.type === 'BPE';
  }

  /** From a parsed tokenizer.json and tokenizer_config.json (+ special_tokens_map.json) values. */
  static fromTokenizerJson(
    json: unknown,
    config?: Json,
    options: FamilyOptions = {},
    where = 'tokenizer.json',
  ): FamilyTokenizer {
    if (!isObject(json)) fail(where, 'expected a JSON object');
    const model = json.model;
    if (!isObject(model)) fail(where, '"model" is missing');
    const added = addedTokens(json.added_tokens, where);
    const cfg = config ?? {};
    const template = pairTemplate(json.post_processor, where);
    const modelMaxLength = maxLengthOf(cfg.model_max_length, where);
    if (model.type === 'Unigram') {
      const reading = options.reading ?? 'transformers';
      if (reading !== 'transformers' && reading !== 'file') {
        throw new InputError(`reading must be 'transformers' or 'file', got ${JSON.stringify(reading)}`);
      }
      const { core, vocabSize } = unigramCore(json, model, cfg, reading, where);
      return new FamilyTokenizer({
        kind: 'unigram',
        text: textEncoder(core, added, false, where),
        template,
        modelMaxLength,
        vocabSize: Math.max(vocabSize, ...added.map((t) => t.id + 1)),
        idOf: (name) => added.find((t) => t.content === name)?.id ?? core.pieceId(name),
        config: cfg,
      });
    }
    if (model.type === 'BPE') {
      const { core, vocabSize, vocab } = bpeCore(json, model, where);
      return new FamilyTokenizer({
        kind: 'bpe',
        text: textEncoder(core, added, true, where),
        template,
        modelMaxLength,
        vocabSize: Math.max(vocabSize, ...added.map((t) => t.id + 1)),
        idOf: (name) => added.find((t) => t.content === name)?.id ?? vocab.get(name) ?? -1,
        config: cfg,
      });
    }
    fail(where, `model type ${JSON.stringify(model.type)} is not Unigram or BPE`);
  }

  /** Ids of one text, no specials. */
  tokenize(text: string): Int32Array {
    checkString(text, 'text');
    const buf = new IdBuffer();
    const n = this.text.encode(text, buf, Number.POSITIVE_INFINITY);
    return buf.data.slice(0, n);
  }

  encodePair(query: string, document: string, opts: EncodeOptions): Encoded {
    const { budget, onlySecond } = this.options(opts);
    checkString(query, 'query');
    checkString(document, 'document');
    const [nq, nd, truncated] = this.encodeLengths(query, document, budget, onlySecond, '');
    const total = nq + nd + this.numSpecial;
    const ids = new Int32Array(total);
    const typeIds = new Int32Array(total);
    this.writeTemplate(ids, typeIds, 0, nq, nd);
    return { ids, typeIds, truncated };
  }

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
      this.writeTemplate(tok.data, typ.data, tok.length, nq, nd);
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
   * Long documents: overlapping windows of the document that each fit with the query, exactly as the
   * WordPiece Tokenizer's encodeChunks (Hugging Face's overflowing tokens with stride).
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
    let nq = this.text.encode(query, this.qBuf.reset(), budget + 1);
    let queryCut = false;
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
    const doc = new IdBuffer(); // the whole document: local, so a huge one is not kept alive
    const nd = this.text.encode(document, doc, Number.POSITIVE_INFINITY);
    const chunks: Encoded[] = [];
    const truncated = queryCut || nd > room;
    for (let start = 0; ; start += room - stride) {
      const end = Math.min(start + room, nd);
      const total = nq + (end - start) + this.numSpecial;
      const ids = new Int32Array(total);
      const typeIds = new Int32Array(total);
      this.writeTemplate(ids, typeIds, 0, nq, end - start, doc.data, start);
      chunks.push({ ids, typeIds, truncated });
      if (end >= nd) break;
    }
    return chunks;
  }

  private options(opts: EncodeOptions): { budget: number; onlySecond: boolean } {
    if (typeof opts !== 'object' || opts === null)
      throw new InputError('options must be { maxLength, truncation? }');
    const { maxLength, truncation } = opts;
    const ok =
      maxLength === Number.POSITIVE_INFINITY || (Number.isInteger(maxLength) && maxLength >= this.numSpecial);
    if (!ok) {
      throw new InputError(
        `maxLength must be an integer >= ${this.numSpecial} (room for the template's special tokens) or Infinity, got ${describe(maxLength)}`,
      );
    }
    if (truncation !== undefined && truncation !== 'longest_first' && truncation !== 'only_second') {
      throw new InputError(
        `truncation must be 'longest_first' or 'only_second', got ${describe(truncation)}`,
      );
    }
    return { budget: maxLength - this.numSpecial, onlySecond: truncation === 'only_second' };
  }

  /** The same truncation as the WordPiece Tokenizer (tokenizers' truncate_encodings). */
  private encodeLengths(
    q: string,
    d: string,
    budget: number,
    onlySecond: boolean,
    where: string,
  ): [number, number, boolean] {
    const cap = budget + this.numSpecial;
    const qn = this.text.encode(q, this.qBuf.reset(), cap);
    const dn = this.text.encode(d, this.dBuf.reset(), cap);
    if (qn + dn <= budget) return [qn, dn, false];
    if (budget === 0) return [0, 0, true];
    if (onlySecond) {
      if (qn >= budget) {
        throw new InputError(
          `${where}the query has ${qn > budget ? `more than ${budget}` : budget} tokens, which leaves no room for the document within maxLength ${cap} with truncation 'only_second' (Hugging Face fails the same way); use 'longest_first' or a larger maxLength`,
        );
      }
      return [qn, budget - qn, true];
    }
    const swap = qn > dn;
    let n1 = swap ? dn : qn;
    let n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
    if (n1 + n2 > budget) {
      n1 = Math.floor(budget / 2);
      n2 = n1 + (budget % 2);
    }
    return swap ? [n2, n1, true] : [n1, n2, true];
  }

  private writeTemplate(
    ids: Int32Array,
    typeIds: Int32Array,
    at: number,
    nq: number,
    nd: number,
    d: Int32Array = this.dBuf.data,
    dStart = 0,
  ): void {
    let k = at;
    for (const p of this.template) {
      if (p.kind === 'special') {
        for (const id of p.ids) {
          ids[k] = id;
          typeIds[k++] = p.typeId;
        }
      } else {
        const src = p.kind === 'A' ? this.qBuf.data : d;
        const s = p.kind === 'A' ? 0 : dStart;
        const n = p.kind === 'A' ? nq : nd;
        for (let i = 0; i < n; i++) ids[k + i] = src[s + i] as number;
        typeIds.fill(p.typeId, k, k + n);
        k += n;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ reading

function unigramCore(
  json: Json,
  model: Json,
  config: Json,
  reading: UnigramReading,
  where: string,
): { core: UnigramPipeline; vocabSize: number } {
  const vocab = model.vocab;
  if (!Array.isArray(vocab)) fail(where, 'the Unigram model needs "vocab" as [piece, score] pairs');
  const pieces: Array<[string, number]> = [];
  for (const [i, e] of vocab.entries()) {
    if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1])) {
      fail(where, `Unigram vocab entry ${i} must be [piece, score]`);
    }
    pieces.push([e[0], e[1]]);
  }
  const unkId = model.unk_id;
  if (typeof unkId !== 'number' || !Number.isInteger(unkId))
    fail(where, 'the Unigram model needs an integer "unk_id"');
  const norm = readUnigramNormalizer(json.normalizer, where);
  const pre = readMetaspace(json.pre_tokenizer, where);
  // transformers 5 rebuilds XLM-RoBERTa / CamemBERT tokenizers: Precompiled alone, then
  // WhitespaceSplit + Metaspace(always, split) (transformersNormalizer / transformersPreTokenizer).
  const cls = typeof config.tokenizer_class === 'string' ? config.tokenizer_class : 'XLMRobertaTokenizer';
  const rebuilt = reading === 'transformers' && /^(XLMRoberta|Camembert)Tokenizer(Fast)?$/.test(cls);
  const core = new UnigramPipeline(
    {
      model: { pieces, unkId, byteFallback: model.byte_fallback === true },
      charsmap: norm.charsmap,
      whitespaceSplit: rebuilt || pre.whitespaceSplit,
      collapseSpaces: rebuilt ? false : norm.collapseSpaces,
      prependScheme: rebuilt ? 'always' : pre.prependScheme,
      split: rebuilt ? true : pre.split,
    },
    where,
  );
  return { core, vocabSize: pieces.length };
}

function readUnigramNormalizer(
  n: unknown,
  where: string,
): { charsmap?: PrecompiledCharsmap; collapseSpaces: boolean } {
  if (n === null || n === undefined) return { collapseSpaces: false };
  if (!isObject(n)) fail(where, '"normalizer" must be an object');
  const parts = n.type === 'Sequence' && Array.isArray(n.normalizers) ? n.normalizers : [n];
  let charsmap: PrecompiledCharsmap | undefined;
  let collapseSpaces = false;
  for (const p of parts) {
    if (
      isObject(p) &&
      p.type === 'Precompiled' &&
      typeof p.precompiled_charsmap === 'string' &&
      charsmap === undefined &&
      !collapseSpaces
    ) {
      charsmap = PrecompiledCharsmap.fromBase64(p.precompiled_charsmap, `${where}: normalizer Precompiled`);
    } else if (
      isObject(p) &&
      p.type === 'Replace' &&
      isObject(p.pattern) &&
      p.pattern.Regex === ' {2,}' &&
      p.content === ' '
    ) {
      collapseSpaces = true;
    } else {
      fail(
        where,
        `normalizer ${JSON.stringify(isObject(p) ? p.type : p)} is not supported for a Unigram model (Precompiled, then Replace(" {2,}", " "), as XLM-RoBERTa's)`,
      );
    }
  }
  return { charsmap, collapseSpaces };
}

function readMetaspace(
  p: unknown,
  where: string,
): { whitespaceSplit: boolean; prependScheme: PrependScheme; split: boolean } {
  if (!isObject(p)) fail(where, 'a Unigram tokenizer needs a Metaspace "pre_tokenizer"');
  let whitespaceSplit = false;
  let meta: Json | undefined;
  const parts = p.type === 'Sequence' && Array.isArray(p.pretokenizers) ? p.pretokenizers : [p];
  for (const [i, q] of parts.entries()) {
    if (isObject(q) && q.type === 'WhitespaceSplit' && i === 0 && parts.length === 2) whitespaceSplit = true;
    else if (isObject(q) && q.type === 'Metaspace' && i === parts.length - 1) meta = q;
    else
      fail(
        where,
        `pre_tokenizer ${JSON.stringify(isObject(q) ? q.type : q)} is not supported (Metaspace, optionally after WhitespaceSplit)`,
      );
  }
  if (meta === undefined) fail(where, 'a Unigram tokenizer needs a Metaspace pre-tokenizer');
  if (meta.replacement !== '\u2581')
    fail(where, `Metaspace replacement ${JSON.stringify(meta.replacement)} is not supported (only "\u2581")`);
  let scheme: PrependScheme;
  if (meta.prepend_scheme === undefined) scheme = meta.add_prefix_space === false ? 'never' : 'always';
  else if (
    meta.prepend_scheme === 'always' ||
    meta.prepend_scheme === 'first' ||
    meta.prepend_scheme === 'never'
  )
    scheme = meta.prepend_scheme;
  else
    fail(
      where,
      `Metaspace prepend_scheme ${JSON.stringify(meta.prepend_scheme)} is not always, first or never`,
    );
  return { whitespaceSplit, prependScheme: scheme, split: meta.split !== false };
}

function bpeCore(
  json: Json,
  model: Json,
  where: string,
): { core: BytePairEncoder; vocabSize: number; vocab: ReadonlyMap<string, number> } {
  if (json.normalizer !== null && json.normalizer !== undefined) {
    fail(where, 'a normalizer before byte-level BPE is not supported (ModernBERT / GPT-2 have none)');
  }
  const pre = json.pre_tokenizer;
  if (!isObject(pre) || pre.type !== 'ByteLevel')
    fail(where, 'byte-level BPE needs a ByteLevel "pre_tokenizer"');
  for (const key of ['dropout', 'continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (model[key] !== null && model[key] !== undefined) fail(where, `BPE "${key}" is not supported`);
  }
  if (model.byte_fallback === true || model.ignore_merges === true)
    fail(where, 'BPE byte_fallback / ignore_merges are not supported');
  const rawVocab = model.vocab;
  if (!isObject(rawVocab)) fail(where, 'the BPE model needs "vocab" as an object');
  const vocab = new Map<string, number>();
  let vocabSize = 0;
  for (const [k, v] of Object.entries(rawVocab)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x7fffffff)
      fail(where, `vocab id of ${JSON.stringify(k)} is not an id`);
    vocab.set(k, v);
    if (v + 1 > vocabSize) vocabSize = v + 1;
  }
  const rawMerges = model.merges;
  if (!Array.isArray(rawMerges)) fail(where, 'the BPE model needs "merges"');
  const merges: Array<[string, string]> = [];
  for (const [i, m] of rawMerges.entries()) {
    if (typeof m === 'string') {
      const sp = m.indexOf(' ');
      if (sp <= 0 || sp !== m.lastIndexOf(' '))
        fail(where, `merge ${i} ${JSON.stringify(m)} is not "left right"`);
      merges.push([m.slice(0, sp), m.slice(sp + 1)]);
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
      merges.push([m[0], m[1]]);
    } else fail(where, `merge ${i} must be "left right" or [left, right]`);
  }
  const core = new BytePairEncoder(
    { vocab, merges, addPrefixSpace: pre.add_prefix_space === true, useRegex: pre.use_regex !== false },
    where,
  );
  return { core, vocabSize, vocab };
}

function textEncoder(
  core: SegmentCore,
  added: AddedSpec[],
  normalizedAllowed: boolean,
  where: string,
): TextEncoder {
  const raw = added.filter((t) => !t.normalized);
  const norm = added.filter((t) => t.normalized);
  if (norm.length > 0 && !normalizedAllowed) {
    fail(
      where,
      `added token ${JSON.stringify(norm[0]?.content)} has normalized: true, which is only supported without a normalizer`,
    );
  }
  return new TextEncoder(core, new AddedTokenSet(raw), new AddedTokenSet(norm));
}

interface AddedSpec extends Added {
  normalized: boolean;
}

function addedTokens(v: unknown, where: string): AddedSpec[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.length > MAX_ADDED_TOKENS)
    fail(where, `"added_tokens" must be an array of at most ${MAX_ADDED_TOKENS}`);
  const out: AddedSpec[] = [];
  for (const t of v) {
    if (
      !isObject(t) ||
      typeof t.content !== 'string' ||
      t.content.length === 0 ||
      t.content.length > MAX_ADDED_LENGTH
    ) {
      fail(where, `each added token needs a "content" string of 1..${MAX_ADDED_LENGTH} characters`);
    }
    if (typeof t.id !== 'number' || !Number.isInteger(t.id) || t.id < 0 || t.id > 0x7fffffff)
      fail(where, `added token ${JSON.stringify(t.content)} has no valid id`);
    if (t.single_word === true)
      fail(where, `added token ${JSON.stringify(t.content)} has single_word: true, which is not supported`);
    const special = t.special === true;
    out.push({
      content: t.content,
      id: t.id,
      lstrip: t.lstrip === true,
      rstrip: t.rstrip === true,
      normalized: typeof t.normalized === 'boolean' ? t.normalized : !special,
    });
  }
  return out;
}

function pairTemplate(pp: unknown, where: string): TemplatePiece[] {
  if (!isObject(pp) || pp.type !== 'TemplateProcessing' || !Array.isArray(pp.pair)) {
    fail(where, 'the "post_processor" must be a TemplateProcessing with a "pair" template');
  }
  const specials = isObject(pp.special_tokens) ? pp.special_tokens : {};
  const pieces: TemplatePiece[] = [];
  for (const item of pp.pair) {
    if (
      isObject(item) &&
      isObject(item.Sequence) &&
      (item.Sequence.id === 'A' || item.Sequence.id === 'B') &&
      isId(item.Sequence.type_id)
    ) {
      pieces.push({ kind: item.Sequence.id, typeId: item.Sequence.type_id });
    } else if (isObject(item) && isObject(item.SpecialToken) && isId(item.SpecialToken.type_id)) {
      const name = item.SpecialToken.id;
      const st = typeof name === 'string' ? specials[name] : undefined;
      if (!isObject(st) || !Array.isArray(st.ids) || !st.ids.every(isId))
        fail(where, `special token ${JSON.stringify(name)} of the pair template has no ids`);
      pieces.push({ kind: 'special', ids: st.ids as number[], typeId: item.SpecialToken.type_id });
    } else fail(where, `bad pair template item ${JSON.stringify(item)}`);
  }
  if (
    pieces.filter((p) => p.kind === 'A').length !== 1 ||
    pieces.filter((p) => p.kind === 'B').length !== 1
  ) {
    fail(where, 'the pair template must contain $A and $B exactly once');
  }
  return pieces;
}

function maxLengthOf(v: unknown, where: string): number {
  if (v === undefined || v === null) return Number.POSITIVE_INFINITY;
  if (typeof v !== 'number' || !(v > 0))
    fail(where, `"model_max_length" must be a positive number, got ${String(v)}`);
  return v >= HUGE_MAX_LENGTH || !Number.isFinite(v) ? Number.POSITIVE_INFINITY : Math.floor(v);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0x7fffffff;
}

function fail(where: string, message: string): never {
  throw new TokenizerError(`${where}: ${message}`);
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
