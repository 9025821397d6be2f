/**
 * Synthetic pretrained-size vocabularies for the tokenizer benchmark: the committed family fixtures
 * (test/fixtures/families/tokenizer, 4,002 Unigram pieces and 2,742 BPE merges) are far smaller than
 * XLM-RoBERTa's 250,002 pieces and ModernBERT's ~50,000 merges, and a tokenizer's cost can grow with
 * its vocabulary (a larger trie to walk, a larger merge table, longer matches). These extend the
 * fixtures' tokenizer.json to the real sizes, keeping every fixture entry and id:
 *
 *  - Unigram: a piece `▁word` (and `▁Word`) for the whole words of bert-base-uncased's vocabulary,
 *    in its frequency order, scored -8 (most frequent) to -12, so that English text mostly reads as
 *    one piece a word as it does with XLM-R; then, to 250,002 pieces, `▁word` + fixture piece and
 *    word + fixture piece (inflections and compounds; scores -13 to -16), which makes the trie as
 *    dense over Latin text as a real one and every Viterbi walk longer.
 *  - BPE: after the fixture's merges, for each of those words (as ` word`, `word`, ` Word`) the
 *    chain of merges that joins the pieces the fixture leaves into the whole word, until there are
 *    50,000 merges; the new tokens join the vocabulary.
 *
 * They are not trained: the ids they give are not any real model's. They only give the benchmark the
 * vocabulary sizes and match lengths of the real tokenizers.
 */
import { bertUncasedVocab, seededRandom } from '../../src/workload';

export const LARGE_UNIGRAM_PIECES = 250_002;
export const LARGE_BPE_MERGES = 50_000;

type Json = Record<string, unknown>;

/** bert-base-uncased's whole words (no ## pieces, no specials), in its order. */
function englishWords(): string[] {
  return bertUncasedVocab()
    .slice(1996)
    .filter((w) => /^[a-z]+$/.test(w));
}

function capitalize(w: string): string {
  return w.charAt(0).toUpperCase() + w.slice(1);
}

/** The Unigram tokenizer.json `json` with its pieces extended to LARGE_UNIGRAM_PIECES. */
export function largeUnigram(json: Json): Json {
  const model = json.model as { vocab: Array<[string, number]> };
  const vocab = model.vocab.map(([p, s]) => [p, s] as [string, number]);
  const seen = new Set(vocab.map(([p]) => p));
  const add = (piece: string, score: number): void => {
    if (vocab.length >= LARGE_UNIGRAM_PIECES || seen.has(piece)) return;
    seen.add(piece);
    vocab.push([piece, score]);
  };
  const words = englishWords();
  words.forEach((w, i) => {
    const score = -8 - (4 * i) / words.length;
    add(`\u2581${w}`, score);
    add(`\u2581${capitalize(w)}`, score - 1);
  });
  const suffixes = model.vocab.map(([p]) => p).filter((p) => /^[a-z]{1,6}$/.test(p));
  const u = seededRandom(7);
  while (vocab.length < LARGE_UNIGRAM_PIECES) {
    const w = words[Math.floor(u() * words.length)] as string;
    const s = suffixes[Math.floor(u() * suffixes.length)] as string;
    const score = -13 - 3 * u();
    add(u() < 0.5 ? `\u2581${w}${s}` : `${w}${s}`, score);
  }
  return { ...json, model: { ...model, vocab } };
}

/**
 * The BPE tokenizer.json `json` with merges extended to LARGE_BPE_MERGES. `pieces(text)` gives the
 * token strings the fixture tokenizer splits a text into (no special tokens).
 */
export function largeBpe(json: Json, pieces: (text: string) => string[]): Json {
  const model = json.model as { vocab: Record<string, number>; merges: Array<string | [string, string]> };
  const vocab: Record<string, number> = { ...model.vocab };
  let nextId =
    Math.max(...Object.values(vocab), ...(json.added_tokens as Array<{ id: number }>).map((t) => t.id)) + 1;
  const merges: Array<[string, string]> = model.merges.map((m) =>
    typeof m === 'string' ? (m.split(' ') as [string, string]) : m,
  );
  const known = new Set(merges.map(([a, b]) => `${a} ${b}`));
  for (const w of englishWords()) {
    for (const text of [` ${w}`, w, ` ${capitalize(w)}`]) {
      const parts = pieces(text);
      let left = parts[0] as string;
      for (let i = 1; i < parts.length && merges.length < LARGE_BPE_MERGES; i++) {
        const right = parts[i] as string;
        if (!known.has(`${left} ${right}`)) {
          known.add(`${left} ${right}`);
          merges.push([left, right]);
          if (vocab[left + right] === undefined) vocab[left + right] = nextId++;
        }
        left += right;
      }
    }
    if (merges.length >= LARGE_BPE_MERGES) break;
  }
  return { ...json, model: { ...model, vocab, merges } };
}
