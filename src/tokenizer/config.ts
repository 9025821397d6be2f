/**
 * Reading and validating tokenizer files (untrusted input) into one TokenizerSpec:
 *  - tokenizer.json (Hugging Face `tokenizers` format) with a WordPiece model, BertNormalizer,
 *    BertPreTokenizer and a TemplateProcessing / BertProcessing post-processor;
 *  - vocab.txt + tokenizer_config.json (+ special_tokens_map.json), converted the way transformers'
 *    BertConverter builds BertTokenizerFast from the slow tokenizer.
 * Anything else gets a TokenizerError that names the file, the field and what is supported.
 */
import { isObject } from '../validate';
import type { AddedToken } from './added-tokens';
import {
  addedTokenOf,
  checkCount,
  countKeys,
  idOf,
  LONE_SURROGATE,
  largestId,
  modelMaxLengthOf,
  optBool,
  specialNames,
  TOKENIZER_LIMITS,
  tokenString,
} from './fields';
import type { TokenizerParts } from './ids';
import { bertTemplate, fail, isId, parsePairTemplate } from './pair';
import type { CoreSpec, NormalizerOptions } from './wordpiece';

type Json = Record<string, unknown>;

/** A WordPiece tokenizer's parts before its core is built: TokenizerParts with the core's spec. */
export type TokenizerSpec = Omit<TokenizerParts, 'kind' | 'core'> & { core: CoreSpec };

interface RawBertNormalizer {
  clean_text: boolean;
  handle_chinese_chars: boolean;
  strip_accents: boolean | null;
  lowercase: boolean;
}

function parseNormalizer(n: unknown, where: string): RawBertNormalizer | null {
  if (n === null || n === undefined) return null;
  if (!isObject(n) || n.type !== 'BertNormalizer') {
    fail(
      where,
      `normalizer ${JSON.stringify(isObject(n) ? n.type : n)} is not supported (BertNormalizer only)`,
    );
  }
  const strip = n.strip_accents;
  if (strip !== undefined && strip !== null && typeof strip !== 'boolean') {
    fail(where, '"strip_accents" must be true, false or null');
  }
  return {
    clean_text: optBool(n, 'clean_text', where, true),
    handle_chinese_chars: optBool(n, 'handle_chinese_chars', where, true),
    strip_accents: strip ?? null,
    lowercase: optBool(n, 'lowercase', where, true),
  };
}

/**
 * BertTokenizerFast.__init__ (transformers 4.x) compares the normalizer of tokenizer.json with its own
 * arguments from tokenizer_config.json (defaults do_lower_case=True, strip_accents=None,
 * tokenize_chinese_chars=True) and, on any difference, rebuilds the normalizer from the arguments.
 * Models are trained through that class, so we do the same whenever a tokenizer_config.json is given.
 */
function applyConfig(n: RawBertNormalizer, config: Json | undefined, where: string): RawBertNormalizer {
  if (config === undefined) return n;
  const lowercase = optBool(config, 'do_lower_case', where, true);
  const chinese = optBool(config, 'tokenize_chinese_chars', where, true);
  const s = config.strip_accents;
  if (s !== undefined && s !== null && typeof s !== 'boolean')
    fail(where, '"strip_accents" must be true, false or null');
  const strip = s ?? null;
  if (n.lowercase === lowercase && n.strip_accents === strip && n.handle_chinese_chars === chinese) return n;
  return { clean_text: n.clean_text, handle_chinese_chars: chinese, strip_accents: strip, lowercase };
}

function resolveNormalizer(n: RawBertNormalizer | null): NormalizerOptions {
  if (n === null)
    return { cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: false };
  return {
    cleanText: n.clean_text,
    handleChineseChars: n.handle_chinese_chars,
    stripAccents: n.strip_accents ?? n.lowercase, // null follows lowercase
    lowercase: n.lowercase,
  };
}

