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

import { isObject } from '../validate';
import { type AddedToken, AddedTokenMatcher } from './added-tokens';
import { BytePairEncoder } from './bpe';
import {
  addedTokenOf,
  checkCount,
  largestId,
  modelMaxLengthOf,
  TOKENIZER_LIMITS,
  tokenString,
} from './fields';
import type { IdBuffer, TextCore, TokenizerParts } from './ids';
import { fail, isId, parsePairTemplate, templateIds } from './pair';
import { PrecompiledCharsmap } from './precompiled';
import { isRustWhitespace, type PrependScheme, UnigramPipeline } from './unigram';

/** How an XLM-RoBERTa tokenizer.json is read: see docs/tokenizers.md. */
export type UnigramReading = 'transformers' | 'file';

/** Input read per window, in UTF-16 code units (grown when a window has no safe cut). */
const WINDOW = 4096;

type Json = Record<string, unknown>;

interface SegmentCore {
  safeCut(text: string, p: number): boolean;
  encode(text: string, start: number, end: number, atTextStart: boolean, out: IdBuffer, cap: number): void;
}

interface Match {
  start: number;
  end: number;
  id: number;
}

/**
 * Leftmost-longest matching of a set of added tokens (what `tokenizers`' Aho-Corasick does), in time
 * linear in the text whatever the tokens (./added-tokens.ts), with lstrip / rstrip applied.
 */
class AddedTokenSet {
  readonly size: number;
  private readonly matcher: AddedTokenMatcher;
  constructor(private readonly tokens: readonly AddedToken[]) {
    this.size = tokens.length;
    this.matcher = new AddedTokenMatcher(tokens);
  }

  /** Call before searching another text. */
  reset(): void {
    this.matcher.reset();
  }

  /**
   * The first match starting in [from, limit) (it may end past limit), with lstrip/rstrip applied.
   * Calls for one text come with `from` not decreasing (reset() in between).
   */
  find(text: string, from: number, limit: number): Match | undefined {
    const m = this.matcher;
    const at = m.find(text, from, text.length, limit);
    if (at < 0) return undefined;
    const t = this.tokens[m.index] as AddedToken;
    let start = at;
    let end = at + m.len;
    if (t.lstrip) while (start > from && isRustWhitespace(text.charCodeAt(start - 1))) start--;
    if (t.rstrip) while (end < text.length && isRustWhitespace(text.charCodeAt(end))) end++;
    return { start, end, id: m.id };
  }
}

/** Text -> ids: added tokens (raw, then normalized ones), windows, the model core. */
class TextEncoder implements TextCore {
  /** The whole text is read (in windows, until `limit` ids): never capped. */
  readonly capped = false;
  constructor(
    private readonly core: SegmentCore,
    private readonly raw: AddedTokenSet,
    private readonly normalized: AddedTokenSet,
  ) {}

  encode(text: string, out: IdBuffer, limit: number): number {
    const from = out.length;
    const cap = from + limit;
    // Lone surrogates read as U+FFFD (what any UTF-8 encoding of the JS string gives Python / Rust):
    // the models replace them where they meet them, in non-ASCII stretches only.
    const s = text;
    const n = s.length;
    let pos = 0;
    let window = WINDOW;
    this.raw.reset();
    this.normalized.reset();
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
    return out.length - from;
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

/**
 * The Tokenizer parts (src/tokenizer.ts) of a tokenizer.json whose model is Unigram or BPE, with
 * tokenizer_config.json (+ special_tokens_map.json) values in `config`.
 */
export function familyFromTokenizerJson(
  json: Json,
  config: Json,
  reading: UnigramReading,
  where: string,
): TokenizerParts {
  const model = json.model;
  if (!isObject(model)) fail(where, '"model" is missing');
  const added = addedTokens(json.added_tokens, where);
  const pairTemplate = parsePairTemplate(json.post_processor, where);
  const modelMaxLength =
    modelMaxLengthOf(config.model_max_length, 'tokenizer_config.json') ?? Number.POSITIVE_INFINITY;
  let kind: 'unigram' | 'bpe';
  let core: TextEncoder;
  let vocab: { entries: Iterable<readonly [string, number]>; id(token: string): number };
  if (model.type === 'Unigram') {
    const u = unigramCore(json, model, config, reading, where);
    kind = 'unigram';
    core = textEncoder(u.core, added, false, where);
    vocab = { entries: u.pieces.map(([p], i) => [p, i] as const), id: (t) => u.core.pieceId(t) };
  } else if (model.type === 'BPE') {
    const b = bpeCore(json, model, where);
    kind = 'bpe';
    core = textEncoder(b.core, added, true, where);
    vocab = { entries: b.vocab, id: (t) => b.vocab.get(t) ?? -1 };
  } else {
    fail(where, `model type ${JSON.stringify(model.type)} is not Unigram or BPE`);
  }
  const idOf = (key: string, dflt: string): number => {
    const name = tokenString(config[key]) ?? dflt;
    return added.find((t) => t.content === name)?.id ?? vocab.id(name);
  };
  const unigram = kind === 'unigram';
  return {
    kind,
    core,
    pairTemplate,
    modelMaxLength,
    ...largestId(vocab.entries, added, pairTemplate),
    ...templateIds(pairTemplate),
    padId: idOf('pad_token', unigram ? '<pad>' : '[PAD]'),
    unkId: idOf('unk_token', unigram ? '<unk>' : '[UNK]'),
  };
}

// ------------------------------------------------------------------------------------------ reading

function unigramCore(
  json: Json,
  model: Json,
  config: Json,
  reading: UnigramReading,
  where: string,
): { core: UnigramPipeline; pieces: ReadonlyArray<[string, number]> } {
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
  return { core, pieces };
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
): { core: BytePairEncoder; vocab: ReadonlyMap<string, number> } {
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
  for (const [k, v] of Object.entries(rawVocab)) {
    if (!isId(v)) fail(where, `vocab id of ${JSON.stringify(k)} is not an id`);
    vocab.set(k, v);
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
  return { core, vocab };
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

type AddedSpec = AddedToken & { normalized: boolean };

/** tokenizer.json's added_tokens (normalized ones allowed here; textEncoder decides). */
function addedTokens(v: unknown, where: string): AddedSpec[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(where, '"added_tokens" must be an array');
  checkCount(v.length, 0, TOKENIZER_LIMITS.addedTokens, 'added tokens', where);
  return v.map((t) => {
    if (!isObject(t) || !isId(t.id)) fail(where, 'every added token needs an integer "id"');
    return addedTokenOf(t, t.id, where, true);
  });
}
