/**
 * The tokenizer.json that Hugging Face `tokenizers` writes for a BertTokenizerFast over a vocab.txt:
 * BertNormalizer, BertPreTokenizer, WordPiece and the [CLS] A [SEP] B [SEP] template. Written by the
 * synthetic model maker (src/synth.ts) and the ONNX export for transformers.js (bench/lib/onnx-export.ts).
 */
import { TokenizerError } from '../errors';

const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;

/** The tokenizer.json that `tokenizers` writes for a BertTokenizerFast over this vocabulary. */
export function bertTokenizerJson(
  vocab: readonly string[],
  opts: { lowercase: boolean; stripAccents: boolean | null; chineseChars: boolean },
): Record<string, unknown> {
  const ids = new Map<string, number>();
  for (const [i, tok] of vocab.entries()) if (!ids.has(tok)) ids.set(tok, i);
  for (const s of SPECIALS) {
    if (!ids.has(s)) throw new TokenizerError(`vocab.txt has no ${s} token; a BERT vocabulary needs it.`);
  }
  const id = (t: string): number => ids.get(t) as number;
  const seq = (name: 'A' | 'B', typeId: number) => ({ Sequence: { id: name, type_id: typeId } });
  const special = (t: string, typeId: number) => ({ SpecialToken: { id: t, type_id: typeId } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((s) => ({
      id: id(s),
      content: s,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: opts.chineseChars,
      strip_accents: opts.stripAccents,
      lowercase: opts.lowercase,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special('[CLS]', 0), seq('A', 0), special('[SEP]', 0)],
      pair: [special('[CLS]', 0), seq('A', 0), special('[SEP]', 0), seq('B', 1), special('[SEP]', 1)],
      special_tokens: Object.fromEntries(
        ['[CLS]', '[SEP]'].map((t) => [t, { id: t, ids: [id(t)], tokens: [t] }]),
      ),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: Object.fromEntries(ids),
    },
  };
}