/** `config` is tokenizer_config.json merged with special_tokens_map.json, when those files exist. */
export function specFromTokenizerJson(json: unknown, config?: Json, where = 'tokenizer.json'): TokenizerSpec {
  if (!isObject(json)) fail(where, 'expected a JSON object');
  const model = json.model;
  if (!isObject(model)) fail(where, '"model" is missing');
  if (model.type !== 'WordPiece') {
    fail(where, `model type ${JSON.stringify(model.type)} is not supported (WordPiece, as BERT uses)`);
  }
  if (!isObject(model.vocab)) fail(where, '"model.vocab" must be an object of token -> id');
  checkCount(
    countKeys(model.vocab, TOKENIZER_LIMITS.vocabEntries),
    1,
    TOKENIZER_LIMITS.vocabEntries,
    'vocabulary entries',
    where,
  );
  if (Array.isArray(model.merges))
    checkCount(model.merges.length, 0, TOKENIZER_LIMITS.merges, 'merges', where);
  if (Array.isArray(json.added_tokens))
    checkCount(json.added_tokens.length, 0, TOKENIZER_LIMITS.addedTokens, 'added tokens', where);
  const entries = Object.entries(model.vocab);
  const vocab = new Map<string, number>();
  for (const [tok, id] of entries) {
    if (!isId(id))
      fail(
        where,
        `vocab id of ${JSON.stringify(tok)} must be a non-negative integer, got ${JSON.stringify(id)}`,
      );
    if (LONE_SURROGATE.test(tok)) fail(where, `vocab token ${JSON.stringify(tok)} is not valid Unicode`);
    vocab.set(tok, id);
  }
  const unk =
    typeof model.unk_token === 'string' ? model.unk_token : fail(where, '"model.unk_token" must be a string');
  const prefix = model.continuing_subword_prefix ?? '##';
  if (typeof prefix !== 'string') fail(where, '"model.continuing_subword_prefix" must be a string');
  const maxChars = model.max_input_chars_per_word ?? 100;
  if (!isId(maxChars)) fail(where, '"model.max_input_chars_per_word" must be a non-negative integer');

  if (!isObject(json.pre_tokenizer) || json.pre_tokenizer.type !== 'BertPreTokenizer') {
    const t = isObject(json.pre_tokenizer) ? json.pre_tokenizer.type : json.pre_tokenizer;
    fail(where, `pre_tokenizer ${JSON.stringify(t)} is not supported (BertPreTokenizer only)`);
  }
  const rawNormalizer = parseNormalizer(json.normalizer, where);
  const normalizer = resolveNormalizer(
    rawNormalizer === null ? null : applyConfig(rawNormalizer, config, 'tokenizer_config.json'),
  );
  const cfg: Json = config ?? {};

  const added: AddedToken[] = [];
  if (json.added_tokens !== undefined && json.added_tokens !== null) {
    if (!Array.isArray(json.added_tokens)) fail(where, '"added_tokens" must be an array');
    for (const t of json.added_tokens) {
      if (!isObject(t) || !isId(t.id)) fail(where, 'every added token needs an integer "id"');
      added.push(addedTokenOf(t, t.id, where));
    }
  }
  const pairTemplate = parsePairTemplate(json.post_processor, where);

  const padding = isObject(json.padding) ? json.padding : {};
  const names = specialNames(cfg, {
    cls: '[CLS]',
    sep: '[SEP]',
    pad: typeof padding.pad_token === 'string' ? padding.pad_token : '[PAD]',
    unk,
    mask: '[MASK]',
  });
  const unkId = idOf(unk, 'unknown', vocab, added, where);
  const truncation = isObject(json.truncation) ? json.truncation : {};
  const modelMaxLength =
    modelMaxLengthOf(cfg.model_max_length ?? cfg.max_len, 'tokenizer_config.json') ??
    modelMaxLengthOf(truncation.max_length, where) ??
    Number.POSITIVE_INFINITY;
  return {
    core: {
      vocab,
      unkId,
      continuingSubwordPrefix: prefix,
      maxInputCharsPerWord: maxChars,
      normalizer,
      addedTokens: added,
    },
    pairTemplate,
    modelMaxLength,
    ...largestId(vocab, added, pairTemplate),
    clsId: idOf(names.cls, 'classifier ([CLS])', vocab, added, where),
    sepId: idOf(names.sep, 'separator ([SEP])', vocab, added, where),
    padId: idOf(names.pad, 'padding ([PAD])', vocab, added, where),
    unkId,
  };
}

// ------------------------------------------------------------------------------------ vocab.txt

/** vocab.txt as transformers' load_vocab reads it: one token per line (\n, \r\n or \r), index = id. */
export function parseVocabTxt(text: string, where = 'vocab.txt'): string[] {
  // Count before splitting: millions of lines must be refused before millions of strings exist.
  const max = TOKENIZER_LIMITS.vocabEntries;
  for (const br of ['\n', '\r']) {
    let n = 0;
    for (let i = text.indexOf(br); i >= 0 && n <= max + 1; i = text.indexOf(br, i + 1)) n++;
    checkCount(Math.max(0, n - 1), 0, max, 'vocabulary entries', where);
  }
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

export function specFromVocab(
  vocabIn: string[] | string,
  config: Json = {},
  where = 'vocab.txt',
): TokenizerSpec {
  const tokens = typeof vocabIn === 'string' ? parseVocabTxt(vocabIn, where) : vocabIn;
  if (!Array.isArray(tokens)) fail(where, 'expected the text of vocab.txt or an array of tokens');
  checkCount(tokens.length, 1, TOKENIZER_LIMITS.vocabEntries, 'vocabulary entries', where);
  const vocab = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (typeof t !== 'string') fail(where, `token ${i} is not a string`);
    if (LONE_SURROGATE.test(t)) fail(where, `token ${i} is not valid Unicode`);
    vocab.set(t, i); // a repeated token keeps its last line, as load_vocab does
  }
  const cfgWhere = 'tokenizer_config.json';
  const lowercase = optBool(config, 'do_lower_case', cfgWhere, true);
  const normalizer: NormalizerOptions = {
    cleanText: true,
    handleChineseChars: optBool(config, 'tokenize_chinese_chars', cfgWhere, true),
    stripAccents: optBool(config, 'strip_accents', cfgWhere, lowercase),
    lowercase,
  };
  const names = specialNames(config, {
    cls: '[CLS]',
    sep: '[SEP]',
    pad: '[PAD]',
    unk: '[UNK]',
    mask: '[MASK]',
  });

  // Special tokens are matched on the raw text (transformers adds them with normalized=False).
  const added: AddedToken[] = [];
  const addSpecial = (content: string, required: string | null): void => {
    const id = vocab.get(content);
    if (id === undefined) {
      if (required !== null) {
        fail(
          where,
          `the ${required} token ${JSON.stringify(content)} is not in the vocabulary; the file is incomplete or not a BERT vocabulary`,
        );
      }
      return; // transformers would append it with an id past the model's embeddings; we leave it out
    }
    if (!added.some((t) => t.content === content)) added.push({ content, id, lstrip: false, rstrip: false });
  };
  addSpecial(names.unk, 'unknown');
  addSpecial(names.sep, 'separator');
  addSpecial(names.pad, 'padding');
  addSpecial(names.cls, 'classifier');
  addSpecial(names.mask, null);
  const extra = config.additional_special_tokens;
  if (Array.isArray(extra))
    for (const e of extra) if (tokenString(e) !== undefined) addSpecial(tokenString(e) as string, null);
  const decoder = config.added_tokens_decoder;
  if (isObject(decoder)) {
    const n = countKeys(decoder, TOKENIZER_LIMITS.addedTokens);
    checkCount(n, 0, TOKENIZER_LIMITS.addedTokens, 'added_tokens_decoder entries', cfgWhere);
    for (const [key, v] of Object.entries(decoder)) {
      const id = Number(key);
      if (!isId(id)) fail(cfgWhere, `added_tokens_decoder key ${JSON.stringify(key)} is not an id`);
      const t = addedTokenOf(v, id, cfgWhere);
      if (!added.some((a) => a.content === t.content)) added.push(t);
    }
  }
  const unkId = vocab.get(names.unk) as number;
  const clsId = vocab.get(names.cls) as number;
  const sepId = vocab.get(names.sep) as number;
  return {
    core: {
      vocab,
      unkId,
      continuingSubwordPrefix: '##',
      maxInputCharsPerWord: 100, // BertConverter builds WordPiece with the default, whatever the config says
      normalizer,
      addedTokens: added,
    },
    pairTemplate: bertTemplate(clsId, sepId),
    modelMaxLength:
      modelMaxLengthOf(config.model_max_length ?? config.max_len, cfgWhere) ?? Number.POSITIVE_INFINITY,
    ...largestId(vocab, added, bertTemplate(clsId, sepId)),
    clsId,
    sepId,
    padId: vocab.get(names.pad) as number,
    unkId,
  };
}
